"""Incident operations on the store: create, change status and roles, notes, metrics.

Every change writes a timeline entry in the same transaction, so the timeline is a complete
account of what happened to the incident, by whom (a person or ``copilot`` for automatic
actions).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from statistics import mean, median

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from copilot.errors import CopilotError
from copilot.models import STATUS_ORDER, Incident, Severity, Status, TimelineEntry, utcnow

ROLES = ("commander", "tech_lead", "comms_lead")


class IncidentError(CopilotError):
    """An incident operation that cannot be done (unknown id, bad transition, bad role)."""


def get_incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident with id {incident_id}")
    return incident


def log(incident: Incident, text: str, *, kind: str = "auto", actor: str = "copilot",
        at: dt.datetime | None = None, ref: dict | None = None) -> TimelineEntry:
    """Append a timeline entry; it is saved with the rest of the caller's transaction.

    An incident's timeline that is not loaded yet stays unloaded: alert intake logs on every
    delivery, and loading thousands of entries each time (under the store's write lock) made
    deliveries slower the longer an incident ran."""
    entry = TimelineEntry(at=at or utcnow(), kind=kind, actor=actor, text=text, ref=ref or {})
    session = object_session(incident)
    if session is None or "timeline" in incident.__dict__:
        incident.timeline.append(entry)
    else:
        entry.incident = incident
        session.add(entry)
    return entry


def open_incident(
    session: Session, *, title: str, severity: Severity, services: list[str],
    started_at: dt.datetime | None = None, detected_at: dt.datetime | None = None,
    actor: str = "copilot", reason: str = "", at: dt.datetime | None = None,
) -> Incident:
    now = at or utcnow()
    incident = Incident(title=title, severity=severity, services=sorted(set(services)),
                        started_at=started_at or now, detected_at=detected_at or now)
    session.add(incident)
    log(incident, f"Incident opened ({severity.value}){': ' + reason if reason else ''}",
        kind="status", actor=actor, at=now)
    return incident


def set_status(session: Session, incident: Incident, status: Status, *, actor: str,
               at: dt.datetime | None = None) -> None:
    """Move along investigating → identified → monitoring → resolved (reopening goes back to
    investigating). Mitigated and resolved times are stamped on the way."""
    at = at or utcnow()
    old = incident.status
    if status == old:
        return
    if old is Status.resolved and status is not Status.investigating:
        raise IncidentError("a resolved incident can only be reopened (status investigating)")
    if old is not Status.resolved and STATUS_ORDER.index(status) < STATUS_ORDER.index(old):
        raise IncidentError(f"status cannot go back from {old.value} to {status.value}")
    incident.status = status
    if status in (Status.monitoring, Status.resolved) and incident.mitigated_at is None:
        incident.mitigated_at = at
    if status is Status.resolved:
        incident.resolved_at = at
    if old is Status.resolved:
        incident.resolved_at = None
    log(incident, f"Status {old.value} → {status.value}", kind="status", actor=actor, at=at)


def acknowledge(session: Session, incident: Incident, *, actor: str,
                at: dt.datetime | None = None) -> None:
    if incident.acknowledged_at is None:
        incident.acknowledged_at = at or utcnow()
        log(incident, f"Acknowledged by {actor}", kind="status", actor=actor,
            at=incident.acknowledged_at)


def assign(session: Session, incident: Incident, *, role: str, person: str, actor: str) -> None:
    if role not in ROLES:
        raise IncidentError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    setattr(incident, role, person)
    log(incident, f"{role.replace('_', ' ')}: {person}", kind="role", actor=actor)


def list_incidents(session: Session, *, open_only: bool = False) -> list[Incident]:
    query = select(Incident).order_by(Incident.id.desc())
    if open_only:
        query = query.where(Incident.status != Status.resolved)
    return list(session.scalars(query))


@dataclass(frozen=True)
class IncidentTimes:
    incident_id: int
    time_to_detect: float | None  # minutes: started → detected
    time_to_acknowledge: float | None  # detected → acknowledged
    time_to_mitigate: float | None  # started → mitigated
    time_to_resolve: float | None  # started → resolved


def _minutes(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() / 60, 2)


def incident_times(incident: Incident) -> IncidentTimes:
    return IncidentTimes(
        incident.id,
        _minutes(incident.started_at, incident.detected_at),
        _minutes(incident.detected_at, incident.acknowledged_at),
        _minutes(incident.started_at, incident.mitigated_at),
        _minutes(incident.started_at, incident.resolved_at),
    )


def metrics(session: Session, *, since: dt.datetime | None = None,
            until: dt.datetime | None = None) -> dict[str, object]:
    """MTTD, MTTA, MTTM and MTTR (mean and median minutes) over incidents started in a period."""
    query = select(Incident)
    if since:
        query = query.where(Incident.started_at >= since)
    if until:
        query = query.where(Incident.started_at <= until)
    times = [incident_times(i) for i in session.scalars(query)]

    def agg(field: str) -> dict[str, float | int | None]:
        values = [v for v in (getattr(t, field) for t in times) if v is not None]
        return {"n": len(values), "mean": round(mean(values), 2) if values else None,
                "median": round(median(values), 2) if values else None}

    return {"incidents": len(times), "mttd": agg("time_to_detect"),
            "mtta": agg("time_to_acknowledge"), "mttm": agg("time_to_mitigate"),
            "mttr": agg("time_to_resolve"), "per_incident": [t.__dict__ for t in times]}
