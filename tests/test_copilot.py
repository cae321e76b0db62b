"""The runner and the chat task on the real demo data: grounded answers with citations, the
polite refusal, streaming, fallback when a model fails, times out or answers garbage, citation
validation, and the three backends (grounded, local in process, OpenAI-compatible server)."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from copilot.config import Settings
from copilot.context import ChangeFact
from copilot.errors import ConfigError
from copilot.llm.base import EchoLLM
from copilot.llm.factory import build_llm
from copilot.llm.openai_backend import OpenAICompatibleLLM
from copilot.runner import Copilot
from copilot.tasks.chat import Chat
from prompts.budget import ContextItem
from tests.servers import garbage_server, recording_proxy, slow_server


@pytest.fixture
def snap(demo_copilot, demo_env):  # type: ignore[no-untyped-def]
    return demo_copilot.snapshot(demo_env[2])


def _evidence_ids(copilot: Copilot, task: Chat, snap) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.id for i in copilot.prepare(task, snap).packed.items}


def test_grounded_chat_answers_what_changed_with_the_culprit_first(demo_copilot, snap) -> None:
    task = Chat("What changed shortly before the errors started?")
    result = demo_copilot.run(task, snap)
    deploy = next(c for c in snap.changes if c.version == "2.84.0")
    assert result.answered and not result.degraded and result.backend == "grounded"
    assert result.lines[0].citations == [f"change:{deploy.id}"]
    assert "2.84.0" in result.lines[0].text and "min before the first alert" in result.lines[0].text
    assert f"[change:{deploy.id}]" in result.answer
    assert {s.id for s in result.sources} <= _evidence_ids(demo_copilot, task, snap)
    assert all(line.supported and line.citations for line in result.lines)


def test_grounded_chat_cites_runbook_passages_for_a_how_to_question(demo_copilot, snap) -> None:
    result = demo_copilot.run(Chat("How do I see the PgBouncer pools?"), snap)
    assert result.answered
    assert any("SHOW POOLS" in line.text for line in result.lines)
    runbook = [s for s in result.sources if s.kind == "runbook"]
    assert runbook and runbook[0].source.endswith(".md") and "SHOW POOLS" in "".join(
        s.snippet for s in runbook) + "".join(line.text for line in result.lines)


def test_chat_says_the_context_does_not_say(demo_copilot, snap) -> None:
    for question in ("What is the CEO's favourite colour?",
                     "Which Kubernetes version does the mainframe billing cluster run?"):
        result = demo_copilot.run(Chat(question), snap)
        assert not result.answered and "does not say" in result.answer
        assert result.sources == [] and result.lines == []


def test_chat_roles_and_follow_up_use_the_conversation(demo_copilot, snap) -> None:
    result = demo_copilot.run(Chat("Who is the incident commander?"), snap)
    assert "No commander" in result.answer and result.lines[-1].citations == [snap.ref]
    named = dataclasses.replace(snap, commander="Dana Whitfield")
    assert "Dana Whitfield" in demo_copilot.run(Chat("Who is the commander?"), named).answer
    follow = Chat("and the logs?", history=[("user", "What errors do the logs show?"),
                                            ("assistant", "Pool timeouts [pattern:1]")])
    assert follow.history()[0] == ("user", "What errors do the logs show?")
    result = demo_copilot.run(follow, snap)
    assert result.answered and all(c.startswith("pattern:") for c in result.lines[0].citations)


def test_grounded_stream_is_token_by_token_then_final(demo_copilot, snap) -> None:
    events = list(demo_copilot.stream(Chat("What do the logs show?"), snap))
    tokens = [e["text"] for e in events if e["type"] == "token"]
    final = events[-1]
    assert len(tokens) > 10 and final["type"] == "final" and final["replace"] is False
    assert "".join(tokens) == final["result"].answer


def test_model_answer_citations_are_validated(demo_copilot, snap) -> None:
    demo_copilot.llm = EchoLLM("")
    question = "what is happening?"
    refs = demo_copilot.prepare(Chat(question), snap).refs
    pool = next(ref for ref, cid in refs.items() if cid == f"alert:{snap.alerts[0].id}")
    demo_copilot.llm.answer = (
        f"The checkout-api 5xx ratio is far above threshold, top error class db_pool_timeout "
        f"[{pool}]. "
        "The incident is SEV1 and investigating [S1]. The moon is involved [S999]. "
        "Quarterly revenue doubled last year [S1].")
    result = demo_copilot.run(Chat(question), snap)
    assert result.backend == "echo" and not result.degraded
    assert result.dropped_citations == ["S999"]
    first, status, moon, revenue = result.lines
    assert first.supported and first.citations == [refs[pool]] and status.supported
    assert moon.citations == [] and not moon.supported  # cited an id not in the context
    assert revenue.citations == ["incident:1"] and not revenue.supported  # S1 does not say it
    assert f"{first.text} [{refs[pool]}]" in result.answer and "[S1]" not in result.answer
    # mostly unsupported: the whole answer is rejected for the grounded one
    demo_copilot.llm.answer += " Nothing else is known. The sky is green [S1]."
    result = demo_copilot.run(Chat(question), snap)
    assert result.degraded and "only 2 of the 6 sentences are supported" in (result.reason or "")


@pytest.mark.parametrize("llm,reason", [
    (EchoLLM(fail="HTTP 500: upstream down"), "model error: HTTP 500"),
    (EchoLLM(""), "did not validate"),
    (EchoLLM("Everything is fine, trust me."), "cites nothing"),
])
def test_failing_model_falls_back_to_grounded(demo_copilot, snap, llm, reason) -> None:
    demo_copilot.llm = llm
    result = demo_copilot.run(Chat("What changed before the first alert?"), snap)
    assert result.degraded and reason in (result.reason or "")
    assert result.backend == "grounded" and "2.84.0" in result.answer
    events = list(demo_copilot.stream(Chat("What changed before the first alert?"), snap))
    assert events[-1]["result"].degraded and "2.84.0" in events[-1]["result"].answer


def test_backend_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert build_llm(Settings(data_dir=tmp_path)) is None  # grounded is the default
    assert Settings(data_dir=tmp_path).allow_remote_llm is False  # the test session's default
    with pytest.raises(ConfigError, match="not on loopback"):
        build_llm(Settings(data_dir=tmp_path, llm_backend="openai", openai_api_key="sk-x"))
    with pytest.raises(ConfigError, match="COPILOT_OPENAI_API_KEY"):
        build_llm(Settings(data_dir=tmp_path, llm_backend="openai", allow_remote_llm=True))
    llm = build_llm(Settings(data_dir=tmp_path, llm_backend="openai",
                             openai_base_url="http://127.0.0.1:9/v1", openai_model="m"))
    assert isinstance(llm, OpenAICompatibleLLM) and llm.external


@pytest.mark.parametrize("make_server", [lambda: slow_server(30), garbage_server])
def test_hung_or_garbage_endpoint_is_answered_degraded_within_the_timeout(
        demo_copilot, snap, make_server) -> None:  # type: ignore[no-untyped-def]
    with make_server() as server:
        demo_copilot.llm = OpenAICompatibleLLM(base_url=server.url, model="m", api_key=None,
                                               timeout=2, retries=0)
        started = time.monotonic()
        result = demo_copilot.run(Chat("What changed before the first alert?"), snap)
        elapsed = time.monotonic() - started
    assert result.degraded and result.reason and "2.84.0" in result.answer
    assert elapsed < 6, elapsed


def test_local_model_answers_in_process(demo_copilot, snap, gguf) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.llm = build_llm(demo_copilot.settings, backend="local")
    result = demo_copilot.run(Chat("What changed before the errors started?"), snap)
    assert result.timings.model_ms > 0 and result.timings.service_ms > 0
    # A 135M model may or may not cite correctly: either its cited answer is kept or the
    # grounded answer stands in, marked degraded, with the reason; never an uncited answer.
    if result.degraded:
        assert result.backend == "grounded" and result.reason
    else:
        assert result.backend.startswith("local:") and any(line.supported for line in result.lines)


def _canary_snapshot(snap):  # type: ignore[no-untyped-def]
    """The demo incident, trimmed to fit a 2k window, with secrets and identifiers planted in
    an alert, a log pattern and a change."""
    alert = dataclasses.replace(snap.alerts[0], annotations={
        **snap.alerts[0].annotations,
        "description": "pool exhausted on ledger-db-0.lumenfield.internal (10.44.7.19); "
                       "dsn postgres://svc_checkout:Xy7-canary-pw@ledger-db:5432/ledger; "
                       "contact oncall-canary@lumenfield.com"})
    pattern = dataclasses.replace(snap.patterns[0], sample=(
        "ERROR pool timeout token=sk_live_CANARY0123456789abcdef host=pg-7.corp"))
    change = ChangeFact(id=999, kind="config", service="checkout-api", at=snap.first_alert_at,
                        description="rotated AKIACANARY0123456789 and "
                                    "Authorization: Bearer eyJcanaryTOKENvalue123456")
    return dataclasses.replace(snap, alerts=[alert], patterns=[pattern], changes=[change],
                               timeline=[])


class PlantedChat(Chat):
    """Chat whose evidence also holds a runbook passage with planted secrets."""

    def evidence(self, snap, retriever):  # type: ignore[no-untyped-def]
        runbook = ContextItem("chunk:rb-planted::1", "runbook", (
            "Connect with psql -h 10.9.8.7 -U admin password=canary-rb-pass to "
            "db-canary.svc.cluster.local and page runbook-owner-canary@lumenfield.com"),
            title="Planted runbook")
        return [i for i in super().evidence(snap, retriever) if i.kind != "runbook"] + [runbook]


CANARIES = ["ledger-db-0.lumenfield.internal", "10.44.7.19", "Xy7-canary-pw",
            "oncall-canary@lumenfield.com", "sk_live_CANARY0123456789abcdef", "pg-7.corp",
            "AKIACANARY0123456789", "eyJcanaryTOKENvalue123456", "10.9.8.7", "canary-rb-pass",
            "db-canary.svc.cluster.local", "runbook-owner-canary@lumenfield.com"]


def test_openai_backend_streams_through_a_real_server_and_no_canary_reaches_it(
        demo_copilot, snap, llama_server) -> None:  # type: ignore[no-untyped-def]
    planted = _canary_snapshot(snap)
    question = "Summarize the alerts, logs, runbook and recent changes"
    # Without redaction every canary would be in the prompt for a 2k-window model (so the
    # test can fail)...
    unredacted = Copilot(demo_copilot.settings, llm=EchoLLM(), retriever=demo_copilot.retriever
                         ).prepare(PlantedChat(question), planted).messages
    assert all(any(c in m.content for m in unredacted) for c in CANARIES)
    # A generous deadline: this test is about what is sent, not about speed on a busy CI box.
    copilot = Copilot(demo_copilot.settings.model_copy(update={"llm_timeout": 300}),
                      retriever=demo_copilot.retriever)
    with recording_proxy(llama_server) as proxy:
        copilot.llm = OpenAICompatibleLLM(base_url=proxy.url, model="smollm2", api_key=None,
                                          timeout=300, retries=0)
        events = list(copilot.stream(PlantedChat(question), planted))
        copilot.run(PlantedChat("Which host and credentials are involved?"), planted)
    tokens = [e for e in events if e["type"] == "token"]
    assert len(tokens) > 3 and events[-1]["type"] == "final", events[-1]["result"].reason
    sent = b"\n".join(proxy.bodies).decode()
    assert len(proxy.bodies) == 2 and all(json.loads(b)["stream"] is True for b in proxy.bodies)
    for canary in CANARIES:  # ...but none reaches the server
        assert canary not in sent, canary
    for kind in ("HOST", "IP", "EMAIL", "TOKEN", "SECRET", "URL_CREDENTIALS", "BEARER"):
        assert f"[{kind}_1]" in sent, kind
    assert all(json.loads(b)["model"] == "smollm2" for b in proxy.bodies)


def test_every_task_prompt_fits_the_model_window_and_reports_what_was_left_out(
        demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    from copilot.tasks.postmortem import Postmortem
    from copilot.tasks.root_causes import RootCauses
    from copilot.tasks.runbooks import Runbooks
    from copilot.tasks.status_update import StatusUpdate
    from copilot.tasks.summary import Summary
    from prompts.budget import count_tokens

    demo_copilot.llm = EchoLLM("x")
    resolved = dataclasses.replace(snap, status="resolved", resolved_at=snap.now,
                                   mitigated_at=snap.now - dt.timedelta(minutes=5))
    for task, s in ((Chat("What changed?"), snap), (RootCauses(), snap), (Runbooks(), snap),
                    (StatusUpdate(stage="investigating"), snap), (Summary(), snap),
                    (Postmortem(), resolved)):
        prep = demo_copilot.prepare(task, s)
        used = sum(count_tokens(m.content) + 4 for m in prep.messages)
        assert used + task.max_tokens <= demo_copilot.llm.context_window * 0.85, task.name
        assert prep.packed.items and prep.packed.left_out, task.name  # the demo overflows 2k
        assert prep.packed.items[0].kind == "incident"  # incident facts are packed first
        result = demo_copilot.run(task, s)
        assert result.left_out == [i.id for i in prep.packed.left_out] or result.degraded
