"""Incidents over HTTP: list, create, update, status changes, roles, notes, the sources the
copilot cites, and incident metrics. Every write is audited in its own transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import Noter, Reader, StateDep, Writer
from copilot import audit
from copilot.auth import Principal
from copilot.context import bounded_alerts, bounded_timeline
from copilot.incidents import (
    ROLES as INCIDENT_ROLES,
)
from copilot.incidents import (
    assign,
    get_incident,
    list_incidents,
    log,
    open_incident,
    set_status,
)
from copilot.models import Incident, Severity, Status

router = APIRouter(prefix="/v1", tags=["incidents"])
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    severity: Severity
    status: Status
    services: list[str]
    commander: str | None
    tech_lead: str | None
    comms_lead: str | None
    started_at: dt.datetime | None
    detected_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    mitigated_at: dt.datetime | None
    resolved_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    alert_count: int = 0


class TimelineItem(BaseModel):
    id: int
    at: dt.datetime
    kind: str
    actor: str
    text: str


class AlertRow(BaseModel):
    id: int
    name: str
    status: str
    severity: str | None
    service: str | None
    source: str
    starts_at: dt.datetime | None
    deliveries: int


class IncidentDetail(IncidentOut):
    timeline: list[TimelineItem] = Field(description=(
        "In order; bounded for an alert storm: the most recent 300 notes, status and role "
        "changes, and of the entries the copilot writes (alerts, changes, logs) the first 50 "
        "and the most recent 150."))
    alerts: list[AlertRow] = Field(description=(
        "All alerts up to 200 (`alert_count` is always the total); past that the first of "
        "each name and the most recent."))


class IncidentCreate(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    severity: Severity
    services: list[Name] = Field(default_factory=list, max_length=50)


class IncidentPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    severity: Severity | None = None
    services: list[Name] | None = Field(default=None, max_length=50)


class StatusChange(BaseModel):
    status: Status


class RoleChange(BaseModel):
    role: Literal["commander", "tech_lead", "comms_lead"]
    person: Name


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=4_000)


class Source(BaseModel):
    id: str
    kind: str
    title: str
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)


def _alert_counts(session: Any, ids: list[int]) -> dict[int, int]:
    """Alerts per incident, counted by the database (a storm's rows are never loaded)."""
    from sqlalchemy import func, select

    from copilot.models import Alert

    rows = session.execute(select(Alert.incident_id, func.count()).where(
        Alert.incident_id.in_(ids)).group_by(Alert.incident_id))
    return {incident_id: count for incident_id, count in rows}


def _out(incident: Incident, alert_count: int | None = None) -> IncidentOut:
    from sqlalchemy.orm import object_session

    out = IncidentOut.model_validate(incident)
    if alert_count is None:
        alert_count = _alert_counts(object_session(incident), [incident.id]).get(incident.id, 0)
    out.alert_count = alert_count
    return out


def _fields(incident: Incident) -> dict[str, Any]:
    return IncidentOut.model_validate(incident).model_dump(
        exclude={"alert_count", "created_at", "updated_at"})


def _audited(st: Any, incident_id: int, who: Principal, action: str,
             change: Callable[[Session, Incident], None]) -> IncidentOut:
    """Apply ``change`` to the incident and audit it (before and after) in one transaction."""
    with st.store.session() as s:
        i = get_incident(s, incident_id)
        before = _fields(i)
        change(s, i)
        audit.record(s, actor=who.name, role=who.role, action=action,
                     target=f"incident:{i.id}", before=before, after=_fields(i))
        s.flush()
        return _out(i)


@router.get("/incidents", response_model=list[IncidentOut])
def incidents(st: StateDep, _: Reader, open_only: bool = False) -> Any:
    with st.store.session() as s:
        found = list_incidents(s, open_only=open_only)
        counts = _alert_counts(s, [i.id for i in found])
        return [_out(i, counts.get(i.id, 0)) for i in found]


@router.post("/incidents", response_model=IncidentOut, status_code=201)
def create_incident(body: IncidentCreate, st: StateDep, who: Writer) -> Any:
    with st.store.session() as s:
        incident = open_incident(s, title=body.title, severity=body.severity,
                                 services=body.services, actor=who.name, reason="declared")
        s.flush()
        audit.record(s, actor=who.name, role=who.role, action="incident.create",
                     target=f"incident:{incident.id}", after=_fields(incident))
        return _out(incident)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def incident(incident_id: IncidentId, st: StateDep, _: Reader) -> Any:
    with st.store.session() as s:
        i = get_incident(s, incident_id)
        alerts, total, _ = bounded_alerts(s, incident_id)
        return IncidentDetail(
            **_out(i, total).model_dump(),
            timeline=[TimelineItem(id=e.id, at=e.at, kind=e.kind, actor=e.actor, text=e.text)
                      for e in bounded_timeline(s, incident_id)],
            alerts=[AlertRow(id=a.id, name=a.name, status=a.status, severity=a.severity,
                             service=a.service, source=a.source, starts_at=a.starts_at,
                             deliveries=a.deliveries) for a in alerts])


@router.patch("/incidents/{incident_id}", response_model=IncidentOut)
def update_incident(incident_id: IncidentId, body: IncidentPatch, st: StateDep,
                    who: Writer) -> Any:
    with st.store.session() as s:
        i = get_incident(s, incident_id)
        before = _fields(i)
        changes = body.model_dump(exclude_none=True)
        if "services" in changes:
            changes["services"] = sorted(set(changes["services"]))
        for key, value in changes.items():
            setattr(i, key, value)
        if changes:
            log(i, "Updated " + ", ".join(sorted(changes)), kind="note", actor=who.name)
            audit.record(s, actor=who.name, role=who.role, action="incident.update",
                         target=f"incident:{i.id}", before=before, after=_fields(i))
        s.flush()
        return _out(i)


@router.post("/incidents/{incident_id}/status", response_model=IncidentOut)
def change_status(incident_id: IncidentId, body: StatusChange, st: StateDep, who: Writer) -> Any:
    """investigating → identified → monitoring → resolved; a resolved incident can only be
    reopened (back to investigating). 409 for any other move."""
    return _audited(st, incident_id, who, "incident.status",
                    lambda s, i: set_status(s, i, body.status, actor=who.name))


@router.put("/incidents/{incident_id}/roles", response_model=IncidentOut)
def change_role(incident_id: IncidentId, body: RoleChange, st: StateDep, who: Writer) -> Any:
    assert body.role in INCIDENT_ROLES
    return _audited(st, incident_id, who, "incident.role",
                    lambda s, i: assign(s, i, role=body.role, person=body.person.strip(),
                                        actor=who.name))


@router.post("/incidents/{incident_id}/notes", response_model=TimelineItem, status_code=201)
def add_note(incident_id: IncidentId, body: Note, st: StateDep, who: Noter) -> Any:
    with st.store.session() as s:
        i = get_incident(s, incident_id)
        entry = log(i, body.text, kind="note", actor=who.name)
        s.flush()
        audit.record(s, actor=who.name, role=who.role, action="incident.note",
                     target=f"incident:{i.id}", after={"timeline_id": entry.id, "text": body.text})
        return TimelineItem(id=entry.id, at=entry.at, kind=entry.kind, actor=entry.actor,
                            text=entry.text)


@router.get("/incidents/{incident_id}/sources/{source_id:path}", response_model=Source)
def source(incident_id: IncidentId, source_id: Annotated[str, Path(max_length=300)],
           st: StateDep, _: Reader) -> Any:
    """What a citation points at: the chunk, alert, change, timeline entry, log pattern (with
    sample lines) or log line, by the id the copilot cited."""
    from dataclasses import asdict

    from copilot.sources import resolve

    return Source(**asdict(resolve(st.copilot(), incident_id, source_id)))


class Aggregate(BaseModel):
    n: int
    mean: float | None
    median: float | None


class IncidentMetrics(BaseModel):
    incidents: int
    mttd: Aggregate
    mtta: Aggregate
    mttm: Aggregate
    mttr: Aggregate
    per_incident: list[dict[str, Any]]


@router.get("/metrics/incidents", response_model=IncidentMetrics)
def incident_metrics(st: StateDep, _: Reader,
                     days: Annotated[int | None, Query(ge=1, le=3650)] = None) -> Any:
    """Mean and median minutes to detect, acknowledge, mitigate and resolve (incidents started
    in the last ``days``, or all)."""
    from copilot.incidents import metrics

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days) if days else None
    with st.store.session() as s:
        return metrics(s, since=since)
