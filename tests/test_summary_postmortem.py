"""The commander's summary and the postmortem draft on the real demo incident: every line cited
from the evidence, the sections the commander and the postmortem format expect, model answers
validated (bogus refs dropped, garbage falls back), and no postmortem for an open incident."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from copilot.context import IncidentSnapshot, TimelineFact
from copilot.llm.base import EchoLLM
from copilot.runner import Copilot
from copilot.tasks.base import Line, Task, TaskError, TaskResult, walk_lines
from copilot.tasks.postmortem import SECTIONS as PM_SECTIONS
from copilot.tasks.postmortem import Postmortem
from copilot.tasks.summary import SECTIONS, Summary, compose, key_records
from ingest.chunking import split_sections
from ingest.documents import parse_file
from prompts.budget import ContextItem

DEMO_PMS = sorted((Path(__file__).resolve().parent.parent / "demo" / "kb" / "postmortems")
                  .glob("*.md"))
HEADINGS = [h for _, h in SECTIONS]


@pytest.fixture
def snap(demo_copilot, demo_env) -> IncidentSnapshot:  # type: ignore[no-untyped-def]
    return demo_copilot.snapshot(demo_env[2])


@pytest.fixture
def resolved(snap: IncidentSnapshot) -> IncidentSnapshot:
    """The demo incident as if it had been rolled back and resolved (a copy: the demo store is
    shared by the session)."""
    start = snap.started_at
    assert start is not None
    notes = [TimelineFact(9001, start + dt.timedelta(minutes=24), "note", "Ana Ortiz",
                          "Rolled back checkout-api to 2.83.4 with argo rollouts undo"),
             TimelineFact(9004, start + dt.timedelta(minutes=9), "role", "Ana Ortiz",
                          "commander: Dana Whitfield"),
             TimelineFact(9005, start + dt.timedelta(minutes=12), "change", "copilot",
                          "Change: config of edge-proxy r1188 by m.kovacs@lumenfield.com — "
                          "unrelated rate limit tweak"),
             TimelineFact(9002, start + dt.timedelta(minutes=31), "status", "Ana Ortiz",
                          "Status investigating → monitoring"),
             TimelineFact(9003, start + dt.timedelta(minutes=62), "status", "Ana Ortiz",
                          "Status monitoring → resolved")]
    return dataclasses.replace(
        snap, status="resolved", mitigated_at=start + dt.timedelta(minutes=31),
        resolved_at=start + dt.timedelta(minutes=62), timeline=snap.timeline + notes,
        alerts=[dataclasses.replace(a, status="resolved") for a in snap.alerts])


def _evidence(copilot: Copilot, task: Task, snap: IncidentSnapshot) -> set[str]:  # type: ignore[type-arg]
    return {i.id for i in copilot.prepare(task, snap).packed.items}


def _all_cited(result: TaskResult, evidence: set[str]) -> None:
    """Every line cites ids that were in the evidence, and the sources are exactly those ids."""
    lines = list(walk_lines(result))
    assert lines
    cited = {c for line in lines for c in line.citations}
    for line in lines:
        assert line.supported and line.citations, line.text
        assert set(line.citations) <= evidence, line
    assert {s.id for s in result.sources} == cited
    assert not result.dropped_citations


def _change(snap: IncidentSnapshot, version: str) -> str:
    return f"change:{next(c.id for c in snap.changes if c.version == version)}"


# -- summary -----------------------------------------------------------------------------------


def test_grounded_summary_of_the_demo_incident(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    task = Summary()
    result = demo_copilot.run(task, snap)
    assert not result.degraded and result.backend == "grounded"
    assert all(result.sections()[key] for key, _ in SECTIONS)
    _all_cited(result, _evidence(demo_copilot, task, snap))

    status = result.status[0]
    assert "SEV1" in status.text and "investigating" in status.text
    assert status.citations == [snap.ref]
    impact = " ".join(line.text for line in result.impact)
    assert "14.6%" in impact and "565/600" in impact and "130 ERROR log lines" in impact
    assert {c.split(":")[0] for line in result.impact for c in line.citations} == {
        "alert", "pattern"}
    assert 3 <= len(result.timeline) <= 8
    assert all(re.match(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d UTC — ", x.text) for x in result.timeline)
    assert result.timeline[0].text.startswith("13:56 UTC") and "2.84.0" in result.timeline[0].text
    assert result.actions[0].text.startswith("No actions recorded yet")

    deploy = _change(snap, "2.84.0")
    suspect = [x for x in result.open_questions if deploy in x.citations]
    assert len(suspect) == 1 and "2.84.0" in suspect[0].text and "7 min before" in suspect[0].text
    assert any("commander" in x.text and "Not assigned" in x.text for x in result.open_questions)
    assert [x.text for x in result.owners[:3]] == [
        "Commander: unassigned.", "Tech lead: unassigned.", "Comms lead: unassigned."]

    by_id = {s.id: s for s in result.sources}
    runbook_steps = [x for x in result.next_steps if x.citations[0].startswith("chunk:")]
    assert runbook_steps and all(by_id[x.citations[0]].kind == "runbook"
                                 and by_id[x.citations[0]].meta["section"] == "Mitigation"
                                 for x in runbook_steps)
    assert "ledger-db connections saturated" in " ".join(x.text for x in runbook_steps)
    assert "Next status update" in result.next_steps[-1].text

    md = result.markdown
    assert [m for m in re.findall(r"^## (.+)$", md, re.MULTILINE)] == HEADINGS
    bullets = [b for b in md.splitlines() if b.startswith("- ")]
    assert len(bullets) == sum(len(v) for v in result.sections().values())
    assert all(re.search(r"\[[a-z_]+:[^\]]+\]$", b) for b in bullets)
    assert f"[{deploy}]" in md
    events = list(demo_copilot.stream(Summary(), snap))
    assert "".join(e["text"] for e in events if e["type"] == "token") == md
    assert events[-1]["type"] == "final" and events[-1]["result"].markdown == md


def test_summary_owners_and_actions_follow_the_roles(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    start = snap.started_at
    assert start is not None
    entry = TimelineFact(9101, start + dt.timedelta(minutes=9), "role", "Ana Ortiz",
                         "commander: Dana Whitfield")
    staffed = dataclasses.replace(snap, commander="Dana Whitfield", tech_lead="Ana Ortiz",
                                  timeline=snap.timeline + [entry])
    task = Summary()
    result = demo_copilot.run(task, staffed)
    _all_cited(result, _evidence(demo_copilot, task, staffed))
    assert [x.text for x in result.owners[:3]] == [
        "Commander: Dana Whitfield.", "Tech lead: Ana Ortiz.", "Comms lead: unassigned."]
    assert result.actions[0].citations == ["timeline:9101"]
    assert "Ana Ortiz" in result.actions[0].text and "14:12 UTC" in result.actions[0].text
    asks = [x.text for x in result.open_questions if "Not assigned" in x.text]
    assert asks == ["Who is the comms lead? Not assigned yet."]


def test_model_summary_is_parsed_and_its_citations_validated(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.llm = EchoLLM("")
    demo_copilot.llm.context_window = 8192  # a served model; 2048 leaves room for 6 items
    refs = demo_copilot.prepare(Summary(), snap).refs  # what fits the model's window
    alert = next(ref for ref, cid in refs.items() if cid.startswith("alert:"))
    answer = (f"## Status\n- SEV1, investigating for hours [S1].\n"
              f"- LedgerDBConnectionsSaturated and the error budget burn page fire; deploy "
              f"2.84.0 is suspected [S1].\n\n"
              f"## Customer impact\n- Checkout returns 5xx to customers [{alert}].\n"
              f"- Refunds are delayed everywhere [S999].\n"
              f"- Ledger writes are slow [S1, S999].\n\n"
              f"## Timeline\n- 14:03 UTC — first alert [{alert}]\n\n"
              f"## Actions taken\n* No actions recorded yet [S1]\n\n"
              f"## Open questions\n1. Root cause unconfirmed [S1]\n")
    demo_copilot.llm.answer = answer
    result = demo_copilot.run(Summary(), snap)
    assert result.backend == "echo" and not result.degraded and result.prompt == "summary@1"
    assert result.dropped_citations == ["S999"]
    refunds, ledger = result.impact[1], result.impact[2]
    assert refunds.citations == [] and refunds.supported is False
    assert ledger.citations == [snap.ref] and ledger.supported
    assert result.impact[0].citations == [refs[alert]]
    assert result.actions[0].text == "No actions recorded yet"
    assert result.open_questions[0].text == "Root cause unconfirmed"
    # sections the model left out are written by the rules, and said so
    assert result.filled == ["owners", "next_steps"]
    assert result.owners[0].text == "Commander: unassigned."
    assert "- Refunds are delayed everywhere. _(unsupported)_\n" in result.markdown
    assert "[S1]" not in result.markdown and f"[{snap.ref}]" in result.markdown
    assert result.added == []  # it told every firing alert and the suspect change


def _answer(refs: dict[str, str], cite_alerts: bool = True, **extra: str) -> str:
    """A model summary with every section, each line in the incident record's words and citing
    it; an ``extra`` line cites the alerts (or the incident record)."""
    head = next(ref for ref, cid in refs.items() if cid.startswith("incident:"))
    alerts = ", ".join(ref for ref, cid in refs.items() if cid.startswith("alert:")) \
        if cite_alerts else head
    body = {"Status": "SEV1 checkout-api incident, investigating.",
            "Customer impact": "checkout-api is affected.",
            "Timeline": "The checkout-api incident is open.",
            "Actions taken": "Investigating checkout-api.",
            "Open questions": "Is checkout-api still failing?",
            "Owners": "checkout-api responders are investigating.",
            "Next steps": "Keep investigating checkout-api."}
    return "\n\n".join(f"## {h}\n- {extra[h]} [{alerts}]" if h in extra else
                        f"## {h}\n- {text} [{head}]" for h, text in body.items())


def test_a_model_summary_missing_a_key_record_gets_the_rules_line_for_it(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    """The firing alerts and the suspect change are what a commander must get: one the model
    left out is added as the rules' line, cited, and named in ``added``."""
    demo_copilot.llm = EchoLLM("")
    demo_copilot.llm.context_window = 8192  # room for every alert and change
    demo_copilot.llm.answer = _answer(
        demo_copilot.prepare(Summary(), snap).refs,
        **{"Customer impact": "CheckoutHighErrorRate and LedgerDBConnectionsSaturated fire; "
                              "Checkout API error budget burn too."})
    result = demo_copilot.run(Summary(), snap)
    assert result.backend == "echo" and not result.degraded, result.reason
    assert result.added == [("the suspect change (the deploy of checkout-api 2.84.0 at 13:56 "
                             "UTC, 7 min before the first alert)")]
    assert result.open_questions[0].text == "Is checkout-api still failing?"
    assert "2.84.0" in result.open_questions[-1].text
    assert result.open_questions[-1].citations == ["change:3"]
    assert len(result.impact) == 1  # the alerts it named are not added again
    assert "Leading suspect, not confirmed: the deploy of checkout-api 2.84.0" in result.markdown


