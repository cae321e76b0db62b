"""The ``VectorStore`` interface and its in-memory fake.

Filters (``where``) use the subset of Chroma's syntax every implementation must support:
``{"field": value}``, ``{"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte"|"$in"|"$contains": v}}``
and ``{"$and": [...]}`` / ``{"$or": [...]}``. ``$contains`` tests membership in a list field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Metadata = dict[str, Any]
Where = dict[str, Any]


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float  # cosine similarity, higher is better
    metadata: Metadata = field(default_factory=dict)


class VectorStore(ABC):
    """Vectors with ids and metadata: upsert, query by similarity with filters, delete by id."""

    @abstractmethod
    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Metadata],
        documents: Sequence[str] | None = None,
    ) -> None:
        """Insert or replace these records."""

    @abstractmethod
    def query(self, vector: np.ndarray, *, k: int, where: Where | None = None) -> list[VectorHit]:
        """The ``k`` most similar records that pass ``where``, best first."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Remove these ids; unknown ids are ignored."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every id in the store."""

    def count(self) -> int:
        return len(self.ids())


def matches(meta: Metadata, where: Where | None) -> bool:
    """Evaluate a ``where`` filter against one record's metadata (reference semantics)."""
    if not where:
        return True
    for key, cond in where.items():
        if key == "$and":
            if not all(matches(meta, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(meta, sub) for sub in cond):
                return False
        elif isinstance(cond, dict):
            if not all(_test(meta.get(key), op, arg) for op, arg in cond.items()):
                return False
        elif meta.get(key) != cond:
            return False
    return True


def _test(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op == "$in":
        return value in arg
    if op == "$nin":
        return value not in arg
    if op == "$contains":
        return isinstance(value, list) and arg in value
    if value is None:
        return False
    if op == "$gt":
        return bool(value > arg)
    if op == "$gte":
        return bool(value >= arg)
    if op == "$lt":
        return bool(value < arg)
    if op == "$lte":
        return bool(value <= arg)
    raise ValueError(f"unsupported filter operator {op!r}")


class InMemoryVectorStore(VectorStore):
    """Brute-force cosine search in numpy. The fake for unit tests; exact, so also a reference."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[np.ndarray, Metadata]] = {}

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Metadata],
        documents: Sequence[str] | None = None,
    ) -> None:
        if len(ids) != len(vectors) or len(ids) != len(metadatas):
            raise ValueError("ids, vectors and metadatas must have the same length")
        for i, vec, meta in zip(ids, vectors, metadatas):
            self._rows[i] = (np.asarray(vec, dtype=np.float32), dict(meta))

    def query(self, vector: np.ndarray, *, k: int, where: Where | None = None) -> list[VectorHit]:
        keep = [(i, v, m) for i, (v, m) in self._rows.items() if matches(m, where)]
        if not keep or k <= 0:
            return []
        mat = np.vstack([v for _, v, _ in keep])
        q = np.asarray(vector, dtype=np.float32)
        denom = np.linalg.norm(mat, axis=1) * (np.linalg.norm(q) or 1.0)
        sims = mat @ q / np.where(denom == 0, 1.0, denom)
        order = np.argsort(-sims, kind="stable")[:k]
        return [VectorHit(keep[j][0], float(sims[j]), dict(keep[j][2])) for j in order]

    def delete(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._rows.pop(i, None)

    def ids(self) -> set[str]:
        return set(self._rows)
