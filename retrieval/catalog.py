"""The catalog: a SQLite file that is the source of truth for which documents and chunks exist.

Vectors (Chroma) and the BM25 snapshot are derived from it and reconciled against it, so an
interrupted ingest can always be repaired: the catalog changes in single transactions, one batch
of documents at a time, and anything in the other stores that the catalog does not list is an
orphan to delete.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from retrieval.types import Chunk, DocumentRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Shared by the API's worker threads: SQLite here is built serialized
        # (sqlite3.threadsafety == 3). Writers (ingest) must not share one Catalog with
        # concurrent readers mid-transaction; the API reads only.
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # state ------------------------------------------------------------------------------
    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (key, value))

    def delete_state(self, key: str) -> None:
        self._db.execute("DELETE FROM state WHERE key=?", (key,))

    @property
    def generation(self) -> int:
        """Bumped by every change to the chunk set; derived indexes record the one they saw."""
        return int(self.get_state("generation", "0") or 0)

    # reads ------------------------------------------------------------------------------
    def documents(self, *, with_chunks: bool = True) -> dict[str, DocumentRecord]:
        rows = self._db.execute(
            "SELECT doc_id, source, kind, title, content_hash, metadata FROM documents"
        ).fetchall()
        chunk_map: dict[str, list[str]] = {}
        if with_chunks:
            for doc_id, chunk_id in self._db.execute(
                "SELECT doc_id, chunk_id FROM chunks ORDER BY doc_id, ord"
            ):
                chunk_map.setdefault(doc_id, []).append(chunk_id)
        return {
            r[0]: DocumentRecord(r[0], r[1], r[2], r[3], r[4], chunk_map.get(r[0], []), json.loads(r[5]))
            for r in rows
        }

    def chunk_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT chunk_id FROM chunks")}

    def chunk_ids_of(self, doc_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            out.update(
                r[0] for r in self._db.execute(
                    f"SELECT chunk_id FROM chunks WHERE doc_id IN ({marks})", part
                )
            )
        return out

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def document_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def iter_chunks(self) -> Iterator[Chunk]:
        for cid, doc_id, text, embed_text, meta in self._db.execute(
            "SELECT chunk_id, doc_id, text, embed_text, metadata FROM chunks ORDER BY chunk_id"
        ):
            yield Chunk(cid, doc_id, text, embed_text, json.loads(meta))

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        out: dict[str, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for cid, doc_id, text, embed_text, meta in self._db.execute(
                f"SELECT chunk_id, doc_id, text, embed_text, metadata FROM chunks "
                f"WHERE chunk_id IN ({marks})", part,
            ):
                out[cid] = Chunk(cid, doc_id, text, embed_text, json.loads(meta))
        return out

    def get_documents(self, doc_ids: list[str]) -> dict[str, DocumentRecord]:
        out: dict[str, DocumentRecord] = {}
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for r in self._db.execute(
                f"SELECT doc_id, source, kind, title, content_hash, metadata FROM documents "
                f"WHERE doc_id IN ({marks})", part,
            ):
                out[r[0]] = DocumentRecord(r[0], r[1], r[2], r[3], r[4], [], json.loads(r[5]))
        return out

    # writes -----------------------------------------------------------------------------
    def replace_documents(
        self, docs: list[tuple[DocumentRecord, list[Chunk]]], remove: list[str] = ()  # type: ignore[assignment]
    ) -> None:
        """In one transaction: drop ``remove`` and the old versions of ``docs``, write the new."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            ids = list(remove) + [d.doc_id for d, _ in docs]
            for doc_id in ids:
                cur.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
                cur.execute("DELETE FROM documents WHERE doc_id=?", (doc_id,))
            for doc, chunks in docs:
                cur.execute(
                    "INSERT INTO documents(doc_id, source, kind, title, content_hash, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (doc.doc_id, doc.source, doc.kind, doc.title, doc.content_hash,
                     json.dumps(doc.metadata, default=str)),
                )
                cur.executemany(
                    "INSERT INTO chunks(chunk_id, doc_id, ord, text, embed_text, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(c.id, doc.doc_id, n, c.text, c.embed_text, json.dumps(c.metadata, default=str))
                     for n, c in enumerate(chunks)],
                )
            cur.execute(
                "INSERT OR REPLACE INTO state(key, value) VALUES ('generation', ?)",
                (str(self.generation + 1),),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
