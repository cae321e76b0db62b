"""What a task knows about an incident: a plain snapshot of the store, plus the evidence items
(with citation ids) built from it and from the knowledge base.

Tasks work on ``IncidentSnapshot`` rather than ORM rows so that they run the same on a stored
incident, on one alert file, or on an evaluation case. Citation ids are stable and typed:
``incident:7``, ``alert:12``, ``change:3``, ``pattern:5``, ``log:812``, ``timeline:40`` and
``chunk:<chunk id>`` for knowledge-base passages.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompts.budget import ContextItem

CHANGE_WINDOW = dt.timedelta(hours=8)  # changes this long before the start are considered
# An alert storm attaches thousands of alerts (and a timeline entry per delivery) to one
# incident; a task or a page reads a bounded part of it, so its cost and memory stay flat
# however long the storm runs. Counts are always exact.
MAX_ALERTS = 200  # the first alert of each name (up to half), then the most recent
MAX_AUTO_ENTRIES = 200  # entries the copilot writes (alerts, changes, logs): first 50, latest
MAX_PEOPLE_ENTRIES = 300  # notes, status and role changes: the most recent
FIRST_AUTO = 50
PEOPLE_KINDS = ("note", "status", "role")  # the rest (alerts, changes, logs) the copilot writes


@dataclass
class AlertFact:
    id: int
    name: str
    status: str = "firing"
    severity: str | None = None
    service: str | None = None
    source: str = "generic"
    labels: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    expr: str = ""

    @property
    def summary(self) -> str:
        a = self.annotations
        return str(a.get("summary") or a.get("title") or a.get("message") or self.name)

    @property
    def description(self) -> str:
        return str(self.annotations.get("description") or "")


@dataclass
class ChangeFact:
    id: int
    kind: str
    service: str
    at: dt.datetime
    version: str | None = None
    author: str | None = None
    description: str | None = None
    external_id: str | None = None


@dataclass
class PatternFact:
    id: int
    template: str
    count: int
    baseline_count: int = 0
    level: str | None = None
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    score: float = 0.0
    sample_line_id: int | None = None
    sample: str = ""

    @property
    def is_new(self) -> bool:
        return self.baseline_count == 0

    @property
    def is_problem(self) -> bool:
        return (self.level or "").upper() in {"ERROR", "WARN", "WARNING", "FATAL", "CRITICAL"}


@dataclass
class TimelineFact:
    id: int
    at: dt.datetime
    kind: str
    actor: str
    text: str


@dataclass
class IncidentSnapshot:
    id: int | None
    title: str
    severity: str = "SEV3"
    status: str = "investigating"
    services: list[str] = field(default_factory=list)
    started_at: dt.datetime | None = None
    detected_at: dt.datetime | None = None
    acknowledged_at: dt.datetime | None = None
    mitigated_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    commander: str | None = None
    tech_lead: str | None = None
    comms_lead: str | None = None
    alerts: list[AlertFact] = field(default_factory=list)
    changes: list[ChangeFact] = field(default_factory=list)
    patterns: list[PatternFact] = field(default_factory=list)
    timeline: list[TimelineFact] = field(default_factory=list)
    description: str = ""  # free text (an evaluation case, an alert file's context)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    alerts_total: int | None = None  # when ``alerts`` is a bounded part (see MAX_ALERTS)
    firing_total: int | None = None

    @property
    def alert_count(self) -> int:
        return self.alerts_total if self.alerts_total is not None else len(self.alerts)

    @property
    def firing_count(self) -> int:
        if self.firing_total is not None:
            return self.firing_total
        return sum(1 for a in self.alerts if a.status == "firing")

    @property
    def ref(self) -> str:
        return f"incident:{self.id}" if self.id is not None else "incident:new"

    @property
    def first_alert_at(self) -> dt.datetime | None:
        times = [a.starts_at for a in self.alerts if a.starts_at]
        return min(times) if times else self.started_at

    @property
    def people(self) -> set[str]:
        """Names of people the snapshot mentions: roles, change authors, timeline actors."""
        names: set[str] = set()
        for value in (self.commander, self.tech_lead, self.comms_lead):
            if value:
                names.add(value)
        for change in self.changes:
            names.update(_people_in(change.author or ""))
        for entry in self.timeline:
            if entry.actor and entry.actor != "copilot":
                names.add(entry.actor)
            names.update(_people_in(entry.text))
        for alert in self.alerts:
            for key in ("assignee", "assigned_to", "owner", "oncall"):
                if isinstance(alert.labels.get(key), str):
                    names.add(alert.labels[key])
        return {n for n in names if n.strip()}


_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_PAGED = re.compile(r"\b(?:pag(?:ed|ing)|assigned to|by|acknowledged by)\s+"
                    r"((?:[A-Z][a-z]+)(?:\s+[A-Z][a-z'-]+){1,2})")


def _people_in(text: str) -> set[str]:
    """``jonas.weber@x.com`` → ``jonas.weber``, ``Jonas Weber``; "paged Ana Ortiz" → the name."""
    names: set[str] = set()
    for local in _EMAIL.findall(text):
        names.add(local)
        parts = [p for p in re.split(r"[._-]", local) if p.isalpha() and len(p) > 1]
        if len(parts) >= 2:
            names.add(" ".join(p.capitalize() for p in parts))
    names.update(m for m in _PAGED.findall(text))
    return names


def snapshot_from_store(session: Any, incident_id: int, *, now: dt.datetime | None = None,
                        max_patterns: int = 12) -> IncidentSnapshot:
    """Read one incident with its alerts, nearby changes, top log patterns and timeline."""
    from sqlalchemy import select

    from copilot.incidents import get_incident
    from copilot.models import ChangeEvent, LogLine, LogPattern

    incident = get_incident(session, incident_id)
    alerts, alerts_total, firing_total = bounded_alerts(session, incident_id)
    start = incident.started_at or incident.created_at
    timeline = bounded_timeline(session, incident_id)
    # changes up to the incident's end: its resolution, or for an open incident now, but never
    # before its own latest record (alerts and notes stamped ahead of this clock, as in replayed
    # or imported data, would otherwise lose every change made before them)
    latest = max([start] + [a.starts_at for a in alerts if a.starts_at] + [e.at for e in timeline])
    # the same holds for the snapshot's "now" (how long it has been open, when the next update
    # is due): an open incident's clock never reads before its own latest record
    now = max(now or dt.datetime.now(dt.UTC), latest)
    end = incident.resolved_at or now
    changes = session.scalars(select(ChangeEvent).where(
        ChangeEvent.at >= start - CHANGE_WINDOW, ChangeEvent.at <= end).order_by(ChangeEvent.at))
    patterns = list(session.scalars(select(LogPattern).where(
        LogPattern.incident_id == incident_id).order_by(LogPattern.score.desc(),
                                                        LogPattern.id).limit(max_patterns)))
    sample_ids = [p.sample_line_ids[0] for p in patterns if p.sample_line_ids]
    samples = {row.id: row.message for row in session.scalars(
        select(LogLine).where(LogLine.id.in_(sample_ids)))} if sample_ids else {}
    return IncidentSnapshot(
        id=incident.id, title=incident.title, severity=incident.severity.value,
        status=incident.status.value, services=list(incident.services or []),
        started_at=incident.started_at, detected_at=incident.detected_at,
        acknowledged_at=incident.acknowledged_at, mitigated_at=incident.mitigated_at,
        resolved_at=incident.resolved_at, commander=incident.commander,
        tech_lead=incident.tech_lead, comms_lead=incident.comms_lead,
        alerts=[AlertFact(id=a.id, name=a.name, status=a.status, severity=a.severity,
                          service=a.service, source=a.source, labels=dict(a.labels or {}),
                          annotations=dict(a.annotations or {}), starts_at=a.starts_at,
                          ends_at=a.ends_at) for a in alerts],
        alerts_total=alerts_total, firing_total=firing_total,
        changes=[ChangeFact(id=c.id, kind=c.kind, service=c.service, at=c.at, version=c.version,
                            author=c.author, description=c.description,
                            external_id=c.external_id) for c in changes],
        patterns=[PatternFact(id=p.id, template=p.template, count=p.count,
                              baseline_count=p.baseline_count, level=p.level,
                              first_seen=p.first_seen, last_seen=p.last_seen, score=p.score,
                              sample_line_id=p.sample_line_ids[0] if p.sample_line_ids else None,
                              sample=samples.get(p.sample_line_ids[0], "") if p.sample_line_ids
                              else "") for p in patterns],
        timeline=[TimelineFact(id=e.id, at=e.at, kind=e.kind, actor=e.actor, text=e.text)
                  for e in timeline],
        now=now,
    )


def bounded_alerts(session: Any, incident_id: int) -> tuple[list[Any], int, int]:
    """The incident's alerts (all of them up to MAX_ALERTS; past that the first of each name
    and the most recent), by id, with the exact total and firing counts."""
    from sqlalchemy import func, select

    from copilot.models import Alert

    mine = Alert.incident_id == incident_id
    total, firing = session.execute(select(
        func.count(), func.count().filter(Alert.status == "firing")).where(mine)).one()
    if total <= MAX_ALERTS:
        return list(session.scalars(select(Alert).where(mine).order_by(Alert.id))), total, firing
    ids = set(session.scalars(select(func.min(Alert.id)).where(mine).group_by(Alert.name)
                              .order_by(func.min(Alert.id)).limit(MAX_ALERTS // 2)))
    ids |= set(session.scalars(select(Alert.id).where(mine).order_by(Alert.id.desc())
                               .limit(MAX_ALERTS - len(ids))))
    rows = session.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id))
    return list(rows), total, firing


def bounded_timeline(session: Any, incident_id: int) -> list[Any]:
    """The incident's timeline in order, bounded: the most recent notes, status and role
    changes (what people did), and of the entries the copilot writes (one per alert delivery,
    so a storm writes thousands) the first FIRST_AUTO and the most recent."""
    from sqlalchemy import select

    from copilot.models import TimelineEntry as E

    mine = E.incident_id == incident_id
    people = E.kind.in_(PEOPLE_KINDS)
    written = list(session.scalars(select(E).where(mine, people)
                                   .order_by(E.at.desc(), E.id.desc()).limit(MAX_PEOPLE_ENTRIES)))
    first = list(session.scalars(select(E).where(mine, ~people)
                                 .order_by(E.at, E.id).limit(FIRST_AUTO)))
    recent = list(session.scalars(select(E).where(mine, ~people)
                                  .order_by(E.at.desc(), E.id.desc())
                                  .limit(MAX_AUTO_ENTRIES - FIRST_AUTO)))
    entries = {e.id: e for e in (*written, *first, *recent)}
    return sorted(entries.values(), key=lambda e: (e.at, e.id))


def snapshot_from_alert(alert: dict[str, Any], *, now: dt.datetime | None = None) -> IncidentSnapshot:
    """A one-alert snapshot (``copilot runbooks --alert FILE``): labels, annotations, expr."""
    labels = dict(alert.get("labels") or {})
    name = str(labels.get("alertname") or alert.get("alertname") or alert.get("name") or "alert")
    service = next((str(labels[k]) for k in ("service", "app", "job", "component")
                    if isinstance(labels.get(k), str)), None)
    fact = AlertFact(id=1, name=name, status=str(alert.get("status") or "firing"),
                     severity=labels.get("severity"), service=service, labels=labels,
                     annotations=dict(alert.get("annotations") or {}),
                     expr=str(alert.get("expr") or ""))
    return IncidentSnapshot(id=None, title=fact.summary, alerts=[fact],
                            services=[service] if service else [],
                            now=now or dt.datetime.now(dt.UTC))


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "unknown"


def minutes_before(earlier: dt.datetime, later: dt.datetime | None) -> float | None:
    return None if later is None else round((later - earlier).total_seconds() / 60, 1)


def incident_items(snap: IncidentSnapshot) -> list[ContextItem]:
    """Evidence from the incident itself: facts, timeline, alerts, changes, log patterns."""
    roles = ", ".join(f"{label}: {value}" for label, value in (
        ("commander", snap.commander), ("tech lead", snap.tech_lead),
        ("comms lead", snap.comms_lead)) if value) or "no roles assigned"
    facts = (f"{snap.title}. Severity {snap.severity}, status {snap.status}. Services: "
             f"{', '.join(snap.services) or 'unknown'}. Started {_when(snap.started_at)}, "
             f"detected {_when(snap.detected_at)}, acknowledged {_when(snap.acknowledged_at)}, "
             f"mitigated {_when(snap.mitigated_at)}, resolved {_when(snap.resolved_at)}. {roles}.")
    if snap.description:
        facts += "\n" + snap.description
    items = [ContextItem(snap.ref, "incident", facts, title=snap.title, rank=0)]
    for n, e in enumerate(snap.timeline, 1):
        items.append(ContextItem(f"timeline:{e.id}", "timeline",
                                 f"{_when(e.at)} [{e.kind}] {e.actor}: {e.text}",
                                 title=f"timeline {_when(e.at)}", rank=n,
                                 meta={"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor}))
    for n, a in enumerate(snap.alerts):
        labels = ", ".join(f"{k}={v}" for k, v in a.labels.items()
                           if k not in ("alertname",) and isinstance(v, str | int | float))
        text = (f"{a.name} ({a.status}, severity {a.severity or 'unknown'}, service "
                f"{a.service or 'unknown'}) since {_when(a.starts_at)}. {a.summary}. "
                f"{a.description} Labels: {labels}.")
        if a.expr:
            text += f" Expression: {a.expr}"
        items.append(ContextItem(f"alert:{a.id}", "alert", text, title=a.name, rank=n,
                                 meta={"service": a.service, "starts_at": _iso(a.starts_at)}))
    first = snap.first_alert_at
    ranked = sorted(snap.changes, key=lambda c: (c.service not in snap.services,
                                                 -(c.at.timestamp())))
    for n, c in enumerate(ranked):
        lead = minutes_before(c.at, first)
        when = (f"{lead:g} min before the first alert" if lead is not None and lead >= 0
                else f"{-lead:g} min after the first alert" if lead is not None else "")
        text = (f"{c.kind} of {c.service} {c.version or ''} at {_when(c.at)} ({when}) by "
                f"{c.author or 'unknown'}: {c.description or ''}")
        items.append(ContextItem(f"change:{c.id}", "change", text,
                                 title=f"{c.kind} {c.service} {c.version or ''}".strip(), rank=n,
                                 meta={"service": c.service, "at": c.at.isoformat(),
                                       "kind": c.kind}))
    for n, p in enumerate(snap.patterns):
        shape = ("new since the incident started" if p.is_new
                 else f"{p.count} vs {p.baseline_count} before the incident")
        text = (f"{p.level or 'LOG'} pattern, {p.count} lines ({shape}), first seen "
                f"{_when(p.first_seen)}: {p.template}")
        if p.sample:
            text += f"\nExample line: {p.sample[:400]}"
        items.append(ContextItem(f"pattern:{p.id}", "log_pattern", text, title=p.template[:80],
                                 rank=n, meta={"sample_line_id": p.sample_line_id,
                                               "level": p.level, "new": p.is_new}))
    return items


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def knowledge_query(snap: IncidentSnapshot, *, extra: str = "") -> tuple[str, str]:
    """(dense, lexical) query text for the knowledge base from what the incident shows."""
    from retrieval.alert_query import build_alert_query

    dense: list[str] = [extra] if extra else []
    lexical: list[str] = [extra] if extra else []
    dense.append(snap.title)
    lexical.append(snap.title)
    for alert in snap.alerts[:5]:
        q = build_alert_query({"labels": {"alertname": alert.name, **alert.labels},
                               "annotations": alert.annotations, "expr": alert.expr})
        dense.append(q.dense)
        lexical.append(q.lexical)
    for pattern in [p for p in snap.patterns if p.is_problem][:4]:
        text = re.sub(r"<\*>", " ", pattern.template)
        dense.append(text)
        lexical.append(text)
    if snap.description:
        dense.append(snap.description)
        lexical.append(snap.description)
    return " ".join(dense)[:2000], " ".join(lexical)[:4000]


def shown_source(source: str, metadata: dict[str, Any]) -> str:
    """Where a passage comes from, as users see it: the document's public URL when it has one,
    else its folder and file name (never the server's absolute path)."""
    url = metadata.get("source_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url
    path, _, record = source.partition("#")
    short = "/".join(Path(path).parts[-2:])
    return f"{short}#{record}" if record else short


def preferred_services(snap: IncidentSnapshot, retriever: Any) -> tuple[str, ...]:
    """The services the incident and its alerts state (labels, "the X service" in the text),
    as the knowledge base names them; a name the knowledge base does not know is left out,
    since boosting it could only favour a wrong document (the same rule as the alert query's)."""
    from retrieval.alert_query import build_alert_query

    stated = list(snap.services)
    for alert in snap.alerts[:5]:
        stated += build_alert_query({"labels": {"alertname": alert.name, **alert.labels},
                                     "annotations": alert.annotations}).services
    fields = getattr(getattr(retriever, "index", None), "fields", None)
    if fields is None:
        return tuple(dict.fromkeys(stated))
    known = set(fields().by_service)
    norm = (re.sub(r"[^a-z0-9]", "", s.lower()) for s in stated)
    return tuple(dict.fromkeys(n for n in norm if n in known))


def knowledge_items(
    snap: IncidentSnapshot, retriever: Any, *, kinds: Sequence[str], k: int = 4,
    query: str = "", exclude_docs: Sequence[str] = (), chunks_per_doc: int = 2,
) -> list[ContextItem]:
    """Runbook / postmortem passages for the incident (or for ``query``), as evidence items."""
    from retrieval.hybrid import Filters

    if retriever is None:
        return []
    if query:
        dense, lexical = query, query
    else:
        dense, lexical = knowledge_query(snap)
    services = preferred_services(snap, retriever)
    alerts = [a.name for a in snap.alerts]
    items: list[ContextItem] = []
    for kind in kinds:
        hits = retriever.search(dense, k=k + len(exclude_docs), filters=Filters(kinds=(kind,)),
                                lexical_query=lexical, prefer_services=services, alerts=alerts)
        hits = [h for h in hits if h.doc_id not in exclude_docs][:k]
        for rank, hit in enumerate(hits):
            for sub, chunk in enumerate(hit.chunks[:chunks_per_doc]):
                items.append(ContextItem(
                    f"chunk:{chunk.chunk_id}", kind,
                    f"{hit.title} — {chunk.section}\n{chunk.text}", title=hit.title,
                    source=shown_source(hit.source, hit.metadata), rank=rank * 10 + sub,
                    meta={"doc_id": hit.doc_id, "section": chunk.section, "score": hit.score,
                          "doc_rank": rank, **{k2: hit.metadata.get(k2) for k2 in (
                              "root_cause_category", "services", "date", "severity", "alerts",
                              "category_l2", "mitigation") if hit.metadata.get(k2) is not None}}))
    return items
