"""Hybrid retrieval: fusion, filters, document aggregation and citation ids."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from copilot.config import Settings
from ingest.pipeline import run_ingest
from retrieval.hybrid import Filters, HybridRetriever, doc_score
from retrieval.retriever import build_retriever
from retrieval.vector_store import InMemoryVectorStore
from tests.conftest import DEMO


@pytest.fixture
def retriever(settings: Settings, corpus: Path) -> HybridRetriever:
    r = build_retriever(settings, store=InMemoryVectorStore())
    report = run_ingest([corpus], index=r.index, settings=settings)
    assert report.ok
    return r


def test_results_are_documents_with_citation_ids(retriever: HybridRetriever) -> None:
    hits = retriever.search("PostgreSQL max_connections reached", k=3)
    assert hits[0].doc_id in {"pm-db", "rb-db"}
    assert len({h.doc_id for h in hits}) == len(hits)  # one entry per document
    for hit in hits:
        assert hit.chunks and len(hit.chunks) <= 3
        assert hit.score == pytest.approx(doc_score([c.score for c in hit.chunks]), rel=0.5)
        for chunk in hit.chunks:
            assert chunk.chunk_id in retriever.index.catalog.chunk_ids()
            assert chunk.chunk_id.startswith(hit.doc_id + "::")
    assert hits == sorted(hits, key=lambda h: -h.score)
    d = hits[0].to_dict()
    assert {"doc_id", "title", "kind", "source", "score", "chunks"} <= set(d)


def test_fusion_uses_both_rankings(retriever: HybridRetriever) -> None:
    hits = retriever.search("max_connections", k=2, mode="hybrid")
    best = hits[0].chunks[0]
    assert best.lexical_rank is not None and best.dense_rank is not None
    lexical = retriever.search("max_connections", k=2, mode="lexical")
    assert all(c.dense_rank is None for h in lexical for c in h.chunks)


def test_filters_by_kind_service_and_date(retriever: HybridRetriever) -> None:
    q = "certificate expired disk full connections"
    kinds = {h.kind for h in retriever.search(q, k=10, filters=Filters(kinds=("runbook",)))}
    assert kinds == {"runbook"}
    svc = retriever.search(q, k=10, filters=Filters(services=("edge-proxy",)))
    assert {h.doc_id for h in svc} == {"pm-cert", "rb-cert"}
    for mode in ("lexical", "dense", "hybrid"):
        dated = retriever.search(q, k=10, mode=mode,  # type: ignore[arg-type]
                                 filters=Filters(since=dt.date(2025, 1, 1), until=dt.date(2025, 12, 31)))
        assert {h.doc_id for h in dated} == {"pm-db", "pm-cert", "pm-disk"}  # runbooks are undated
        assert retriever.search(q, k=10, mode=mode,  # type: ignore[arg-type]
                                filters=Filters(since=dt.date(2026, 1, 1))) == []


def test_unknown_words_and_empty_index(settings: Settings) -> None:
    r = build_retriever(settings, store=InMemoryVectorStore())
    assert r.search("anything at all", k=3) == []


def test_real_model_and_chroma_on_the_demo_corpus(tmp_path: Path, real_embedder) -> None:
    """The real embedder and embedded Chroma: paraphrased questions find the right documents."""
    if not (DEMO / "runbooks").exists():
        pytest.skip("demo corpus missing")
    settings = Settings(data_dir=tmp_path / "data")
    r = build_retriever(settings, embedder=real_embedder)
    report = run_ingest([DEMO / "postmortems", DEMO / "runbooks"], index=r.index, settings=settings)
    assert report.ok, report.errors
    assert r.index.store.count() == r.index.catalog.chunk_count() > 100
    hits = r.search("TLS handshake failures because a cert ran out", k=3,
                    filters=Filters(kinds=("runbook",)))
    assert any("cert" in h.doc_id for h in hits[:2]), [h.doc_id for h in hits]
    hits = r.search("consumers falling behind, messages piling up in the topic", k=3,
                    filters=Filters(kinds=("runbook",)))
    assert any(w in hits[0].doc_id for w in ("lag", "backlog", "queue", "kafka")), [h.doc_id for h in hits]


def test_ingest_and_search_through_a_chroma_server(tmp_path: Path, corpus: Path,
                                                   chroma_server: str) -> None:
    """COPILOT_CHROMA_URL switches the same code path to a real `chroma run` server."""
    settings = Settings(data_dir=tmp_path / "data", embedding_model="hash",
                        chroma_url=chroma_server, collection="srv-test")
    r = build_retriever(settings)
    from retrieval.chroma_store import ChromaVectorStore

    assert isinstance(r.index.store, ChromaVectorStore)
    report = run_ingest([corpus], index=r.index, settings=settings)
    assert report.ok and r.index.store.count() == r.index.catalog.chunk_count()
    hits = r.search("certificate renewal", k=2, filters=Filters(kinds=("runbook",)))
    assert hits[0].doc_id == "rb-cert"
    again = run_ingest([corpus], index=build_retriever(settings).index, settings=settings)
    assert again.chunks_embedded == 0 and again.unchanged == 6
