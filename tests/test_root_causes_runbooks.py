"""Root-cause hypotheses and runbook recommendations on the real demo data (real embedder,
embedded Chroma, SQLite store): the culprit deploy first with its evidence, abstention on thin
evidence, the postmortem category vote, runbooks for an incident and for one alert, and the
model paths (EchoLLM stands in for a model's answer) with citation validation and fallback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from copilot.context import (
    AlertFact,
    ChangeFact,
    IncidentSnapshot,
    PatternFact,
    snapshot_from_alert,
)
from copilot.llm.base import EchoLLM
from copilot.runner import Copilot
from copilot.tasks.base import Task
from copilot.tasks.root_causes import RootCauses
from copilot.tasks.runbooks import Runbooks, recommend_for_alert, steps_of
from copilot.tasks.similar import category_vote
from prompts.budget import ContextItem

ROOT = Path(__file__).resolve().parent.parent
ANALOGUE = "pm-2025-03-14-ledger-db-connection-exhaustion"


@pytest.fixture
def snap(demo_copilot, demo_env):  # type: ignore[no-untyped-def]
    return demo_copilot.snapshot(demo_env[2])


def _evidence(copilot: Copilot, task: Task, snap: IncidentSnapshot) -> set[str]:  # type: ignore[type-arg]
    return {i.id for i in copilot.prepare(task, snap).packed.items}


def _change(snap: IncidentSnapshot, service: str) -> ChangeFact:
    return next(c for c in snap.changes if c.service == service)


def _alert_payload(n: int) -> dict:  # type: ignore[type-arg]
    return json.loads((ROOT / "demo/incident/alertmanager.json").read_text())["alerts"][n]


# -- root causes, grounded ---------------------------------------------------------------------


def test_the_deploy_is_the_top_hypothesis_with_its_evidence(demo_copilot, snap) -> None:
    task = RootCauses()
    result = demo_copilot.run(task, snap)
    deploy = _change(snap, "checkout-api")
    assert deploy.version == "2.84.0"
    assert not result.abstained and not result.degraded and result.backend == "grounded"
    top = result.hypotheses[0]
    assert f"change:{deploy.id}" in top.citations and "2.84.0" in top.statement
    assert "min before the first alert" in top.statement and top.confidence_label == "high"
    assert any(c.startswith(("pattern:", "alert:")) for c in top.citations)
    assert "roll back" in top.check and top.category == "deploy-regression"
    # the two unrelated changes earlier that day are not suspects
    cited = [c for h in result.hypotheses for c in h.citations]
    for service in ("edge-proxy", "invoice-worker"):
        assert f"change:{_change(snap, service).id}" not in cited
    # the similar past outage is both evidence and a hypothesis of its own
    assert any(ANALOGUE in e.id for h in result.hypotheses for e in h.evidence)
    analogue = next(h for h in result.hypotheses if h.category == "db-connection-exhaustion")
    assert analogue.statement.startswith("As in “ledger-db connection exhaustion")
    assert "db-connection-exhaustion" in dict(result.categories)
    # ranked, grounded, every citation in the evidence and explained
    confidences = [h.confidence for h in result.hypotheses]
    assert confidences == sorted(confidences, reverse=True) and 1 <= len(confidences) <= 5
    allowed = _evidence(demo_copilot, task, snap)
    assert {s.id for s in result.sources} <= allowed
    for h in result.hypotheses:
        assert h.supported and h.citations and set(h.citations) <= allowed
        assert [e.id for e in h.evidence] == h.citations and all(e.why for e in h.evidence)
    assert f"[change:{deploy.id}" in result.answer and "Check:" in result.answer


def test_changes_outside_the_window_or_on_other_services_are_not_suspects(demo_env) -> None:
    """A planted incident: one config push 25 min before the first alert on the affected
    service, one older, one on an unrelated service, one after the alert."""
    settings, _, _ = demo_env
    first = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    snap = IncidentSnapshot(
        id=None, title="search-api timeouts", services=["search-api"], started_at=first,
        alerts=[AlertFact(id=1, name="SearchAPIHighLatency", service="search-api",
                          starts_at=first, annotations={"summary": "search shard timeouts"})],
        patterns=[PatternFact(id=1, template="shard <*> query timeout after <*> ms", count=80,
                              level="ERROR")],
        changes=[
            ChangeFact(id=1, kind="config", service="search-api", version="r42",
                       at=first - dt.timedelta(minutes=25),
                       description="lower the shard query timeout from 5 s to 500 ms"),
            ChangeFact(id=2, kind="deploy", service="search-api", version="1.2.0",
                       at=first - dt.timedelta(hours=5), description="query timeout tweaks"),
            ChangeFact(id=3, kind="deploy", service="billing", version="9.9",
                       at=first - dt.timedelta(minutes=10), description="invoice layout"),
            ChangeFact(id=4, kind="feature_flag", service="search-api", version="x=on",
                       at=first + dt.timedelta(minutes=5), description="query timeout"),
        ])
    result = Copilot(settings, retriever=None).run(RootCauses(), snap)
    assert [h.citations[0] for h in result.hypotheses] == ["change:1"]
    top = result.hypotheses[0]
    assert top.category == "config-change" and "25 min before the first alert" in top.statement
    assert "pattern:1" in top.citations and "timeout" in top.statement
    assert top.check.startswith("Diff r42") and top.confidence_label == "high"


def test_root_causes_abstain_on_thin_evidence(demo_copilot) -> None:
    thin = IncidentSnapshot(id=None, title="something is off")
    result = demo_copilot.run(RootCauses(), thin)
    assert result.abstained and result.hypotheses == [] and result.sources == []
    reason = result.abstain_reason or ""
    assert "no firing alerts" in reason and "no recorded changes" in reason
    assert "weak match" in reason and reason in result.answer


def test_text_only_case_votes_and_leaves_its_own_postmortem_out(demo_copilot) -> None:
    """The shape the root-cause evaluation uses: a title, services and a description."""
    case = IncidentSnapshot(
        id=None, title="Payments failing: the ledger database refuses new connections",
        services=["ledger-db"], description=(
            "Payment confirmations timed out acquiring a database connection; PgBouncer showed "
            "clients waiting and the primary said too many clients already after a worker "
            "fleet scaled out."))
    with_own = RootCauses(kb_k=5).evidence(case, demo_copilot.retriever)
    without = RootCauses(kb_k=5, exclude_docs=[ANALOGUE]).evidence(case, demo_copilot.retriever)
    assert any(ANALOGUE in i.id for i in with_own)
    assert not any(ANALOGUE in i.id for i in without)
    votes = category_vote(with_own)
    assert "db-connection-exhaustion" in dict(votes)
    assert abs(sum(v for _, v in votes) - 1) < 1e-3
    assert all(i.meta["similarity"] > 0.3 for i in with_own if i.kind == "postmortem"
               and ANALOGUE in i.id)
    result = demo_copilot.run(RootCauses(kb_k=5), case)
    assert result.categories and all(h.citations for h in result.hypotheses)
    # the categories are the calibrated ranking over every labelled demo postmortem, with
    # probabilities; leaving the analogue out removes it from what the ranking rests on
    task = RootCauses(kb_k=5, exclude_docs=[ANALOGUE])
    left_out = demo_copilot.run(task, case)
    assert task.ranking is not None and ANALOGUE not in task.ranking.used
    assert left_out.categories == task.ranking.categories
    assert len(task.ranking.used) == 30 and abs(sum(p for _, p in left_out.categories) - 1) < 1e-3
    assert "db-connection-exhaustion" in dict(result.categories)


def test_category_vote_weights_documents_by_similarity() -> None:
    def pm(doc: str, category: str, score: float, rank: int) -> ContextItem:
        return ContextItem(f"chunk:{doc}::1", "postmortem", "text", rank=rank * 10,
                           meta={"doc_id": doc, "root_cause_category": category,
                                 "score": score, "doc_rank": rank})

    items = [pm("a", "internal/bugs/config", 0.5, 0), pm("b", "external/power", 0.2, 1),
             pm("c", "external/network", 0.2, 2), pm("c", "external/network", 0.2, 2),
             ContextItem("alert:1", "alert", "ignored")]
    assert [c for c, _ in category_vote(items)] == ["internal/bugs/config", "external/power",
                                                    "external/network"]
    assert category_vote(items, depth=1) == [("internal", 0.5556), ("external", 0.4444)]
    assert category_vote([]) == []


# -- root causes, model path -------------------------------------------------------------------


def test_model_hypotheses_are_parsed_and_citations_validated(demo_copilot, snap) -> None:
    task = RootCauses()
    refs = {v: k for k, v in demo_copilot.prepare(task, snap).refs.items()}
    deploy = f"change:{_change(snap, 'checkout-api').id}"
    answer = json.dumps([
        {"statement": "The 2.84.0 deploy raised the ledger pool size and exhausted connections.",
         "category": "deploy-regression", "confidence": 0.8,
         "evidence": [refs[deploy], refs["alert:2"], "S999"], "check": "Roll back 2.84.0."},
        {"statement": "Something unrelated happened somewhere else.", "category": "unknown",
         "confidence": 0.2, "evidence": ["S998"], "check": ""}])
    echo = EchoLLM(f"```json\n{answer}\n```")
    demo_copilot.llm = echo
    result = demo_copilot.run(task, snap)
    assert result.backend == "echo" and not result.degraded
    assert result.prompt == "root_causes@1" and "JSON array" in echo.calls[0][-1].content
    first, second = result.hypotheses
    assert first.citations == [deploy, "alert:2"] and first.supported
    assert [e.id for e in first.evidence] == first.citations and first.confidence_label == "high"
    assert second.citations == [] and not second.supported and second.evidence == []
    assert {"S999", "S998"} <= set(result.dropped_citations)
    assert {s.id for s in result.sources} == {deploy, "alert:2"}


@pytest.mark.parametrize("answer", [
    "The deploy did it [S5].",  # prose, no JSON
    ('[{"statement": "The deploy did it", "category": "deploy", "confidence": 7, '
     '"evidence": ["S5"]}]'),  # confidence out of range
    '[{"statement": "The deploy did it", "confidence": 0.5, "evidence": ["S5"]',  # broken
    ('[{"statement": "what probably caused it, in one sentence", "category": "x", '
     '"confidence": 0.7, "evidence": ["S1"]}]'),  # the prompt's example copied
])
def test_invalid_model_output_falls_back_to_grounded(demo_copilot, snap, answer) -> None:
    demo_copilot.llm = EchoLLM(answer)
    result = demo_copilot.run(RootCauses(), snap)
    assert result.degraded and result.backend == "grounded"
    assert "validat" in (result.reason or "")
    deploy = f"change:{_change(snap, 'checkout-api').id}"
    assert deploy in result.hypotheses[0].citations


# -- runbooks ----------------------------------------------------------------------------------


def test_runbooks_for_the_demo_incident(demo_copilot, snap) -> None:
    task = Runbooks()
    result = demo_copilot.run(task, snap)
    ids = [r.doc_id for r in result.recommendations]
    assert set(ids[:2]) == {"rb-checkout-high-error-rate", "rb-ledger-db-connections-saturated"}
    allowed = _evidence(demo_copilot, task, snap)
    for rec in result.recommendations[:2]:
        alert = "CheckoutHighErrorRate" if "checkout" in rec.doc_id \
            else "LedgerDBConnectionsSaturated"
        assert f"declares alert {alert}" in rec.reason and "matches:" in rec.reason
        assert rec.sections and all(s.steps for s in rec.sections)
        assert rec.source.endswith(".md") and rec.supported
        assert {f"chunk:{s.chunk_id}" for s in rec.sections} <= set(rec.citations) <= allowed
    ledger = result.recommendations[ids.index("rb-ledger-db-connections-saturated")]
    steps = " ".join(step for s in ledger.sections for step in s.steps)
    assert "pg_stat_activity" in steps or "pg_terminate_backend" in steps
    assert {s.id for s in result.sources} <= allowed
    assert "rb-ledger-db-connections-saturated" in result.answer


def test_runbooks_for_one_alert_put_its_runbook_first(demo_copilot) -> None:
    alert = _alert_payload(1)
    assert alert["labels"]["alertname"] == "LedgerDBConnectionsSaturated"
    alert["annotations"].pop("runbook_url")  # the match must come from the content
    result = recommend_for_alert(demo_copilot, alert)
    first = result.recommendations[0]
    assert first.doc_id == "rb-ledger-db-connections-saturated" and result.incident_id is None
    assert "declares alert LedgerDBConnectionsSaturated" in first.reason
    assert "covers service ledger-db" in first.reason
    assert any(s.heading.lower().startswith("mitigation") and s.steps for s in first.sections)
    same = demo_copilot.run(Runbooks(k=3), snapshot_from_alert(alert))
    assert [r.doc_id for r in same.recommendations] == [r.doc_id for r in result.recommendations][:3]


def test_steps_come_from_lists_or_code_blocks() -> None:
    assert steps_of("Intro.\n\n1. Scale down the worker\n   with care.\n2. Kill idle backends") \
        == ["Scale down the worker with care.", "Kill idle backends"]
    assert steps_of("Who holds them:\n\n```bash\n# comment\nkubectl get pods -n db\n```\n") \
        == ["kubectl get pods -n db"]
    assert steps_of("Just prose, no steps.") == []


def test_model_picks_runbooks_in_its_order_among_candidates(demo_copilot, snap) -> None:
    task = Runbooks()
    demo_copilot.llm = EchoLLM("")
    demo_copilot.llm.context_window = 8192  # a served model: every candidate fits
    prep = demo_copilot.prepare(task, snap)
    first_ref: dict[str, str] = {}
    for ref, cid in prep.refs.items():
        if cid.startswith("chunk:rb-"):
            first_ref.setdefault(cid.split("::")[0].removeprefix("chunk:"), ref)
    assert {"rb-checkout-high-error-rate", "rb-ledger-db-connections-saturated"} <= set(first_ref)
    echo = EchoLLM(f"S999: not a candidate\n"
                   f"{first_ref['rb-ledger-db-connections-saturated']}: ledger-db is saturated\n"
                   f"- {first_ref['rb-checkout-high-error-rate']}: checkout returns 5xx")
    echo.context_window = 8192
    demo_copilot.llm = echo
    result = demo_copilot.run(task, snap)
    assert result.backend == "echo" and not result.degraded
    assert "Candidate runbooks:" in echo.calls[0][-1].content
    docs = [r.doc_id for r in result.recommendations]
    assert docs[:2] == ["rb-ledger-db-connections-saturated", "rb-checkout-high-error-rate"]
    # the candidates the model passed over follow, once each, with the rules' reasons
    assert len(docs) == len(set(docs)) > 2
    assert all(r.reason.startswith(("declares", "covers", "matches", "retrieved"))
               for r in result.recommendations[2:]), [r.reason for r in result.recommendations]
    assert result.recommendations[0].reason == "ledger-db is saturated"
    assert all(r.citations and r.supported for r in result.recommendations)


def test_model_choosing_no_candidate_falls_back(demo_copilot, snap) -> None:
    demo_copilot.llm = EchoLLM("I would look at the dashboards first.")
    result = demo_copilot.run(Runbooks(), snap)
    assert result.degraded and "validate" in (result.reason or "")
    assert result.recommendations[0].reason.startswith("declares alert")



def test_a_model_not_asked_to_rank_leaves_runbooks_to_the_rules(demo_copilot, snap) -> None:
    """COPILOT_LLM_RANKS off (the local default): the runbook task answers from the rules
    without calling the model, says so, and is not degraded; tasks that write text still
    ask the model."""
    from copilot.tasks.summary import Summary

    grounded = demo_copilot.run(Runbooks(), snap)
    echo = EchoLLM("S1: anything")
    echo.ranks = False
    demo_copilot.llm = echo
    result = demo_copilot.run(Runbooks(), snap)
    assert echo.calls == []
    assert result.backend == "grounded" and not result.degraded
    assert "not asked to rank" in (result.reason or "") and "COPILOT_LLM_RANKS" in result.reason
    assert [r.doc_id for r in result.recommendations] == \
        [r.doc_id for r in grounded.recommendations]
    streamed = list(demo_copilot.stream(Runbooks(), snap))
    assert echo.calls == [] and streamed[-1]["result"].recommendations[0].doc_id == \
        grounded.recommendations[0].doc_id
    demo_copilot.run(Summary(), snap)
    assert len(echo.calls) == 1  # a text task still asks the model


def test_who_ranks_follows_the_backend_and_the_setting(monkeypatch) -> None:
    from copilot.config import Settings
    from copilot.llm import factory

    class Fake:
        def __init__(self, path, *, n_ctx, ranks):
            self.ranks = ranks

    monkeypatch.setattr("copilot.llm.local.LocalLLM", Fake)
    factory._local.cache_clear()
    try:
        assert factory.build_llm(Settings(llm_backend="local")).ranks is False
        assert factory.build_llm(Settings(llm_backend="local", llm_ranks=True)).ranks is True
    finally:
        factory._local.cache_clear()
    url = "http://127.0.0.1:9/v1"
    assert factory.build_llm(Settings(llm_backend="openai", openai_base_url=url)).ranks is True
    assert factory.build_llm(Settings(llm_backend="openai", openai_base_url=url,
                                      llm_ranks=False)).ranks is False
