"""Incident summary for the commander ("catch me up"): status, customer impact, timeline
highlights, actions taken, open questions, owners and next steps, every line cited.

The grounded rules read the incident's own records (facts, alerts, log patterns, timeline,
changes) and the mitigation steps of the best-matching runbooks. A model answer is Markdown with
one heading per section; sections it leaves out are written by the rules so the commander always
gets all seven.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from pydantic import Field, PrivateAttr

from copilot.context import (
    IncidentSnapshot,
    TimelineFact,
    incident_items,
    knowledge_items,
)
from copilot.tasks.base import Line, OutputInvalid, Task, TaskResult
from copilot.tasks.common import (
    ROBOTS,
    change_text,
    cited_lines,
    clip,
    duration,
    entry_text,
    error_patterns,
    join_words,
    keep_cited,
    leading_suspect,
    line_text,
    pattern_text,
    runbook_steps,
    section_items,
    split_sections,
    uncited,
    when,
)
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
UPDATE_MINUTES = {"SEV1": 30, "SEV2": 30}  # status update cadence; 60 min for the rest
MAX_TIMELINE = 8
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
    # key records the model's sections left out, each added as the rules' line for it
    added: list[str] = Field(default_factory=list)
    _covered: tuple[int, int] = PrivateAttr(default=(0, 0))  # key records the model told, of all
    markdown: str = ""

    @property
    def answer(self) -> str:
        """The runner streams ``answer``; for a summary that is the Markdown."""
        return self.markdown

    def sections(self) -> dict[str, list[Line]]:
        return {key: getattr(self, key) for key, _ in SECTIONS}


class Summary(Task[SummaryResult]):
    faithful_lines = True
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
        rules = compose(snap, items)
        sections.update({key: rules[key] for key in missing})
        told = [x for key, lines in sections.items() if key not in missing for x in lines]
        keys = key_records(snap, rules)
        result = SummaryResult(title=snap.title, filled=missing, **sections)
        result._covered = (sum(k.told_by(told) for k in keys), len(keys))
        every = [x for lines in sections.values() for x in lines]
        for key in keys:  # what the commander must get, whoever wrote the section it is in
            if not key.told_by(every):
                getattr(result, key.section).append(key.line)
                result.added.append(key.what)
        return result

    def check(self, result: SummaryResult, snap: IncidentSnapshot) -> str | None:
        told, total = result._covered
        if told * 2 < total:
            return (f"the model's summary tells only {told} of the {total} key records (firing "
                    f"alerts, suspect change, roles, latest responder entry)")
        return uncited([x for key, lines in result.sections().items() if key not in result.filled
                        for x in lines])

    def render(self, result: SummaryResult) -> None:
        parts = [f"# Incident summary: {result.title}" if result.title else "# Incident summary"]
        for key, heading in SECTIONS:
            lines = getattr(result, key)
            parts.append(f"## {heading}\n\n" + ("\n".join(f"- {line_text(x)}" for x in lines)
                                                 or "- Nothing recorded."))
        result.markdown = "\n\n".join(parts) + "\n"


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """A record a catch-me-up must tell, and the rules' line that tells it."""

    what: str  # for the reader: "the firing alert X", "the commander Y"
    section: str
    line: Line
    cites: frozenset[str]  # citing one of these tells it
    names: tuple[str, ...]  # ... and so does naming one of these

    def told_by(self, lines: list[Line]) -> bool:
        return any(self.cites & set(x.citations) for x in lines) or any(
            n.lower() in x.text.lower() for x in lines for n in self.names)


def key_records(snap: IncidentSnapshot, rules: dict[str, list[Line]]) -> list[KeyRecord]:
    """The firing alerts, the suspect change while the cause is open, the people in roles and
    the latest responder note: a summary that leaves one out leaves the commander asking."""
    def line(section: str, cite: str, name: str = "") -> Line | None:
        return next((x for x in rules[section] if cite in x.citations and name in x.text), None)

    keys: list[KeyRecord] = []
    for alert in [a for a in snap.alerts if a.status == "firing"][:4]:
        if found := line("impact", f"alert:{alert.id}"):
            keys.append(KeyRecord(f"the firing alert {alert.name}", "impact", found,
                                  frozenset({f"alert:{alert.id}"}), (alert.name,)))
    suspect = leading_suspect(snap)
    if suspect and (found := line("open_questions", f"change:{suspect.id}")):
        keys.append(KeyRecord(f"the suspect change ({change_text(suspect, snap)})",
                              "open_questions", found, frozenset({f"change:{suspect.id}"}),
                              tuple(x for x in (suspect.version,) if x)))
    for key, label in ROLE_LABELS:
        person = getattr(snap, key)
        if person and (found := line("owners", snap.ref, person)):
            keys.append(KeyRecord(f"the {label.lower()} {person}", "owners", found,
                                  frozenset(), (person,)))
    notes = [e for e in snap.timeline if e.actor not in ROBOTS]
    if notes and (found := line("actions", f"timeline:{notes[-1].id}")):
        keys.append(KeyRecord(f"the latest responder entry ({notes[-1].actor}, "
                              f"{when(notes[-1].at, snap.started_at)})", "actions", found,
                              frozenset({f"timeline:{notes[-1].id}"}), ()))
    return keys


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
        lines.append(Line(text=f"{snap.firing_count} of {snap.alert_count} alerts still firing: "
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
