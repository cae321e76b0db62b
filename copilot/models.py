"""The incident store's tables (SQLAlchemy 2). Times are timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC; always returns aware datetimes, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone (UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Severity(str, enum.Enum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class Status(str, enum.Enum):
    investigating = "investigating"
    identified = "identified"
    monitoring = "monitoring"
    resolved = "resolved"


STATUS_ORDER = [Status.investigating, Status.identified, Status.monitoring, Status.resolved]


class Base(DeclarativeBase):
    type_annotation_map = {
        dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON, list[int]: JSON
    }


def _storable(mapper: Any, _connection: Any, row: Base) -> None:
    """Text from outside (alerts, changes, log lines, notes) is stored the same way on SQLite
    and PostgreSQL. PostgreSQL refuses NUL characters and strings over a VARCHAR's length,
    which SQLite takes, and a delivery must never fail on them with a 500: NUL becomes U+FFFD
    (as bytes that are not UTF-8 do) and an over-long value is cut, ending in an ellipsis."""
    for attr in mapper.column_attrs:
        value = row.__dict__.get(attr.key)  # only loaded values: no SQL inside a flush
        column_type = attr.columns[0].type
        if not isinstance(value, str) or isinstance(column_type, Enum):
            continue
        fixed = value.replace("\x00", "\ufffd")
        length = getattr(column_type, "length", None)
        if length and len(fixed) > length:
            fixed = fixed[: length - 1] + "…"
        if fixed != value:
            setattr(row, attr.key, fixed)


event.listen(Base, "before_insert", _storable, propagate=True)
event.listen(Base, "before_update", _storable, propagate=True)


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=8))
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, length=16), default=Status.investigating
    )
    services: Mapped[list[str]] = mapped_column(default=list)
    commander: Mapped[str | None] = mapped_column(String(200))
    tech_lead: Mapped[str | None] = mapped_column(String(200))
    comms_lead: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime | None]
    detected_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    mitigated_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    alerts: Mapped[list[Alert]] = relationship(back_populates="incident")
    timeline: Mapped[list[TimelineEntry]] = relationship(
        back_populates="incident", order_by=lambda: (TimelineEntry.at, TimelineEntry.id),
        cascade="all, delete-orphan",
    )


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("source", "fingerprint", name="uq_alert_source_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))  # alertmanager, grafana, pagerduty, generic
    fingerprint: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))  # firing, resolved
    severity: Mapped[str | None] = mapped_column(String(32))
    service: Mapped[str | None] = mapped_column(String(200))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    starts_at: Mapped[dt.datetime | None]
    ends_at: Mapped[dt.datetime | None]
    first_received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deliveries: Mapped[int] = mapped_column(default=1)

    incident: Mapped[Incident | None] = relationship(back_populates="alerts")


class LogLine(Base):
    __tablename__ = "log_lines"
    __table_args__ = (Index("ix_log_lines_incident_ts", "incident_id", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    ts: Mapped[dt.datetime | None]
    level: Mapped[str | None] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    pattern_id: Mapped[int | None] = mapped_column(ForeignKey("log_patterns.id"), index=True)


class LogPattern(Base):
    __tablename__ = "log_patterns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    template: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(default=0)
    baseline_count: Mapped[int] = mapped_column(default=0)
    first_seen: Mapped[dt.datetime | None]
    last_seen: Mapped[dt.datetime | None]
    level: Mapped[str | None] = mapped_column(String(16))
    sample_line_ids: Mapped[list[int]] = mapped_column(default=list)
    score: Mapped[float] = mapped_column(default=0.0)


class ChangeEvent(Base):
    __tablename__ = "change_events"
    __table_args__ = (UniqueConstraint("external_id", name="uq_change_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # deploy, config, feature_flag
    service: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str | None] = mapped_column(String(200))
    author: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(index=True)
    description: Mapped[str | None] = mapped_column(Text)


class TimelineEntry(Base):
    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # auto, note, status, role, alert, change
    actor: Mapped[str] = mapped_column(String(200), default="copilot")
    text: Mapped[str] = mapped_column(Text)
    ref: Mapped[dict[str, Any]] = mapped_column(default=dict)

    incident: Mapped[Incident] = relationship(back_populates="timeline")


class StatusDraft(Base):
    """A status update on its way to approval. ``title``/``body``/``components`` are the
    current version; every version is kept in ``draft_versions``."""

    __tablename__ = "status_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    stage: Mapped[Status] = mapped_column(Enum(Status, native_enum=False, length=16))
    audience: Mapped[str] = mapped_column(String(16), default="customers")
    version: Mapped[int] = mapped_column(default=1)
    title: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    components: Mapped[list[str]] = mapped_column(default=list)
    next_update_at: Mapped[dt.datetime | None]
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="draft")  # draft, approved, rejected
    author: Mapped[str | None] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    override_reason: Mapped[str | None] = mapped_column(Text)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[DraftVersion]] = relationship(
        back_populates="draft", order_by=lambda: DraftVersion.version,
        cascade="all, delete-orphan")


class DraftVersion(Base):
    __tablename__ = "draft_versions"
    __table_args__ = (UniqueConstraint("draft_id", "version", name="uq_draft_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("status_drafts.id"), index=True)
    version: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    components: Mapped[list[str]] = mapped_column(default=list)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    draft: Mapped[StatusDraft] = relationship(back_populates="versions")


class ApiKey(Base):
    """An API key (a role) or a webhook token (role ``webhook`` and one ``source``). Only the
    SHA-256 of the key is stored; ``prefix`` lets people tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(32))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """Who did what, when, with the state before and after. Written in the same transaction
    as the change it records."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
