"""One contract, every VectorStore: the in-memory fake, embedded Chroma, and a real `chroma run`
server on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from retrieval.chroma_store import ChromaVectorStore
from retrieval.vector_store import InMemoryVectorStore, VectorStore


@pytest.fixture(params=["memory", "chroma-embedded", "chroma-server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        return InMemoryVectorStore()
    if request.param == "chroma-embedded":
        return ChromaVectorStore(name=name, path=tmp_path / "chroma")
    url = request.getfixturevalue("chroma_server")
    return ChromaVectorStore(name=name, url=url)


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def fill(store: VectorStore) -> None:
    store.upsert(
        ["a", "b", "c", "d"],
        np.vstack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0), unit(0, 0, 1)]),
        [
            {"kind": "runbook", "services": ["db", "api"], "date_int": 20240101},
            {"kind": "postmortem", "services": ["db"], "date_int": 20250601},
            {"kind": "runbook", "services": ["edge"], "date_int": 20250101},
            {"kind": "postmortem", "date_int": 20260101},
        ],
        ["alpha", "beta", "gamma", "delta"],
    )


def test_query_orders_by_similarity(store: VectorStore) -> None:
    fill(store)
    hits = store.query(unit(1, 0.05, 0), k=3)
    assert [h.id for h in hits][:2] == ["a", "b"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(0.9988, abs=1e-3)
    assert hits[0].metadata["kind"] == "runbook"


def test_filters(store: VectorStore) -> None:
    fill(store)
    q = unit(1, 0, 0)
    assert {h.id for h in store.query(q, k=10, where={"kind": "runbook"})} == {"a", "c"}
    assert {h.id for h in store.query(q, k=10, where={"services": {"$contains": "db"}})} == {"a", "b"}
    assert {h.id for h in store.query(q, k=10, where={"date_int": {"$gte": 20250101}})} == {"b", "c", "d"}
    both = {"$and": [{"kind": {"$in": ["postmortem"]}}, {"date_int": {"$lte": 20251231}}]}
    assert [h.id for h in store.query(q, k=10, where=both)] == ["b"]
    either = {"$or": [{"services": {"$contains": "edge"}}, {"services": {"$contains": "api"}}]}
    assert {h.id for h in store.query(q, k=10, where=either)} == {"a", "c"}


def test_upsert_replaces_and_delete_removes(store: VectorStore) -> None:
    fill(store)
    store.upsert(["a"], np.vstack([unit(0, 0, 1)]), [{"kind": "document"}])
    assert store.count() == 4
    top = store.query(unit(0, 0, 1), k=2, where={"kind": "document"})
    assert [h.id for h in top] == ["a"]
    store.delete(["a", "b", "does-not-exist"])
    assert store.ids() == {"c", "d"}
    assert store.query(unit(1, 0, 0), k=5, where={"kind": "postmortem"})[0].id == "d"


def test_ids_pages_through_large_collections(store: VectorStore) -> None:
    n = 5200
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, 8)).astype(np.float32)
    store.upsert([f"id-{i}" for i in range(n)], vecs, [{"kind": "x"}] * n)
    assert len(store.ids()) == n and store.count() == n


def test_empty_store_and_bad_lengths(store: VectorStore) -> None:
    assert store.query(unit(1, 0, 0), k=5) == []
    assert store.ids() == set()
    with pytest.raises(ValueError):
        store.upsert(["a", "b"], np.vstack([unit(1, 0, 0)]), [{}])


def test_unreachable_server_is_a_clear_error() -> None:
    import socket

    from copilot.errors import StoreError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=f"Cannot open Chroma at http://127.0.0.1:{port}"):
        ChromaVectorStore(name="unreachable", url=f"http://127.0.0.1:{port}")
