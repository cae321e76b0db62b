"""Change events (deploys, config pushes, feature flags): a documented payload and its intake.

Payload (JSON object, or ``{"changes": [...]}`` for several)::

    {
      "id": "deploy-4812",              # optional; makes re-deliveries idempotent
      "kind": "deploy",                 # deploy | config | feature_flag
      "service": "checkout-api",        # required
      "version": "2.71.0",              # optional: release, commit, config revision or flag state
      "author": "ci@lumenfield",        # optional
      "time": "2026-11-27T13:58:00Z",   # required, RFC 3339 with a timezone
      "description": "Bump pool size"   # optional
    }

A change to a service of an open incident, made up to the routing window before it started
or while it is open, is written to that incident's timeline.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from copilot.errors import IngestError
from copilot.incidents import log
from copilot.models import ChangeEvent, Incident, Status, TimelineEntry
from copilot.store import IncidentStore

KINDS = ("deploy", "config", "feature_flag")


@dataclass(frozen=True)
class ChangeIn:
    external_id: str | None
    kind: str
    service: str
    version: str | None
    author: str | None
    at: dt.datetime
    description: str | None


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise IngestError(f"{where}: required, an RFC 3339 time such as 2026-11-27T13:58:00Z",
                          reason="schema")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise IngestError(f"{where}: not an RFC 3339 time: {value!r}", reason="schema") from None
    if parsed.tzinfo is None:
        raise IngestError(f"{where}: has no timezone (add Z or an offset): {value!r}",
                          reason="schema")
    return parsed.astimezone(dt.UTC)


def _text(record: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise IngestError(f"{where}.{key}: required", reason="schema")
        return None
    if not isinstance(value, (str, int, float)):
        raise IngestError(f"{where}.{key}: expected a string, got {type(value).__name__}",
                          reason="schema")
    return str(value)


def parse_changes(body: bytes | str | dict[str, Any], *, max_bytes: int = 1_000_000) -> list[ChangeIn]:
    """Validate a change payload; all or nothing."""
    if isinstance(body, (bytes, str)):
        size = len(body.encode() if isinstance(body, str) else body)
        if size > max_bytes:
            raise IngestError(f"change payload is {size:,} bytes, over {max_bytes:,}",
                              reason="oversized")
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, nesting, huge ints
            raise IngestError(f"change payload: not valid JSON: {exc}", reason="json") from exc
    wrapped = isinstance(body, dict) and "changes" in body
    records = body["changes"] if wrapped else body if isinstance(body, list) else [body]
    if not isinstance(records, list):
        raise IngestError("change payload: 'changes' must be a list", reason="schema")
    if not records:
        raise IngestError("change payload: no changes in it", reason="schema")
    out = []
    for n, record in enumerate(records):
        where = f"changes[{n}]" if len(records) > 1 or wrapped else "change"
        if not isinstance(record, dict):
            raise IngestError(f"{where}: expected an object", reason="schema")
        kind = _text(record, "kind", where) or "deploy"
        if kind not in KINDS:
            raise IngestError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}",
                              reason="schema")
        out.append(ChangeIn(
            external_id=_text(record, "id", where), kind=kind,
            service=_text(record, "service", where, required=True) or "",
            version=_text(record, "version", where), author=_text(record, "author", where),
            at=_time(record.get("time", record.get("at")), f"{where}.time"),
            description=_text(record, "description", where),
        ))
    return out


def describe(change: ChangeEvent) -> str:
    what = f"{change.kind.replace('_', ' ')} of {change.service}"
    if change.version:
        what += f" {change.version}"
    return (f"Change: {what}" + (f" by {change.author}" if change.author else "")
            + (f" — {change.description}" if change.description else ""))


def note_recent_changes(session: Session, incident: Incident, services: list[str], *,
                        window_minutes: int, until: dt.datetime) -> int:
    """Put the stored changes to ``services`` from the window before the incident started
    onto its timeline (used when an incident opens or gains a service)."""
    start = incident.started_at or until
    rows = session.scalars(select(ChangeEvent).where(
        ChangeEvent.service.in_(services),
        ChangeEvent.at >= start - dt.timedelta(minutes=window_minutes),
        ChangeEvent.at <= until).order_by(ChangeEvent.at)).all()
    if incident.id is None or "timeline" in incident.__dict__:
        noted = {e.ref.get("change_id") for e in incident.timeline}
    else:  # only its change entries, not the whole timeline
        noted = {ref.get("change_id") for ref in session.scalars(select(TimelineEntry.ref).where(
            TimelineEntry.incident_id == incident.id, TimelineEntry.kind == "change"))}
    count = 0
    for row in rows:
        if row.id not in noted:
            log(incident, describe(row), kind="change", at=row.at,
                ref={"change_id": row.id})
            count += 1
    return count


def record_changes(store: IncidentStore, changes: list[ChangeIn], *,
                   window_minutes: int = 60) -> list[dict[str, object]]:
    """Store changes (a known ``id`` is a no-op) and note them on related open incidents."""
    results = []
    with store.session() as session:
        for change in changes:
            if change.external_id and session.scalars(select(ChangeEvent).where(
                    ChangeEvent.external_id == change.external_id)).first():
                results.append({"id": change.external_id, "outcome": "duplicate"})
                continue
            row = ChangeEvent(external_id=change.external_id, kind=change.kind,
                              service=change.service, version=change.version,
                              author=change.author, at=change.at, description=change.description)
            session.add(row)
            session.flush()
            noted = []
            for incident in session.scalars(select(Incident).where(Incident.status != Status.resolved)):
                start = incident.started_at or change.at
                if change.service in incident.services and \
                        change.at >= start - dt.timedelta(minutes=window_minutes):
                    log(incident, describe(row), kind="change", at=change.at,
                        ref={"change_id": row.id})
                    noted.append(incident.id)
            results.append({"id": row.id, "outcome": "new", "incidents": noted})
    return results
