"""Value types shared by the index, the retrievers and ingest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Chunk:
    """One retrievable passage. ``embed_text`` (title and section path + text) is what is indexed."""

    id: str
    doc_id: str
    text: str
    embed_text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DocumentRecord:
    """What the catalog knows about one ingested document."""

    doc_id: str
    source: str  # the source key: file path, or path#record for multi-document files
    kind: str
    title: str
    content_hash: str
    chunk_ids: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChunkHit:
    chunk_id: str
    score: float
    text: str
    section: str
    lexical_rank: int | None = None
    dense_rank: int | None = None


@dataclass
class DocumentHit:
    """A document-level result: its best chunks, the fused score and what a citation needs."""

    doc_id: str
    title: str
    kind: str
    source: str
    score: float
    chunks: list[ChunkHit]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id, "title": self.title, "kind": self.kind,
            "source": self.source, "score": round(self.score, 6),
            "services": self.metadata.get("services", []), "date": self.metadata.get("date"),
            "chunks": [
                {"chunk_id": c.chunk_id, "score": round(c.score, 6), "section": c.section,
                 "lexical_rank": c.lexical_rank, "dense_rank": c.dense_rank, "text": c.text}
                for c in self.chunks
            ],
        }
