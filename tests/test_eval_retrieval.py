"""The retrieval evaluation: metric arithmetic, the CLI, a fast real-data tier that always runs,
and the full run (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copilot import config
from copilot.cli import app
from copilot.config import Settings
from evals.retrieval import (
    Scores,
    build_eval_index,
    gold_rank,
    load_cases,
    run_retrieval_eval,
    source_label,
)
from tests.conftest import SHARED, needs_shared, write

CASES = SHARED / "cases" / "runbook_recommendation.jsonl"


def test_scores_and_gold_rank() -> None:
    s = Scores()
    for rank in (1, 2, 4, None):
        s.add(rank)
    assert s.as_dict() == {"n": 4, "hit@1": 0.25, "hit@3": 0.5, "hit@5": 0.75,
                           "mrr": round((1 + 0.5 + 0.25) / 4, 3)}
    srcs = ["/x/kb/runbooks/a/b.md", "/x/kb/runbooks/a/README.md"]
    assert gold_rank(srcs, "kb/runbooks/a/README.md") == 2
    assert gold_rank(srcs, "kb/runbooks/b.md") is None  # suffix match is by whole path parts
    assert source_label("prometheus-operator/kube-prometheus") == "kube-prometheus"


def test_cli_eval_on_a_small_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COPILOT_EMBEDDING_MODEL", "hash")
    config.get_settings.cache_clear()
    cases = write(tmp_path / "cases.jsonl", "\n".join(json.dumps(c) for c in [
        {"id": "c1", "source": "demo", "gold": {"runbook": "kb/runbooks/rb-cert.md"},
         "alert": {"labels": {"alertname": "CertificateExpiringSoon"},
                   "annotations": {"summary": "TLS certificate expires within 14 days"}}},
        {"id": "c2", "source": "demo", "gold": {"runbook": "kb/runbooks/rb-disk.md"},
         "alert": {"labels": {"alertname": "NodeFilesystemAlmostFull"},
                   "annotations": {"summary": "Free disk space on a volume is low"}}},
    ]) + "\n")
    res = CliRunner().invoke(app, ["eval", "retrieval", "--cases", str(cases), "--kb",
                                   str(corpus / "runbooks"), "--json"])
    config.get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cases"] == 2 and out["index"]["documents"] == 3
    for variant in ("with_name", "without_name"):
        for mode in ("lexical", "dense", "hybrid"):
            assert out["results"][variant][mode]["overall"]["n"] == 2
    assert out["results"]["with_name"]["hybrid"]["overall"]["hit@1"] == 1.0
    bad = write(tmp_path / "bad.jsonl", '{"id": 1}\n')
    res = CliRunner().invoke(app, ["eval", "retrieval", "--cases", str(bad), "--kb", str(corpus)])
    assert res.exit_code == 1 or "not a runbook case" in str(res.exception)


@needs_shared()
def test_fast_tier_kube_prometheus_real_model(tmp_path: Path, real_embedder) -> None:
    """88 real kube-prometheus alerts against the real prometheus-operator runbooks."""
    settings = Settings(data_dir=tmp_path / "data")
    kb = SHARED / "kb" / "runbooks" / "prometheus-operator"
    cases = [c for c in load_cases(CASES) if source_label(c.source) == "kube-prometheus"]
    for c in cases:  # the cases name paths under kb/runbooks/
        assert c.gold.startswith("kb/runbooks/prometheus-operator/")
    retriever, report = build_eval_index(settings, kb, embedder=real_embedder)
    assert report.documents > 100
    result = run_retrieval_eval(cases, retriever)
    hybrid = result.results["with_name"]["hybrid"]["overall"]
    assert hybrid["n"] == 88
    assert hybrid["hit@3"] >= 0.95 and hybrid["hit@1"] >= 0.85
    without = result.results["without_name"]
    assert without["hybrid"]["overall"]["mrr"] >= max(
        without["lexical"]["overall"]["mrr"], without["dense"]["overall"]["mrr"]) - 0.02


@pytest.mark.slow
@needs_shared()
def test_full_runbook_eval_meets_targets(tmp_path: Path, real_embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    retriever, _ = build_eval_index(settings, SHARED / "kb" / "runbooks", embedder=real_embedder)
    result = run_retrieval_eval(load_cases(CASES), retriever, modes=("hybrid",))
    named = result.results["with_name"]["hybrid"]["overall"]
    bare = result.results["without_name"]["hybrid"]["overall"]
    assert named["hit@1"] >= 0.60 and named["hit@3"] >= 0.85
    assert bare["hit@1"] >= 0.50 and bare["hit@3"] >= 0.75
