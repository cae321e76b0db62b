"""Postmortem draft for a resolved incident, in the shape of the knowledge base's postmortems:
YAML frontmatter (id, title, date, severity, services, root_cause_category, tags) and the
sections Summary, Impact, Timeline, Root cause, Resolution, Action items.

The draft keeps its citations inline (``[change:3]``) so reviewers can check every line, and
offers a clean copy without them. The root cause is a hypothesis (the change shortly before the
first alert, the category of the most similar past postmortem) marked as to be confirmed by the
responders; action items are proposals adapted from similar postmortems.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field

from copilot.context import IncidentSnapshot, TimelineFact, incident_items, knowledge_items
from copilot.tasks.base import Line, OutputInvalid, Task, TaskError, TaskResult, by_kind
from copilot.tasks.chat import sentences
from copilot.tasks.common import (
    bullets,
    change_text,
    cited_lines,
    clip,
    duration,
    entry_text,
    error_patterns,
    keep_cited,
    leading_suspect,
    line_text,
    pattern_text,
    section_items,
    split_sections,
    uncited,
    when,
)
from prompts.budget import ContextItem

SECTIONS = ("Summary", "Impact", "Timeline", "Root cause", "Resolution", "Action items")
PROSE = frozenset({"Summary", "Root cause", "Resolution"})  # paragraphs, as in the demo files
_ALIASES = {name: (name.lower(),) for name in SECTIONS} | {
    "Action items": ("action items", "actions", "follow up", "followup")}
CONFIRM = "to be confirmed by the responders"
MAX_TIMELINE = 20
MAX_ACTIONS = 6
_OWNER = re.compile(r"\s*(?:Owner:\s*[^.]*\.?)?\s*(?:\b[A-Z][A-Z0-9]+-\d+\b\.?\s*)*$")


class PostmortemResult(TaskResult):
    frontmatter: dict[str, Any] = Field(default_factory=dict)
    sections: dict[str, list[Line]] = Field(default_factory=dict)
    markdown: str = ""  # the whole draft, citations inline as [id]
    markdown_clean: str = ""  # the same without citations, to paste into the postmortem repo

    @property
    def answer(self) -> str:
        return self.markdown


class Postmortem(Task[PostmortemResult]):
    name = "postmortem"
    result_type = PostmortemResult
    max_tokens = 900

    def __init__(self, *, allow_open: bool = False) -> None:
        self.allow_open = allow_open  # previews of a draft while the incident is still open
        self._evidence: list[ContextItem] = []

    def _require_resolved(self, snap: IncidentSnapshot) -> None:
        if snap.status != "resolved" and not self.allow_open:
            raise TaskError(f"{snap.ref} is {snap.status}, not resolved: a postmortem draft is "
                            f"written once the incident is resolved (resolve it first, or ask "
                            f"for a preview)")

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        self._require_resolved(snap)
        items = incident_items(snap) + knowledge_items(snap, retriever, kinds=("postmortem",),
                                                       k=3, chunks_per_doc=1)
        self._evidence = (items + section_items(retriever, items, kind="postmortem",
                                                section="Root cause", docs=1)
                          + section_items(retriever, items, kind="postmortem",
                                          section="Action items", docs=3))
        return self._evidence

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> PostmortemResult:
        self._require_resolved(snap)
        ids = {i.id for i in items}
        sections = {name: keep_cited(build(snap, items), ids) for name, build in _RULES.items()}
        for name, lines in sections.items():
            if not lines and snap.ref in ids:
                sections[name] = [Line(text="To be filled in by the responders.",
                                       citations=[snap.ref])]
        return PostmortemResult(frontmatter=frontmatter(snap, items), sections=sections)

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> PostmortemResult:
        self._require_resolved(snap)
        found = split_sections(text, _ALIASES)
        missing = [name for name in SECTIONS if not found.get(name)]
        if missing:
            raise OutputInvalid(f"the draft is missing the section(s) {', '.join(missing)}")
        sections = {}
        for name in SECTIONS:
            raw = found[name]
            if name in PROSE:  # one cited claim per sentence
                raw = [s for line in raw for s in sentences(line) or [line]]
            sections[name] = cited_lines(raw, refs)
        # the frontmatter's category may come from a postmortem that did not fit the window
        return PostmortemResult(frontmatter=frontmatter(snap, self._evidence or items),
                                sections=sections)

    def check(self, result: PostmortemResult, snap: IncidentSnapshot) -> str | None:
        return uncited([x for lines in result.sections.values() for x in lines])

    def render(self, result: PostmortemResult) -> None:
        result.markdown = document(result.frontmatter, result.sections, cited=True)
        result.markdown_clean = document(result.frontmatter, result.sections, cited=False)


# -- frontmatter and document ------------------------------------------------------------------


def slug(text: str, limit: int = 60) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words if len(words) <= limit else words[:limit].rsplit("-", 1)[0]


def similar(items: list[ContextItem]) -> ContextItem | None:
    """The best-ranked past postmortem passage among the evidence."""
    pms = [i for i in by_kind(items, "postmortem") if i.meta.get("root_cause_category")]
    return min(pms, key=lambda i: (i.meta.get("doc_rank", 0), i.rank)) if pms else None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def frontmatter(snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
    start = snap.started_at or snap.first_alert_at or snap.now
    date = start.date().isoformat()
    best = similar(items)
    suspect = leading_suspect(snap)
    category = str(best.meta["root_cause_category"]) if best else "to-be-confirmed"
    alerts = [slug(_CAMEL.sub("-", a.name)) for a in snap.alerts if a.source != "pagerduty"]
    tags = ["draft"] + ([slug(suspect.kind)] if suspect else []) + alerts[:3]
    return {"id": f"pm-{date}-{slug(snap.title)}", "title": snap.title, "date": date,
            "severity": snap.severity, "services": list(snap.services),
            "root_cause_category": category, "tags": list(dict.fromkeys(tags))}


def _flow(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) if re.search(r"[^\w.-]", v) else v
                           for v in values) + "]"


def document(meta: dict[str, Any], sections: dict[str, list[Line]], *, cited: bool) -> str:
    """The draft in the demo postmortems' layout (frontmatter, then the six sections)."""
    head = ["---"]
    for key, value in meta.items():
        if isinstance(value, list):
            head.append(f"{key}: {_flow([str(v) for v in value])}")
        elif key == "title":
            head.append(f"{key}: {json.dumps(str(value), ensure_ascii=False)}")
        else:
            head.append(f"{key}: {value}")
    head.append("---")
    parts = ["\n".join(head)]
    for name in SECTIONS:
        lines = sections.get(name, [])
        texts = [line_text(x) if cited else x.text for x in lines]
        body = " ".join(texts) if name in PROSE else "\n".join(f"- {t}" for t in texts)
        if name == "Root cause":
            body = f"_Draft: the root cause below is a hypothesis, {CONFIRM}._\n\n{body}"
        parts.append(f"## {name}\n\n{body}")
    return "\n\n".join(parts) + "\n"


