"""The incident store on SQLite (always) and on a real PostgreSQL server (.ci/run installs and
starts one and sets COPILOT_TEST_POSTGRES_URL)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from copilot.config import Settings
from copilot.models import Alert, Base, Incident, Severity, Status, TimelineEntry
from copilot.store import IncidentStore, make_engine, migrate

PG_URL = os.environ.get("COPILOT_TEST_POSTGRES_URL")
T0 = dt.datetime(2026, 11, 27, 14, 2, tzinfo=dt.UTC)


def _pg_schema_url() -> Iterator[str]:
    """A fresh schema per test on the shared PostgreSQL database."""
    assert PG_URL
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IncidentStore]:
    if request.param == "sqlite":
        s = IncidentStore.open(Settings(data_dir=tmp_path / "data"))
        yield s
        s.engine.dispose()
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide COPILOT_TEST_POSTGRES_URL (see .ci/run)")
        pytest.skip("no PostgreSQL: set COPILOT_TEST_POSTGRES_URL (CI always does)")
    gen = _pg_schema_url()
    url = next(gen)
    engine = make_engine(url)
    migrate(engine)
    yield IncidentStore(engine)
    engine.dispose()
    next(gen, None)


def test_migrations_create_every_table(store: IncidentStore) -> None:
    assert set(Base.metadata.tables) <= store.tables()
    assert "alembic_version" in store.tables()
    migrate(store.engine)  # idempotent


def test_migration_matches_the_models(store: IncidentStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_incident_roundtrip_keeps_utc_times_and_lists(store: IncidentStore) -> None:
    with store.session() as s:
        inc = Incident(title="Checkout errors", severity=Severity.SEV2, services=["checkout-api"],
                       commander="ana", started_at=T0,
                       detected_at=T0.astimezone(dt.timezone(dt.timedelta(hours=2))))
        inc.timeline.append(TimelineEntry(at=T0, kind="auto", text="opened from alert"))
        s.add(inc)
    with store.session() as s:
        got = s.scalars(select(Incident)).one()
        assert got.status is Status.investigating and got.severity is Severity.SEV2
        assert got.services == ["checkout-api"] and got.detected_at == T0
        assert got.started_at.tzinfo is not None
        assert [e.text for e in got.timeline] == ["opened from alert"]


def test_alert_fingerprint_is_unique_per_source(store: IncidentStore) -> None:
    with store.session() as s:
        s.add(Alert(source="alertmanager", fingerprint="abc", name="X", status="firing"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(Alert(source="alertmanager", fingerprint="abc", name="X", status="firing"))
    with store.session() as s:  # nothing half-written; another source may reuse it
        s.add(Alert(source="grafana", fingerprint="abc", name="X", status="firing"))
    with store.session() as s:
        assert len(s.scalars(select(Alert)).all()) == 2


def test_naive_datetimes_are_refused(store: IncidentStore) -> None:
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError, match="naive datetime"), store.session() as s:
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