def test_a_model_summary_telling_under_half_the_key_records_falls_back(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.llm = EchoLLM("")
    demo_copilot.llm.context_window = 8192
    demo_copilot.llm.answer = _answer(demo_copilot.prepare(Summary(), snap).refs,
                                      cite_alerts=False,
                                      Status="CheckoutHighErrorRate on checkout-api, SEV1.")
    result = demo_copilot.run(Summary(), snap)
    assert result.backend == "grounded" and result.degraded
    assert "tells only 1 of the 4 key records" in (result.reason or "")
    assert result.added == [] and "2.84.0" in " ".join(x.text for x in result.open_questions)


def test_roles_and_the_latest_note_are_key_records(snap) -> None:  # type: ignore[no-untyped-def]
    note = TimelineFact(9201, (snap.started_at or snap.now) + dt.timedelta(minutes=20), "note",
                        "Ana Ortiz", "Paused the rollout; rollback to 2.83.2 next")
    staffed = dataclasses.replace(snap, commander="Dana Whitfield",
                                  timeline=snap.timeline + [note])
    items = [ContextItem(id=i, kind="incident", title=i, text="x") for i in
             [staffed.ref, "timeline:9201", "change:3"] + [f"alert:{a.id}" for a in snap.alerts]]
    keys = key_records(staffed, compose(staffed, items))
    assert [k.what for k in keys][-2:] == ["the commander Dana Whitfield",
                                           "the latest responder entry (Ana Ortiz, 14:23 UTC)"]
    told = [Line(text="Dana Whitfield has command.", citations=[staffed.ref]),
            Line(text="Rollout paused.", citations=["timeline:9201"])]
    assert [k.told_by(told) for k in keys][-2:] == [True, True]
    assert not any(k.told_by(told) for k in keys[:-2])


@pytest.mark.parametrize("llm,reason", [
    (EchoLLM("Things look bad, somebody should call the database team [S1]."),
     "did not validate: found 0 of the 7 summary sections"),
    (EchoLLM("## Status\n- bad [S1]\n## Owners\n- nobody [S1]"), "found 2 of the 7"),
    (EchoLLM("## Status\n- all fine\n## Customer impact\n- none\n## Timeline\n- 14:00 deploy\n"
             "## Owners\n- Bob [S1]\n"),
     "rejected: only 0 of the 4 lines the model wrote cite the context"),
    (EchoLLM(fail="HTTP 503: provider down"), "model error: HTTP 503"),
])
def test_bad_model_summary_falls_back_to_the_rules(demo_copilot, snap, llm, reason) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.llm = llm
    result = demo_copilot.run(Summary(), snap)
    assert result.degraded and reason in (result.reason or "")
    assert result.backend == "grounded" and all(result.sections().values())
    assert "2.84.0" in " ".join(x.text for x in result.open_questions)


# -- postmortem --------------------------------------------------------------------------------


def test_no_postmortem_for_an_open_incident(demo_copilot, snap) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskError, match=r"incident:\d+ is investigating, not resolved"):
        demo_copilot.run(Postmortem(), snap)
    with pytest.raises(TaskError, match="not resolved"):
        Postmortem().grounded(snap, [])
    preview = demo_copilot.run(Postmortem(allow_open=True), snap)
    assert "is not resolved yet" in preview.sections["Summary"][0].text
    assert any("to be filled in" in x.text for x in preview.sections["Resolution"])


