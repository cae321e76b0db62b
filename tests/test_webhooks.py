"""Webhook receivers over HTTP: the app in-process, and a real `copilot serve` killed with
SIGKILL to show that everything acknowledged was already persisted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from copilot.config import Settings
from tests.conftest import api_key
from tests.test_alert_payloads import GRAFANA, alertmanager, crashloop, pagerduty


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", max_payload_bytes=50_000)
    return TestClient(create_app(settings),
                      headers={"Authorization": f"Bearer {api_key(settings, 'admin')}"})


def test_each_source_over_http(client: TestClient) -> None:
    r = client.post("/v1/webhooks/alerts/alertmanager", content=json.dumps(alertmanager(crashloop("a"))))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and "opened incident" in r.json()["outcomes"][0]["outcome"]
    again = client.post("/v1/webhooks/alerts/alertmanager", content=json.dumps(alertmanager(crashloop("a"))))
    assert again.json()["outcomes"][0]["outcome"] == "duplicate"
    assert client.post("/v1/webhooks/alerts/grafana", json=GRAFANA).status_code == 200
    pd = client.post("/v1/webhooks/alerts/pagerduty", json=pagerduty("incident.triggered", "triggered"))
    assert pd.status_code == 200 and pd.json()["accepted"] == 1
    ch = client.post("/v1/ingest/changes", json={"service": "checkout", "kind": "deploy",
                                                 "time": "2026-11-27T13:55:00Z", "id": "d1"})
    assert ch.status_code == 200 and ch.json()["results"][0]["outcome"] == "new"


@pytest.mark.parametrize(("path", "body", "code", "words"), [
    ("/v1/webhooks/alerts/alertmanager", b"{not json", 400, "not valid JSON"),
    ("/v1/webhooks/alerts/alertmanager", b'{"version": "4", "alerts": "x"}', 422,
     "status: required field is missing"),
    ("/v1/webhooks/alerts/nagios", b"{}", 422, "path.source: Input should be 'alertmanager'"),
    ("/v1/webhooks/alerts/generic", b'{"name": "' + b"x" * 60_000 + b'"}', 413, "limit"),
    ("/v1/ingest/changes", b'{"service": "a", "time": "soon"}', 422, "change.time"),
    ("/v1/ingest/changes", b"true", 422, "expected an object"),
    ("/v1/ingest/changes", b"[]", 422, "no changes"),
])
def test_bad_payloads_get_clear_errors_and_store_nothing(
    client: TestClient, path: str, body: bytes, code: int, words: str
) -> None:
    r = client.post(path, content=body)
    assert r.status_code == code, r.text
    assert words in r.json()["error"]
    ok = client.post("/v1/webhooks/alerts/generic", json={"name": "Probe", "service": "s"})
    assert ok.json()["outcomes"][0]["incident_id"] == 1  # nothing was half-written before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, payload: dict, token: str) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"content-type": "application/json",
                                          "X-Webhook-Token": token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_acknowledged_alerts_survive_sigkill(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "COPILOT_DATA_DIR": str(tmp_path / "data")}
    token = api_key(Settings(data_dir=tmp_path / "data"), "webhook", source="generic")
    cmd = [sys.executable, "-m", "copilot.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        acked = []
        for n in range(20):  # bounded
            out = _post(f"{base}/v1/webhooks/alerts/generic",
                        {"name": f"Alert{n}", "service": f"svc-{n % 3}", "severity": "critical"},
                        token)
            acked.append(out["outcomes"][0]["alert_id"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    res = subprocess.run([sys.executable, "-m", "copilot.cli", "incidents", "list", "--json"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    incidents = json.loads(res.stdout)
    assert len(incidents) == 3 and {s for i in incidents for s in i["services"]} == {
        "svc-0", "svc-1", "svc-2"}
    from copilot.models import Alert
    from copilot.store import IncidentStore

    with IncidentStore.open(Settings(data_dir=tmp_path / "data")).session() as s:
        assert sorted(a.id for a in s.query(Alert)) == sorted(acked)


def test_logs_webhook(client: TestClient) -> None:
    r = client.post("/v1/webhooks/alerts/generic", json={"name": "Probe", "service": "api",
                                                      "starts_at": "2026-11-27T14:00:00Z"})
    inc = r.json()["outcomes"][0]["incident_id"]
    body = "\n".join(
        [f'{{"ts": "2026-11-27T13:{m:02d}:00Z", "level": "info", "msg": "ok {m}"}}' for m in range(30)]
        + [f"2026-11-27T14:{m:02d}:00Z ERROR upstream reset {m}" for m in range(10)])
    r = client.post(f"/v1/ingest/logs?incident={inc}&service=api", content=body)
    assert r.status_code == 200, r.text
    assert r.json()["lines"] == 40 and r.json()["top"][0]["new"] is True
    more = client.post(f"/v1/ingest/logs?incident={inc}&service=api",
                       content="2026-11-27T14:30:00Z ERROR upstream reset 99")
    assert more.status_code == 200 and more.json()["total_lines"] == 41  # patterns re-mined
    assert client.post("/v1/ingest/logs?incident=999", content="x").status_code == 404
    assert client.post(f"/v1/ingest/logs?incident={inc}", content="x" * 60_000).status_code == 413
