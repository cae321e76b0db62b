"""What every task shares: the result types with citations, and the ``Task`` interface.

A task turns an incident snapshot and its evidence into a typed result. ``grounded`` composes
the result from the evidence by rules (no model); ``parse`` reads a model's answer into the
same type and raises ``OutputInvalid`` when it does not fit, so the runner can fall back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field

from copilot.context import IncidentSnapshot, incident_items, knowledge_items
from copilot.errors import CopilotError
from prompts.budget import ContextItem


class OutputInvalid(CopilotError):
    """A model's answer could not be read into the task's result (the reason says why)."""


class TaskError(CopilotError):
    """A task cannot run on this input (e.g. a postmortem for an incident still open)."""


class Citation(BaseModel):
    """A source an answer rests on, resolved from its id for display and linking."""

    id: str
    kind: str
    title: str = ""
    source: str = ""
    snippet: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class Line(BaseModel):
    """One claim and the evidence ids it cites. ``supported`` is False when none of its
    citations was in the context (they are dropped, the claim is kept but marked)."""

    text: str
    citations: list[str] = Field(default_factory=list)
    supported: bool = True


class Timings(BaseModel):
    total_ms: float = 0.0
    model_ms: float = 0.0
    service_ms: float = 0.0  # total minus model: retrieval, packing, rules, validation
    retrieval_ms: float = 0.0


class TaskResult(BaseModel):
    task: str = ""
    incident_id: int | None = None
    backend: str = "grounded"
    degraded: bool = False
    reason: str | None = None  # why the answer is degraded (model error, timeout, invalid)
    prompt: str | None = None  # name@version of the prompt a model was given
    sources: list[Citation] = Field(default_factory=list)
    left_out: list[str] = Field(default_factory=list)  # context ids that did not fit
    dropped_citations: list[str] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)


R = TypeVar("R", bound=TaskResult)


class Task(ABC, Generic[R]):
    """One copilot task. An instance carries its request (stage, question...)."""

    name: ClassVar[str]
    result_type: ClassVar[type[TaskResult]]
    max_tokens: ClassVar[int] = 384
    kb_kinds: ClassVar[tuple[str, ...]] = ("runbook", "postmortem")
    kb_k: ClassVar[int] = 3
    # Lines are restatements of their sources (chat, summary): a model's line whose words are
    # not in what it cites is marked unsupported. Off for drafts, whose checks guard them.
    faithful_lines: ClassVar[bool] = False
    # The model's only part is to re-rank the rules' candidates (runbooks): skipped for a
    # model that is not asked to rank (``LLM.ranks``), which would add time and no order.
    ranking: ClassVar[bool] = False

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        """The items the task may use: the incident's own, then knowledge-base passages."""
        return incident_items(snap) + knowledge_items(snap, retriever, kinds=self.kb_kinds,
                                                      k=self.kb_k)

    def prompt_vars(self, snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
        """Variables the task's prompt needs besides ``items`` and ``left_out``."""
        return {}

    def history(self) -> list[tuple[str, str]]:
        """Earlier (role, text) turns to send before the prompt (chat only)."""
        return []

    @abstractmethod
    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> R:
        """The answer composed from the evidence by rules alone."""

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> R:
        raise OutputInvalid(f"the {self.name} task has no model output format")

    def render(self, result: R) -> None:
        """Rebuild any text made from the lines once their citations were validated."""

    def check(self, result: R, snap: IncidentSnapshot) -> str | None:
        """After citation validation: a reason to reject a model's result, or None."""
        return None


def walk_lines(obj: Any) -> Iterator[Any]:
    """Every object in a result that carries ``citations`` (Lines, hypotheses, runbooks...)."""
    if isinstance(obj, BaseModel):
        if "citations" in type(obj).model_fields:
            yield obj
        for name in type(obj).model_fields:
            if name != "sources":
                yield from walk_lines(getattr(obj, name))
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from walk_lines(value)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from walk_lines(value)


def by_kind(items: list[ContextItem], *kinds: str) -> list[ContextItem]:
    return [i for i in items if i.kind in kinds]


def first_sentences(text: str, n: int = 1, limit: int = 300) -> str:
    """The first ``n`` sentences of a passage, without Markdown list or heading marks."""
    import re

    flat = " ".join(line.strip().lstrip("-*#> ").strip() for line in text.splitlines()
                    if line.strip())
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])", flat)
    out = " ".join(parts[:n]).strip()
    return out if len(out) <= limit else out[: limit - 1].rsplit(" ", 1)[0] + "…"
