"""Log template mining: a Drain-style miner (He et al., ICWS 2017) with generic masking.

Lines become templates such as ``Received block <*> of size <*> from <IP>``; each template keeps
its count, first and last time seen, the most severe level, and sample line ids. Masks are one
generic set (addresses, numbers, hex, ids) for every source, not tuned per system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

WILDCARD = "<*>"
LEVEL_RANK = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "NOTICE": 3, "WARN": 4, "WARNING": 4,
              "ERROR": 5, "CRITICAL": 6, "FATAL": 6, "EMERG": 7}

_MASKS = [
    (re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                r"\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:\s+\d{4})?"), "<TIME>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<TIME>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])"), "<IP>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<HEX>"),
    (re.compile(r"(?<![A-Za-z])-?\d+(?:\.\d+)?(?![A-Za-z])"), WILDCARD),
]
_SPLIT = re.compile(r"\s+")


def mask(text: str) -> str:
    for pattern, token in _MASKS:
        text = pattern.sub(token, text)
    return text


def tokens_of(text: str) -> list[str]:
    return [t for t in _SPLIT.split(mask(text)) if t]


def _is_variable(token: str) -> bool:
    return token.startswith("<") and token.endswith(">") or any(c.isdigit() for c in token)


@dataclass
class Template:
    id: int
    tokens: list[str]
    count: int = 0
    first_seen: Any = None
    last_seen: Any = None
    level: str | None = None
    samples: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def observe(self, line_id: int, when: Any, level: str | None, max_samples: int) -> None:
        self.count += 1
        if when is not None:
            self.first_seen = when if self.first_seen is None else min(self.first_seen, when)
            self.last_seen = when if self.last_seen is None else max(self.last_seen, when)
        if level and LEVEL_RANK.get(level.upper(), -1) > LEVEL_RANK.get((self.level or "").upper(), -1):
            self.level = level.upper()
        if len(self.samples) < max_samples:
            self.samples.append(line_id)


class DrainMiner:
    """A fixed-depth prefix tree keyed by token count and leading tokens; leaves hold template
    groups; a line joins the most similar group above ``similarity`` or starts one."""

    def __init__(self, *, depth: int = 4, similarity: float = 0.5, max_children: int = 100,
                 max_samples: int = 5) -> None:
        self.depth = max(depth - 2, 1)
        self.similarity = similarity
        self.max_children = max_children
        self.max_samples = max_samples
        self.templates: list[Template] = []
        self._root: dict[Any, Any] = {}

    def add(self, text: str, *, line_id: int | None = None, when: Any = None,
            level: str | None = None) -> Template:
        toks = tokens_of(text) or ["<EMPTY>"]
        leaf = self._leaf(toks)
        best, best_sim = None, -1.0
        for tpl in leaf:
            sim, params = self._sim(tpl.tokens, toks)
            if sim > best_sim or (sim == best_sim and best is not None and params > 0):
                best, best_sim = tpl, sim
        if best is None or best_sim < self.similarity:
            best = Template(len(self.templates), list(toks))
            self.templates.append(best)
            leaf.append(best)
        else:
            best.tokens = [a if a == b else WILDCARD for a, b in zip(best.tokens, toks)]
        best.observe(line_id if line_id is not None else sum(t.count for t in self.templates),
                     when, level, self.max_samples)
        return best

    def _leaf(self, toks: list[str]) -> list[Template]:
        node = self._root.setdefault(len(toks), {})
        for tok in toks[: self.depth]:
            key = WILDCARD if _is_variable(tok) else tok
            if key not in node:
                if len(node) >= self.max_children:
                    key = WILDCARD
                node = node.setdefault(key, {})
            else:
                node = node[key]
        return node.setdefault("__leaf__", [])  # type: ignore[no-any-return]

    @staticmethod
    def _sim(template: list[str], toks: list[str]) -> tuple[float, int]:
        same = sum(1 for a, b in zip(template, toks) if a == b and a != WILDCARD)
        params = sum(1 for a in template if a == WILDCARD)
        return same / len(toks), params
