"""Chroma as the ``VectorStore``: embedded ``PersistentClient`` by default, ``HttpClient`` by URL.

Vectors are always computed by our own embedder and passed in; the collection is created with
``embedding_function=None`` so Chroma never loads (or downloads) its default model. Telemetry off.

A server that is down or hung is an :class:`IndexUnavailable` (HTTP 503), raised within
``CONNECT_TIMEOUT`` / ``REQUEST_TIMEOUT`` (Chroma's own client waits forever); the client
reconnects by itself once the server is back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from copilot.errors import IndexUnavailable, StoreError
from retrieval.vector_store import Metadata, VectorHit, VectorStore, Where

_BATCH = 1000
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 30.0  # an upsert of a full batch on a busy server, with room to spare


def _unavailable(exc: BaseException) -> bool:
    """A transport failure or a server-side error: the server, not the request, is at fault."""
    import httpx

    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    code = getattr(exc, "code", None)
    try:
        return callable(code) and int(code()) >= 500  # chromadb.errors.ChromaError
    except Exception:  # noqa: BLE001 - a code() we cannot read says nothing
        return False


def _check_reachable(url: str) -> None:
    """Chroma's client asks the server for its tenant without a timeout while it is built; a
    hung server would hang us too, so ask for a heartbeat with one first."""
    import httpx

    try:
        httpx.get(f"{url}/api/v2/heartbeat", timeout=httpx.Timeout(
            REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)).raise_for_status()
    except httpx.HTTPError as exc:
        raise IndexUnavailable(f"search index unavailable: Cannot open Chroma at {url}: "
                               f"{type(exc).__name__}: {exc}") from exc


def _client(*, path: Path | None, url: str | None) -> Any:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    import httpx
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    try:
        if url:
            _check_reachable(url)
            parsed = urlparse(url)
            client = chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                session.timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
            return client
        assert path is not None
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except IndexUnavailable:
        raise
    except Exception as exc:
        where = url or str(path)
        if url and _unavailable(exc):
            raise IndexUnavailable(f"search index unavailable: Cannot open Chroma at {where}: "
                                   f"{exc}") from exc
        raise StoreError(f"Cannot open Chroma at {where}: {exc}") from exc


def collection_name(prefix: str, embedder_name: str) -> str:
    """One collection per embedding model, so vectors of different models never mix."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"{prefix}-{embedder_name}").strip("-._")
    return slug[:120] or "kb-default"


class ChromaVectorStore(VectorStore):
    """A Chroma collection with cosine distance; scores are returned as similarities."""

    def __init__(self, *, name: str, path: Path | None = None, url: str | None = None) -> None:
        if not path and not url:
            raise StoreError("ChromaVectorStore needs a path (embedded) or a server URL")
        self._client = _client(path=path, url=url)
        self.name = name
        self.where = url or str(path)
        try:
            with self._guard():
                self._col = self._client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
                )
        except IndexUnavailable:
            raise
        except Exception as exc:
            raise StoreError(f"Cannot open Chroma collection {name!r}: {exc}") from exc

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a down or failing server into IndexUnavailable, naming where it was."""
        try:
            yield
        except Exception as exc:
            if _unavailable(exc):
                raise IndexUnavailable(
                    f"search index unavailable: Chroma at {self.where} did not answer "
                    f"({type(exc).__name__}: {str(exc)[:200]})") from exc
            raise

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Metadata],
        documents: Sequence[str] | None = None,
    ) -> None:
        if len(ids) != len(vectors) or len(ids) != len(metadatas):
            raise ValueError("ids, vectors and metadatas must have the same length")
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            with self._guard():
                self._col.upsert(
                    ids=list(ids[start:stop]),
                    embeddings=np.asarray(vectors[start:stop], dtype=np.float32),
                    metadatas=[_clean(m) for m in metadatas[start:stop]],
                    documents=list(documents[start:stop]) if documents is not None else None,
                )

    def query(self, vector: np.ndarray, *, k: int, where: Where | None = None) -> list[VectorHit]:
        if k <= 0:
            return []
        with self._guard():
            res = self._col.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=k,
                where=_normalize_where(where), include=["distances", "metadatas"],
            )
        ids = res["ids"][0]
        dists = res["distances"][0]
        metas = res["metadatas"][0] if res.get("metadatas") else [{}] * len(ids)
        return [VectorHit(i, 1.0 - float(d), dict(m or {})) for i, d, m in zip(ids, dists, metas)]

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            with self._guard():
                self._col.delete(ids=ids[start : start + _BATCH])

    def ids(self) -> set[str]:
        out: set[str] = set()
        offset = 0
        while True:
            with self._guard():
                page = self._col.get(include=[], limit=5000, offset=offset)["ids"]
            out.update(page)
            if len(page) < 5000:
                return out
            offset += len(page)

    def count(self) -> int:
        with self._guard():
            return int(self._col.count())

    def drop(self) -> None:
        """Delete the whole collection (benchmarks and tests)."""
        with self._guard():
            self._client.delete_collection(self.name)


def _clean(meta: Metadata) -> Metadata:
    """Chroma takes str/int/float/bool and non-empty homogeneous lists; drop the rest."""
    out: Metadata = {}
    for key, value in meta.items():
        if isinstance(value, (str, int, float, bool)) or isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out[key] = value
    return out


def _normalize_where(where: Where | None) -> Where | None:
    """Chroma wants one operator per dict: split multi-key filters into ``$and``."""
    if not where:
        return None
    clauses: list[Where] = []
    for key, cond in where.items():
        if key in ("$and", "$or"):
            clauses.append({key: [_normalize_where(c) for c in cond]})
        elif isinstance(cond, dict) and len(cond) > 1:
            clauses.extend({key: {op: arg}} for op, arg in cond.items())
        else:
            clauses.append({key: cond})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
