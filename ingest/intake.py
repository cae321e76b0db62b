"""Alert intake: store normalized alert events, deduplicated by fingerprint, and attach them to
an open incident or open a new one, following the routing rules. One transaction per payload:
either every event of a delivery is recorded (with its timeline entries) or none is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from copilot.incidents import log, open_incident
from copilot.models import Alert, Incident, Severity, Status, utcnow
from copilot.store import IncidentStore
from ingest.alerts import AlertEvent
from ingest.changes import note_recent_changes
from ingest.routing import RoutingRules

SEVERITY_RANK = {Severity.SEV1: 1, Severity.SEV2: 2, Severity.SEV3: 3, Severity.SEV4: 4}


@dataclass
class IntakeResult:
    outcomes: list[dict[str, object]] = field(default_factory=list)

    def add(self, event: AlertEvent, outcome: str, alert_id: int, incident_id: int | None) -> None:
        self.outcomes.append({"fingerprint": event.fingerprint, "name": event.name,
                              "status": event.status, "outcome": outcome, "alert_id": alert_id,
                              "incident_id": incident_id})


def _fields(event: AlertEvent) -> dict[str, str]:
    out = {k: str(v) for k, v in event.labels.items()}
    out.setdefault("alertname", event.name)
    if event.service:
        out.setdefault("service", event.service)
    if event.severity:
        out.setdefault("severity", event.severity)
    out["source"] = event.source
    return out


def _matching_incident(session: Session, event: AlertEvent, rules: RoutingRules,
                       now: dt.datetime) -> tuple[Incident | None, str]:
    """The newest open incident with an alert (or a start) in the window that shares the
    event's service or alert group. Asked of the database, not by loading every open
    incident's alerts: that grew with each delivery."""
    since = now - dt.timedelta(minutes=rules.window_minutes)
    candidates = session.scalars(
        select(Incident).where(Incident.status != Status.resolved).order_by(Incident.id.desc())
    ).all()
    if not candidates:
        return None, ""
    ids = [i.id for i in candidates]
    latest: dict[int, dt.datetime] = {
        row[0]: row[1] for row in session.execute(
            select(Alert.incident_id, func.max(Alert.last_received_at))
            .where(Alert.incident_id.in_(ids)).group_by(Alert.incident_id))}
    grouped: set[int] = set()
    if "group" in rules.match_on and event.group_key:
        grouped = set(session.scalars(select(Alert.incident_id).distinct().where(
            Alert.incident_id.in_(ids),
            Alert.labels["__group_key__"].as_string() == event.group_key)))
    for incident in candidates:
        recent = [t for t in (latest.get(incident.id), incident.started_at or now) if t]
        if max(recent) < since:
            continue
        if "service" in rules.match_on and event.service and event.service in incident.services:
            return incident, f"same service {event.service}"
        if incident.id in grouped:
            return incident, "same alert group"
    return None, ""


def _attach(session: Session, incident: Incident, alert: Alert, event: AlertEvent,
            rules: RoutingRules, why: str, now: dt.datetime) -> None:
    alert.incident = incident
    if event.service and event.service not in incident.services:
        incident.services = sorted({*incident.services, event.service})
        note_recent_changes(session, incident, [event.service],
                            window_minutes=rules.window_minutes, until=now)
    log(incident, f"Alert {event.name} ({event.source}) attached: {why} within "
        f"{rules.window_minutes} min", ref={"alert_id": alert.id, "fingerprint": event.fingerprint},
        at=now)
    severity, reason = rules.severity_for(_fields(event))
    if event.status == "firing" and SEVERITY_RANK[severity] < SEVERITY_RANK[incident.severity]:
        log(incident, f"Severity raised {incident.severity.value} → {severity.value} "
            f"by alert {event.name} ({reason})", at=now)
        incident.severity = severity


