"""Incident summary for the commander ("catch me up"): status, customer impact, timeline
highlights, actions taken, open questions, owners and next steps, every line cited.

The grounded rules read the incident's own records (facts, alerts, log patterns, timeline,
changes) and the mitigation steps of the best-matching runbooks. A model answer is Markdown with
one heading per section; sections it leaves out are written by the rules so the commander always
gets all seven. The helpers at the bottom are shared with the postmortem draft.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import Field

from copilot.context import (
    ChangeFact,
    IncidentSnapshot,
    PatternFact,
    TimelineFact,
    incident_items,
    knowledge_items,
)
from copilot.guardrails.citations import extract
from copilot.tasks.base import Line, OutputInvalid, Task, TaskResult, by_kind
from prompts.budget import ContextItem

SECTIONS: tuple[tuple[str, str], ...] = (
    ("status", "Status"), ("impact", "Customer impact"), ("timeline", "Timeline"),
    ("actions", "Actions taken"), ("open_questions", "Open questions"), ("owners", "Owners"),
    ("next_steps", "Next steps"))
_ALIASES = {"status": ("status", "current status"), "impact": ("impact", "customer impact"),
            "timeline": ("timeline", "timeline highlights"),
            "actions": ("actions", "actions taken"),
            "open_questions": ("open questions", "questions", "unknowns"),
            "owners": ("owners", "roles", "ownership"), "next_steps": ("next steps",)}
MIN_SECTIONS = 4  # fewer headings than this in a model answer: not a summary
SUSPECT_WINDOW = dt.timedelta(hours=2)  # a change this soon before the first alert is a suspect
UPDATE_MINUTES = {"SEV1": 30, "SEV2": 30}  # status update cadence; 60 min for the rest
MAX_TIMELINE = 8
ROBOTS = frozenset({"copilot", "system", ""})
ROLE_LABELS = (("commander", "Commander"), ("tech_lead", "Tech lead"), ("comms_lead", "Comms lead"))


class SummaryResult(TaskResult):
    title: str = ""
    status: list[Line] = Field(default_factory=list)
    impact: list[Line] = Field(default_factory=list)
    timeline: list[Line] = Field(default_factory=list)
    actions: list[Line] = Field(default_factory=list)
    open_questions: list[Line] = Field(default_factory=list)
    owners: list[Line] = Field(default_factory=list)
    next_steps: list[Line] = Field(default_factory=list)
    filled: list[str] = Field(default_factory=list)  # sections the rules wrote for the model
    markdown: str = ""

    @property
    def answer(self) -> str:
        """The runner streams ``answer``; for a summary that is the Markdown."""
        return self.markdown

    def sections(self) -> dict[str, list[Line]]:
        return {key: getattr(self, key) for key, _ in SECTIONS}


class Summary(Task[SummaryResult]):
    name = "summary"
    result_type = SummaryResult
    max_tokens = 600

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        items = incident_items(snap) + knowledge_items(snap, retriever, kinds=("runbook",), k=2,
                                                       chunks_per_doc=1)
        return items + section_items(retriever, items, kind="runbook", section="Mitigation",
                                     docs=2)

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> SummaryResult:
        return SummaryResult(title=snap.title, **compose(snap, items))

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> SummaryResult:
        found = split_sections(text, _ALIASES)
        if len(found) < MIN_SECTIONS:
            raise OutputInvalid(f"found {len(found)} of the {len(SECTIONS)} summary sections "
                                f"(need at least {MIN_SECTIONS} '## ' headings)")
        sections = {key: cited_lines(raw, refs) for key, raw in found.items()}
        missing = [key for key, _ in SECTIONS if not sections.get(key)]
        if missing:
            rules = compose(snap, items)
            sections.update({key: rules[key] for key in missing})
        return SummaryResult(title=snap.title, filled=missing, **sections)

    def check(self, result: SummaryResult, snap: IncidentSnapshot) -> str | None:
        return uncited([x for key, lines in result.sections().items() if key not in result.filled
                        for x in lines])

    def render(self, result: SummaryResult) -> None:
        parts = [f"# Incident summary: {result.title}" if result.title else "# Incident summary"]
        for key, heading in SECTIONS:
            lines = getattr(result, key)
            parts.append(f"## {heading}\n\n" + ("\n".join(f"- {line_text(x)}" for x in lines)
                                                 or "- Nothing recorded."))
        result.markdown = "\n\n".join(parts) + "\n"


# -- the grounded rules ------------------------------------------------------------------------


def compose(snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, list[Line]]:
    """All seven sections from the evidence; a line is kept only if it cites an item."""
    ids = {i.id for i in items}
    builders = {"status": _status, "impact": _impact, "timeline": _timeline,
                "actions": _actions, "open_questions": _open_questions, "owners": _owners,
                "next_steps": _next_steps}
    out = {key: keep_cited(build(snap, items), ids) for key, build in builders.items()}
    for key, lines in out.items():
        if not lines and snap.ref in ids:
            out[key] = [Line(text=_NOTHING.get(key, "Nothing recorded yet."),
                             citations=[snap.ref])]
    return out


_NOTHING = {"impact": "Customer impact is not known yet: no alert or error log pattern is "
                      "recorded.",
            "open_questions": "No open questions stand out from the records."}


def _status(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    day = snap.started_at
    if snap.status == "resolved" and snap.resolved_at and snap.started_at:
        age = f"resolved at {when(snap.resolved_at, day)} after " \
              f"{duration(snap.started_at, snap.resolved_at)}"
    elif snap.started_at:
        age = f"open for {duration(snap.started_at, snap.now)}"
    else:
        age = "start time unknown"
    lines = [Line(text=f"{snap.severity}, status {snap.status}: {snap.title}. Services: "
                       f"{', '.join(snap.services) or 'unknown'}. Started "
                       f"{when(snap.started_at, None)}; {age}.", citations=[snap.ref])]
    stamps = [f"{label} at {when(value, day)}" for label, value in (
        ("acknowledged", snap.acknowledged_at), ("mitigated", snap.mitigated_at)) if value]
    if stamps:
        lines.append(Line(text=f"The incident was {' and '.join(stamps)}.", citations=[snap.ref]))
    firing = [a for a in snap.alerts if a.status == "firing"]
    if snap.alerts:
        names = ", ".join(dict.fromkeys(a.name for a in firing)) or "none"
        lines.append(Line(text=f"{len(firing)} of {len(snap.alerts)} alerts still firing: "
                               f"{names}.", citations=[f"alert:{a.id}" for a in snap.alerts]))
    return lines


def _impact(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    lines = []
    firing = [a for a in snap.alerts if a.status == "firing"] or snap.alerts
    for alert in firing[:4]:
        where = alert.service or "an unknown service"
        head = (f"{alert.name} ({where}): {alert.summary}" if alert.summary != alert.name
                else f"{alert.name} on {where} (severity {alert.severity or 'unknown'})")
        state = "since" if alert.status == "firing" else f"{alert.status}; fired"
        lines.append(Line(text=f"{head}, {state} {when(alert.starts_at, snap.started_at)}.",
                          citations=[f"alert:{alert.id}"]))
    for p in error_patterns(snap)[:3]:
        lines.append(Line(text=pattern_text(p), citations=[f"pattern:{p.id}"]))
    return lines


def _timeline(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    """The key moments, highest priority first, then told in time order."""
    day = snap.started_at
    scored: list[tuple[int, dt.datetime, Line]] = []
    first = snap.first_alert_at
    for alert in snap.alerts:
        if alert.starts_at:
            rank = 1 if alert.starts_at == first else 4
            scored.append((rank, alert.starts_at, Line(
                text=f"{when(alert.starts_at, day)} — {alert.name} fired ({alert.source}"
                     f"{', ' + alert.service if alert.service else ''}).",
                citations=[f"alert:{alert.id}"])))
    names = [a.name for a in snap.alerts if a.starts_at]
    for entry in snap.timeline:
        if entry.kind == "auto" and any(n in entry.text for n in names):
            continue  # bookkeeping ("alert X attached"): the alert's own line tells it better
        rank = entry_rank(entry)
        scored.append((rank, entry.at, Line(text=f"{when(entry.at, day)} — {entry_text(entry)}",
                                            citations=[f"timeline:{entry.id}"])))
    kept = sorted(scored, key=lambda x: (x[0], x[1]))[:MAX_TIMELINE]
    return [line for _, _, line in sorted(kept, key=lambda x: x[1])]


def entry_rank(entry: TimelineFact) -> int:
    text = entry.text.lower()
    if entry.kind == "status" and "opened" in text:
        return 0
    if entry.kind in ("change", "status"):
        return 1 if entry.kind == "change" else 2
    if entry.kind in ("role", "note") or entry.actor not in ROBOTS:
        return 3
    return 5 if entry.kind == "logs" else 6


def _actions(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    human = [e for e in snap.timeline if e.actor not in ROBOTS][-MAX_TIMELINE:]
    if not human:
        return [Line(text="No actions recorded yet: the timeline has only automatic entries.",
                     citations=[snap.ref])]
    return [Line(text=f"{when(e.at, snap.started_at)} — {e.actor}: {clip(e.text, 200)}",
                 citations=[f"timeline:{e.id}"]) for e in human]


def _open_questions(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    lines = []
    suspect = leading_suspect(snap)
    if snap.status == "investigating":
        lines.append(Line(text="Root cause not confirmed yet (status investigating).",
                          citations=[snap.ref]))
    elif snap.status == "identified":
        lines.append(Line(text="Cause identified; is the fix in place and working?",
                          citations=[snap.ref]))
    elif snap.status == "monitoring":
        lines.append(Line(text="Is the fix holding? The incident is being monitored.",
                          citations=[snap.ref]))
    if suspect and snap.status in ("investigating", "identified"):
        lines.append(Line(text=f"Leading suspect, not confirmed: {change_text(suspect, snap)}. "
                               f"Was it the trigger?", citations=[f"change:{suspect.id}"]))
    missing = [label.lower() for key, label in ROLE_LABELS if not getattr(snap, key)]
    if missing and snap.status != "resolved":
        lines.append(Line(text=f"Who is the {join_words(missing)}? Not assigned yet.",
                          citations=[snap.ref]))
    firing = [a for a in snap.alerts if a.status == "firing"]
    if firing and snap.status in ("monitoring", "resolved"):
        lines.append(Line(text=f"{len(firing)} alerts still firing although the status is "
                               f"{snap.status}: {', '.join(a.name for a in firing)}.",
                          citations=[f"alert:{a.id}" for a in firing]))
    elif firing:
        lines.append(Line(text=f"Still firing: {', '.join(a.name for a in firing)}; "
                               f"no recovery seen yet.",
                          citations=[f"alert:{a.id}" for a in firing]))
    return lines


def _owners(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    lines = [Line(text=f"{label}: {getattr(snap, key) or 'unassigned'}.", citations=[snap.ref])
             for key, label in ROLE_LABELS]
    for alert in snap.alerts:
        who = alert.labels.get("assignee") or alert.annotations.get("assignee")
        if isinstance(who, str) and who:
            lines.append(Line(text=f"Paged by {alert.source}: {who} ({alert.name}).",
                              citations=[f"alert:{alert.id}"]))
    return lines


def _next_steps(snap: IncidentSnapshot, items: list[ContextItem]) -> list[Line]:
    lines = []
    suspect = leading_suspect(snap)
    if suspect and snap.status in ("investigating", "identified"):
        lines.append(Line(text=f"Confirm or rule out the suspect change as the cause: "
                               f"{change_text(suspect, snap)}.",
                          citations=[f"change:{suspect.id}"]))
    if snap.status == "monitoring":
        firing = [f"alert:{a.id}" for a in snap.alerts if a.status == "firing"]
        lines.append(Line(text="Keep watching; resolve the incident once the alerts stay "
                               "resolved.", citations=firing or [snap.ref]))
    if snap.status in ("investigating", "identified"):
        for item, steps in runbook_steps(items, section="Mitigation", docs=2, per_doc=2):
            for n, step in enumerate(steps, 1):
                lines.append(Line(text=f"Runbook “{item.title}”, step {n}: {clip(step, 280)}",
                                  citations=[item.id]))
    if snap.status == "resolved":
        lines.append(Line(text="Draft the postmortem while the details are fresh.",
                          citations=[snap.ref]))
    else:
        minutes = UPDATE_MINUTES.get(snap.severity, 60)
        due = when(snap.now + dt.timedelta(minutes=minutes), snap.started_at)
        lines.append(Line(text=f"Next status update: within {minutes} min ({snap.severity} "
                               f"cadence), by {due}.", citations=[snap.ref]))
    return lines


# -- shared with the postmortem draft ---------------------------------------------------------


def when(at: dt.datetime | None, day: dt.datetime | None) -> str:
    """``14:03 UTC``, with the date when it is not the day of ``day`` (or ``day`` is None)."""
    if at is None:
        return "an unknown time"
    if day is not None and at.date() == day.date():
        return at.strftime("%H:%M UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def duration(start: dt.datetime, end: dt.datetime) -> str:
    minutes = max(0, round((end - start).total_seconds() / 60))
    hours, rest = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} days {hours % 24} h"
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def leading_suspect(snap: IncidentSnapshot) -> ChangeFact | None:
    """The latest change to an affected service shortly before the first alert."""
    first = snap.first_alert_at
    if first is None:
        return None
    close = [c for c in snap.changes if c.service in snap.services
             and dt.timedelta(0) <= first - c.at <= SUSPECT_WINDOW]
    return max(close, key=lambda c: c.at) if close else None


def change_text(change: ChangeFact, snap: IncidentSnapshot) -> str:
    first = snap.first_alert_at
    lead = f", {round((first - change.at).total_seconds() / 60)} min before the first alert" \
        if first else ""
    version = f" {change.version}" if change.version else ""
    return (f"the {change.kind.replace('_', ' ')} of {change.service}{version} at "
            f"{when(change.at, snap.started_at)}{lead}")


def error_patterns(snap: IncidentSnapshot) -> list[PatternFact]:
    """Problem log patterns, errors before warnings, busiest first within a level."""
    severe = ("FATAL", "CRITICAL", "ERROR")
    problems = [p for p in snap.patterns if p.is_problem]
    return sorted(problems, key=lambda p: ((p.level or "").upper() not in severe, -p.count))


def pattern_text(p: PatternFact) -> str:
    shape = "new" if p.is_new else f"vs {p.baseline_count} before the incident"
    return (f"{p.count} {(p.level or 'log').upper()} log lines ({shape}): "
            f"{clip(p.template.replace('<*>', '…'), 180)}")


def entry_text(entry: TimelineFact, *, actor: bool = True) -> str:
    """A timeline entry in one short line: change entries up to their long description."""
    who = f" ({entry.actor})" if actor and entry.actor not in ROBOTS else ""
    text = entry.text.split(" — ", 1)[0] if entry.kind == "change" else entry.text
    return f"{clip(text.replace('<*>', '…'), 160)}{who}"


def keep_cited(lines: list[Line], ids: set[str]) -> list[Line]:
    """Rules never emit an uncited line: citations not in the evidence go, and so does a line
    left with none."""
    out = []
    for line in lines:
        cited = [c for c in line.citations if c in ids]
        if cited:
            out.append(line.model_copy(update={"citations": cited}))
    return out


def line_text(line: Line) -> str:
    if line.citations:
        return f"{line.text} [{', '.join(line.citations)}]"
    return line.text + ("" if line.supported else " _(unsupported)_")


def section_items(retriever: Any, items: list[ContextItem], *, kind: str, section: str,
                  docs: int = 2) -> list[ContextItem]:
    """The ``section`` passages (say "Mitigation") of the top ``docs`` documents of ``kind``
    already among ``items``, read from the knowledge catalog: retrieval ranks passages by
    likeness to the incident, but the steps to take are in a known section."""
    catalog = getattr(getattr(retriever, "index", None), "catalog", None)
    ranked: dict[str, ContextItem] = {}
    for item in sorted(by_kind(items, kind), key=lambda i: i.rank):
        ranked.setdefault(str(item.meta.get("doc_id")), item)
    top = [d for d in ranked if d != "None"][:docs]
    if catalog is None or not top:
        return []
    have = {i.id for i in items}
    chunks = catalog.get_chunks(sorted(catalog.chunk_ids_of(top)))
    out = []
    for chunk in sorted(chunks.values(), key=lambda c: (top.index(c.doc_id),
                                                        c.metadata.get("chunk_index", 0))):
        name = str(chunk.metadata.get("section", ""))
        if not name.lower().startswith(section.lower()) or f"chunk:{chunk.id}" in have:
            continue
        base = ranked[chunk.doc_id]
        out.append(ContextItem(
            f"chunk:{chunk.id}", kind, f"{base.title} — {name}\n{chunk.text}", title=base.title,
            source=base.source, rank=int(base.meta.get("doc_rank", 0)) * 10 - 1,
            meta={**base.meta, "section": name}))
    return out


_BULLET = re.compile(r"^\s{0,3}(?:\d+[.)]|[-*+•])\s+")


def bullets(text: str) -> list[str]:
    """The list items of a Markdown passage, with their indented continuation lines."""
    out: list[str] = []
    for raw in text.splitlines():
        if _BULLET.match(raw):
            out.append(_BULLET.sub("", raw).strip())
        elif out and raw.startswith((" ", "\t")) and raw.strip():
            out[-1] += " " + raw.strip()
        elif not raw.strip() and out:
            continue
    return [b for b in out if b]


def runbook_steps(items: list[ContextItem], *, section: str, docs: int,
                  per_doc: int) -> list[tuple[ContextItem, list[str]]]:
    """(passage, its first list items) for the ``section`` of the top ``docs`` documents."""
    seen: dict[str, tuple[ContextItem, list[str]]] = {}
    chosen = [i for i in items if str(i.meta.get("section", "")).lower().startswith(
        section.lower())]
    for item in sorted(chosen, key=lambda i: (i.meta.get("doc_rank", 0), i.rank)):
        doc = str(item.meta.get("doc_id"))
        if doc in seen or len(seen) >= docs:
            continue
        steps = bullets(item.text.split("\n", 1)[-1])[:per_doc]
        if steps:
            seen[doc] = (item, steps)
    return list(seen.values())


_HEADING = re.compile(r"^\s{0,3}(?:#{1,6}\s*(.+?)\s*#*|\*\*(.+?):?\*\*:?)\s*$")


def split_sections(text: str, aliases: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """Markdown → {section key: its non-empty lines}; headings (``## X`` or a bold line) are
    matched by ``aliases``. Text under an unknown ``#`` heading or before the first is ignored;
    an unknown bold line is content."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        match = _HEADING.match(raw)
        if match:
            title = re.sub(r"[^a-z ]", "", (match.group(1) or match.group(2)).lower()).strip()
            key = next((k for k, names in aliases.items()
                        if any(title == n or title.startswith(n + " ") for n in names)), None)
            if key is not None or match.group(1) is not None:
                current = key
                if key is not None:
                    found.setdefault(key, [])
                continue
        if current is not None and raw.strip():
            found[current].append(raw.rstrip())
    return found


def uncited(lines: list[Line]) -> str | None:
    """A reason to reject a model's answer when under half of its lines cite the context."""
    supported = sum(x.supported for x in lines)
    if supported * 2 < len(lines):
        return f"only {supported} of the {len(lines)} lines the model wrote cite the context"
    return None


def cited_lines(raw: list[str], refs: dict[str, str]) -> list[Line]:
    """Bullets (or plain lines) of a model's section, their [S1] refs mapped back to ids."""
    lines = []
    for text in raw:
        clean, cited = extract(_BULLET.sub("", text).strip(), refs)
        if clean:
            lines.append(Line(text=clean, citations=cited, supported=bool(cited)))
    return lines
