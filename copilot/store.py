"""The incident store: engine and sessions on SQLite (default, a file in the data folder) or
PostgreSQL (by URL), with the schema managed by Alembic migrations."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from copilot.config import Settings
from copilot.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL
POOL_TIMEOUT = 10  # seconds to wait for a free pooled connection


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url.get_secret_value()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.data_dir / 'incidents.sqlite3').resolve()}"


def make_engine(url: str) -> Engine:
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"unsupported database URL {url.split(':', 1)[0]!r}: "
                          "use sqlite:///path or postgresql+psycopg://user@host/db")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # A server that does not answer at all (a dropped route, a hung proxy) fails the
        # request in seconds (HTTP 503) instead of holding a worker for the OS's TCP timeout.
        options["pool_timeout"] = POOL_TIMEOUT
        # as many connections as the server's worker threads (40), so a busy server queues
        # on its threads, not on the pool's timeout
        options["pool_size"] = 20
        options["max_overflow"] = 20
        if "connect_timeout" not in url:
            options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    # Parameters carry alert, log and note text (secrets too): keep them out of logs and errors.
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **options)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent), all of it or none of it.

    pysqlite opens a transaction only before DML, so on SQLite each CREATE used to commit on
    its own: a process killed midway left tables without Alembic's version stamp, and every
    later start failed with "table ... already exists". An explicit BEGIN IMMEDIATE makes the
    whole upgrade one transaction (and queues two processes migrating at once)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class IncidentStore:
    """Owns the engine; hands out sessions whose work commits together or not at all."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._serial = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, *, upgrade: bool = True) -> IncidentStore:
        engine = make_engine(database_url(settings))
        if upgrade:
            migrate(engine)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def serialized(self, name: str) -> Iterator[Session]:
        """A session for read-modify-write work that must not interleave with itself, such
        as alert intake: two deliveries of one alert reading the same old row would both
        count as a change and one update would be lost, and two new alerts of one service
        would each open an incident. SQLite: BEGIN IMMEDIATE takes the write lock before the
        first read (pysqlite would begin only at the first write). PostgreSQL: a
        transaction-scoped advisory lock named by ``name``.

        On SQLite the threads of this process also queue on a lock of their own first: the
        SQLite busy handler polls (up to 100 ms apart, in no order), which under load let
        one delivery wait many seconds while later ones went first."""
        if self.engine.dialect.name == "sqlite":
            with self._serial, self.session() as session:
                session.execute(text("BEGIN IMMEDIATE"))
                yield session
            return
        with self.session() as session:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": zlib.crc32(name.encode())})
            yield session

    def tables(self) -> set[str]:
        return set(inspect(self.engine).get_table_names())
