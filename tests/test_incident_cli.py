"""The incident commands: post alerts, changes and logs from files; list, show and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot import config
from copilot.cli import EXIT_SKIPPED, app
from tests.conftest import write
from tests.test_alert_payloads import alertmanager, crashloop

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    config.get_settings.cache_clear()
    yield tmp_path
    config.get_settings.cache_clear()


def test_post_list_show_metrics(tmp_path: Path) -> None:
    alerts = write(tmp_path / "am.json", json.dumps(alertmanager(crashloop("checkout-1"))))
    res = runner.invoke(app, ["alerts", "post", "--source", "alertmanager", str(alerts)])
    assert res.exit_code == 0, res.output
    assert "opened incident" in res.stdout and "(incident 1)" in res.stdout
    changes = write(tmp_path / "c.json", json.dumps(
        {"service": "checkout", "kind": "deploy", "version": "2.84.0",
         "time": "2026-11-27T13:56:00Z"}))
    res = runner.invoke(app, ["changes", "post", str(changes)])
    assert res.exit_code == 0 and "→ new" in res.stdout
    log = write(tmp_path / "app.log", "\n".join(
        f"2026-11-27T14:{m:02d}:00Z ERROR pool timeout after {m} s" for m in range(10)))
    res = runner.invoke(app, ["logs", "post", "--incident", "1", str(log), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["top"][0]["template"] == "pool timeout after <*> s"
    res = runner.invoke(app, ["incidents", "list", "--json"])
    [row] = json.loads(res.stdout)
    assert row["id"] == 1 and row["status"] == "investigating"
    res = runner.invoke(app, ["incidents", "show", "1", "--json"])
    shown = json.loads(res.stdout)
    assert [a["name"] for a in shown["alerts"]] == ["KubePodCrashLooping"]
    texts = [e["text"] for e in shown["timeline"]]
    assert any(t.startswith("Incident opened") for t in texts)
    assert any("10 log lines added" in t for t in texts)
    res = runner.invoke(app, ["incidents", "metrics", "--json"])
    assert json.loads(res.stdout)["incidents"] == 1


def test_bad_files_are_rejected_and_the_rest_posted(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", json.dumps({"name": "Probe", "service": "s"}))
    bad = write(tmp_path / "bad.json", "{oops")
    res = runner.invoke(app, ["alerts", "post", "--source", "generic", str(bad), str(good),
                              str(tmp_path / "missing.json")])
    assert res.exit_code == EXIT_SKIPPED
    assert "bad.json" in res.output and "not valid JSON" in res.output
    assert "missing.json: cannot read" in res.output
    assert "Probe [firing] → new, opened incident" in res.stdout
    res = runner.invoke(app, ["alerts", "post", "--source", "zabbix", str(good)])
    assert res.exit_code == EXIT_SKIPPED and "alertmanager" in res.output
    res = runner.invoke(app, ["incidents", "show", "42"])
    assert res.exit_code == 1 or "no incident with id 42" in str(res.exception)
