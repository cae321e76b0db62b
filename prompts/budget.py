"""Token budgets: pack context items by priority so a prompt never exceeds the model's window,
and report what was left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Lower number = packed first. Timeline entries are incident facts.
PRIORITY = {"incident": 0, "timeline": 0, "alert": 1, "change": 2, "log_pattern": 3, "log": 3,
            "runbook": 4, "postmortem": 5, "document": 6}


@dataclass(frozen=True)
class ContextItem:
    """One piece of evidence a prompt may carry, with the id an answer cites it by."""

    id: str
    kind: str
    text: str
    rank: int = 0  # order within a kind (retrieval rank, recency...)
    title: str = ""
    source: str = ""  # where it came from: a file, a URL, an alert source
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Packed:
    items: list[ContextItem] = field(default_factory=list)
    left_out: list[ContextItem] = field(default_factory=list)
    tokens: int = 0


def count_tokens(text: str) -> int:
    from ingest.tokens import count_tokens as count

    return count(text)


def pack(items: list[ContextItem], *, budget: int, overhead: int = 12) -> Packed:
    """Greedy by (priority of kind, rank); an item that does not fit is skipped, and smaller
    later items may still fit. ``overhead`` covers the markup around each item."""
    out = Packed()
    ordered = sorted(items, key=lambda i: (PRIORITY.get(i.kind, 9), i.kind == "timeline", i.rank))
    for item in ordered:
        cost = count_tokens(item.text) + count_tokens(item.title) + overhead
        if out.tokens + cost <= budget:
            out.items.append(item)
            out.tokens += cost
        else:
            out.left_out.append(item)
    return out
