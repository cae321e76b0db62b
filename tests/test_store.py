"""The incident store on SQLite (always) and on a real PostgreSQL server (.ci/run installs and
starts one and sets COPILOT_TEST_POSTGRES_URL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from copilot.config import Settings
from copilot.models import Alert, Base, Incident, Severity, Status, TimelineEntry
from copilot.store import IncidentStore, make_engine, migrate

T0 = dt.datetime(2026, 11, 27, 14, 2, tzinfo=dt.UTC)


def test_migrations_create_every_table(incident_store: IncidentStore) -> None:
    assert set(Base.metadata.tables) <= incident_store.tables()
    assert "alembic_version" in incident_store.tables()
    migrate(incident_store.engine)  # idempotent


def test_migration_matches_the_models(incident_store: IncidentStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with incident_store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_incident_roundtrip_keeps_utc_times_and_lists(incident_store: IncidentStore) -> None:
    with incident_store.session() as s:
        inc = Incident(title="Checkout errors", severity=Severity.SEV2, services=["checkout-api"],
                       commander="ana", started_at=T0,
                       detected_at=T0.astimezone(dt.timezone(dt.timedelta(hours=2))))
        inc.timeline.append(TimelineEntry(at=T0, kind="auto", text="opened from alert"))
        s.add(inc)
    with incident_store.session() as s:
        got = s.scalars(select(Incident)).one()
        assert got.status is Status.investigating and got.severity is Severity.SEV2
        assert got.services == ["checkout-api"] and got.detected_at == T0
        assert got.started_at.tzinfo is not None
        assert [e.text for e in got.timeline] == ["opened from alert"]


def test_alert_fingerprint_is_unique_per_source(incident_store: IncidentStore) -> None:
    with incident_store.session() as s:
        s.add(Alert(source="alertmanager", fingerprint="abc", name="X", status="firing"))
    with pytest.raises(IntegrityError), incident_store.session() as s:
        s.add(Alert(source="alertmanager", fingerprint="abc", name="X", status="firing"))
    with incident_store.session() as s:  # nothing half-written; another source may reuse it
        s.add(Alert(source="grafana", fingerprint="abc", name="X", status="firing"))
    with incident_store.session() as s:
        assert len(s.scalars(select(Alert)).all()) == 2


def test_naive_datetimes_are_refused(incident_store: IncidentStore) -> None:
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError, match="naive datetime"), incident_store.session() as s:
        s.add(Incident(title="x", severity=Severity.SEV4, started_at=dt.datetime(2026, 1, 1)))
        s.flush()


def test_sqlite_file_survives_reopen(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with IncidentStore.open(settings).session() as s:
        s.add(Incident(title="kept", severity=Severity.SEV3))
    with IncidentStore.open(settings).session() as s:
        assert s.scalars(select(Incident.title)).all() == ["kept"]
    assert (tmp_path / "data" / "incidents.sqlite3").exists()


def test_unsupported_url_is_a_clear_error() -> None:
    from copilot.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported database URL 'mysql'"):
        make_engine("mysql://x@y/z")
