"""The `copilot` command, through Typer's runner and as a real process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot import config
from copilot.cli import EXIT_SKIPPED, app
from tests.conftest import write

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COPILOT_EMBEDDING_MODEL", "hash")
    config.get_settings.cache_clear()
    yield tmp_path
    config.get_settings.cache_clear()


def test_ingest_then_search_json(env: Path, corpus: Path) -> None:
    res = runner.invoke(app, ["ingest", str(corpus), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["new"] == 6 and summary["errors"] == []
    res = runner.invoke(app, ["search", "certificate renewal", "--kind", "runbook", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert 1 <= len(results) <= 2 and all(r["kind"] == "runbook" for r in results)
    assert results[0]["doc_id"] == "rb-cert"
    assert results[0]["chunks"][0]["chunk_id"].startswith("rb-cert::")
    res = runner.invoke(app, ["search", "certificate renewal"])
    assert res.exit_code == 0 and "rb-cert" in res.stdout
    res = runner.invoke(app, ["kb", "stats"])
    assert res.exit_code == 0 and "6 documents" in res.stdout and "3 runbook" in res.stdout


def test_skipped_files_exit_code(env: Path, corpus: Path) -> None:
    write(corpus / "runbooks" / "bad.md", "---\n: : :\n---\nx\n")
    res = runner.invoke(app, ["ingest", str(corpus)])
    assert res.exit_code == EXIT_SKIPPED
    assert "bad.md" in res.output and "invalid YAML frontmatter" in res.output
    assert "6 new" in res.output


def test_usage_errors(env: Path, corpus: Path) -> None:
    res = runner.invoke(app, ["ingest", str(corpus), "--kind", "recipe"])
    assert res.exit_code == 2 and "must be one of" in res.output
    res = runner.invoke(app, ["search", "  "])
    assert res.exit_code == 2 and "empty" in res.output
    res = runner.invoke(app, ["ingest", str(env / "nope")])
    assert res.exit_code == EXIT_SKIPPED and "no such file" in res.output


def test_empty_knowledge_base_says_so(env: Path) -> None:
    res = runner.invoke(app, ["search", "disk full"])
    assert res.exit_code == 0 and "knowledge base is empty" in res.stdout


def test_bad_setting_is_a_clear_error(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPILOT_CHROMA_URL", "localhost:8000")
    config.get_settings.cache_clear()
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "copilot.cli", "search", "x"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1
    assert "COPILOT_CHROMA_URL must start with http://" in res.stderr
