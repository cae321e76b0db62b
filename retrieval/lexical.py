"""BM25 (``bm25s``) over the catalog's chunks, persisted beside the vectors, keyed by chunk id.

The index is a snapshot: it records the catalog generation it was built from, is written to a
temporary folder and renamed into place, and is rebuilt whenever the catalog has moved on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.text import tokenize


class LexicalIndex:
    def __init__(self, ids: list[str], retriever: object | None, generation: int) -> None:
        self.ids = ids
        self.generation = generation
        self._retriever = retriever
        self._pos = {cid: n for n, cid in enumerate(ids)}

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str], *, generation: int) -> LexicalIndex:
        import bm25s

        if not ids:
            return cls([], None, generation)
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        retriever.index([tokenize(t) or ["__empty__"] for t in texts], show_progress=False)
        return cls(list(ids), retriever, generation)

    def save(self, folder: Path) -> None:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(tmp), show_progress=False)  # type: ignore[attr-defined]
        (tmp / "ids.json").write_text(
            json.dumps({"generation": self.generation, "ids": self.ids})
        )
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        meta = folder / "ids.json"
        if not meta.exists():
            return None
        import bm25s

        info = json.loads(meta.read_text())
        retriever = (
            bm25s.BM25.load(str(folder), show_progress=False, verbosity=0) if info["ids"] else None
        )
        return cls(info["ids"], retriever, int(info["generation"]))

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._pos

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every chunk (in ``self.ids`` order); masked-out chunks get 0."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        tokens = tokenize(query)
        vocab = self._retriever.vocab_dict  # type: ignore[attr-defined]
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        scores = np.asarray(self._retriever.get_scores(tokens), dtype=np.float32)  # type: ignore[attr-defined]
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return scores

    def top(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        scores = self.scores(query, mask)
        if scores.size == 0:
            return []
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return []
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in idx]
