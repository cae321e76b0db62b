"""Dependency faults at the HTTP API, with the real dependencies failing for real: a model
endpoint that refuses, hangs or answers garbage; a `chroma run` server killed and restarted;
PostgreSQL cut off behind a TCP forwarder and put back. Every request is answered: degraded
(the grounded answer, marked) when only the model is down, 503 with a message naming the
dependency when the data the request needs is out of reach, never a 500; and nothing is
acknowledged that was not stored."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from copilot.config import Settings
from copilot.models import Alert, ChangeEvent, LogLine
from copilot.store import IncidentStore
from tests.conftest import PG_URL, _free_port, api_key, in_schema, postgres_schema
from tests.servers import garbage_server, slow_server, tcp_proxy

LLM_TIMEOUT = 2.0
MARGIN = 10.0  # two shared cores: retrieval and the grounded answer run on them too
HUNG_TIMEOUT = 5.0  # the Chroma client's request timeout in the hung-server phase
QUESTION = "What changed before the first alert?"


def _client(app: Any, key: str) -> TestClient:
    """A client that sees a 500 as a response (so the assertion names it), not an exception."""
    return TestClient(app, headers={"Authorization": f"Bearer {key}"},
                      raise_server_exceptions=False)


def _metrics(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def _sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields.get("event", ""), json.loads(fields.get("data", "{}"))))
    return events


def _task_calls(client: TestClient, incident: int) -> dict[str, Any]:
    """Every model-backed route once: name → (status, answer or error, seconds)."""
    calls = {
        "chat": lambda: client.post(f"/v1/incidents/{incident}/chat", json={"question": QUESTION},
                                    headers={"Accept": "text/event-stream"}),
        "summary": lambda: client.get(f"/v1/incidents/{incident}/summary"),
        "status-draft": lambda: client.get(f"/v1/incidents/{incident}/status-draft",
                                           params={"stage": "investigating"}),
        "root-causes": lambda: client.get(f"/v1/incidents/{incident}/root-causes"),
        "runbooks": lambda: client.get(f"/v1/incidents/{incident}/runbooks"),
    }
    out = {}
    for name, call in calls.items():
        started = time.monotonic()
        res = call()
        elapsed = time.monotonic() - started
        if name == "chat" and res.status_code == 200:
            events = _sse(res.text)
            assert [e for e, _ in events][-1] == "final", events[-3:]
            body = events[-1][1]["result"]
        else:
            body = res.json()
        out[name] = (res.status_code, body, elapsed)
    return out


@pytest.fixture(scope="module")
def warm(demo_env) -> None:  # type: ignore[no-untyped-def]
    """The root-cause category model, built once per knowledge base (embedding every
    postmortem: half a minute here) before any request is timed."""
    from copilot.tasks.categorize import category_model

    category_model(demo_env[1].index)


# -- the model endpoint ---------------------------------------------------------------------

def _refused() -> AbstractContextManager[Any]:
    class Nothing:
        url = f"http://127.0.0.1:{_free_port()}/v1"  # bound and released: nothing listens

    return nullcontext(Nothing())


FAULTS = {"refused": _refused, "hung": lambda: slow_server(LLM_TIMEOUT * 4),
          "garbage": garbage_server}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_model_endpoint_still_answers_every_task_degraded_within_the_timeout(
        demo_env, warm, fault: str) -> None:  # type: ignore[no-untyped-def]
    """The app configured for an OpenAI-compatible endpoint that is down, hangs past the
    timeout or answers garbage: every task answers 200 with the grounded result, marked
    degraded with the reason, within the timeout plus a margin; the fallbacks are counted."""
    from copilot.llm.factory import build_llm
    from copilot.runner import Copilot

    demo_settings, retriever, incident = demo_env
    with FAULTS[fault]() as server:
        settings = Settings(data_dir=demo_settings.data_dir, allow_remote_llm=False,
                            llm_backend="openai", openai_base_url=server.url,
                            openai_model="faulty", llm_timeout=LLM_TIMEOUT)
        store = IncidentStore.open(settings)
        copilot = Copilot(settings, llm=build_llm(settings), retriever=retriever, store=store)
        client = _client(create_app(settings, copilot=copilot), api_key(settings, "admin"))
        before = _metrics(client)
        answers = _task_calls(client, incident)
        after = _metrics(client)
        store.engine.dispose()
    print(f"{fault}: seconds per route (model wait in ms): " + ", ".join(
        f"{name} {elapsed:.2f} ({body.get('timings', {}).get('model_ms', 0):.0f})"
        for name, (_, body, elapsed) in answers.items()))
    for name, (status, body, elapsed) in answers.items():
        assert status == 200, (fault, name, status, body)
        assert body["degraded"] is True and body["backend"] == "grounded", (fault, name, body)
        assert body["reason"].startswith("model error"), (fault, name, body["reason"])
        assert body["sources"], (fault, name)  # the grounded answer still cites its evidence
        assert body["timings"]["model_ms"] <= (LLM_TIMEOUT + 0.5) * 1000, (fault, name, body)
        assert elapsed < LLM_TIMEOUT + MARGIN, (fault, name, elapsed)
    for task in ("chat", "summary", "status_update", "root_causes", "runbooks"):
        key = f'copilot_fallbacks_total{{reason="model error",task="{task}"}}'
        assert after.get(key, 0) >= before.get(key, 0) + 1, (fault, task, after.get(key))
    calls = 'copilot_llm_calls_total{backend="openai:faulty",outcome="error"}'
    assert after[calls] >= before.get(calls, 0) + len(answers)


# -- the Chroma server ------------------------------------------------------------------------

def _start_chroma(path: Path, port: int) -> subprocess.Popen[bytes]:
    """``chroma run`` on ``path`` and ``port`` (conftest's pattern), up within a minute."""
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    log = open(path / "server.log", "ab")  # noqa: SIM115 - the server writes it until killed
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma did not start: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=30)


