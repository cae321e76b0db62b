"""The knowledge index: catalog (truth) + vector store + BM25 snapshot, kept consistent.

Write protocol for one batch of document changes, chosen so that a crash at any point leaves
either the previous state or something the next run repairs:
1. embed and upsert the vectors of chunks the catalog does not have yet (ids are content hashes);
2. one catalog transaction swaps the documents' rows (old chunks out, new chunks in);
3. delete the vectors the catalog no longer lists.
Runs mark the catalog ``dirty`` while they work; a run that finds it dirty reconciles first
(deletes vectors the catalog does not list, embeds chunks it lists but the store lacks).
Readers only ever return chunks the current catalog lists.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from copilot.config import Settings
from retrieval.catalog import Catalog
from retrieval.embedders import Embedder, build_embedder
from retrieval.lexical import LexicalIndex
from retrieval.types import Chunk, DocumentRecord
from retrieval.vector_store import VectorStore

DIRTY = "dirty"


@dataclass
class ApplyStats:
    embedded: int = 0
    reused: int = 0
    deleted: int = 0


@dataclass
class ReconcileStats:
    orphans_deleted: int = 0
    missing_embedded: int = 0
    details: list[str] = field(default_factory=list)


class KnowledgeIndex:
    def __init__(
        self, *, catalog: Catalog, store: VectorStore, embedder: Embedder, lexical_dir: Path
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.embedder = embedder
        self.lexical_dir = lexical_dir
        self._current: tuple[LexicalIndex, ChunkColumns] | None = None
        self._fields: DocumentFields | None = None
        self._loading = threading.Lock()

    # writing ----------------------------------------------------------------------------
    def begin(self) -> ReconcileStats:
        """Start a write run: repair what an interrupted run left, then mark the catalog dirty."""
        stats = ReconcileStats()
        if self.catalog.get_state(DIRTY):
            stats = self.reconcile()
        self.catalog.set_state(DIRTY, "1")
        return stats

    def finish(self) -> None:
        """End a write run: bring the BM25 snapshot up to date, then clear the dirty mark."""
        self.lexical()
        self.catalog.delete_state(DIRTY)

    def apply(
        self, upserts: Sequence[tuple[DocumentRecord, list[Chunk]]], removes: Sequence[str] = ()
    ) -> ApplyStats:
        """Replace the given documents (and remove others) following the write protocol."""
        stats = ApplyStats()
        old_ids = self.catalog.chunk_ids_of([d.doc_id for d, _ in upserts] + list(removes))
        fresh = [c for _, chunks in upserts for c in chunks if c.id not in old_ids]
        stats.reused = sum(len(chunks) for _, chunks in upserts) - len(fresh)
        if fresh:
            vectors = self.embedder.embed_documents([c.embed_text for c in fresh])
            self.store.upsert(
                [c.id for c in fresh], vectors, [vector_metadata(c) for c in fresh],
                [c.text for c in fresh],
            )
            stats.embedded = len(fresh)
        self.catalog.replace_documents(list(upserts), list(removes))
        new_ids = {c.id for _, chunks in upserts for c in chunks}
        stale = sorted(old_ids - new_ids)
        if stale:
            self.store.delete(stale)
            stats.deleted = len(stale)
        return stats

    def reconcile(self) -> ReconcileStats:
        """Make the vector store hold exactly the catalog's chunks."""
        stats = ReconcileStats()
        in_store = self.store.ids()
        in_catalog = self.catalog.chunk_ids()
        orphans = sorted(in_store - in_catalog)
        if orphans:
            self.store.delete(orphans)
            stats.orphans_deleted = len(orphans)
            stats.details.append(f"deleted {len(orphans)} vectors no document lists")
        missing = sorted(in_catalog - in_store)
        if missing:
            chunks = self.catalog.get_chunks(missing)
            batch = [chunks[m] for m in missing]
            self.store.upsert(
                missing, self.embedder.embed_documents([c.embed_text for c in batch]),
                [vector_metadata(c) for c in batch], [c.text for c in batch],
            )
            stats.missing_embedded = len(missing)
            stats.details.append(f"embedded {len(missing)} chunks the vector store lacked")
        return stats

    # reading ----------------------------------------------------------------------------
    def lexical(self) -> LexicalIndex:
        """The BM25 snapshot of the current catalog generation, rebuilt (and saved) if stale."""
        return self.snapshot()[0]

    def columns(self) -> ChunkColumns:
        return self.snapshot()[1]

    def snapshot(self) -> tuple[LexicalIndex, ChunkColumns]:
        """The BM25 snapshot and the chunk columns aligned with it, published together.

        The API's worker threads search concurrently: loading under a lock keeps one thread
        from seeing a snapshot whose columns are not set yet, and two from saving the same
        snapshot folder at once."""
        generation = self.catalog.generation
        current = self._current
        if current is not None and current[0].generation == generation:
            return current
        with self._loading:
            current = self._current
            if current is not None and current[0].generation == generation:
                return current
            snap = LexicalIndex.load(self.lexical_dir)
            columns = None
            if snap is None or snap.generation != generation:
                chunks = list(self.catalog.iter_chunks())
                snap = LexicalIndex.build(
                    [c.id for c in chunks], [c.embed_text for c in chunks], generation=generation
                )
                snap.save(self.lexical_dir)
                columns = ChunkColumns.from_chunks(chunks)
            if columns is None or columns.ids != snap.ids:
                previous = current[1] if current is not None else None
                columns = previous if previous is not None and previous.ids == snap.ids else \
                    ChunkColumns.from_chunks(
                        list(self.catalog.get_chunks(snap.ids).values()), order=snap.ids)
            self._current = (snap, columns)
            return self._current

    def fields(self) -> DocumentFields:
        """A document-level BM25 over titles, alert names, services and paths."""
        generation = self.catalog.generation
        current = self._fields
        if current is not None and current.generation == generation:
            return current
        with self._loading:
            if self._fields is None or self._fields.generation != generation:
                self._fields = DocumentFields.build(
                    self.catalog.documents(with_chunks=False).values(), generation)
            return self._fields


