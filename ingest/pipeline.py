"""The ingest run: walk sources, parse, diff against the catalog by content hash, write the
changes batch by batch through the index's crash-safe protocol, and report what happened."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from copilot.config import Settings
from copilot.errors import IngestError
from ingest.chunking import chunk_document
from ingest.documents import SUPPORTED, Document, parse_file
from retrieval.index import KnowledgeIndex
from retrieval.types import Chunk, DocumentRecord

DEFAULT_INCLUDE = tuple(f"*{s}" for s in sorted(SUPPORTED))
DEFAULT_EXCLUDE = (".*", "node_modules", "__pycache__", "LICENSE*")


@dataclass
class FileError:
    path: str
    reason: str
    message: str


@dataclass
class IngestReport:
    files: int = 0
    documents: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    repaired: list[str] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["errors"] = [e.__dict__ for e in self.errors]
        return out


def walk(
    paths: Sequence[Path], *, include: Sequence[str] = (), exclude: Sequence[str] = (),
) -> tuple[list[tuple[Path, Path]], list[FileError]]:
    """(file, root) pairs under ``paths``, filtered by include/exclude globs, sorted."""
    include = tuple(include) or DEFAULT_INCLUDE
    exclude = tuple(exclude) + DEFAULT_EXCLUDE
    found: list[tuple[Path, Path]] = []
    errors: list[FileError] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            errors.append(FileError(str(path), "missing", f"{path}: no such file or directory"))
        elif path.is_file():
            found.append((path, path.parent))
        else:
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = file.relative_to(path)
                if any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in exclude):
                    continue
                if any(fnmatch.fnmatch(rel.as_posix(), pat) for pat in exclude):
                    continue
                if any(fnmatch.fnmatch(file.name, pat) or fnmatch.fnmatch(rel.as_posix(), pat)
                       for pat in include):
                    found.append((file, path))
    seen: set[Path] = set()
    unique = []
    for file, root in found:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((file, root))
    return unique, errors


def _record(doc: Document) -> DocumentRecord:
    meta = dict(doc.metadata)
    meta["path"] = doc.path
    return DocumentRecord(doc.doc_id, doc.source, doc.kind, doc.title, doc.content_hash, [], meta)


def _batches(
    items: list[tuple[DocumentRecord, list[Chunk]]], size: int
) -> Iterable[list[tuple[DocumentRecord, list[Chunk]]]]:
    batch: list[tuple[DocumentRecord, list[Chunk]]] = []
    count = 0
    for item in items:
        batch.append(item)
        count += len(item[1])
        if count >= size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def run_ingest(
    paths: Sequence[Path], *, index: KnowledgeIndex, settings: Settings, kind: str | None = None,
    include: Sequence[str] = (), exclude: Sequence[str] = (), prune: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Bring the index in line with the sources under ``paths``.

    Unchanged documents cost a hash comparison; changed ones replace exactly their old chunks;
    with ``prune``, documents whose source file is gone (or whose record left its export file)
    are removed. Files that fail to parse are reported and keep what was ingested from them.
    """
    started = time.perf_counter()
    report = IngestReport()
    files, walk_errors = walk(paths, include=include, exclude=exclude)
    report.errors.extend(walk_errors)
    report.files = len(files)
    repair = index.begin()
    report.repaired = repair.details
    existing = index.catalog.documents()

    docs: dict[str, Document] = {}
    parsed_sources: set[str] = set()
    failed_paths: set[str] = set()
    for file, root in files:
        try:
            found = parse_file(file, root=root, kind=kind, max_bytes=settings.max_file_bytes)
        except IngestError as exc:
            report.errors.append(FileError(str(file), exc.reason, str(exc)))
            failed_paths.add(str(file.resolve()))
            continue
        clash = [d.doc_id for d in found if d.doc_id in docs]
        if clash:
            other = docs[clash[0]].path
            report.errors.append(FileError(
                str(file), "duplicate-id",
                f"{file}: document id {clash[0]!r} is already used by {other}; give it a unique 'id'",
            ))
            failed_paths.add(str(file.resolve()))
            continue
        for doc in found:
            docs[doc.doc_id] = doc
        parsed_sources.add(str(file.resolve()))
    report.documents = len(docs)

    todo: list[tuple[DocumentRecord, list[Chunk]]] = []
    salt = f"{index.embedder.name}|{settings.chunk_tokens}|{settings.chunk_overlap}|{settings.min_chunk_tokens}"
    for doc_id, doc in docs.items():
        old = existing.get(doc_id)
        if old is not None and old.content_hash == doc.content_hash and old.source == doc.source \
                and old.metadata.get("salt") == salt:
            report.unchanged += 1
            continue
        if old is None:
            report.new += 1
        else:
            report.changed += 1
        record = _record(doc)
        record.metadata["salt"] = salt
        chunks = chunk_document(
            doc, budget=settings.chunk_tokens, overlap=settings.chunk_overlap,
            min_tokens=settings.min_chunk_tokens, salt=salt,
        )
        todo.append((record, chunks))

    removes: list[str] = []
    if prune:
        roots = [Path(p).resolve() for p in paths if Path(p).exists()]
        for doc_id, old in existing.items():
            if doc_id in docs:
                continue
            path = Path(str(old.metadata.get("path") or old.source.split("#")[0]))
            under = any(path == r or r in path.parents for r in roots)
            if not under or str(path) in failed_paths:
                continue
            if not path.exists() or str(path) in parsed_sources:
                removes.append(doc_id)

    total = sum(len(c) for _, c in todo)
    done = 0
    if progress:
        progress(0, total)
    for batch in _batches(todo, settings.ingest_batch_chunks):
        stats = index.apply(batch)
        report.chunks_embedded += stats.embedded
        report.chunks_reused += stats.reused
        report.chunks_deleted += stats.deleted
        done += sum(len(c) for _, c in batch)
        if progress:
            progress(done, total)
    if removes:
        stats = index.apply([], removes)
        report.chunks_deleted += stats.deleted
        report.removed = len(removes)
    index.finish()
    report.seconds = time.perf_counter() - started
    return report