def _front(text: str) -> dict:  # type: ignore[type-arg]
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def test_postmortem_draft_has_the_shape_of_the_demo_postmortems(
        demo_copilot, resolved, tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = Postmortem()
    result = demo_copilot.run(task, resolved)
    assert not result.degraded
    _all_cited(result, _evidence(demo_copilot, task, resolved))

    demo_keys = {tuple(_front(p.read_text())) for p in DEMO_PMS}
    demo_order = {tuple(re.findall(r"^## (.+)$", p.read_text(), re.MULTILINE)) for p in DEMO_PMS}
    assert len(demo_keys) == 1 and len(demo_order) == 1
    meta = _front(result.markdown)
    assert tuple(meta) == demo_keys.pop()
    assert tuple(re.findall(r"^## (.+)$", result.markdown, re.MULTILINE)) == demo_order.pop()
    assert list(result.sections) == list(PM_SECTIONS)
    assert meta["id"] == "pm-2026-11-27-checkouthigherrorrate-on-checkout-api"
    assert meta["date"] == dt.date(2026, 11, 27) and meta["severity"] == "SEV1"
    assert meta["services"] == ["checkout-api", "ledger-db"]
    assert meta["root_cause_category"] == "db-connection-exhaustion"  # the 2025-03-14 outage

    text = {name: " ".join(x.text for x in lines) for name, lines in result.sections.items()}
    assert "31 min after the start" in text["Impact"] and "1 h 2 min" in text["Impact"]
    assert all(re.match(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d UTC — ", x.text)
               for x in result.sections["Timeline"])
    assert "14:12 UTC — Commander assigned." in text["Timeline"]
    assert "14:15 UTC — Change: config of edge-proxy r1188." in text["Timeline"]
    assert not re.search(r"Ana Ortiz|Dana Whitfield|@", result.markdown)  # blameless
    cause = result.sections["Root cause"]
    assert "2.84.0" in cause[0].text and "to be confirmed by the responders" in cause[0].text
    assert cause[0].citations == [_change(resolved, "2.84.0")]
    assert "Rolled back checkout-api to 2.83.4" in text["Resolution"]
    by_id = {s.id: s for s in result.sources}
    actions = result.sections["Action items"]
    assert actions and all(x.text.startswith("Proposed:") for x in actions)
    assert all(by_id[x.citations[0]].meta["section"] == "Action items" for x in actions)
    assert not any(re.search(r"LUM-\d+", x.text) for x in actions)  # old tickets stripped

    assert re.search(r"\[(alert|change|chunk):", result.markdown)
    clean = result.markdown_clean
    assert not re.search(r"\[(incident|alert|change|pattern|timeline|chunk):", clean)
    assert _front(clean) == meta
    # the clean draft ingests as a postmortem with the same sections as the demo ones
    path = tmp_path / "postmortems" / f"{meta['id']}.md"
    path.parent.mkdir()
    path.write_text(clean)
    doc = parse_file(path, root=path.parent, kind=None, max_bytes=1_000_000)[0]
    assert doc.kind == "postmortem" and doc.doc_id == meta["id"]
    assert doc.metadata["root_cause_category"] == "db-connection-exhaustion"
    assert [s.path[-1] for s in split_sections(doc.body)] == list(PM_SECTIONS)


def test_model_postmortem_parsed_or_rejected(demo_copilot, resolved) -> None:  # type: ignore[no-untyped-def]
    llm = EchoLLM("## Summary\nCheckout failed after a deploy [S1]. It lasted an hour [S1].\n"
                  "## Impact\n- 5xx for customers [S1]\n## Timeline\n- 14:03 UTC — alert [S1]\n"
                  "## Root cause\nProbably the deploy, to be confirmed [S1]. Cosmic rays [S77].\n"
                  "## Resolution\nRolled back [S1].\n## Action items\n- Proposed: review [S1]\n")
    demo_copilot.llm = llm
    result = demo_copilot.run(Postmortem(), resolved)
    assert result.backend == "echo" and not result.degraded
    assert [x.text for x in result.sections["Summary"]] == [
        "Checkout failed after a deploy.", "It lasted an hour."]
    rays = result.sections["Root cause"][1]
    assert rays.text == "Cosmic rays." and not rays.supported and result.dropped_citations == ["S77"]
    assert result.frontmatter["root_cause_category"] == "db-connection-exhaustion"
    assert "hypothesis, to be confirmed by the responders" in result.markdown

    demo_copilot.llm = EchoLLM("## Summary\nIt broke [S1].\n## Timeline\n- 14:03 UTC [S1]\n")
    fallback = demo_copilot.run(Postmortem(), resolved)
    assert fallback.degraded and "missing the section(s) Impact, Root cause, Resolution, " \
        "Action items" in (fallback.reason or "")
    assert all(fallback.sections[name] for name in PM_SECTIONS)


def test_rules_never_cite_what_is_not_in_the_evidence() -> None:
    """A hand-made snapshot with no knowledge base: every line still cites the incident's own
    items, and sections with nothing to say say so with a citation."""
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    snap = IncidentSnapshot(id=42, title="Search latency", severity="SEV3", services=["search"],
                            started_at=start, now=start + dt.timedelta(minutes=50))
    from copilot.context import incident_items

    items = incident_items(snap)
    summary = Summary().grounded(snap, items)
    assert all(summary.sections().values())
    assert {c for line in walk_lines(summary) for c in line.citations} == {"incident:42"}
    assert "open for 50 min" in summary.status[0].text
    assert summary.next_steps[-1].text.startswith("Next status update: within 60 min")
    draft = Postmortem(allow_open=True).grounded(snap, items)
    assert draft.frontmatter["root_cause_category"] == "to-be-confirmed"
    assert all(isinstance(x, Line) and x.citations == ["incident:42"]
               for x in walk_lines(draft))