@dataclass
class ChunkColumns:
    """Per-chunk metadata as arrays aligned with the BM25 ids, for fast lexical-side filters."""

    ids: list[str]
    kinds: np.ndarray
    dates: np.ndarray
    services: list[frozenset[str]]
    _service_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def service_mask(self, service: str) -> np.ndarray:
        """Chunks about ``service``, computed once per service and kept."""
        if service not in self._service_masks:
            self._service_masks[service] = np.fromiter(
                (service in s for s in self.services), bool, len(self.ids)
            )
        return self._service_masks[service]

    @classmethod
    def from_chunks(cls, chunks: list[Chunk], order: list[str] | None = None) -> ChunkColumns:
        if order is not None:
            by_id = {c.id: c for c in chunks}
            chunks = [by_id[i] for i in order if i in by_id]
        return cls(
            ids=[c.id for c in chunks],
            kinds=np.array([c.metadata.get("kind", "") for c in chunks], dtype=object),
            dates=np.array([int(c.metadata.get("date_int") or 0) for c in chunks], dtype=np.int64),
            services=[frozenset(c.metadata.get("services") or ()) for c in chunks],
        )

    def mask(
        self, *, kinds: Sequence[str] | None, services: Sequence[str] | None,
        since: int | None, until: int | None,
    ) -> np.ndarray | None:
        if not (kinds or services or since or until):
            return None
        keep = np.ones(len(self.ids), dtype=bool)
        if kinds:
            keep &= np.isin(self.kinds, list(kinds))
        if services:
            any_of = np.zeros(len(self.ids), dtype=bool)
            for service in services:
                any_of |= self.service_mask(service)
            keep &= any_of
        if since:
            keep &= self.dates >= since
        if until:
            keep &= (self.dates > 0) & (self.dates <= until)
        return keep


@dataclass
class DocumentFields:
    """Field boosts: a small BM25 over each document's title, alerts, services and path, and
    the documents of each service (normalized name → doc ids)."""

    generation: int
    doc_ids: list[str]
    lexical: LexicalIndex
    by_service: dict[str, list[str]]
    overviews: set[str] = field(default_factory=set)
    by_alert: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, docs: Iterable[DocumentRecord], generation: int) -> DocumentFields:
        ids: list[str] = []
        texts: list[str] = []
        by_service: dict[str, list[str]] = {}
        overviews: set[str] = set()
        by_alert: dict[str, list[str]] = {}
        for d in docs:
            meta = d.metadata
            path = str(meta.get("path") or d.source)
            tail = "/".join(Path(path).parts[-3:])
            parts = [d.title, " ".join(meta.get("alerts") or []),
                     " ".join(meta.get("services") or []), tail.replace("/", " ")]
            ids.append(d.doc_id)
            texts.append(" \n".join(parts))
            for svc in meta.get("services") or []:
                by_service.setdefault(normalize_service(svc), []).append(d.doc_id)
            if meta.get("overview") is True:
                overviews.add(d.doc_id)
            for alert in meta.get("alerts") or []:
                by_alert.setdefault(alert.lower(), []).append(d.doc_id)
        return cls(generation, ids, LexicalIndex.build(ids, texts, generation=generation),
                   by_service, overviews, by_alert)


def normalize_service(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def vector_metadata(chunk: Chunk) -> dict[str, object]:
    """The metadata stored with a vector: what filters need plus the citation ids."""
    meta = chunk.metadata
    out: dict[str, object] = {"doc_id": chunk.doc_id, "kind": meta.get("kind", "document")}
    if meta.get("services"):
        out["services"] = list(meta["services"])
    if meta.get("date_int"):
        out["date_int"] = int(meta["date_int"])
    if meta.get("section"):
        out["section"] = str(meta["section"])
    return out


def open_index(settings: Settings, *, embedder: Embedder | None = None,
               store: VectorStore | None = None) -> KnowledgeIndex:
    """Wire the index the settings describe (embedded Chroma unless a server URL is set)."""
    from retrieval.chroma_store import ChromaVectorStore, collection_name

    embedder = embedder or build_embedder(settings)
    if store is None:
        store = ChromaVectorStore(
            name=collection_name(settings.collection, embedder.name),
            path=None if settings.chroma_url else settings.chroma_dir,
            url=settings.chroma_url,
        )
    kb_dir = settings.kb_dir
    suffix = embedder.name.replace(":", "-").replace("/", "-")
    return KnowledgeIndex(
        catalog=Catalog(kb_dir / f"catalog-{suffix}.sqlite3"),
        store=store, embedder=embedder, lexical_dir=kb_dir / f"bm25-{suffix}",
    )
