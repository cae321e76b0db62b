"""The eval harness: fixed samples, the JSON result, reports with plots, compare and the gate;
and one real run of an incident suite through the copilot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot.cli import app as cli
from copilot.errors import EvalError
from evals.compare import compare
from evals.gate import check
from evals.harness import CaseResult, SuiteRun, read_result, sample, to_json
from evals.report import html_page, markdown


class _C:
    def __init__(self, i: str) -> None:
        self.id = i


def test_the_sample_is_fixed_and_independent_of_file_order() -> None:
    cases = [_C(f"c{n}") for n in range(50)]
    a = [c.id for c in sample(cases, 10)]
    b = [c.id for c in sample(list(reversed(cases)), 10)]
    assert a == b and len(set(a)) == 10 and a != [f"c{n}" for n in range(10)]
    assert sample(cases, None) == cases and sample(cases, 500) == cases


def _result(recall: float, flips: bool = False) -> dict:  # type: ignore[type-arg]
    cases = [CaseResult("a", True, "fine", {"fact_recall": 1.0}, gold="x", predicted="x"),
             CaseResult("b", not flips, "missed one" if flips else "fine",
                        {"fact_recall": recall}, gold="y", predicted="x" if flips else "y")]
    runs = [SuiteRun("summaries", backend, "cases.jsonl", ["kb"],
                     {"cases": 2.0, "fact_recall": (1 + recall) / 2}, cases, 1.0)
            for backend in ("grounded", "local")]
    return to_json(runs)


def test_reports_have_tables_plots_and_failures() -> None:
    data = _result(0.5, flips=True)
    md = markdown(data)
    assert "| fact_recall | 0.750 | 0.750 |" in md and "`b`: missed one" in md
    page = html_page(data)
    assert page.count("<svg") >= 2 and "<table class='cm'>" in page
    assert "http" not in page.split("<body>", 1)[1].replace("http://www.w3.org/2000/svg", "")


def test_compare_lists_metric_deltas_and_flipped_cases() -> None:
    text = compare(_result(1.0), _result(0.5, flips=True))
    assert "fact_recall" in text and "(-0.250)" in text
    assert "b: pass → FAIL" in text and "B: missed one" in text


def test_gate_fails_below_a_threshold_or_when_a_suite_is_missing() -> None:
    data = _result(0.5, flips=True)
    ok = {"backend": "grounded", "suites": {"summaries": {"fact_recall": {"min": 0.7}}}}
    assert check(data, ok) == []
    low = {"backend": "grounded", "suites": {"summaries": {"fact_recall": {"min": 0.8}}}}
    assert "below the minimum 0.8" in check(data, low)[0]
    gone = {"backend": "grounded", "suites": {"chat": {"citation_precision": {"min": 0.9}}}}
    assert "not in the result" in check(data, gone)[0]
    capped = {"suites": {"summaries": {"fact_recall": {"max": 0.5}}}}
    assert "above the maximum" in check(data, capped)[0]


def test_a_result_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(EvalError, match="not an eval result"):
        read_result(bad)


def test_eval_run_on_real_incidents_writes_results_and_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["eval", "run", "--suite", "status_updates", "--limit", "2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    run = data["runs"][0]
    assert run["suite"] == "status_updates" and len(run["cases"]) == 2
    assert all(c["reason"] and "planted values leaked" in c["reason"] for c in run["cases"])
    assert run["metrics"]["leaks"] == 0
    assert (out / "report.html").read_text().count("<svg") >= 1
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("backend: grounded\nsuites:\n  status_updates:\n"
                          "    leaks: {max: 0}\n    required_fields: {min: 1.01}\n")
    gate = CliRunner().invoke(cli, ["eval", "gate", str(out / "results.json"),
                                    "--thresholds", str(thresholds)])
    assert gate.exit_code == 1 and "required_fields" in gate.output
    unknown = CliRunner().invoke(cli, ["eval", "run", "--suite", "nope", "--out", str(out)])
    assert unknown.exit_code != 0 and "unknown suite" in str(unknown.exception)


def test_the_incident_suites_index_the_demo_kb_with_each_documents_own_kind(
        tmp_path: Path) -> None:
    """The chat, summary and status suites answer from the demo knowledge base as the service
    does: its runbooks and postmortems are found by kind (a kind forced on the whole folder
    once hid every one of them from the tasks)."""
    from copilot.config import Settings
    from evals.suite_incidents import DEMO
    from evals.suite_kb import build_kb
    from retrieval.hybrid import Filters

    retriever, _ = build_kb(Settings(data_dir=tmp_path), [DEMO / "kb"], "incidents",
                            lambda _m: None)
    for kind in ("runbook", "postmortem"):
        hits = retriever.search("ledger-db connections saturated", k=2,
                                filters=Filters(kinds=(kind,)))
        assert hits and all(h.kind == kind for h in hits), kind
