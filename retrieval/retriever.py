"""Build the hybrid retriever the settings describe."""

from __future__ import annotations

from copilot.config import Settings
from retrieval.embedders import Embedder
from retrieval.hybrid import HybridRetriever
from retrieval.index import open_index
from retrieval.vector_store import VectorStore


def build_retriever(
    settings: Settings, *, embedder: Embedder | None = None, store: VectorStore | None = None
) -> HybridRetriever:
    return HybridRetriever(
        index=open_index(settings, embedder=embedder, store=store), rrf_k=settings.rrf_k,
        dense_weight=settings.dense_weight, lexical_weight=settings.lexical_weight,
        candidates=settings.candidates, field_weight=settings.field_weight,
        service_weight=settings.service_weight, alert_weight=settings.alert_weight,
    )
