"""Hybrid retrieval: BM25 and dense rankings fused by weighted reciprocal rank fusion, with
filters, then aggregated to documents (best chunks per document) with citation ids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from retrieval.index import KnowledgeIndex
from retrieval.types import ChunkHit, DocumentHit
from retrieval.vector_store import Where

Mode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class Filters:
    kinds: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None

    def where(self) -> Where | None:
        clauses: list[Where] = []
        if self.kinds:
            clauses.append({"kind": {"$in": list(self.kinds)}})
        if self.services:
            ors: list[Where] = [{"services": {"$contains": s}} for s in self.services]
            clauses.append(ors[0] if len(ors) == 1 else {"$or": ors})
        if self.since:
            clauses.append({"date_int": {"$gte": date_int(self.since)}})
        if self.until:
            clauses.append({"date_int": {"$lte": date_int(self.until)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def date_int(value: dt.date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


@dataclass
class HybridRetriever:
    index: KnowledgeIndex
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    candidates: int = 100
    chunks_per_doc: int = 3
    field_weight: float = 1.0
    service_weight: float = 3.0
    alert_weight: float = 2.0

    def search(
        self, query: str, *, k: int = 5, filters: Filters | None = None, mode: Mode = "hybrid",
        lexical_query: str | None = None, prefer_services: Sequence[str] = (),
        alerts: Sequence[str] = (),
    ) -> list[DocumentHit]:
        """Top ``k`` documents for ``query``.

        ``lexical_query`` overrides the BM25 side's text. ``prefer_services`` names services the
        question is about (from alert labels, say): their documents get an extra fused ranking.
        ``alerts`` are alert names: runbooks that declare they answer one get another.
        Documents whose title, alert names or path match the query get one too (field boosts).
        """
        filters = filters or Filters()
        lex, columns = self.index.snapshot()  # one generation for both
        fused: dict[str, float] = {}
        lex_rank: dict[str, int] = {}
        dense_rank: dict[str, int] = {}
        pool = max(self.candidates, k * 10)
        if mode in ("hybrid", "lexical"):
            mask = columns.mask(
                kinds=filters.kinds, services=filters.services,
                since=date_int(filters.since) if filters.since else None,
                until=date_int(filters.until) if filters.until else None,
            )
            for rank, (cid, _score) in enumerate(lex.top(lexical_query or query, pool, mask), 1):
                lex_rank[cid] = rank
                fused[cid] = fused.get(cid, 0.0) + self.lexical_weight / (self.rrf_k + rank)
        if mode in ("hybrid", "dense"):
            vector = self.index.embedder.embed_query(query)
            hits = self.index.store.query(vector, k=pool, where=filters.where())
            rank = 0
            for hit in hits:
                if hit.id not in lex:  # a vector an interrupted run left behind
                    continue
                rank += 1
                dense_rank[hit.id] = rank
                fused[hit.id] = fused.get(hit.id, 0.0) + self.dense_weight / (self.rrf_k + rank)
        doc_bonus: dict[str, float] = {}
        if fused and mode == "hybrid" and (self.field_weight or self.service_weight or self.alert_weight):
            doc_bonus = self._doc_bonus(lexical_query or query, prefer_services, alerts, fused)
        return self._documents(fused, lex_rank, dense_rank, k, doc_bonus)

    def _doc_bonus(
        self, query: str, services: Sequence[str], alerts: Sequence[str], fused: dict[str, float]
    ) -> dict[str, float]:
        """Document-level fused terms (hybrid mode only): field BM25 rank, rank among the
        documents of a named service (its overview page first), rank among runbooks that
        declare a named alert."""
        fields = self.index.fields()
        candidates = {cid.rsplit("::", 1)[0] for cid in fused}
        bonus: dict[str, float] = {}
        if self.field_weight:
            rank = 0
            for doc_id, _ in fields.lexical.top(query, len(fields.doc_ids)):
                if doc_id in candidates:
                    rank += 1
                    bonus[doc_id] = self.field_weight / (self.rrf_k + rank)
                    if rank >= self.candidates:
                        break
        if self.service_weight and services:
            from retrieval.index import normalize_service

            wanted: set[str] = set()
            for svc in services:
                wanted.update(fields.by_service.get(normalize_service(svc), ()))
            best = _best_per_doc(fused, wanted)
            # the service's overview page first, then its other documents by fused score
            order = sorted(best, key=lambda d: (d not in fields.overviews, -best[d]))
            for rank, doc_id in enumerate(order, 1):
                bonus[doc_id] = bonus.get(doc_id, 0.0) + self.service_weight / (self.rrf_k + rank)
        if self.alert_weight and alerts:
            declared = {d for a in alerts for d in fields.by_alert.get(a.lower(), ())}
            best = _best_per_doc(fused, declared)
            for rank, doc_id in enumerate(sorted(best, key=lambda d: -best[d]), 1):
                bonus[doc_id] = bonus.get(doc_id, 0.0) + self.alert_weight / (self.rrf_k + rank)
        return bonus

    def _documents(
        self, fused: dict[str, float], lex_rank: dict[str, int], dense_rank: dict[str, int], k: int,
        doc_bonus: dict[str, float] | None = None,
    ) -> list[DocumentHit]:
        if not fused:
            return []
        doc_bonus = doc_bonus or {}
        chunks = self.index.catalog.get_chunks(list(fused))
        per_doc: dict[str, list[tuple[float, str]]] = {}
        for cid, score in fused.items():
            chunk = chunks.get(cid)
            if chunk is not None:
                per_doc.setdefault(chunk.doc_id, []).append((score, cid))

        def total(doc_id: str, scored: list[tuple[float, str]]) -> float:
            return doc_score([s for s, _ in scored]) + doc_bonus.get(doc_id, 0.0)

        ranked = sorted(per_doc.items(), key=lambda item: (-total(*item), item[0]))[:k]
        docs = self.index.catalog.get_documents([d for d, _ in ranked])
        out: list[DocumentHit] = []
        for doc_id, scored in ranked:
            scored.sort(key=lambda x: (-x[0], x[1]))
            record = docs[doc_id]
            hits = [
                ChunkHit(
                    chunk_id=cid, score=s, text=chunks[cid].text,
                    section=str(chunks[cid].metadata.get("section", "")),
                    lexical_rank=lex_rank.get(cid), dense_rank=dense_rank.get(cid),
                )
                for s, cid in scored[: self.chunks_per_doc]
            ]
            out.append(DocumentHit(
                doc_id=doc_id, title=record.title, kind=record.kind, source=record.source,
                score=total(doc_id, scored), chunks=hits, metadata=record.metadata,
            ))
        return out


def _best_per_doc(fused: dict[str, float], docs: set[str]) -> dict[str, float]:
    """The best fused chunk score of each of ``docs`` that has a candidate chunk."""
    best: dict[str, float] = {}
    for cid, score in fused.items():
        doc_id = cid.rsplit("::", 1)[0]
        if doc_id in docs:
            best[doc_id] = max(best.get(doc_id, 0.0), score)
    return best


def doc_score(chunk_scores: Sequence[float]) -> float:
    """A document is as good as its best chunk, plus a little for further supporting chunks."""
    ordered = sorted(chunk_scores, reverse=True)
    return ordered[0] + 0.1 * sum(ordered[1:3])