# -- the grounded rules ------------------------------------------------------------------------


def _summary(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    start = snap.started_at
    date = (start or snap.now).date().isoformat()
    end = (f" and was resolved at {when(snap.resolved_at, start)}" if snap.resolved_at
           else " and is not resolved yet")
    mitigated = f", was mitigated at {when(snap.mitigated_at, start)}" if snap.mitigated_at else ""
    services = " and ".join([", ".join(snap.services[:-1]), snap.services[-1]]
                            if len(snap.services) > 1 else snap.services) or "unknown services"
    lines = [Line(text=f"On {date}, a {snap.severity} incident affected {services}: "
                       f"{snap.title}. It "
                       f"started at {when(start, start)}{mitigated}{end}.", citations=[snap.ref])]
    fired = [a for a in snap.alerts if a.starts_at]
    if fired:
        first = min(fired, key=lambda a: a.starts_at)  # type: ignore[arg-type,return-value]
        lines.append(Line(text=f"{snap.alert_count} alerts fired, the first "
                               f"{first.name} at {when(first.starts_at, start)}: "
                               f"{first.summary}.",
                          citations=[f"alert:{a.id}" for a in snap.alerts]))
    suspect = leading_suspect(snap)
    if suspect:
        lines.append(Line(text=f"The leading hypothesis, {CONFIRM}, is "
                               f"{change_text(suspect, snap)}.",
                          citations=[f"change:{suspect.id}"]))
    return lines


def _impact(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    start = snap.started_at
    lines = []
    if start:
        spans = []
        if snap.mitigated_at:
            spans.append(f"mitigated at {when(snap.mitigated_at, start)}, "
                         f"{duration(start, snap.mitigated_at)} after the start")
        if snap.resolved_at:
            spans.append(f"resolved at {when(snap.resolved_at, start)}, "
                         f"{duration(start, snap.resolved_at)} after the start")
        lines.append(Line(text=f"Started {when(start, start)}; "
                               f"{'; '.join(spans) or 'not mitigated yet'}.",
                          citations=[snap.ref]))
    for alert in snap.alerts[:4]:
        detail = f": {alert.summary}" if alert.summary != alert.name else ""
        lines.append(Line(text=f"{alert.name} ({alert.service or 'unknown service'}) from "
                               f"{when(alert.starts_at, start)}{detail}.",
                          citations=[f"alert:{alert.id}"]))
    for p in error_patterns(snap)[:3]:
        lines.append(Line(text=pattern_text(p), citations=[f"pattern:{p.id}"]))
    lines.append(Line(text="Customer-facing numbers (failed requests, affected merchants, "
                           "money at risk) are to be filled in by the responders.",
                      citations=[snap.ref]))
    return lines


def _timeline(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    start = snap.started_at
    rows: list[tuple[Any, Line]] = []
    suspect = leading_suspect(snap)
    logged = {e.at: e for e in snap.timeline if e.kind == "change"}
    if suspect:
        cites = [f"change:{suspect.id}"] + ([f"timeline:{logged[suspect.at].id}"]
                                            if suspect.at in logged else [])
        rows.append((suspect.at, Line(
            text=f"{when(suspect.at, start)} — {suspect.kind.replace('_', ' ').capitalize()} of "
                 f"{suspect.service} {suspect.version or ''}".rstrip() + ".", citations=cites)))
    names = [a.name for a in snap.alerts if a.starts_at]
    for alert in snap.alerts:
        if alert.starts_at:
            rows.append((alert.starts_at, Line(
                text=f"{when(alert.starts_at, start)} — `{alert.name}` fires ({alert.source}).",
                citations=[f"alert:{alert.id}"])))
    for entry in snap.timeline:
        if entry.kind in ("auto", "logs") and (entry.kind == "logs" or any(
                n in entry.text for n in names)):
            continue  # intake bookkeeping; the alert and impact lines tell it
        if suspect and entry.kind == "change" and entry.at == suspect.at:
            continue
        rows.append((entry.at, Line(text=f"{when(entry.at, start)} — {_event(entry)}",
                                    citations=[f"timeline:{entry.id}"])))
    texts = " ".join(e.text.lower() for e in snap.timeline if e.kind == "status")
    for label, at, word in (("Mitigated", snap.mitigated_at, "monitoring"),
                            ("Resolved", snap.resolved_at, "resolved")):
        if at and f"→ {word}" not in texts:
            rows.append((at, Line(text=f"{when(at, start)} — {label}.", citations=[snap.ref])))
    rows.sort(key=lambda r: r[0])
    return [line for _, line in rows[:MAX_TIMELINE]]


_EMAIL = re.compile(r"\s*\([^)]*@[^)]*\)|\s*\bby\s+\S+@\S+|\S+@\S+")


def _event(entry: TimelineFact) -> str:
    """A timeline entry without who did it, or who was given a role: postmortems are
    blameless."""
    if entry.kind == "role":
        return f"{entry.text.split(':', 1)[0].capitalize()} assigned."
    text = _EMAIL.sub("", entry_text(entry, actor=False))
    return text if text.endswith((".", "…")) else text + "."


def _root_cause(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    lines = []
    suspect = leading_suspect(snap)
    if suspect:
        about = _EMAIL.sub("", suspect.description or "")
        detail = f": {clip(about, 260)}" if about else ""
        lines.append(Line(text=f"Leading hypothesis ({CONFIRM}): {change_text(suspect, snap)}, "
                               f"a change to an affected service{detail}",
                          citations=[f"change:{suspect.id}"]))
    else:
        lines.append(Line(text=f"No change to an affected service shortly before the first "
                               f"alert is recorded; the root cause is {CONFIRM}.",
                          citations=[snap.ref]))
    top = error_patterns(snap)[:1]
    if top:
        lines.append(Line(text=f"The most frequent error log pattern: {pattern_text(top[0])}.",
                          citations=[f"pattern:{top[0].id}"]))
    best = similar(items)
    if best:
        date = f" ({best.meta['date']})" if best.meta.get("date") else ""
        lines.append(Line(text=f"The most similar past incident, “{best.title}”{date}, was "
                               f"categorised {best.meta['root_cause_category']}; whether the "
                               f"same category applies is {CONFIRM}.", citations=[best.id]))
    return lines


def _resolution(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    start = snap.started_at
    chosen = [e for e in snap.timeline if e.kind == "note" or (
        e.kind == "status" and ("monitoring" in e.text or "resolved" in e.text))]
    lines = [Line(text=f"{when(e.at, start)}: {_event(e)}",
                  citations=[f"timeline:{e.id}"]) for e in chosen[-6:]]
    if not any(e.kind == "note" for e in chosen):
        stamps = ", ".join(f"{label} at {when(at, start)}" for label, at in (
            ("mitigated", snap.mitigated_at), ("resolved", snap.resolved_at)) if at)
        lines.append(Line(text=f"What mitigated the incident is to be filled in by the "
                               f"responders{' (' + stamps + ')' if stamps else ''}.",
                          citations=[snap.ref]))
    return lines


def _action_items(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    """Proposals from the action items of past postmortems with the most similar one's cause."""
    lines: list[Line] = []
    best = similar(items)
    chosen = [i for i in by_kind(items, "postmortem")
              if str(i.meta.get("section", "")).lower().startswith("action items")
              and best and i.meta.get("root_cause_category") == best.meta["root_cause_category"]]
    for item in sorted(chosen, key=lambda i: (i.meta.get("doc_rank", 0), i.rank)):
        for entry in bullets(item.text.split("\n", 1)[-1])[:4]:
            text = _OWNER.sub("", entry).rstrip(" .")
            if text and len(lines) < MAX_ACTIONS:
                lines.append(Line(text=f"Proposed: {clip(text, 240)}. Owner to be agreed "
                                       f"(adapted from {item.meta.get('doc_id')}).",
                                  citations=[item.id]))
    return lines


_RULES = {"Summary": _summary, "Impact": _impact, "Timeline": _timeline,
          "Root cause": _root_cause, "Resolution": _resolution, "Action items": _action_items}
