"""How alike past postmortems are to an incident: the category vote of the retrieved
postmortems, and an absolute similarity (cosine to the best passage) for each of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from copilot.context import IncidentSnapshot, knowledge_query
from copilot.tasks.base import by_kind
from prompts.budget import ContextItem


def category_vote(items: Sequence[ContextItem], *, depth: int | None = None
                  ) -> list[tuple[str, float]]:
    """Categories of the retrieved postmortems, each document voting with its similarity score
    (shares sum to 1, best first; ties go to the better-ranked document). ``depth`` cuts
    hierarchical labels (``a/b/c`` → ``a/b`` at depth 2)."""
    docs: dict[str, tuple[str, float, int]] = {}
    for item in by_kind(list(items), "postmortem"):
        category = item.meta.get("root_cause_category")
        doc = str(item.meta.get("doc_id", item.id))
        if not category or doc in docs:
            continue
        name = "/".join(str(category).split("/")[:depth]) if depth else str(category)
        docs[doc] = (name, float(item.meta.get("score") or 0.0) or 1e-6,
                     int(item.meta.get("doc_rank", 0)))
    votes: dict[str, float] = {}
    best: dict[str, int] = {}
    for name, weight, rank in docs.values():
        votes[name] = votes.get(name, 0.0) + weight
        best[name] = min(best.get(name, rank), rank)
    total = sum(votes.values()) or 1.0
    ranked = sorted(votes, key=lambda c: (-votes[c], best[c]))
    return [(c, round(votes[c] / total, 4)) for c in ranked]


def with_similarity(items: list[ContextItem], snap: IncidentSnapshot, retriever: Any
                    ) -> list[ContextItem]:
    """Postmortem items with ``meta["similarity"]``: the cosine of the incident's query to the
    document's best passage, an absolute measure (fused retrieval scores are only relative)."""
    index = getattr(retriever, "index", None)
    docs = sorted({str(i.meta.get("doc_id")) for i in by_kind(items, "postmortem")})
    if index is None or not docs:
        return items
    vector = index.embedder.embed_query(knowledge_query(snap)[0])
    best: dict[str, float] = {}
    for hit in index.store.query(vector, k=30 * len(docs), where={"doc_id": {"$in": docs}}):
        doc = str(hit.metadata.get("doc_id"))
        best[doc] = max(best.get(doc, -1.0), round(hit.score, 4))
    floor = min(best.values(), default=0.0)
    return [replace(i, meta={**i.meta, "similarity": best.get(str(i.meta["doc_id"]), floor)})
            if i.kind == "postmortem" else i for i in items]
