"""Runbook recommendations for an incident or for one alert: ranked runbooks, why each matches
(declared alerts, services, shared terms) and the sections and steps that apply.

For one alert, build the snapshot with ``copilot.context.snapshot_from_alert`` (or call
``recommend_for_alert``); the task is the same. Runbooks that declare a firing alert by name rank
first: the alert's owners wrote them for exactly this page.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from copilot.context import IncidentSnapshot, incident_items, knowledge_items, snapshot_from_alert
from copilot.tasks.base import OutputInvalid, Task, TaskResult, by_kind
from copilot.tasks.common import bullets, clip, section_items
from copilot.tasks.terms import distinctive, key_terms, shown
from prompts.budget import ContextItem

MAX_SECTIONS = 3
MAX_STEPS = 4
SECTION_ORDER = ("diagnosis", "mitigation", "remediation", "resolution", "steps", "verification")


class SectionRef(BaseModel):
    chunk_id: str  # the knowledge-base chunk id; cited as ``chunk:<chunk_id>``
    heading: str
    steps: list[str] = Field(default_factory=list)


class RunbookRec(BaseModel):
    doc_id: str
    title: str
    source: str = ""
    score: float = 0.0
    reason: str = ""
    sections: list[SectionRef] = Field(default_factory=list)
    citations: list[str] = Field(default_factory=list)
    supported: bool = True


class RunbookResult(TaskResult):
    recommendations: list[RunbookRec] = Field(default_factory=list)
    answer: str = ""


class Runbooks(Task[RunbookResult]):
    name = "runbooks"
    result_type = RunbookResult
    max_tokens = 256
    ranking = True

    def __init__(self, *, k: int = 5) -> None:
        self.k = k

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        """The alerts, the best runbooks' passages, and their Diagnosis and Mitigation sections
        (where the steps are, whatever passages retrieval ranked first)."""
        items = [i for i in incident_items(snap) if i.kind in ("incident", "alert")]
        items += knowledge_items(snap, retriever, kinds=("runbook",), k=self.k, chunks_per_doc=3)
        for section in ("Diagnosis", "Mitigation"):
            items += section_items(retriever, items, kind="runbook", section=section, docs=3)
        return interleave(items)

    def prompt_vars(self, snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
        """Candidates carry the prompt ref of their first passage (the runner numbers the
        packed items S1, S2... in this order)."""
        candidates: dict[str, dict[str, Any]] = {}
        for n, item in enumerate(items, 1):
            if item.kind != "runbook":
                continue
            doc = str(item.meta.get("doc_id"))
            candidates.setdefault(doc, {"ref": f"S{n}", "title": item.title,
                                        "alerts": list(item.meta.get("alerts") or []),
                                        "services": list(item.meta.get("services") or [])})
        return {"candidates": list(candidates.values()),
                "alerts": list(dict.fromkeys(a.name for a in snap.alerts))}

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> RunbookResult:
        docs = _docs(items)
        firing = _firing(snap)
        ranked = sorted(docs, key=lambda d: (not _declared(docs[d], firing),
                                             docs[d][0].meta.get("doc_rank", 0)))
        return RunbookResult(recommendations=[_recommend(snap, docs, d) for d in ranked[:self.k]])

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> RunbookResult:
        docs = _docs(items)
        by_id = {i.id: i for i in items}
        chosen: dict[str, tuple[str, str]] = {}
        for raw in text.splitlines():
            match = _CHOICE.match(raw)
            if not match:
                continue
            item = by_id.get(refs.get(match.group(1), match.group(1)))
            if item is None or item.kind != "runbook":
                continue
            doc = str(item.meta.get("doc_id"))
            if doc in docs and doc not in chosen:
                chosen[doc] = (item.id, match.group(2).strip())
        if not chosen:
            raise OutputInvalid("no line of the form 'S<n>: reason' picked a candidate runbook")
        recs = []
        for doc, (cited, reason) in chosen.items():
            rec = _recommend(snap, docs, doc)
            rec.reason = clip(reason, 300) or rec.reason
            rec.citations = list(dict.fromkeys([cited, *rec.citations]))
            recs.append(rec)
        # The model orders what it picked; the candidates it passed over still follow, in the
        # rules' order, so a terse model never hides a runbook the rules would show.
        rest = [r for r in self.grounded(snap, items).recommendations if r.doc_id not in chosen]
        return RunbookResult(recommendations=(recs + rest)[:self.k])

    def render(self, result: RunbookResult) -> None:
        """Sections follow the validated citations; the answer text is rebuilt from them."""
        parts = []
        for n, rec in enumerate(result.recommendations, 1):
            rec.sections = [s for s in rec.sections if f"chunk:{s.chunk_id}" in rec.citations]
            cites = f" [{', '.join(rec.citations)}]" if rec.citations else " (unsupported)"
            parts.append(f"{n}. {rec.title} ({rec.doc_id}): {rec.reason}{cites}")
            for section in rec.sections:
                parts += [f"   {section.heading}: {step}" for step in section.steps]
        result.answer = "\n".join(parts) or "No runbook matches this incident."


def interleave(items: list[ContextItem]) -> list[ContextItem]:
    """Rank runbook passages first-of-each-document first, so that a small model window holds
    one passage of every candidate before it holds a second passage of any; retrieved passages
    before the added sections."""
    seen: dict[str, int] = {}
    out = []
    added = [i for i in items if i.kind == "runbook" and i.rank < 10 * i.meta.get("doc_rank", 0)]
    for item in sorted(items, key=lambda i: (i.kind != "runbook", i in added, i.rank)):
        if item.kind != "runbook":
            out.append(item)
            continue
        doc = str(item.meta.get("doc_id"))
        seen[doc] = seen.get(doc, -1) + 1
        out.append(replace(item, rank=seen[doc] * 100 + int(item.meta.get("doc_rank", 0))))
    return out


def recommend_for_alert(copilot: Any, alert: dict[str, Any], *, k: int = 5) -> RunbookResult:
    """Runbooks for one alert payload (labels, annotations, expr), outside any incident."""
    result: RunbookResult = copilot.run(Runbooks(k=k), snapshot_from_alert(alert))
    return result


# -- the grounded rules ------------------------------------------------------------------------


def _docs(items: list[ContextItem]) -> dict[str, list[ContextItem]]:
    """Runbook passages grouped by document, in retrieval order."""
    docs: dict[str, list[ContextItem]] = {}
    for item in sorted(by_kind(items, "runbook"), key=lambda i: (i.meta.get("doc_rank", 0),
                                                                 i.rank)):
        docs.setdefault(str(item.meta.get("doc_id")), []).append(item)
    return docs


def _firing(snap: IncidentSnapshot) -> list[str]:
    names = [a.name for a in snap.alerts if a.status == "firing"] or [a.name for a in snap.alerts]
    return list(dict.fromkeys(names))


def _declared(group: list[ContextItem], firing: list[str]) -> list[str]:
    declared = {str(a).lower() for a in group[0].meta.get("alerts") or []}
    return [name for name in firing if name.lower() in declared]


def _recommend(snap: IncidentSnapshot, docs: dict[str, list[ContextItem]], doc: str) -> RunbookRec:
    group = docs[doc]
    head = group[0]
    sections = _sections(group)
    cited = [f"chunk:{s.chunk_id}" for s in sections] or [i.id for i in group[:2]]
    return RunbookRec(doc_id=doc, title=head.title, source=head.source,
                      score=round(float(head.meta.get("score") or 0.0), 6),
                      reason=_reason(snap, docs, doc), sections=sections, citations=cited)


def _reason(snap: IncidentSnapshot, docs: dict[str, list[ContextItem]], doc: str) -> str:
    group = docs[doc]
    parts = [f"declares alert {name}" for name in _declared(group, _firing(snap))]
    covered = {str(s).lower() for s in group[0].meta.get("services") or []}
    services = list(dict.fromkeys(snap.services + [a.service for a in snap.alerts if a.service]))
    mine = [s for s in services if s.lower() in covered]
    if mine:
        parts.append(f"covers service{'s' if len(mine) > 1 else ''} {', '.join(mine)}")
    signal = key_terms(" ".join(
        [snap.title, snap.description] + [f"{a.name} {a.summary} {a.description} {a.expr}"
                                          for a in snap.alerts]
        + [p.template for p in snap.patterns if p.is_problem][:6]))
    doc_terms = {d: {t for i in g for t in key_terms(i.text)} for d, g in docs.items()}
    rare = distinctive(doc_terms) if len(docs) > 2 else set().union(*doc_terms.values())
    shared = set(signal) & doc_terms[doc] & rare
    if shared:
        parts.append(f"matches: {shown(shared, signal)}")
    if not parts:
        parts.append(f"closest to the incident's alerts and logs (retrieval rank "
                     f"{int(group[0].meta.get('doc_rank', 0)) + 1})")
    return "; ".join(parts)


def _sections(group: list[ContextItem]) -> list[SectionRef]:
    """Passages with steps, Diagnosis before Mitigation before the rest, at most two passages
    per heading (the retrieved, most relevant one first)."""
    found: list[SectionRef] = []
    for item in group:
        heading = str(item.meta.get("section") or "")
        steps = steps_of(item.text.split("\n", 1)[-1])
        if steps and sum(s.heading == heading for s in found) < 2:
            found.append(SectionRef(chunk_id=item.id.removeprefix("chunk:"), heading=heading,
                                    steps=steps))

    def order(heading: str) -> int:
        low = heading.lower()
        return next((n for n, name in enumerate(SECTION_ORDER) if low.startswith(name)),
                    len(SECTION_ORDER))

    return sorted(found, key=lambda s: order(s.heading))[:MAX_SECTIONS]


_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def steps_of(text: str) -> list[str]:
    """The first numbered or bulleted steps of a passage, else its code blocks (one command
    each, comments dropped)."""
    steps = [clip(b, 240) for b in bullets(_FENCE.sub("", text))]
    if not steps:
        for block in _FENCE.findall(text):
            lines = [line.strip() for line in block.splitlines()
                     if line.strip() and not line.strip().startswith(("#", "//", "--"))]
            if lines:
                steps.append(clip(" ".join(lines), 240))
    return steps[:MAX_STEPS]


_CHOICE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*\[?(S\d+)\]?\s*[:\-–—]\s*(.*)$")