def _copy_demo_kb(demo_env: Any, settings: Settings, retriever: Any) -> None:
    """The session's demo knowledge base, placed on the private server: its catalog (the
    truth, with the cached category embeddings) copied, its vectors read from the embedded
    collection and upserted. Building it again would embed every chunk anew (one to two
    minutes on two cores) for nothing this test is about."""
    src = demo_env[0].kb_dir
    settings.kb_dir.mkdir(parents=True, exist_ok=True)
    for catalog in src.glob("catalog-*.sqlite3"):
        with closing(sqlite3.connect(catalog)) as a, \
                closing(sqlite3.connect(settings.kb_dir / catalog.name)) as b:
            a.backup(b)
    for cache in src.glob("*.npz"):
        shutil.copy2(cache, settings.kb_dir / cache.name)
    got = demo_env[1].index.store._col.get(include=["embeddings", "metadatas", "documents"])
    retriever.index.store.upsert(got["ids"], np.asarray(got["embeddings"]), got["metadatas"],
                                 got["documents"])
    assert retriever.index.store.ids() == retriever.index.catalog.chunk_ids()


@pytest.fixture
def chroma_app(tmp_path: Path, demo_env, warm, monkeypatch) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A private `chroma run` (the session's server is shared; this one gets killed) holding
    the demo knowledge base, the demo incident in SQLite, and the app over both; the client's
    request timeout is cut to ``HUNG_TIMEOUT`` so the hung phase stays short."""
    from copilot.runner import Copilot
    from ingest.demo import load_demo_incident
    from retrieval import chroma_store
    from retrieval.retriever import build_retriever

    monkeypatch.setattr(chroma_store, "REQUEST_TIMEOUT", HUNG_TIMEOUT)
    port = _free_port()
    proc = _start_chroma(tmp_path, port)
    env: dict[str, Any] = {"path": tmp_path, "port": port, "proc": proc}
    try:
        settings = Settings(data_dir=tmp_path / "data", chroma_url=f"http://127.0.0.1:{port}",
                            allow_remote_llm=False)
        retriever = build_retriever(settings, embedder=demo_env[1].index.embedder)
        _copy_demo_kb(demo_env, settings, retriever)
        (incident,) = load_demo_incident(settings)
        store = IncidentStore.open(settings)
        app = create_app(settings, copilot=Copilot(settings, retriever=retriever, store=store))
        env.update(settings=settings, store=store, incident=incident, retriever=retriever,
                   client=_client(app, api_key(settings, "admin")))
        yield env
        store.engine.dispose()
    finally:
        if env["proc"].poll() is None:
            _stop(env["proc"])


def test_a_chroma_server_down_or_hung_at_startup_is_a_503_in_seconds(tmp_path: Path,
                                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The app's first search builds the index client: a server that refuses, or accepts and
    never answers (Chroma's own client would wait forever), is a 503 naming the search index,
    within the client's timeouts, and /readyz says so."""
    from retrieval import chroma_store

    monkeypatch.setattr(chroma_store, "REQUEST_TIMEOUT", 1.0)
    with slow_server(30) as hung:
        for n, url in enumerate((f"http://127.0.0.1:{_free_port()}",
                                 hung.url.removesuffix("/v1"))):
            settings = Settings(data_dir=tmp_path / str(n), chroma_url=url,
                                embedding_model="hash", allow_remote_llm=False)
            client = _client(create_app(settings), api_key(settings, "responder"))
            started = time.monotonic()
            res = client.get("/v1/search", params={"q": "disk full"})
            assert res.status_code == 503, (url, res.status_code, res.text)
            assert res.json()["error"].startswith("search index unavailable"), res.json()
            assert time.monotonic() - started < MARGIN, url
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["store"] == "ok", ready.json()


def _count(store: IncidentStore, model: Any, *where: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_chroma_down_search_is_503_ingest_is_stored_tasks_degrade_and_it_recovers(
        chroma_app) -> None:  # type: ignore[no-untyped-def]
    client, store, incident = chroma_app["client"], chroma_app["store"], chroma_app["incident"]
    assert client.get("/readyz").status_code == 200
    hits = client.get("/v1/search", params={"q": "database connections saturated"})
    assert hits.status_code == 200 and hits.json(), hits.text
    healthy = client.get(f"/v1/incidents/{incident}/runbooks").json()
    assert not healthy["degraded"] and healthy["recommendations"]

    # Hung (stopped, so the kernel still accepts connections and nothing answers): the
    # client's timeout turns it into a 503, and the server is used again once it continues.
    chroma_app["proc"].send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        hung = client.get("/v1/search", params={"q": "database connections saturated"})
        hung_for = time.monotonic() - started
    finally:
        chroma_app["proc"].send_signal(signal.SIGCONT)
    assert hung.status_code == 503, hung.text
    assert hung.json()["error"].startswith("search index unavailable"), hung.json()
    assert "Timeout" in hung.json()["error"], hung.json()
    assert hung_for < HUNG_TIMEOUT + MARGIN, hung_for
    assert client.get("/v1/search", params={"q": "database connections saturated"}).json() \
        == hits.json()

    _stop(chroma_app["proc"])

    started = time.monotonic()
    down = client.get("/v1/search", params={"q": "database connections saturated"})
    assert down.status_code == 503, down.text
    assert down.json()["error"].startswith("search index unavailable"), down.json()
    assert down.headers.get("retry-after")
    assert time.monotonic() - started < MARGIN  # refused at once, not a hang
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["store"] == "ok"
    assert ready.json()["index"].startswith("unavailable"), ready.json()

    # Alerts, changes and logs go to the incident store only: accepted and stored.
    alert = {"name": "FaultTestQueueBacklog", "service": "checkout-api", "severity": "warning",
             "fingerprint": "fault-test-chroma-down", "starts_at": "2026-11-27T14:05:00Z"}
    res = client.post("/v1/webhooks/alerts/generic", json=alert)
    assert res.status_code == 200, res.text
    change = {"id": "fault-test-change", "kind": "deploy", "service": "checkout-api",
              "time": "2026-11-27T14:04:00Z", "description": "fault test deploy"}
    res = client.post("/v1/ingest/changes", json=change)
    assert res.status_code == 200, res.text
    lines = "\n".join(f"2026-11-27T14:06:{n:02d}Z ERROR fault test line {n}" for n in range(5))
    res = client.post("/v1/ingest/logs", params={"incident": incident, "service": "checkout-api"},
                      content=lines, headers={"Content-Type": "text/plain"})
    assert res.status_code == 200, res.text
    assert _count(store, Alert, Alert.fingerprint == "fault-test-chroma-down") == 1
    assert _count(store, ChangeEvent, ChangeEvent.external_id == "fault-test-change") == 1
    assert _count(store, LogLine, LogLine.message.contains("fault test line")) == 5

    # The tasks answer from the incident's own evidence and a keyword search of the runbooks,
    # marked degraded with the reason.
    # A customer status draft reads only the incident, so the outage does not touch it; an
    # internal one also cites runbooks, so it is degraded like the others.
    answers = _task_calls(client, incident)
    internal = client.get(f"/v1/incidents/{incident}/status-draft",
                          params={"audience": "internal"})
    answers["internal-draft"] = (internal.status_code, internal.json(), 0.0)
    for name, (status, body, _elapsed) in answers.items():
        assert status == 200, (name, status, body)
        assert body["sources"], name
        if name == "status-draft":
            assert body["degraded"] is False, body["reason"]
            continue
        assert body["degraded"] is True, (name, body)
        assert "search index unavailable" in body["reason"], (name, body["reason"])
    assert answers["runbooks"][1]["recommendations"], "keyword search found no runbook"
    own = {s["kind"] for s in answers["chat"][1]["sources"]} - {"runbook", "postmortem"}
    assert own, answers["chat"][1]["sources"]  # the incident's own evidence, from the store

    chroma_app["proc"] = _start_chroma(chroma_app["path"], chroma_app["port"])

    # The same app, no restart: the client reconnects; the killed server lost no vector. (The
    # tail of a ranking may differ: the approximate index is rebuilt from the server's log.)
    back = client.get("/v1/search", params={"q": "database connections saturated"})
    assert back.status_code == 200, back.text
    assert back.json()[0]["doc_id"] == hits.json()[0]["doc_id"]
    assert any(c.get("dense_rank") for hit in back.json() for c in hit["chunks"])
    index = chroma_app["retriever"].index
    assert index.store.count() == len(index.catalog.chunk_ids())
    assert client.get("/readyz").status_code == 200
    again = client.get(f"/v1/incidents/{incident}/runbooks").json()
    assert not again["degraded"] and again["recommendations"]


# -- the incident database --------------------------------------------------------------------

@pytest.fixture
def pg_behind_proxy(tmp_path: Path, demo_env) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The app on a fresh PostgreSQL schema reached only through a TCP forwarder the test can
    cut; the demo knowledge base (read-only) for the tasks."""
    from copilot.runner import Copilot

    with postgres_schema() as schema:
        real = urlparse(PG_URL or "")
        with tcp_proxy(real.hostname or "127.0.0.1", real.port or 5432) as proxy:
            via = (PG_URL or "").replace(f"{real.hostname}:{real.port}",
                                         f"127.0.0.1:{proxy.port}")
            settings = Settings(data_dir=tmp_path / "data", allow_remote_llm=False,
                                database_url=in_schema(via, schema))
            store = IncidentStore.open(settings)
            key = api_key(settings, "admin")
            token = api_key(settings, "webhook", source="generic")
            app = create_app(settings, copilot=Copilot(settings, retriever=demo_env[1],
                                                       store=store))
            yield {"proxy": proxy, "store": store, "client": _client(app, key), "token": token}
            store.engine.dispose()


def _alert(n: int) -> dict[str, Any]:
    return {"name": f"FaultTestDbAlert{n}", "service": "ledger-db", "severity": "critical",
            "fingerprint": f"fault-db-{n}", "starts_at": "2026-11-27T14:00:00Z"}


def test_database_cut_off_is_503_nothing_unstored_is_acknowledged_and_it_recovers(
        pg_behind_proxy) -> None:  # type: ignore[no-untyped-def]
    client, proxy, store = pg_behind_proxy["client"], pg_behind_proxy["proxy"], \
        pg_behind_proxy["store"]
    hook = {"X-Webhook-Token": pg_behind_proxy["token"]}  # wins over the client's admin key
    ok = client.post("/v1/webhooks/alerts/generic", json=_alert(1), headers=hook)
    assert ok.status_code == 200, ok.text
    incident = ok.json()["outcomes"][0]["incident_id"]
    assert client.get("/readyz").status_code == 200
    assert proxy.connections >= 1  # the app really talks to PostgreSQL through the forwarder

    proxy.cut()

    started = time.monotonic()
    refused = client.post("/v1/webhooks/alerts/generic", json=_alert(2), headers=hook)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"].startswith("incident store unavailable"), refused.json()
    assert refused.headers.get("retry-after")
    requests = [
        ("GET", "/v1/incidents", None),
        ("GET", f"/v1/incidents/{incident}", None),
        ("POST", "/v1/incidents", {"title": "x", "severity": "SEV3", "services": ["a"]}),
        ("POST", f"/v1/incidents/{incident}/notes", {"text": "note while the db is down"}),
        ("GET", f"/v1/incidents/{incident}/summary", None),
        ("POST", f"/v1/incidents/{incident}/chat", {"question": QUESTION}),
        ("POST", "/v1/ingest/changes", {"id": "c-db-down", "service": "ledger-db",
                                        "time": "2026-11-27T14:01:00Z"}),
        ("GET", "/v1/admin/audit", None),
        ("GET", "/v1/me", None),
    ]
    for method, path, body in requests:
        res = client.request(method, path, json=body)
        assert res.status_code == 503, (method, path, res.status_code, res.text)
        assert res.json()["error"].startswith("incident store unavailable"), (path, res.json())
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["store"].startswith("unavailable")
    assert time.monotonic() - started < 60  # each refused in seconds, none hung

    proxy.resume()

    assert client.get("/readyz").status_code == 200
    with store.session() as s:
        stored = set(s.scalars(select(Alert.fingerprint)))
    assert stored == {"fault-db-1"}  # acknowledged: there; refused with 503: not there
    assert _count(store, ChangeEvent, ChangeEvent.external_id == "c-db-down") == 0
    for _ in range(2):  # the sender's retry, and a duplicate delivery of it
        again = client.post("/v1/webhooks/alerts/generic", json=_alert(2), headers=hook)
        assert again.status_code == 200, again.text
    assert _count(store, Alert, Alert.fingerprint == "fault-db-2") == 1
    assert client.get(f"/v1/incidents/{incident}").status_code == 200
