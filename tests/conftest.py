"""Shared fixtures. Fakes (HashEmbedder, InMemoryVectorStore) are plugged in through the real
settings and factories; the real model, Chroma (embedded and a `chroma run` server on loopback)
are used where a test is about them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from copilot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEMO = ROOT / "demo" / "kb"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["COPILOT_ALLOW_REMOTE_LLM"] = "false"  # no test can reach a paid endpoint


def needs_shared() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not SHARED.exists(), reason=f"shared data not found at {SHARED}")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data folder with the deterministic test embedder."""
    return Settings(data_dir=tmp_path / "data", embedding_model="hash", chunk_tokens=120,
                    chunk_overlap=20, min_chunk_tokens=10, ingest_batch_chunks=8)


@pytest.fixture(scope="session")
def real_embedder():
    from retrieval.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on loopback, for the client/server contract tests."""
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(exe).exists():
        pytest.fail("the `chroma` command (from chromadb) is not installed")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "w")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma server did not start: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


POSTMORTEM = """---
id: {id}
title: {title}
date: 2025-03-14
severity: SEV2
services: [{service}]
root_cause_category: {category}
tags: [postgres]
---
# {title}

## Summary
{summary}

## Impact
Customers saw failed payments for 40 minutes.

## Timeline
- 14:02 UTC alert fired
- 14:30 UTC mitigated

## Root cause
{cause}

## Resolution
Rolled back and raised the limit.

## Action items
- Add a saturation alert (LUM-1)
"""

RUNBOOK = """---
id: {id}
title: {title}
services: [{service}]
alerts: [{alert}]
---
# {title}

## Meaning
{meaning}

## Impact
Requests fail while this fires.

## Diagnosis
```
kubectl get pods -n {service}
# not a heading inside a fence
```

## Mitigation
1. {mitigation}
"""


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small corpus in the demo's format: three postmortems and three runbooks."""
    root = tmp_path / "kb"
    pms = [
        ("pm-db", "Ledger database connection exhaustion", "ledger-db", "db-connection-exhaustion",
         "The ledger database refused new connections.",
         "A deploy doubled the pool size per pod and the PostgreSQL max_connections was reached."),
        ("pm-cert", "Edge certificate expired", "edge-proxy", "certificate-expiry",
         "Browsers rejected the TLS certificate on the public edge.",
         "The renewal job had failed silently for weeks and the certificate expired."),
        ("pm-disk", "Kafka broker disk full", "kafka-events", "disk-full",
         "A broker stopped accepting writes.",
         "Retention was misconfigured so log segments filled the volume."),
    ]
    for pid, title, svc, cat, summary, cause in pms:
        write(root / "postmortems" / f"{pid}.md", POSTMORTEM.format(
            id=pid, title=title, service=svc, category=cat, summary=summary, cause=cause))
    rbs = [
        ("rb-db", "Database connections saturated", "ledger-db", "LedgerDBConnectionsSaturated",
         "Active connections to PostgreSQL are close to max_connections.",
         "Find the client holding idle connections and restart it."),
        ("rb-cert", "Certificate expiring soon", "edge-proxy", "CertificateExpiringSoon",
         "A TLS certificate expires within 14 days.", "Renew the certificate and reload the proxy."),
        ("rb-disk", "Filesystem almost full", "kafka-events", "NodeFilesystemAlmostFull",
         "Free disk space on a volume is below 10 percent.", "Delete old segments or grow the disk."),
    ]
    for rid, title, svc, alert, meaning, mitigation in rbs:
        write(root / "runbooks" / f"{rid}.md", RUNBOOK.format(
            id=rid, title=title, service=svc, alert=alert, meaning=meaning, mitigation=mitigation))
    return root


PG_URL = os.environ.get("COPILOT_TEST_POSTGRES_URL")


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh schema on the PostgreSQL server of COPILOT_TEST_POSTGRES_URL, dropped
    afterwards. Skips when the URL is unset; CI fails instead (it must test PostgreSQL)."""
    from sqlalchemy import create_engine, text

    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide COPILOT_TEST_POSTGRES_URL (see .ci/run)")
        pytest.skip("no PostgreSQL: set COPILOT_TEST_POSTGRES_URL (CI always does)")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def in_schema(url: str, schema: str) -> str:
    """``url`` with its search path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def incident_store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The incident store on a SQLite file, and on the real PostgreSQL server that .ci/run
    starts (a fresh schema per test). CI fails rather than skips when PostgreSQL is missing."""
    from copilot.store import IncidentStore, make_engine, migrate

    if request.param == "sqlite":
        store = IncidentStore.open(Settings(data_dir=tmp_path / "data"))
        yield store
        store.engine.dispose()
        return
    with postgres_schema() as schema:
        engine = make_engine(in_schema(PG_URL or "", schema))
        migrate(engine)
        yield IncidentStore(engine)
        engine.dispose()


def api_key(settings: Settings, role: str, *, source: str | None = None,
            name: str | None = None) -> str:
    """A new API key (or webhook token with ``source``) in the store of ``settings``."""
    from copilot.auth import create_key
    from copilot.store import IncidentStore

    store = IncidentStore.open(settings)
    try:
        with store.session() as s:
            return create_key(s, name=name or f"test-{role}", role=role, source=source)[1]
    finally:
        store.engine.dispose()


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory: pytest.TempPathFactory, real_embedder):  # type: ignore[no-untyped-def]
    """The demo knowledge base (real embedder, embedded Chroma) and the demo incident in a
    SQLite store, built once: (settings, retriever, incident id)."""
    from ingest.demo import build_demo_kb, load_demo_incident
    from retrieval.retriever import build_retriever

    settings = Settings(data_dir=tmp_path_factory.mktemp("demo") / "data", allow_remote_llm=False)
    retriever = build_retriever(settings, embedder=real_embedder)
    build_demo_kb(settings, retriever)
    opened = load_demo_incident(settings)
    assert opened, "the demo incident did not open"
    return settings, retriever, opened[0]


@pytest.fixture
def demo_copilot(demo_env):  # type: ignore[no-untyped-def]
    """A grounded copilot over the demo data; tests swap ``llm`` for other backends."""
    from copilot.runner import Copilot
    from copilot.store import IncidentStore

    settings, retriever, _ = demo_env
    store = IncidentStore.open(settings)
    yield Copilot(settings, llm=None, retriever=retriever, store=store)
    store.engine.dispose()


@pytest.fixture(scope="session")
def gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is in the test extra")
    from copilot.llm.local import packaged_model_path

    return packaged_model_path()


@pytest.fixture(scope="session")
def llama_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server (`llama_cpp.server`) on loopback, serving the same GGUF
    as the local backend under the model name ``smollm2``; yields its /v1 base URL."""
    import urllib.request

    port = _free_port()
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("llama_cpp.server did not start")
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=20)
    log.close()
