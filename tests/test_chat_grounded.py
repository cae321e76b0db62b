"""Grounded chat (no model) on a development set of questions about the demo incident and the
demo knowledge base: citation precision, the answered rate and correct refusals, plus unit tests
of the pieces (question reading, segmenting evidence, choosing the answer).

The development set is written here from the demo data (demo/incident, demo/kb) and a few
responders' notes and roles added to the demo snapshot below; it is not the evaluation set."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pytest

from copilot.context import IncidentSnapshot, TimelineFact
from copilot.tasks.answer import (
    CODE,
    NUMBER,
    SECTION_CUES,
    VERSION,
    WHEN,
    WHO,
    about_events,
    about_future,
    compatible,
    expand,
    extract_answer,
    forms,
    named_kinds,
    read_question,
    segments,
    stem,
)
from copilot.tasks.chat import Chat
from prompts.budget import ContextItem

# -- the development set ----------------------------------------------------------------------

UTC = dt.UTC


def _at(hhmm: str) -> dt.datetime:
    h, m = hhmm.split(":")
    return dt.datetime(2026, 11, 27, int(h), int(m), tzinfo=UTC)


# Responders' notes as they would be logged on the timeline during the demo incident.
NOTES = [
    ("14:08", "Ana Ortiz", ("Acknowledged the page. The checkout dashboard shows error_class "
                            "db_pool_timeout on almost every 5xx, the confirm route is the worst.")),
    ("14:11", "Ana Ortiz", ("pg_stat_activity on ledger-db-0 shows 588 connections, 512 of them "
                            "from checkout_api through ledger-pgbouncer.")),
    ("14:13", "Marek Kovacs", ("edge-proxy r1187 looks clean: no 429s or WAF blocks since 09:42, "
                               "ruling it out.")),
    ("14:16", "Ana Ortiz", ("Started the rollback with kubectl -n checkout argo rollouts undo "
                            "checkout-api (2.84.0 back to 2.83.2).")),
    ("14:19", "Sam Lee", ("Posted an investigating notice on status.lumenfield.com for degraded "
                          "checkout.")),
    ("14:24", "Ana Ortiz", ("Rollback complete; ledger-db connections are down to 310 and the "
                            "checkout 5xx ratio is back under 1%.")),
]


def dev_snapshot(snap: IncidentSnapshot) -> IncidentSnapshot:
    """The demo incident with a commander, a comms lead and the responders' notes."""
    notes = [TimelineFact(id=900 + n, at=_at(at), kind="note", actor=actor, text=text)
             for n, (at, actor, text) in enumerate(NOTES, 1)]
    return dataclasses.replace(snap, commander="Ana Ortiz", comms_lead="Sam Lee",
                               timeline=[*snap.timeline, *notes])


@dataclass(frozen=True)
class Case:
    question: str
    support: tuple[str, ...] = ()  # empty: the evidence cannot answer it

    @property
    def answerable(self) -> bool:
        return bool(self.support)


DEV = [
    # the incident's own records
    Case("Who is the incident commander?", ("commander: Ana Ortiz",)),
    Case("Who got paged for this?", ("assignee=Ana Ortiz",)),
    Case("What is the severity of the incident?", ("Severity SEV1",)),
    Case("What changed shortly before the errors started?", ("2.84.0",)),
    Case("Who merged the checkout-api 2.84.0 deploy?", ("jonas.weber",)),
    Case("What did the edge-proxy config push change?", ("450 req/s",)),
    Case("How much was the ledger DB pool per pod raised by the deploy?", ("from 10 to 40",)),
    # alerts: annotations and labels
    Case("What is the checkout-api 5xx ratio?", ("14.6%",)),
    Case("How many connections is ledger-db-0 using?", ("565/600",)),
    Case("Which team owns the LedgerDBConnectionsSaturated alert?",
         ("team=database-reliability",)),
    Case("When did LedgerDBConnectionsSaturated start firing?", ("since 2026-11-27 14:04",)),
    # log patterns and their sample lines
    Case("What does the pool timeout log line say?", ("pool timeout after 30000 ms",)),
    Case("Which pgbouncer error shows up in the logs?", ("too many clients already",)),
    # responders' notes
    Case("What did pg_stat_activity show on ledger-db-0?", ("588 connections",)),
    Case("Was the edge-proxy change ruled out?", ("ruling it out",)),
    Case("What rollback command did Ana run?", ("argo rollouts undo checkout-api",)),
    Case("Where was the investigating notice posted?", ("status.lumenfield.com",)),
    Case("How many ledger-db connections were left after the rollback?", ("down to 310",)),
    # runbooks: steps and commands
    Case("How do I see the PgBouncer pools?", ("SHOW POOLS",)),
    Case("What query shows who holds the connections on ledger-db?",
         ("application_name, state, count(*)",)),
    Case("How do I roll back an Argo rollout that already completed?",
         ("argo rollouts undo <name>",)),
    Case("Should we raise max_connections?", ("Do not raise max_connections",)),
    # postmortems
    Case("How was the earlier ledger-db connection exhaustion resolved?",
         ("Capping invoice-worker's replicas",)),
    Case("How many failed payment confirmations did the March ledger-db connection exhaustion "
         "cause?", ("19,700 failed payment confirmations",)),
    # the data cannot answer these
    Case("What is the CEO's favourite colour?"),
    Case("Which Kubernetes version does the mainframe billing cluster run?"),
    Case("Who approved the 2.84.0 deploy?"),
    Case("Will ledger-db be moved to a larger instance next quarter?"),
    Case("What caused the AWS us-east-1 outage in 2021?"),
    Case("How much revenue did we lose in this incident?"),
    Case("What is the phone number of the database-reliability on-call?"),
    Case("When is the postmortem review meeting scheduled?"),
    Case("Which customers complained about checkout on Twitter?"),
    Case("How many engineers joined the incident bridge call?"),
    Case("What did Google say about the Black Friday outage?"),
]


def source_text(item_text: str, kind: str) -> str:
    """What a citation points at, as the source viewer shows it: a knowledge passage without
    the "title — section" line the evidence item adds."""
    if kind in ("runbook", "postmortem"):
        return item_text.split("\n", 1)[-1]
    return item_text