def record_alerts(store: IncidentStore, events: list[AlertEvent], rules: RoutingRules,
                  *, now: dt.datetime | None = None, attempts: int = 3,
                  audit: Callable[[Session, IntakeResult], None] | None = None) -> IntakeResult:
    """Record one delivery's events; commits before returning (accepted means persisted).
    ``audit`` adds the delivery's audit entry to the same transaction.

    Deliveries are recorded one at a time per database (``IncidentStore.serialized``), so a
    delivery reads the rows the previous one wrote. Should two still race on the (source,
    fingerprint) key, the loser's transaction rolls back whole and is retried, and then sees
    the winner's row."""
    for attempt in range(1, attempts + 1):
        try:
            return _record_alerts(store, events, rules, now or utcnow(), audit)
        except IntegrityError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _record_alerts(store: IncidentStore, events: list[AlertEvent], rules: RoutingRules,
                   now: dt.datetime,
                   audit: Callable[[Session, IntakeResult], None] | None) -> IntakeResult:
    result = IntakeResult()
    with store.serialized("alert-intake") as session:
        for event in events:
            result_outcome, alert = _upsert(session, event, now)
            session.flush()
            rule = rules.first_rule(_fields(event))
            if result_outcome in ("duplicate", "stale") or (rule and rule.action == "ignore"):
                outcome = result_outcome if result_outcome in ("duplicate", "stale") else "ignored"
                result.add(event, outcome, alert.id, alert.incident_id)
                continue
            if alert.incident is not None:
                verb = "resolved" if event.status == "resolved" else "firing again"
                log(alert.incident, f"Alert {event.name} {verb}",
                    ref={"alert_id": alert.id}, at=now)
            else:
                incident, why = _matching_incident(session, event, rules, now)
                if incident is not None:
                    _attach(session, incident, alert, event, rules, why, now)
                    result_outcome = f"{result_outcome}, attached"
                elif event.status == "firing":
                    severity, reason = rules.severity_for(_fields(event))
                    title = event.name + (f" on {event.service}" if event.service else "")
                    incident = open_incident(
                        session, title=title, severity=severity,
                        services=[event.service] if event.service else [],
                        started_at=event.starts_at or now, detected_at=now,
                        reason=f"alert {event.name} from {event.source}; {reason}", at=now,
                    )
                    session.flush()
                    alert.incident = incident
                    log(incident, f"Alert {event.name} ({event.source}) opened this "
                        "incident", ref={"alert_id": alert.id}, at=now)
                    note_recent_changes(session, incident, incident.services,
                                        window_minutes=rules.window_minutes, until=now)
                    result_outcome = f"{result_outcome}, opened incident"
            session.flush()
            result.add(event, result_outcome, alert.id, alert.incident_id)
        if audit is not None:
            audit(session, result)
    return result


def _upsert(session: Session, event: AlertEvent, now: dt.datetime) -> tuple[str, Alert]:
    """Insert or update the alert row. Outcomes: new, duplicate (same delivery again), resolved,
    refired, stale (a firing older than the resolve already stored)."""
    alert = session.scalars(select(Alert).where(
        Alert.source == event.source, Alert.fingerprint == event.fingerprint)).one_or_none()
    labels = dict(event.labels)
    if event.group_key:
        labels["__group_key__"] = event.group_key
    if alert is None:
        alert = Alert(source=event.source, fingerprint=event.fingerprint, name=event.name,
                      status=event.status, severity=event.severity, service=event.service,
                      labels=labels, annotations=dict(event.annotations),
                      starts_at=event.starts_at, ends_at=event.ends_at,
                      first_received_at=now, last_received_at=now)
        session.add(alert)
        return ("new" if event.status == "firing" else "resolved before firing"), alert
    same = (alert.status == event.status and alert.starts_at == event.starts_at
            and alert.ends_at == event.ends_at)
    if same:
        return "duplicate", alert
    if event.status == "firing" and alert.status == "resolved" and alert.ends_at is not None \
            and event.starts_at is not None and event.starts_at <= alert.ends_at:
        return "stale", alert  # the firing of an alert whose resolve came first
    outcome = "resolved" if event.status == "resolved" else "refired"
    alert.status = event.status
    alert.starts_at = event.starts_at or alert.starts_at
    alert.ends_at = event.ends_at if event.status == "resolved" else None
    alert.labels = labels
    alert.annotations = dict(event.annotations)
    alert.last_received_at = now
    alert.deliveries += 1
    return outcome, alert
