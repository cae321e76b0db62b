"""The task commands on the demo data, through the CLI runner: ask, root-causes, runbooks
(incident and --alert FILE), draft-update, summarize, postmortem, and their errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from copilot import config
from copilot.cli import app, main
from ingest.demo import DEMO
from tests.conftest import write

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, demo_env):  # type: ignore[no-untyped-def]
    settings, _, incident = demo_env
    monkeypatch.setenv("COPILOT_DATA_DIR", str(settings.data_dir))
    config.get_settings.cache_clear()
    yield incident
    config.get_settings.cache_clear()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_ask_streams_a_cited_answer(env: int) -> None:
    res = runner.invoke(app, ["ask", "What changed before the first alert?"])
    assert res.exit_code == 0, res.output
    assert "2.84.0" in res.stdout and "[change:" in res.stdout and "sources" in res.stdout
    data = _json(["ask", "What is the CEO's favourite colour?", "--incident", str(env)])
    assert data["answered"] is False and "does not say" in data["answer"]


def test_root_causes_runbooks_summary(env: int) -> None:
    causes = _json(["root-causes", str(env)])
    top = causes["hypotheses"][0]
    assert "2.84.0" in top["statement"] and any(c.startswith("change:") for c in top["citations"])
    books = _json(["runbooks", str(env)])
    assert {r["doc_id"] for r in books["recommendations"][:3]} >= {
        "rb-checkout-high-error-rate", "rb-ledger-db-connections-saturated"}
    res = runner.invoke(app, ["summarize", str(env)])
    assert res.exit_code == 0 and "## Open questions" in res.stdout and "[incident:" in res.stdout


def test_runbooks_for_one_alert_file(tmp_path: Path) -> None:
    payload = json.loads((DEMO / "incident" / "alertmanager.json").read_text())
    second = payload["alerts"][1]
    bare = write(tmp_path / "alert.json", json.dumps(
        {"labels": second["labels"], "annotations": second["annotations"]}))
    data = _json(["runbooks", "--alert", str(bare)])
    assert data["incident_id"] is None
    assert data["recommendations"][0]["doc_id"] == "rb-ledger-db-connections-saturated"
    webhook = _json(["runbooks", "--alert", str(DEMO / "incident" / "alertmanager.json")])
    assert webhook["recommendations"][0]["doc_id"] == "rb-checkout-high-error-rate"


def test_draft_update_carries_its_checks(env: int) -> None:
    data = _json(["draft-update", str(env), "--stage", "investigating", "--audience", "customers"])
    assert data["passed"] and data["checks"] and all(c["passed"] for c in data["checks"]
                                                     if c["blocking"])
    assert data["title"] and data["body"] and data["components"] and data["next_update_at"]
    res = runner.invoke(app, ["draft-update", str(env), "--stage", "investigating"])
    assert res.exit_code == 0 and "checks" in res.stdout and "pass" in res.stdout


@pytest.mark.parametrize("args,code,message", [
    (["draft-update", "1", "--stage", "fixed"], 1, "investigating"),
    (["postmortem", "1"], 1, "not resolved"),
    (["summarize", "999"], 1, "no incident with id 999"),
    (["runbooks"], 2, "INCIDENT id or --alert"),
    (["ask", "hello", "--backend", "gpt"], 2, "grounded, local or openai"),
])
def test_bad_input_gets_a_clear_error(args: list[str], code: int, message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with mock.patch.object(sys, "argv", ["copilot", *args]), pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == code
    assert message in " ".join(capsys.readouterr().err.split())


def test_bad_alert_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", "{not json")
    res = runner.invoke(app, ["runbooks", "--alert", str(bad)])
    assert res.exit_code == 1 and "not valid JSON" in str(res.exception)
    empty = write(tmp_path / "empty.json", json.dumps({"hello": "world"}))
    res = runner.invoke(app, ["runbooks", "--alert", str(empty)])
    assert res.exit_code == 1 and "no alert found" in str(res.exception)