def score(copilot, snap: IncidentSnapshot, cases: list[Case] = DEV) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The three figures over ``cases``: citation precision (micro, over the distinct ids each
    answer cites), the answered rate on answerable questions and correct refusals."""
    cited = good = answered = refused = 0
    misses: list[str] = []
    for case in cases:
        task = Chat(case.question)
        texts = {i.id: source_text(i.text, i.kind) for i in copilot.prepare(task, snap).packed.items}
        result = copilot.run(task, snap)
        ids = list(dict.fromkeys(c for line in result.lines for c in line.citations))
        if not case.answerable:
            refused += not result.answered
            if result.answered:
                misses.append(f"answered {case.question!r}: {result.answer[:200]}")
            continue
        ok = [c for c in ids if any(s.lower() in texts.get(c, "").lower() for s in case.support)]
        cited += len(ids)
        good += len(ok)
        answered += bool(result.answered and ids)
        if not (result.answered and ids and len(ok) == len(ids)):
            misses.append(f"{case.question!r}: {len(ok)}/{len(ids)} good: {result.answer[:240]}")
    n_answerable = sum(c.answerable for c in cases)
    return {"citation_precision": round(good / max(cited, 1), 3),
            "answered_rate": round(answered / max(n_answerable, 1), 3),
            "correct_refusal_rate": round(refused / max(len(cases) - n_answerable, 1), 3),
            "citations": cited, "misses": misses}


# -- the figures on the development set -------------------------------------------------------

# Floors, not targets: the set is small (24 answerable, 11 unanswerable questions), so one
# question moves a rate by 3 to 9 points. They leave room for about two misses of each kind
# and still fail on a return of the old behaviour (precision 0.32, refusals 0.73: padded answers
# and answers made of loosely related sentences).
MIN_PRECISION = 0.9
MIN_ANSWERED = 0.85
MIN_REFUSALS = 0.8


@pytest.fixture
def dev_snap(demo_copilot, demo_env) -> IncidentSnapshot:  # type: ignore[no-untyped-def]
    return dev_snapshot(demo_copilot.snapshot(demo_env[2]))


def test_dev_set_is_a_third_unanswerable_with_support_for_the_rest() -> None:
    unanswerable = [c for c in DEV if not c.answerable]
    assert 25 <= len(DEV) <= 35 and 0.25 <= len(unanswerable) / len(DEV) <= 0.4


def test_dev_set_figures(demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    figures = score(demo_copilot, dev_snap)
    report = "\n".join(figures["misses"])
    assert figures["citation_precision"] >= MIN_PRECISION, report
    assert figures["answered_rate"] >= MIN_ANSWERED, report
    assert figures["correct_refusal_rate"] >= MIN_REFUSALS, report


# -- answers that show the failure modes the rules guard against ------------------------------


def _ask(copilot, snap, question: str):  # type: ignore[no-untyped-def]
    return copilot.run(Chat(question), snap)


def test_a_specific_change_question_is_not_answered_with_the_list_of_changes(
        demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    edge = next(c for c in dev_snap.changes if c.service == "edge-proxy")
    result = _ask(demo_copilot, dev_snap, "What did the edge-proxy config push change?")
    assert [line.citations for line in result.lines] == [[f"change:{edge.id}"]]
    assert "450 req/s" in result.answer
    # the general question still gets the suspect change first
    suspect = _ask(demo_copilot, dev_snap, "What changed before the first alert?")
    assert "2.84.0" in suspect.lines[0].text and suspect.lines[0].citations[0].startswith(
        "change:")


def test_a_who_question_that_is_not_about_roles_does_not_get_the_roles(
        demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    result = _ask(demo_copilot, dev_snap, "Who posted the status page notice?")
    assert result.answered and "Sam Lee" in result.answer and "commander" not in result.answer
    assert all(c.startswith("timeline:") for line in result.lines for c in line.citations)


def test_one_answer_one_source(demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    """A question that one record answers is answered from that record alone, not padded
    with sentences that share its words (a past incident's 5xx ratio, another note)."""
    for question, expected in (("What is the checkout-api 5xx ratio?", "alert:"),
                               ("What did pg_stat_activity show on ledger-db-0?", "timeline:"),
                               ("How do I see the PgBouncer pools?", "chunk:rb-ledger-db")):
        result = _ask(demo_copilot, dev_snap, question)
        cited = {c for line in result.lines for c in line.citations}
        assert len(cited) == 1 and next(iter(cited)).startswith(expected), (question, cited)


def test_commands_and_identifiers_are_answerable(demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    result = _ask(demo_copilot, dev_snap, "What rollback command did Ana run?")
    assert "argo rollouts undo checkout-api" in result.answer
    result = _ask(demo_copilot, dev_snap, "How do I roll back an Argo rollout that already "
                                          "completed?")
    assert "`kubectl -n <ns> argo rollouts undo <name>`" in result.answer


def test_unrecorded_things_are_refused(demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    for question in ("Who approved the 2.84.0 deploy?",  # merged is recorded, approved is not
                     "What is the phone number of the database-reliability on-call?",
                     "Will ledger-db be moved to a larger instance next quarter?",
                     "What caused the AWS us-east-1 outage in 2021?"):
        result = _ask(demo_copilot, dev_snap, question)
        assert not result.answered and result.lines == [] and result.sources == [], question


def test_overview_question_gets_the_incident_state(demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    result = _ask(demo_copilot, dev_snap, "What's going on?")
    assert result.answered and result.lines[0].citations == [dev_snap.ref]
    assert dev_snap.severity in result.lines[0].text


def test_a_model_refusal_is_rejected_when_the_rules_find_an_answer(
        demo_copilot, dev_snap) -> None:  # type: ignore[no-untyped-def]
    from copilot.llm.base import EchoLLM

    demo_copilot.llm = EchoLLM("The context does not say.")
    # the model's 2k window holds the incident facts and the first notes, not the alerts
    result = _ask(demo_copilot, dev_snap, "What did pg_stat_activity show on ledger-db-0?")
    assert result.degraded and "context has one" in (result.reason or "")
    assert "588 connections" in result.answer
    result = _ask(demo_copilot, dev_snap, "What is the CEO's favourite colour?")
    assert not result.degraded and not result.answered


# -- unit tests of the pieces ------------------------------------------------------------------


def test_stemming_joins_the_forms_of_a_word_and_leaves_identifiers() -> None:
    assert stem("ruling") == stem("ruled") == stem("rule")
    assert stem("paged") == stem("pages") == stem("page")
    assert stem("stopped") == "stop" and stem("replies") == "reply"
    assert stem("503s") == "503" and stem("2.84.0") == "2.84.0"
    assert compatible(stem("mitigated"), stem("mitigation"))
    assert compatible("config", stem("configuration"))
    assert not compatible("post", "postgres")  # too short a common start
    assert not compatible(stem("approved"), stem("approach"))
    assert read_question("How was it resolved?").slots[0].stems >= {"resolv", "resolution"}
    assert not compatible("ledger", stem("ledgerdbconnectionssaturated"))


def test_identifiers_match_whole_and_by_parts() -> None:
    assert {"ledger-db-0", "ledger", "db", "ledgerdb0"} <= set(forms("ledger-db-0"))
    assert {"on-call", "call", "oncall"} <= set(forms("on-call"))
    assert "pg_stat_activity" in forms("pg_stat_activity")
    camel = forms("LedgerDBConnectionsSaturated")
    assert camel[0] == stem("ledgerdbconnectionssaturated")
    assert all(f.startswith("~") for f in camel[1:]) and "~connection" in camel


def test_reading_a_question() -> None:
    q = read_question("When did LedgerDBConnectionsSaturated start firing?")
    assert q.wants == {WHEN} and "alert" in q.intents
    assert [s.word for s in q.slots] == ["ledgerdbconnectionssaturated", "firing"]  # onset
    assert q.slots[0].name and not q.slots[1].name
    assert read_question("Who approved the deploy?").predicate == "approved"
    assert read_question("Who is the commander?").predicate is None
    assert read_question("Did the worker team approve the change?").predicate == "approve"
    assert read_question("Was the edge-proxy change ruled out?").predicate == "ruled"
    assert read_question("What is the phone number of the on-call?").focus == ["phone"]
    assert read_question("How many 503s were returned?").wants == {NUMBER}
    assert read_question("Which command shows the pools?").wants == {CODE}
    assert read_question("Which version of checkout-api is running?").wants == {VERSION}
    assert WHO in read_question("Who merged it?").wants
    # "when should we" asks for a condition, not a time
    assert WHEN not in read_question("When should we post on the status page?").wants
    # asking words are not content
    assert [s.word for s in read_question("What does the log line say exactly?").slots] == [
        "log", "line"]


def test_future_questions() -> None:
    assert about_future("Will ledger-db be resized next quarter?")
    assert about_future("When will the fix be deployed?")
    assert not about_future("What will happen if we raise max_connections?")
    assert not about_future("What changed before the alert?")


RUNBOOK = ContextItem("chunk:rb-x::1", "runbook", """Pool saturated — Diagnosis
Who holds the connections:

```bash
kubectl -n db exec pg-0 -- psql -c "
SELECT usename, count(*)
FROM pg_stat_activity GROUP BY 1;"
# the pooler's own view
kubectl -n db exec deploy/pooler -- psql -p 6432 -c 'SHOW POOLS;'
```

Look for one application dominating. Restart nothing yet.

1. Scale the top consumer down: `kubectl scale deploy/worker --replicas=4`
   and pause its autoscaler.
2. Do not raise max_connections as a first response.""", title="Pool saturated",
                      meta={"services": ["pg"], "date": "2025-03-14"})


def test_a_runbook_passage_is_cut_into_commands_steps_and_sentences() -> None:
    texts = [s.text for s in segments(RUNBOOK)]
    query, pools = [t for t in texts if t.startswith("Who holds the connections")]
    assert "SELECT usename, count(*) FROM pg_stat_activity GROUP BY 1;" in query  # one command
    assert "the pooler's own view" in pools and "`kubectl -n db exec deploy/pooler" in pools
    assert "Look for one application dominating." in texts
    assert any(t.startswith("Scale the top consumer down") and t.endswith("its autoscaler.")
               for t in texts)  # a list item with its continuation line
    code = {s.text: s.code for s in segments(RUNBOOK)}
    assert code[query] and not code["Look for one application dominating."]


def test_incident_records_are_cut_into_labelled_pieces() -> None:
    alert = ContextItem("alert:1", "alert", (
        "DiskFull (firing, severity critical, service store) since 2026-01-02 03:04 UTC. "
        "store-0 is at 97%. Writes fail soon. Labels: severity=critical, team=storage, "
        "__group_key__={}."), title="DiskFull")
    texts = [s.text for s in segments(alert)]
    assert texts == [("DiskFull (firing, severity critical, service store) since 2026-01-02 "
                     "03:04 UTC"), "DiskFull: store-0 is at 97%.", "DiskFull: Writes fail soon.",
                     "DiskFull: severity=critical", "DiskFull: team=storage"]
    note = ContextItem("timeline:9", "timeline", "2026-01-02 03:10 UTC [note] Kim Park: Moved "
                                                 "the WAL to a new volume.")
    assert [s.text for s in segments(note)] == [("03:10 UTC, Kim Park: Moved the WAL to a new "
                                                "volume.")]
    change = ContextItem("change:4", "change", "deploy of store 1.2.3 at 2026-01-02 02:00 UTC "
                         "(64 min before the first alert) by kim@x.io: Bigger WAL segments.")
    assert [s.text for s in segments(change)] == [
        ("Deploy of store 1.2.3 at 2026-01-02 02:00 UTC (64 min before the first alert) by "
        "kim@x.io"), "Deploy of store 1.2.3: Bigger WAL segments."]


def _items() -> list[ContextItem]:
    return [
        ContextItem("incident:5", "incident", "DiskFull on store. Severity SEV2, status "
                    "investigating. Services: store. commander: Kim Park."),
        ContextItem("alert:1", "alert", "DiskFull (firing, severity critical, service store) "
                    "since 2026-01-02 03:04 UTC. store-0 is at 97% of its 500 GiB volume. "
                    "Labels: team=storage.", title="DiskFull"),
        ContextItem("timeline:9", "timeline", "2026-01-02 03:10 UTC [note] Kim Park: Moved the "
                    "WAL to a new volume; store-0 at 61% after."),
        ContextItem("change:4", "change", "deploy of store 1.2.3 at 2026-01-02 02:00 UTC "
                    "(64 min before the first alert) by kim@x.io: Bigger WAL segments."),
        RUNBOOK,
    ]


def _cited(question: str) -> list[str] | None:
    found = extract_answer(question, _items(), people=["Kim Park"])
    return None if found is None else [p.segment.item.id for p in found.pieces]


def test_extractive_answers_cite_the_item_that_says_it() -> None:
    assert _cited("Which team owns DiskFull?") == ["alert:1"]
    assert _cited("What did Kim Park move the WAL to?") == ["timeline:9"]
    assert _cited("Who deployed store 1.2.3?") == ["change:4"]
    assert _cited("How do I see the pooler pools?") == ["chunk:rb-x::1"]
    assert _cited("When was the WAL moved?") == ["timeline:9"]


def test_extractive_refusals() -> None:
    assert _cited("What is the CEO's favourite colour?") is None  # nothing matches
    assert _cited("What did Datadog report about store-0?") is None  # a name never mentioned
    assert _cited("Who approved the store 1.2.3 deploy?") is None  # deployed, not approved
    assert _cited("What is the volume's IOPS limit?") is None  # the thing asked is absent
    assert _cited("When did the disk vendor call?") is None  # no piece with a time says it


def _small_incident(**changes) -> IncidentSnapshot:  # type: ignore[no-untyped-def]
    from copilot.context import AlertFact, ChangeFact, PatternFact

    at = dt.datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    snap = IncidentSnapshot(
        id=5, title="DiskFull on store", severity="SEV2", services=["store"], started_at=at,
        alerts=[AlertFact(id=1, name="DiskFull", service="store", source="pagerduty",
                          labels={"assignee": "Kim Park"}, starts_at=at)],
        changes=[ChangeFact(id=4, kind="deploy", service="store", version="1.2.3",
                            at=at - dt.timedelta(minutes=30), author="lee@x.io",
                            description="Bigger WAL segments.")],
        patterns=[PatternFact(id=7, template="write failed: no space left on <*>", count=40,
                              level="ERROR", sample="write failed: no space left on /data")],
        timeline=[TimelineFact(id=9, at=at + dt.timedelta(minutes=6), kind="note",
                               actor="Kim Park", text="Users are being logged out of the "
                                                      "dashboard; posted on the status page.")])
    return dataclasses.replace(snap, **changes)


def _grounded(question: str, snap: IncidentSnapshot):  # type: ignore[no-untyped-def]
    from copilot.context import incident_items

    return Chat(question).grounded(snap, incident_items(snap))


def test_direct_answers_fire_on_general_questions_only() -> None:
    snap = _small_incident()
    assert _grounded("What changed before the first alert?", snap).lines[0].citations == [
        "change:4"]
    assert _grounded("What do the logs show?", snap).lines[0].citations == ["pattern:7"]
    assert _grounded("Who got paged?", snap).lines[0].citations == ["alert:1"]
    assert _grounded("What is the severity?", snap).lines[0].text == "The incident is SEV2."
    assert _grounded("Who is the comms lead?", snap).lines[0].text == (
        "No comms lead is assigned yet.")
    # these name something else: the answer comes from the piece that says it
    assert _grounded("Who posted on the status page?", snap).lines[0].citations == [
        "timeline:9"]
    assert _grounded("Were users logged out?", snap).lines[0].citations == ["timeline:9"]
    assert _grounded("Who deployed 1.2.3?", snap).lines[0].text.startswith("Deploy of store")
    assert not _grounded("What per-role limits exist?", snap).answered


def test_a_general_question_about_a_record_the_incident_lacks_is_refused() -> None:
    bare = _small_incident(changes=[], patterns=[])
    for question in ("What changed before the first alert?", "What errors do the logs show?"):
        result = _grounded(question, bare)
        assert not result.answered and result.lines == [], question


def test_without_error_lines_the_logs_answer_gives_the_warnings() -> None:
    from copilot.context import PatternFact

    warn = PatternFact(id=8, template="slow write took <*> ms", count=90, baseline_count=10,
                       level="WARN")
    result = _grounded("What errors do the logs show?", _small_incident(patterns=[warn]))
    assert result.lines[0].citations == ["pattern:8"]


def test_a_contraction_reads_as_its_long_form() -> None:
    from copilot.tasks.answer import expand

    assert expand("Who's running this incident?") == "Who is running this incident?"
    assert expand("What’s the error rate? It's high") == "What is the error rate? It is high"
    result = _grounded("Who's running this incident?", _small_incident(commander="Kim Park"))
    assert [(line.text, line.citations) for line in result.lines] == [
        ("The commander is Kim Park.", ["incident:5"])]


def test_a_who_question_is_not_answered_by_a_piece_that_names_nobody() -> None:
    items = [ContextItem("alert:2", "alert", "ProbeFailed (firing, severity warning, service "
                         "edge) since 2026-01-02 03:04 UTC. The probe running on prober-1 "
                         "sees an expired certificate.", title="ProbeFailed")]
    assert extract_answer("Who is running the probe?", items, people=["Kim Park"]) is None
    named = [*items, ContextItem("timeline:3", "timeline", "2026-01-02 03:06 UTC [note] "
                                 "Kim Park: I am running the probe by hand from bastion-1.")]
    found = extract_answer("Who is running the probe?", named, people=["Kim Park"])
    assert found is not None and found.pieces[0].segment.item.id == "timeline:3"


def test_a_named_document_kind_limits_the_sources() -> None:
    assert _cited("Runbook steps for the pooler pools?") == ["chunk:rb-x::1"]
    # the alert matches the words, but the question asked for a runbook, and none says it
    assert _cited("What does the runbook say about DiskFull on store-0 at 97%?") is None
    assert _cited("What is store-0 at on DiskFull?") == ["alert:1"]


def test_a_hyphenated_name_before_version_asks_for_a_version() -> None:
    assert read_question("Which invoice-worker version is running now?").wants == {VERSION}


def test_onset_and_now_questions_prefer_the_earliest_and_latest_record() -> None:
    items = [
        ContextItem("timeline:1", "timeline", "2026-01-02 03:20 UTC [note] Kim Park: "
                    "cache-0 is evicting keys at 1,400 per second."),
        ContextItem("timeline:2", "timeline", "2026-01-02 03:12 UTC [note] Lee Chan: "
                    "cache-0 started evicting keys after the import job."),
        ContextItem("timeline:3", "timeline", "2026-01-02 02:00 UTC [note] Kim Park: "
                    "worker 1.4.0 is running on every pod."),
        ContextItem("timeline:4", "timeline", "2026-01-02 03:30 UTC [note] Lee Chan: "
                    "rolled back: worker 1.3.9 is running on every pod."),
    ]
    first = extract_answer("When did cache-0 start evicting keys?", items)
    assert first is not None and first.pieces[0].segment.item.id == "timeline:2"
    now = extract_answer("Which worker version is running now?", items)
    assert now is not None and now.pieces[0].segment.item.id == "timeline:4"


def _top(question: str, items: list[ContextItem], **kwargs: object) -> str | None:
    """The item the answer's first piece comes from, or None for no answer."""
    answer = extract_answer(question, items, **kwargs)  # type: ignore[arg-type]
    return answer.pieces[0].segment.item.id if answer else None


def test_irregular_past_forms_read_as_their_verb() -> None:
    assert stem("ran") == stem("running") == stem("runs")
    assert stem("caught") == stem("catching") and stem("wrote") == stem("writes")
    assert stem("left") == "left"  # a direction as often as a verb: not mapped
    items = [ContextItem("timeline:1", "timeline", "2026-01-02 03:20 UTC [note] Kim Park: "
                         "payments-db-1 is running out of inodes."),
             ContextItem("timeline:2", "timeline", "2026-01-02 03:22 UTC [note] Lee Chan: "
                         "the cache warmed up again.")]
    assert _top("Which database ran out of inodes?", items) == "timeline:1"


def test_asking_words_are_not_required_in_the_answer() -> None:
    """"When did X start?" is answered by X's earliest record, which need not say "start";
    "what is X running with?" by what X uses; "what are users reporting?" by what they see."""
    onset = read_question("When did the queue start backing up?")
    assert [s.word for s in onset.slots] == ["queue", "backing"]
    assert "start" in [s.word for s in read_question("Who restarted the start job?").slots]
    items = [ContextItem("alert:1", "alert", "QueueBacklog (firing, service mailer) since "
                         "2026-01-02 03:10 UTC. The mailer queue is backing up: 40,000 queued."),
             ContextItem("timeline:2", "timeline", "2026-01-02 03:25 UTC [note] Kim Park: "
                         "queue still backing up, 52,000 queued.")]
    assert _top("When did the mailer queue start backing up?", items) == "alert:1"
    config = [ContextItem("change:1", "change", "Config of search-api: thread pool raised to "
                          "64 threads, timeout 2 s."),
              ContextItem("timeline:1", "timeline", "2026-01-02 03:25 UTC [note] Kim Park: "
                          "search-api pods restarted twice.")]
    assert _top("How many threads is search-api running with?", config) == "change:1"
    errors = [ContextItem("pattern:1", "log_pattern", "ERROR pattern, 40 lines: gateway "
                          "handshake errors from browsers: peer sent UNKNOWN_CA")]
    seen = extract_answer("What are browsers reporting in the gateway handshake errors?", errors)
    assert seen is not None and "UNKNOWN_CA" in seen.pieces[0].segment.text


def test_a_limit_is_a_maximum_and_an_expectation_an_estimate() -> None:
    items = [ContextItem("alert:1", "alert", "QueueDepth: orders-queue holds 9,800 of "
                         "max_depth 10,000."),
             ContextItem("timeline:1", "timeline", "2026-01-02 03:25 UTC [note] Kim Park: "
                         "ETA for the reindex is 04:10 UTC."),
             ContextItem("timeline:2", "timeline", "2026-01-02 03:27 UTC [note] Lee Chan: "
                         "orders-queue consumers restarted.")]
    assert _top("What is the orders-queue depth limit?", items) == "alert:1"
    assert _top("When do we expect the reindex to finish?", items) == "timeline:1"


def test_contractions_compounds_and_log_questions() -> None:
    assert [s.word for s in read_question("What's the command we're using to undo it?").slots] \
        == ["undo"]  # no stray "re" ("command" names the kind of answer)
    assert "can't" not in expand("we can't restart") and "cannot" in expand("we can't restart")
    assert {"roll", "back"} <= set(forms("rollback"))
    items = [ContextItem("timeline:1", "timeline", "2026-01-02 03:30 UTC [note] Kim Park: "
                         "Rollback of search-api to 4.1.0 done with argocd app rollback "
                         "search-api 12."),
             ContextItem("change:1", "change", "Deploy of search-api 4.2.0: new ranking.")]
    assert _top("Which version did we roll search-api back to?", items) == "timeline:1"
    logs = [ContextItem("timeline:1", "timeline", "2026-01-02 03:30 UTC [note] Kim Park: "
                        "mailer pods fail to send email, two pods affected."),
            ContextItem("pattern:1", "log_pattern", "ERROR pattern, 30 lines: mailer send "
                        "failed for email: disk quota exceeded")]
    assert _top("What error are the mailer pods logging when email sends fail?",
                logs) == "pattern:1"


def test_the_future_is_answered_by_a_plan_and_done_by_a_record_of_it() -> None:
    """"When will X?" needs a stated estimate with its own time (a note's stamp is when it was
    written); "has X been merged yet?" is not answered by X as a plan."""
    items = [ContextItem("timeline:1", "timeline", "01:05 UTC, Kim Park: Estimated catch-up "
                         "of the export backlog around 02:40 UTC."),
             ContextItem("timeline:2", "timeline", "01:10 UTC, Lee Chan: Next: Kim adds an "
                         "alert on the export backlog age."),
             ContextItem("timeline:3", "timeline", "01:20 UTC, Lee Chan: export backlog "
                         "shrinking, 40,000 left.")]
    assert _top("When will the export backlog catch up?", items, future=True) == "timeline:1"
    assert extract_answer("When will Kim add the export backlog alert?", items,
                          future=True) is None  # planned, but no time stated
    assert extract_answer("Has the export backlog alert been added yet?", items) is None
    assert _grounded("When will the export backlog catch up?", _small_incident()) \
        .answered is False  # another incident's records: nothing planned there


def test_hurried_spelling_and_the_words_that_name_the_answer() -> None:
    assert expand("whats the ETA") == "what is the ETA"
    assert [s.word for s in read_question("What are the pods themselves logging?").slots] \
        == ["pods", "logging"]
    build = read_question("Which build of search-api are the pods running?")
    assert build.wants == {VERSION} and [s.word for s in build.slots] == ["search-api", "pods"]
    # a revision id ("r1341") is not a dotted version: no version is demanded of the answer
    assert read_question("Which config revision did we revert to?").wants == set()
    # a symptom word is not a name the record must say: the paging alert answers
    assert _grounded("Who got paged for the 5xx?", _small_incident()).lines[0].citations == [
        "alert:1"]


def _kb(item_id: str, kind: str, title: str, text: str) -> ContextItem:
    return ContextItem(item_id, kind, f"{title} — Notes\n{text}", title=title)


def test_a_numbered_name_is_named_only_in_full_and_an_answer_adds_to_the_question() -> None:
    """ip-10-52-3-14 is not ip-10-52-7-88 though most of its parts match; a record of the
    version the question names does not say which one ran before it."""
    node = [ContextItem("alert:1", "alert", "DiskAlmostFull: root filesystem on ip-10-52-7-88 "
                        "has 7% free.")]
    assert _top("How full is the root filesystem on ip-10-52-3-14?", node) is None
    both = [*node, ContextItem("timeline:2", "timeline", "09:30 UTC, Kim Park: the root "
                               "filesystem on node ip-10-52-3-14 is filling up too, at 81%.")]
    assert _top("How full is the root filesystem on ip-10-52-3-14?", both) == "timeline:2"
    # "other": an answer names another thing of the kind the question names
    assert _top("Is any other node's root filesystem filling up like ip-10-52-7-88?",
                node) is None
    assert _top("Is any other node's root filesystem filling up like ip-10-52-7-88?",
                both) == "timeline:2"
    deploy = [ContextItem("change:3", "change", "Deploy of checkout-api 2.84.0: capacity "
                          "release.")]
    assert _top("Which checkout-api version ran before 2.84.0?", deploy) is None
    back = [*deploy, ContextItem("timeline:4", "timeline", "14:16 UTC, Ana Ortiz: checkout-api "
                                 "2.84.0 ran until the rollback to 2.83.2.")]
    assert _top("Which checkout-api version ran before 2.84.0?", back) == "timeline:4"


def test_a_part_of_a_hyphenated_word_matches_a_word_of_a_camelcase_name() -> None:
    alerts = [ContextItem("alert:1", "alert", "CheckoutHighErrorRate (firing, service "
                          "checkout-api) since 2026-11-27 14:03 UTC"),
              ContextItem("alert:3", "alert", "Checkout API error budget burn (firing, service "
                          "checkout-api) since 2026-11-27 14:05 UTC")]
    assert _top("At what time did the checkout error-rate alert start firing?",
                alerts) == "alert:1"


def test_done_yet_needs_the_action_done_and_a_state_question_is_not_answered_by_a_plan() -> None:
    asked = [ContextItem("timeline:1", "timeline", "06:40 UTC, Yuki Tanaka: asked "
                         "security-engineering to rotate the merchant API key.")]
    assert _top("Has security-engineering finished rotating the merchant API key?",
                asked) is None
    assert _top("Has the merchant API key been rotated yet?", asked) is None
    done = [*asked, ContextItem("timeline:2", "timeline", "07:10 UTC, Yuki Tanaka: the "
                                "merchant API key was rotated by security-engineering.")]
    assert _top("Has the merchant API key been rotated yet?", done) == "timeline:2"
    plan = [ContextItem("timeline:3", "timeline", "06:46 UTC, Marcus Bell: Next steps: "
                        "confirm the dns01 certificate is Ready before r1342 is pushed again.")]
    assert _top("Is the dns01 certificate Ready right now?", plan) is None


def test_past_incidents_and_general_advice_do_not_answer_questions_about_this_one() -> None:
    """A postmortem's facts are another incident's; a runbook says what to do, not what this
    incident's responders did or are doing."""
    items = [_kb("chunk:pm", "postmortem", "Template cache leak",
                 "09:30 UTC notification-service 4.9.0 deployed; all eight pods restarted."),
             _kb("chunk:rb", "runbook", "Node filesystem almost full",
                 "Cordon the node (`kubectl cordon <node>`) and restart the pod writing logs.")]
    assert _top("Which version of notification-service are the pods running?", items) is None
    assert _top("Which notification-service version was deployed in the past incidents?",
                items) == "chunk:pm"
    assert _top("Which node did we cordon?", items) is None
    assert about_events("Which git sha are the new notification pods running?")
    assert about_events("Why aren't we just restarting all the pods at once?")
    assert not about_events("Should we restart all the pods at once?")
    assert _top("How do I cordon the node?", items) == "chunk:rb"
    note = [*items, ContextItem("timeline:5", "timeline", "09:25 UTC, Leila Moradi: "
                                "Cordoned node ip-10-52-7-88.")]
    assert _top("Which node did we cordon?", note) == "timeline:5"
    assert "runbook" in read_question("Can we just raise max_connections?").intents
    assert "postmortem" not in read_question("Can we raise it to get past this?").intents


def test_a_responders_note_is_about_the_incidents_own_services() -> None:
    """"Should we raise maxmemory on redis-cache?" is answered by the decision the responders
    wrote down in the redis-cache incident, which does not repeat the service's name."""
    items = [_kb("chunk:rb", "runbook", "Redis memory and evictions",
                 "If memory is still over 90%, temporarily raise maxmemory on redis-cache."),
             ContextItem("timeline:7", "timeline", "2026-12-15 13:49 UTC [note] Oliver "
                         "Grant: UNLINK of the big keys from the primary started 13:40. "
                         "Evictions stopped at 13:47; used memory falling. Not raising "
                         "maxmemory.")]
    question = "Should we raise maxmemory on redis-cache to stop the evictions?"
    assert _top(question, items, services=["redis-cache"]) == "timeline:7"
    assert _top(question, items) == "chunk:rb"


def test_a_question_in_the_evidence_answers_nothing_and_a_key_id_is_not_an_amount() -> None:
    checklist = [_kb("chunk:rb", "runbook", "Consumer lag",
                     "Is the group consuming at all, and is the lag spread across partitions "
                     "or concentrated?")]
    assert _top("Is the lag spread across all partitions?", checklist) is None
    note = [ContextItem("timeline:1", "timeline", "09:41 UTC, Grace Okafor: the startup line "
                        "printed key id AKIA4LUMENF7Q2XK9RTM and the spools hold customer "
                        "emails.")]
    assert _top("How many customer emails are in the spools?", note) is None


def test_did_anyone_asks_for_the_verb() -> None:
    assert read_question("Did anyone review or approve edge-config r1342?").predicate == "review"
    pushed = [ContextItem("timeline:1", "timeline", "06:35 UTC, Yuki Tanaka: edge-config "
                          "r1342 was pushed at 06:18 by Rasmus Lindqvist.")]
    assert _top("Did anyone review edge-config r1342 before it was pushed?", pushed) is None


def test_an_alerts_instruction_says_what_to_do_not_what_happened() -> None:
    """"Check recent deploys and flag changes" in an alert's description is advice, like a
    runbook's: it does not answer whether there was a flag change."""
    alert = ContextItem("alert:6", "alert", (
        "CacheMemoryHigh (firing, severity warning, service cache) since 2026-01-02 03:04 UTC. "
        "cache-0 memory has grown for an hour. Check recent deploys and flag changes before "
        "treating this as organic growth."), title="CacheMemoryHigh")
    advice = [s for s in segments(alert) if s.advice]
    assert [s.text for s in advice] == [("CacheMemoryHigh: Check recent deploys and flag changes "
                                         "before treating this as organic growth.")]
    assert _top("Was there a flag change before cache memory started growing?", [alert]) is None
    assert _top("Should we check recent deploys when cache memory grows?", [alert]) == "alert:6"


def test_what_is_going_on_now_is_about_this_incident() -> None:
    """"What is eating the disk?" asks what is happening, which a runbook cannot say."""
    assert about_events("what's eating the root disk on the node?")
    assert about_events("Who is handling the rollback?")
    assert about_events("Which pods got evicted?")
    assert not about_events("What is the logging level of the worker?")
    runbook = [_kb("chunk:rb", "runbook", "Node filesystem almost full",
                   "On a node root filesystem, kubelet starts evicting pods at 90% use.")]
    assert _top("What is eating the root filesystem on the node?", runbook) is None
    assert _top("When does kubelet start evicting pods from a node?", runbook) == "chunk:rb"


def test_a_second_when_and_how_long_ask_for_a_time_and_a_duration() -> None:
    q = read_question("Which pods got evicted by the kubelet, and when?")
    assert WHEN in q.wants
    items = [ContextItem("alert:4", "alert", (
                 "NodeDiskFull (firing, severity critical, service node) since unknown. The "
                 "kubelet evicts pods below 5% free."), title="NodeDiskFull"),
             ContextItem("pattern:61", "log_pattern", "WARN pattern, first seen 2026-12-08 09:21 "
                         "UTC: pod evicted by kubelet on ip-10-52-7-88")]
    assert _top("Which pods got evicted by the kubelet, and when?", items) == "pattern:61"
    # any number is not how long: "raised from 10 to 40" is not a wait
    change = [ContextItem("change:3", "change", "deploy of api 2.84.0 at 2026-01-02 02:00 UTC "
                          "(5 min before the first alert) by kim@x.io: pool per pod raised from "
                          "10 to 40.")]
    assert _top("How long do api pods wait for a pool connection?", change) is None
    wait = [*change, ContextItem("pattern:6", "log_pattern", "ERROR pattern, first seen "
                                 "2026-01-02 02:07 UTC: api pod pool timeout after 30000 ms "
                                 "waiting for a connection")]
    assert _top("How long do api pods wait for a pool connection?", wait) == "pattern:6"


def test_roles_asked_in_other_words() -> None:
    snap = _small_incident()
    assert _grounded("Who's handling comms?", snap).lines[0].text == (
        "No comms lead is assigned yet.")
    assert _grounded("who is running incident command?", snap).lines[0].text == (
        "No commander is assigned yet.")
    assert not any("commander" in line.text
                   for line in _grounded("Who is running the migration?", snap).lines)


def test_have_we_had_this_before_asks_about_past_incidents_and_shorthand_is_read() -> None:
    assert "postmortem" in read_question("Have we had the database run out of connections "
                                         "before? What happened that time?").intents
    assert "postmortem" not in read_question("Did the errors start before the deploy?").intents
    advice = [_kb("chunk:rb", "runbook", "Connections saturated",
                  "Do not raise max_connections as a first response.")]
    assert _top("Should we just bump the connection limit?", advice) == "chunk:rb"
    assert _top("Should we bounce the pods?", [_kb(
        "chunk:rb2", "runbook", "Pods", "Restart the pods one at a time.")]) == "chunk:rb2"


def test_a_log_intake_notice_is_not_evidence_and_the_logs_answer_gives_no_times() -> None:
    """"1031 log lines added" says when logs arrived; the patterns are the evidence."""
    notice = ContextItem("timeline:3", "timeline", "2026-01-02 04:48 UTC [logs] copilot: 1031 "
                         "log lines added (50 patterns). Top new or spiking: ERROR ×153 TLS "
                         "handshake failed for merchants")
    assert segments(notice) == []
    snap = _small_incident()
    assert _grounded("What do the logs show?", snap).lines[0].citations == ["pattern:7"]
    when = _grounded("When did the errors begin, as far as the logs show?", snap)
    assert not any(c == "pattern:7" and "lines (" in line.text
                   for line in when.lines for c in line.citations)
    assert _grounded("who owns comms?", snap).lines[0].text == "No comms lead is assigned yet."


def test_how_many_were_done_wants_the_verb_and_a_count_may_be_a_word() -> None:
    q = read_question("how many pods got evicted off ip-10-52-7-88?")
    assert q.predicate == "evicted" and NUMBER in q.wants
    notes = [ContextItem("timeline:1", "timeline", "2026-12-08 09:12 UTC [note] Leila Moradi: "
                         "ip-10-52-7-88 at 93% used; two pods of notification-service hold 33 GB."),
             ContextItem("timeline:2", "timeline", "2026-12-08 09:25 UTC [note] Leila Moradi: "
                         "kubelet evicted both notification-service pods on ip-10-52-7-88.")]
    assert _top("how many pods got evicted off ip-10-52-7-88?", notes) == "timeline:2"


def test_typed_in_a_hurry_and_done_yet_is_not_a_decision_or_a_runbook() -> None:
    assert expand("r we still evicting keys? can u check") == (
        "are we still evicting keys? can you check")
    assert expand("edge-config r1342") == "edge-config r1342"
    items = [ContextItem("timeline:9", "timeline", "2026-12-04 06:35 UTC [note] Yuki Tanaka: "
                         "Decision: revert edge-proxy through the pipeline, no hand edits on "
                         "pods."),
             _kb("chunk:rb", "runbook", "Config rollback", "Revert edge-proxy through the "
                 "pipeline; this takes about 90 seconds to reach all pods.")]
    assert _top("is the edge-proxy revert out on every pod yet?", items) is None
    assert _top("How long does an edge-proxy revert take to reach all pods?", items) == "chunk:rb"


def test_should_we_x_wants_x_and_before_that_time_names_the_postmortems() -> None:
    assert read_question("Should we just bump max_connections?").predicate == "bump"
    alert_rule = [_kb("chunk:rb", "runbook", "Connections saturated",
                      "The alert fires when connections pass 90% of max_connections.")]
    assert _top("Should we just bump max_connections?", alert_rule) is None
    assert named_kinds("Has the cert expired before? What was behind it that time?") == {
        "postmortem"}
    assert named_kinds("What happened at 14:03?") == set()
    alert = [ContextItem("alert:7", "alert", "CertExpired (firing, severity critical, service "
                         "edge) since 2026-12-04 06:19 UTC. api.example.com is serving a "
                         "certificate that expired.", title="CertExpired")]
    assert _top("Has api.example.com served an expired certificate before?", alert) is None


def test_an_alerts_instruction_answers_only_advice_and_shorthand_is_read() -> None:
    alert = ContextItem("alert:6", "alert", (
        "CacheMemoryHigh (firing, severity warning, service cache) since 2026-01-02 03:04 UTC. "
        "Check recent deploys and flag changes before treating this as organic growth."),
        title="CacheMemoryHigh")
    assert _top("Which flag change grew the cache, and who made it?", [alert]) is None
    assert about_events("What flag change filled up redis?")
    assert about_events("what caused this?")
    assert not about_events("What does the runbook say about raising maxmemory?")
    assert expand("ledger db conn count rn vs the limit?") == (
        "ledger db conn count right now and the limit?")
    assert stem("connection") in read_question("conns?").slots[0].stems


def test_pointers_consequences_other_months_and_expected_dates_answer_nothing() -> None:
    pointer = [_kb("chunk:pm", "postmortem", "Cache flag evictions",
                   "See rb-redis-memory-evictions and rb-feature-flag-rollback.")]
    assert _top("Has a cache flag caused redis evictions before?", pointer) is None
    consequence = [ContextItem("alert:5", "alert", (
        "QueueBacklog (firing, severity critical, service worker) since 2026-12-01 00:20 UTC. "
        "Invoices due in the 00:00-06:00 UTC window will be late unless the backlog is worked "
        "off."), title="QueueBacklog")]
    assert _top("When do we expect the backlog to be worked off?", consequence,
                future=True) is None
    assert about_future("When is the dedicated noeviction Redis going live?")
    assert about_future("When is LUM-2563 expected to ship?")
    assert about_future("When do we expect the backlog to be worked off?")
    march = [ContextItem("chunk:pm", "postmortem", "Month-end backlog — Timeline\nThe 1 March "
                         "billing run put 1.9 million messages on the queue.",
                         title="Month-end backlog", meta={"date": "2025-03-01"})]
    assert _top("How many messages did the billing run put on the queue in March?",
                march) == "chunk:pm"
    assert _top("How many messages did the November 1 billing run put on the queue?",
                march) is None


def test_a_label_before_the_question_and_a_url_password_that_looks_like_an_email() -> None:
    assert expand("For the status update: have any emails been dropped?") == (
        "have any emails been dropped?")
    assert expand("ledger-db: how many connections?") == "ledger-db: how many connections?"
    assert about_events("Comms question: are invoices just late?")
    line = [ContextItem("pattern:1", "log_pattern", "WARN pattern, first seen 2026-12-15 13:22 "
                        "UTC: redis client reconnecting to redis://default:Rc4che@redis-cache-0"
                        ".redis.lumenfield.internal:6379/0 after command timeouts")]
    assert _top("who is paged for the redis client timeouts?", line) is None
    snap = _small_incident()
    assert _grounded("who's commanding?", snap).lines[0].text == "No commander is assigned yet."
    from copilot.tasks.answer import SECTION_CUES
    assert SECTION_CUES["Root cause"].search("what broke renewal that time?")


def test_a_check_still_pending_says_nothing_of_its_result() -> None:
    note = [ContextItem("timeline:57", "timeline", "2026-12-15 13:31 UTC [note] Ines Duarte: "
                        "Because idem keys are being evicted we treat duplicate charges as "
                        "possible until payments-core has checked.")]
    assert _top("What did the payments-core duplicate charges check find?", note) is None
    assert _top("have payments-core found any duplicate charges yet?", note) is None
    assert _top("Why do we treat duplicate charges as possible?", note) == "timeline:57"
    assert named_kinds("Did that come out of an earlier incident?") == {"postmortem"}


def test_a_statement_before_the_question_adds_words_not_the_kind_of_question() -> None:
    q = read_question("Support here: merchants report emails arriving late. Have any "
                      "notifications been dropped for good?")
    assert q.ask == "have any notifications been dropped for good?"
    assert q.predicate == "dropped"
    advice = [_kb("chunk:rb", "runbook", "Consumer lag",
                  "Side effects are delayed: notifications and emails arrive late, nothing is "
                  "dropped.")]
    assert _top("Merchants report emails arriving late. Have any notifications been dropped?",
                advice) is None
    card = [_kb("chunk:rb2", "runbook", "Processor outage", "Some card brands and 3-D Secure "
                "flows keep failing for EUR merchants.")]
    assert _top("What is the failure rate for EUR merchants?", card) is None


def test_did_x_finish_asks_whether_it_is_done_and_a_log_pattern_has_no_highest_value() -> None:
    asked = [ContextItem("timeline:17", "timeline", "00:52 UTC, Aisha Bello: the errors print "
                         "the DSN with the worker password; asked database-reliability to "
                         "rotate it.")]
    assert _top("did database-reliability finish rotating the worker password?", asked) is None
    assert _top("is the password rotation done?", asked) is None
    assert _top("did anyone ask for the worker password to be rotated?", asked) == "timeline:17"
    lag = [ContextItem("pattern:91", "log_pattern", "WARN pattern, 38 lines (new since the "
                       "incident started), first seen 2026-12-08 09:15 UTC: [kafka] consumer "
                       "group notification-service lag on notifications.outbound is <*> "
                       "messages\nExample line: 2026-12-08T09:15:02Z WARN [kafka] consumer "
                       "group notification-service lag on notifications.outbound is 2,310 "
                       "messages")]
    assert _top("whats the highest lag on notifications.outbound we logged", lag) is None
    assert _top("what does the log say about lag on notifications.outbound?", lag) \
        == "pattern:91"


def test_a_precondition_question_wants_a_stated_condition_and_dns_01_is_dns01() -> None:
    notes = [ContextItem("timeline:9", "timeline", "06:35 UTC, Yuki Tanaka: Cause found: "
                         "edge-config r1342, pushed at 06:18 for the DNS-01 migration, renamed "
                         "the secret reference. Decision: revert through the pipeline."),
             ContextItem("timeline:11", "timeline", "06:46 UTC, Marcus Bell: Next steps: "
                         "Rasmus fixes r1342 to point api_https at edge/api-com-dns01 and "
                         "confirms that certificate is Ready before it is pushed again.")]
    q = read_question("Which DNS-01 secret should api_https use?")
    assert {"dns-01", "dns01"} <= q.slots[0].stems  # the joined spelling is the whole name
    assert _top("what has to happen before the DNS-01 change can be pushed again?",
                notes) == "timeline:11"
    assert _top("what has to happen before the DNS-01 change can be pushed again?",
                notes[:1]) is None
    assert _top("what time was the DNS-01 change pushed?", notes) == "timeline:9"


def test_what_was_behind_it_asks_for_the_root_cause_section_and_when_will_for_the_event() -> None:
    def pm(item_id: str, section: str, text: str) -> ContextItem:
        return ContextItem(item_id, "postmortem", f"Ledger connections — {section}\n{text}",
                           title="Ledger connections", meta={"section": section})

    doc = [pm("chunk:t", "Timeline", "14:16 UTC — DBRE runs the connection breakdown query on "
              "ledger-db: invoice-worker holds 420 connections."),
           pm("chunk:r", "Root cause", "The HPA maximum was raised to 48 pods without a "
              "connection budget, so ledger-db connections ran out.")]
    question = "Has ledger-db run out of connections before? What was behind it that time?"
    assert "behind" not in [s.word for s in read_question(question).slots]
    assert _top(question, doc) == "chunk:r"
    assert _top("What query did DBRE run on ledger-db that time?", doc) == "chunk:t"
    note = [ContextItem("timeline:11", "timeline", "06:46 UTC, Marcus Bell: Mitigated at "
                        "06:38. Next steps: Rasmus fixes the DNS-01 config and confirms the "
                        "certificate is Ready before it is pushed again.")]
    assert _top("when does the new DNS-01 certificate expire?", note) is None
    assert _top("When will Rasmus have the corrected DNS-01 config ready to push?", note,
                future=True) is None
    planned = [ContextItem("timeline:12", "timeline", "07:00 UTC, Marcus Bell: Rasmus plans "
                           "to push the corrected DNS-01 config at 09:00.")]
    assert _top("When will Rasmus push the corrected DNS-01 config?", planned,
                future=True) == "timeline:12"


def test_a_past_incidents_story_is_told_by_the_postmortem_its_words_name() -> None:
    """"Have we run out of X before? what caused it?" names a past incident by its topic: the
    postmortem whose title and passages say it, told by its Summary (or, for what ended it,
    its Resolution), not the timeline line that repeats the words."""
    from copilot.tasks.answer import past_story, story_section

    def pm(doc: str, title: str, section: str, text: str, rank: int = 0) -> ContextItem:
        return ContextItem(f"chunk:{doc}::{section[:4]}", "postmortem",
                           f"{title} — {section}\n{text}", title=title, rank=rank,
                           meta={"doc_id": doc, "section": section})

    exhaustion = "ledger-db connection exhaustion after invoice-worker autoscaled to 48 pods"
    wal = "ledger-db primary stopped when an orphaned replication slot filled the WAL volume"
    items = [pm("pm-a", exhaustion, "Timeline", "14:16 UTC — DBRE runs the connection query "
                "on ledger-db: invoice-worker holds 420 connections."),
             pm("pm-a", exhaustion, "Summary", "A billing batch scaled invoice-worker to 48 "
                "pods. Each pod opens 15 connections, so 720 connections were requested.\n\n"
                "Later paragraph."),
             pm("pm-a", exhaustion, "Resolution", "Capping invoice-worker's replicas restored "
                "capacity."),
             pm("pm-b", wal, "Summary", "An orphaned slot on ledger-db kept WAL and the volume "
                "filled; connections failed.", rank=1)]
    assert expand("Has ledger-db run out of connection slots before?") \
        == "Has ledger-db exhausted connection slots before?"
    assert expand("have we run ledger-db out of conns") == "have we exhausted ledger-db conns"
    assert expand("didnt we have this before") == "did not we have this before"
    # both postmortems say ledger-db, connections and (by a synonym) "filled": the one whose
    # title says the question's own words is the one it names
    question = "Has ledger-db run out of connections before? What caused it that time?"
    assert story_section(question) == "Summary"
    story = past_story(question, items)
    assert story is not None and story.item.id == "chunk:pm-a::Summ"
    assert story.text == ("A billing batch scaled invoice-worker to 48 pods. Each pod opens 15 "
                          "connections, so 720 connections were requested.")
    ended = past_story("Have we had ledger-db run out of connections before? What got us out "
                       "of it that time?", items)
    assert ended is not None and ended.item.id == "chunk:pm-a::Reso"
    # not a story question, or no postmortem clearly named: the usual answer
    assert past_story("What did DBRE run on ledger-db that time?", items) is None
    assert past_story("Has the search cluster run out of shards before? What caused it?",
                      items) is None


def test_the_suspect_change_and_its_author_and_a_role_named_as_a_source() -> None:
    snap = _small_incident(commander="Dana Whitfield")
    lines = _grounded("what change set this off and who made it", snap).lines
    assert lines[0].citations == ["change:4"] and "by lee@x.io" in lines[0].text
    # "per the IC" says whose next steps, it does not ask who the commander is
    steps = _grounded("next steps per the IC - when can the store disk be cleaned?", snap)
    assert "commander" not in " ".join(x.text for x in steps.lines).lower()
    assert "Dana Whitfield" in _grounded("who is the IC?", snap).lines[0].text


def test_an_aim_is_not_a_cause_and_particles_change_a_verb() -> None:
    flag = [ContextItem("change:3", "change", "Feature_flag of notify logging.debug_until: set "
                        "debug mode to chase missing Relaytext delivery receipts (LUM-5120).")]
    assert _top("did Relaytext say why the delivery receipts were missing?", flag) is None
    assert _top("why was debug mode set on notify?", flag) == "change:3"
    audit = [ContextItem("change:1", "change", "Deploy of auth-service 1.42.0: adds fields to "
                         "the audit log for 1,544 API keys.")]
    assert _top("How many merchants got logged out of the dashboard?", audit) is None
    note = [ContextItem("timeline:2", "timeline", "13:31 UTC, Ines Duarte: 212 merchants "
                        "logged out of the dashboard.")]
    assert _top("How many merchants got logged out of the dashboard?", note) == "timeline:2"
    # a three-word CamelCase alert name is named only in full
    evictions = [ContextItem("alert:13", "alert", "RedisEvictionsHigh (firing, service "
                             "redis-cache) since 2026-12-15 13:23 UTC.")]
    assert _top("when did RedisMemoryHigh first fire?", evictions) is None
    assert _top("when did RedisEvictionsHigh first fire?", evictions) == "alert:13"
    asked = [ContextItem("timeline:45", "timeline", "09:41 UTC, Grace Okafor: Ben has asked "
                         "security-engineering to rotate the object-storage key.")]
    assert _top("what time did security-engineering finish rotating the object-storage key?",
                asked) is None


def test_what_a_past_postmortem_asked_us_to_fix_is_its_action_items() -> None:
    from copilot.tasks.answer import past_story

    title = "Node disk pressure from search-indexer debug log written to emptyDir"
    items = [ContextItem(f"chunk:pm::{n}", "postmortem", f"{title} — {section}\n{text}",
                         title=title, meta={"doc_id": "pm-disk", "section": section})
             for n, (section, text) in enumerate([
                 ("Summary", "A debug log filled the node's root disk."),
                 ("Action items", ("- Require `sizeLimit` on emptyDir volumes. LUM-2911\n"
                                   "- Log to stdout only. Owner: search. LUM-2912"))])]
    story = past_story("has a debug log filling up a node's disk happened to us before? what "
                       "did that postmortem ask us to fix", items)
    assert story is not None and story.section == "Action items"
    assert story.text == "Require `sizeLimit` on emptyDir volumes. LUM-2911. Log to stdout " \
                         "only. Owner: search. LUM-2912."


def test_opinions_results_counts_and_irregular_done_yet_questions() -> None:
    refunds = [ContextItem("timeline:60", "timeline", "14:10 UTC, Ines Duarte: payments-core "
                           "ran the duplicates check: 6 candidate duplicates; refunds started.")]
    assert _top("Have the refunds for the double captures gone through?", refunds) is None
    assert about_events("What came back from the duplicate check?")
    assert about_events("what does streaming-platform think, are the brokers ok?")
    assert not about_events("what does the runbook say to do about broker lag?")
    assert read_question("how many checkout reqs failed when the pod got evicted").predicate \
        == "failed"
    evicted = [ContextItem("timeline:43", "timeline", "09:25 UTC, Leila Moradi: kubelet "
                           "evicted both notification-service pods plus one checkout-api pod.")]
    assert _top("how many checkout reqs failed when the checkout pod got evicted", evicted) \
        is None


def test_when_something_was_done_is_not_answered_by_the_decision_to_do_it() -> None:
    notes = [ContextItem("timeline:31", "timeline", "06:35 UTC, Yuki Tanaka: Cause found: "
                         "edge-config r1342 pushed at 06:18. Decision: revert the edge-proxy "
                         "config through the pipeline, no hand edits on pods.")]
    assert _top("At what time had every edge-proxy pod picked up the reverted config?",
                notes) is None
    done = [*notes, ContextItem("timeline:33", "timeline", "06:40 UTC, Yuki Tanaka: the "
                                "reverted config was picked up by every edge-proxy pod at 06:38.")]
    assert _top("At what time had every edge-proxy pod picked up the reverted config?",
                done) == "timeline:33"


def test_an_error_question_prefers_the_error_pattern_and_a_cause_word_keeps_a_change_question() -> None:
    def pattern(n: int, level: str, text: str) -> ContextItem:
        return ContextItem(f"pattern:{n}", "log_pattern", f"{level} pattern, 100 lines, first "
                           f"seen 2026-11-27 14:02 UTC: [pgbouncer] {text}",
                           meta={"level": level})

    items = [pattern(6, "WARN", "client waited <*> ms for a server connection to ledger-db"),
             pattern(2, "ERROR", "server connection to ledger-db failed: sorry, too many "
                                 "clients already")]
    assert _top("what exact error is pgbouncer logging when it cannot get a server connection "
                "to ledger-db?", items) == "pattern:2"
    snap = _small_incident()
    assert _grounded("what change filled up the store, and who rolled it out?",
                     snap).lines[0].citations == ["change:4"]
    # a cause word alone does not make a change question
    assert all(c != "change:4" for line in _grounded("what caused this?", snap).lines
               for c in line.citations)


def test_a_change_question_naming_the_symptom_service_gets_the_suspect_change() -> None:
    from copilot.context import ChangeFact

    snap = _small_incident()
    flag = ChangeFact(id=6, kind="feature_flag", service="dashboard", author="hk@x.io",
                      at=(snap.started_at or snap.now) - dt.timedelta(minutes=70),
                      description="Cache report exports in the store.")
    snap = dataclasses.replace(snap, changes=[flag])
    lines = _grounded("What change is filling store, and who rolled it out?", snap).lines
    assert lines[0].citations == ["change:6"]
    # "what changed on store?" asks about store's own changes: it has none
    assert _grounded("what changed on store?", snap).answered is False


def test_whats_firing_lists_the_firing_alerts_oldest_first() -> None:
    from copilot.context import AlertFact

    snap = _small_incident()
    at = snap.started_at or snap.now
    alerts = [AlertFact(id=1, name="DiskFull", service="store", severity="critical",
                        starts_at=at, annotations={"summary": "Root disk above 95%"}),
              AlertFact(id=2, name="PodEvicted", service="store", starts_at=at
                        + dt.timedelta(minutes=3)),
              AlertFact(id=3, name="SlowWrites", service="store", status="resolved",
                        starts_at=at - dt.timedelta(minutes=5))]
    snap = dataclasses.replace(snap, alerts=alerts)
    lines = _grounded("whats firing rn?", snap).lines
    assert [line.citations for line in lines] == [["alert:1"], ["alert:2"]]
    assert lines[0].text == "DiskFull (critical, store): firing since 03:04 UTC. Root disk above 95%."
    # "fired" includes the resolved one; "first" wants the oldest only
    assert [line.citations for line in _grounded("which alerts fired?", snap).lines] == [
        ["alert:3"], ["alert:1"], ["alert:2"]]
    assert [line.citations for line in _grounded("which alert fired first?", snap).lines] == [
        ["alert:3"]]
    # a question about one alert, or about when, is not the list
    assert len(_grounded("what does the PodEvicted alert mean?", snap).lines) <= 1
    assert not any(": firing since" in line.text for line in
                   _grounded("when did the alerts start firing?", snap).lines)
    # nothing still firing: "what's firing now?" is not answered with resolved alerts
    quiet = dataclasses.replace(snap, alerts=[alerts[2]])
    assert not any(": resolved since" in line.text for line in
                   _grounded("what's firing now?", quiet).lines)


def test_paged_for_an_alert_named_in_words_and_a_change_behind_a_symptom() -> None:
    snap = _small_incident()
    for question in ("who got paged for the disk full?", "who got paged in PD for this"):
        assert _grounded(question, snap).lines[0].citations == ["alert:1"], question
    # words that are no alert's: not the paging record
    assert not _grounded("who got paged for the redis thing?", snap).answered
    assert _grounded("which change is behind the disk blowup?", snap).lines[0].citations == [
        "change:4"]
    # a version names a change of its own, which the suspect is not
    assert not _grounded("which change is behind the 1.2.4 rollout?", snap).answered


def test_a_database_role_is_not_the_incidents_roles() -> None:
    snap = _small_incident()
    result = _grounded("the DSN in the errors: which host does it use, and which DB role?", snap)
    assert all(c != "incident:5" for line in result.lines for c in line.citations)
    assert _grounded("who has which role?", snap).lines[0].citations == ["incident:5"]


def test_a_terse_question_names_its_thing_first() -> None:
    assert read_question("maxmemory-policy on redis-cache?").focus == ["maxmemory-policy"]
    assert read_question("lag on invoice-worker?").focus == ["lag"]
    # a measure says only that a number is wanted: the word before it names which
    assert read_question("memory limit on the worker pods?").focus == ["memory", "limit"]
    assert read_question("what is the error rate?").focus == ["error", "rate"]
    assert read_question("any errors on checkout?").focus == []
    # the piece must say the thing asked for, not only what it is about
    items = [ContextItem("alert:1", "alert", "invoice-worker partitions were reassigned 40 "
                         "times in ten minutes."),
             ContextItem("alert:2", "alert", "KafkaLagHigh: consumer lag on invoice-worker "
                         "partitions is 420,000 messages.")]
    assert _top("lag on invoice-worker partitions?", items) == "alert:2"
    assert extract_answer("lag on invoice-worker partitions?", items[:1]) is None


def test_now_and_what_they_did_are_about_this_incident() -> None:
    assert about_events("whats the current replication lag on ledger-db-1?")
    assert about_events("replication lag rn?")
    assert about_events("exact revert command they went with for edge-config?")
    assert not about_events("memory limit on invoice-worker pods now that 3.52.0 doubled threads?")


def test_a_past_incidents_commander_is_not_this_ones() -> None:
    snap = dataclasses.replace(_small_incident(), commander="Ana Ortiz")
    assert _grounded("who is the commander?", snap).lines[0].citations == ["incident:5"]
    for question in ("who was commander last time the disk filled up?",
                     "who ran comms in the previous outage?"):
        assert all(c != "incident:5" for line in _grounded(question, snap).lines
                   for c in line.citations), question


def test_the_corrected_state_is_not_the_record_of_the_change_being_fixed() -> None:
    items = [ContextItem("change:9", "change", "Config of edge-proxy edge-config@r77 at 06:18 by "
                         "rl@x.io: move TLS secret references; the api listener's secret "
                         "becomes edge/api-http01."),
             ContextItem("timeline:6", "timeline", "06:46 UTC, Marcus Bell: Next steps: Rasmus "
                         "fixes r77 to point the api listener at the TLS secret edge/api-dns01 "
                         "before it is pushed again.")]
    for question in (("Once r77 is fixed, which TLS secret is the api listener supposed to "
                      "reference?"),
                     ("Before r77 gets pushed again, which secret should the api listener "
                      "reference instead?")):
        assert _top(question, items) == "timeline:6", question
    # what the change did is the change's record
    assert _top("which secret did r77 move the api listener to?", items) == "change:9"


def test_a_measure_asks_for_an_amount_and_running_out_is_about_this_incident() -> None:
    items = [ContextItem("incident:2", "incident", "KafkaConsumerLagHigh on invoice-worker."),
             ContextItem("alert:4", "alert", "KafkaConsumerLagHigh: invoice-worker is 420,000 "
                         "messages behind on invoice.requested.")]
    assert _top("lag on invoice-worker?", items) == "alert:4"
    assert _top("lag on invoice-worker?", items[:1]) is None
    assert about_events("which node is running out of root disk")


def test_what_someone_said_is_reported_speech_or_their_own_note() -> None:
    items = [ContextItem("timeline:3", "timeline", "14:10 UTC, Ines Duarte: The Marlow and Finch "
                         "finance contact is treasury@mf.example; Sanjay drafts the merchant "
                         "note."),
             ContextItem("timeline:4", "timeline", "14:20 UTC, Sanjay Mehta: Merchant note to "
                         "Marlow and Finch sent; waiting on their finance team.")]
    assert _top("What did the Marlow and Finch finance team reply?", items) is None
    assert _top("what did Sanjay say about the merchant note?", items) == "timeline:4"
    replied = ContextItem("timeline:5", "timeline", "14:40 UTC, Sanjay Mehta: Marlow and Finch "
                          "finance replied that the duplicate charge was refunded.")
    assert _top("What did the Marlow and Finch finance team reply?",
                [*items, replied]) == "timeline:5"
    # a record is not a speaker: its text says what it says
    assert _top("what does the timeline say about the Marlow and Finch merchant note?",
                items) is not None


def test_what_the_commander_did_is_not_who_it_is_and_unknown_times_answer_nothing() -> None:
    snap = dataclasses.replace(_small_incident(), commander="Ana Ortiz")
    result = _grounded("At 03:10 the commander made a call on the pods. What was it?", snap)
    assert all(c != "incident:5" for line in result.lines for c in line.citations)
    assert _grounded("is there a commander assigned?", snap).lines[0].citations == ["incident:5"]
    incident = ContextItem("incident:5", "incident", "DiskFull on store. Started 2026-01-02 03:04 "
                           "UTC, detected 2026-01-02 03:04 UTC, mitigated unknown, resolved "
                           "unknown.")
    note = ContextItem("timeline:9", "timeline", "03:40 UTC, Kim Park: Mitigated at 03:38 after "
                       "the cleanup.")
    assert _top("what time were we mitigated", [incident]) is None
    assert _top("what time were we mitigated", [incident, note]) == "timeline:9"
    assert about_events("which merchants have invoice deadlines tonight")


def test_the_latest_value_is_not_a_log_pattern_and_did_that_happen_is_not_the_decision() -> None:
    pattern = ContextItem("pattern:91", "log_pattern", "WARN pattern, 38 lines: [kafka] consumer "
                          "group notification-service lag on notifications.outbound is … "
                          "messages")
    assert _top("latest lag number on notifications.outbound in the logs?", [pattern]) is None
    decision = ContextItem("timeline:45", "timeline", "09:41 UTC, Grace Okafor: Decision: restart "
                           "the four remaining pods one at a time, 3 minutes apart.")
    assert _top("Grace decided the remaining pods should be restarted one at a time. Did that "
                "actually happen?", [decision]) is None
    assert SECTION_CUES["Resolution"].search(
        "what did we end up doing that time to get it serving again")


def test_a_runbook_named_before_the_question_does_not_make_it_a_runbook_question() -> None:
    runbook = ContextItem("chunk:rb-redis::1", "runbook", "If idempotency keys were evicted, ask "
                          "payments-core to run the duplicate-charge check: `pgw-cli duplicates "
                          "--since <start> --until <end>`.", meta={"doc_id": "rb-redis"})
    note = ContextItem("timeline:11", "timeline", "14:10 UTC, Ines Duarte: payments-core ran "
                       "pgw-cli duplicates --since 13:15 --until 14:00: 6 candidate duplicate "
                       "payment intents.")
    question = ("The runbook says payments-core should run the duplicate check. Was it run, and "
                "what did it find?")
    assert _top(question, [runbook, note]) == "timeline:11"
    assert _top(question, [runbook]) is None
    change = ContextItem("change:9", "change", "Config of edge-proxy edge-config@r77: the api "
                         "listener's TLS secret becomes edge/api-http01.")
    assert _top("Before r77 is pushed again, what has to change in it?", [change]) is None
    # a label before the question does name it
    assert _top("Redis runbook: what does it say about the duplicate-charge check?",
                [runbook, note]) == "chunk:rb-redis::1"
