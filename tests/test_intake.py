"""Alert intake and routing, change events, incident operations and metrics, on the real store
(SQLite here; the store itself is also tested on PostgreSQL in test_store.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select

from copilot.config import Settings
from copilot.errors import ConfigError, IngestError
from copilot.incidents import (
    IncidentError, acknowledge, assign, get_incident, metrics, set_status,
)
from copilot.models import Alert, ChangeEvent, Incident, Severity, Status, TimelineEntry
from copilot.store import IncidentStore
from ingest.alerts import AlertEvent
from ingest.changes import parse_changes, record_changes
from ingest.intake import record_alerts
from ingest.routing import RoutingRules, load_rules
from tests.conftest import write

T0 = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)


def event(name: str = "CheckoutHighErrorRate", *, status: str = "firing", fp: str = "fp1",
          service: str | None = "checkout-api", severity: str | None = "critical",
          starts: dt.datetime = T0, ends: dt.datetime | None = None, group: str | None = None,
          source: str = "alertmanager", **labels: str) -> AlertEvent:
    return AlertEvent(source=source, fingerprint=fp, name=name, status=status, severity=severity,
                      service=service, group_key=group,
                      labels={"alertname": name, **({"severity": severity} if severity else {}),
                              **labels},
                      annotations={"summary": f"{name} fired"}, starts_at=starts, ends_at=ends,
                      received_payload_index=0)


@pytest.fixture
def store(incident_store: IncidentStore) -> IncidentStore:
    return incident_store


def count(store: IncidentStore, model: type) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def timeline(store: IncidentStore, incident_id: int) -> list[str]:
    with store.session() as s:
        return [e.text for e in get_incident(s, incident_id).timeline]


def test_firing_alert_opens_incident_with_mapped_severity(store: IncidentStore) -> None:
    res = record_alerts(store, [event()], RoutingRules(), now=T0 + dt.timedelta(minutes=2))
    [out] = res.outcomes
    assert out["outcome"] == "new, opened incident"
    with store.session() as s:
        inc = get_incident(s, int(out["incident_id"]))
        assert (inc.severity, inc.services, inc.started_at) == (Severity.SEV1, ["checkout-api"], T0)
        assert inc.detected_at == T0 + dt.timedelta(minutes=2)
    lines = timeline(store, int(out["incident_id"]))
    assert "label severity=critical maps to SEV1" in lines[0]
    assert "CheckoutHighErrorRate (alertmanager) opened this incident" in lines[1]


def test_repeated_delivery_is_a_noop(store: IncidentStore) -> None:
    record_alerts(store, [event()], RoutingRules(), now=T0)
    before = (count(store, Alert), count(store, Incident), count(store, TimelineEntry))
    res = record_alerts(store, [event()], RoutingRules(), now=T0 + dt.timedelta(minutes=5))
    assert res.outcomes[0]["outcome"] == "duplicate"
    assert (count(store, Alert), count(store, Incident), count(store, TimelineEntry)) == before


def test_firing_then_resolved_updates_the_alert(store: IncidentStore) -> None:
    res = record_alerts(store, [event()], RoutingRules(), now=T0)
    inc_id = int(res.outcomes[0]["incident_id"])
    end = T0 + dt.timedelta(minutes=30)
    res = record_alerts(store, [event(status="resolved", ends=end)], RoutingRules(), now=end)
    assert res.outcomes[0]["outcome"] == "resolved"
    with store.session() as s:
        alert = s.scalars(select(Alert)).one()
        assert (alert.status, alert.ends_at, alert.deliveries) == ("resolved", end, 2)
    assert timeline(store, inc_id)[-1] == "Alert CheckoutHighErrorRate resolved"
    assert count(store, Incident) == 1  # a resolve never opens an incident


def test_resolve_before_firing(store: IncidentStore) -> None:
    end = T0 + dt.timedelta(minutes=10)
    res = record_alerts(store, [event(status="resolved", ends=end)], RoutingRules(), now=end)
    assert res.outcomes[0]["outcome"] == "resolved before firing"
    assert count(store, Incident) == 0
    late = record_alerts(store, [event(status="firing")], RoutingRules(), now=end)
    assert late.outcomes[0]["outcome"] == "stale"  # the late firing does not reopen anything
    assert count(store, Incident) == 0
    with store.session() as s:
        assert s.scalars(select(Alert)).one().status == "resolved"


def test_related_alert_attaches_and_raises_severity(store: IncidentStore) -> None:
    first = record_alerts(store, [event(severity="warning")], RoutingRules(), now=T0)
    inc_id = first.outcomes[0]["incident_id"]
    second = record_alerts(store, [event("CheckoutLatencyHigh", fp="fp2", severity="critical")],
                           RoutingRules(), now=T0 + dt.timedelta(minutes=10))
    assert second.outcomes[0] == {**second.outcomes[0], "incident_id": inc_id,
                                  "outcome": "new, attached"}
    lines = timeline(store, int(inc_id))
    assert any("attached: same service checkout-api within 60 min" in t for t in lines)
    assert any("Severity raised SEV3 → SEV1" in t for t in lines)
    other = record_alerts(store, [event("DiskFull", fp="fp3", service="kafka-events")],
                          RoutingRules(), now=T0 + dt.timedelta(minutes=11))
    assert other.outcomes[0]["incident_id"] != inc_id
    late = record_alerts(store, [event("CheckoutSlow", fp="fp4")], RoutingRules(window_minutes=30),
                         now=T0 + dt.timedelta(hours=3))
    assert late.outcomes[0]["incident_id"] not in (inc_id, other.outcomes[0]["incident_id"])


def test_same_group_attaches_across_services(store: IncidentStore) -> None:
    a = record_alerts(store, [event(group="g1")], RoutingRules(), now=T0)
    b = record_alerts(store, [event("LedgerSlow", fp="x", service="ledger-db", group="g1")],
                      RoutingRules(), now=T0)
    assert a.outcomes[0]["incident_id"] == b.outcomes[0]["incident_id"]
    with store.session() as s:
        assert get_incident(s, int(a.outcomes[0]["incident_id"])).services == ["checkout-api", "ledger-db"]


def test_rules_file_ignore_and_override(tmp_path: Path, store: IncidentStore) -> None:
    path = write(tmp_path / "routing.yaml", """
window_minutes: 15
severity:
  labels: [priority]
  map: {P1: SEV1}
  default: SEV4
rules:
  - match: {alertname: Watchdog}
    action: ignore
  - match: {service: payments-gateway}
    severity: SEV2
""")
    rules = load_rules(path)
    res = record_alerts(store, [event("Watchdog", fp="w", service=None)], rules, now=T0)
    assert res.outcomes[0]["outcome"] == "ignored" and count(store, Incident) == 0
    res = record_alerts(store, [event("PayFail", fp="p", service="payments-gateway")], rules, now=T0)
    res2 = record_alerts(store, [event("Other", fp="o", service="x", priority="P1")], rules, now=T0)
    with store.session() as s:
        assert get_incident(s, int(res.outcomes[0]["incident_id"])).severity is Severity.SEV2
        assert get_incident(s, int(res2.outcomes[0]["incident_id"])).severity is Severity.SEV1


@pytest.mark.parametrize(("text", "words"), [
    ("window_minutes: [", "invalid YAML"),
    ("window_minutes: 0", "window_minutes: Input should be greater than or equal to 1"),
    ("rules:\n  - match: {a: b}\n    action: explode", "rules.0.action"),
])
def test_bad_rules_file(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        load_rules(write(tmp_path / "r.yaml", text))


def test_changes_are_stored_deduplicated_and_noted(store: IncidentStore) -> None:
    res = record_alerts(store, [event()], RoutingRules(), now=T0)
    inc_id = int(res.outcomes[0]["incident_id"])
    payload = {"changes": [
        {"id": "d-1", "kind": "deploy", "service": "checkout-api", "version": "2.71.0",
         "author": "ci", "time": "2026-11-27T13:55:00Z", "description": "pool size 40"},
        {"kind": "config", "service": "edge-proxy", "time": "2026-11-27T13:50:00+01:00"},
    ]}
    out = record_changes(store, parse_changes(payload))
    assert out[0]["incidents"] == [inc_id] and out[1]["incidents"] == []
    assert record_changes(store, parse_changes(payload["changes"][0]))[0]["outcome"] == "duplicate"
    assert count(store, ChangeEvent) == 2
    assert any("Change: deploy of checkout-api 2.71.0 by ci — pool size 40" in t
               for t in timeline(store, inc_id))


@pytest.mark.parametrize(("payload", "words"), [
    ("{nope", "not valid JSON"),
    ({"kind": "deploy", "time": "2026-11-27T13:55:00Z"}, "change.service: required"),
    ({"service": "a", "time": "yesterday"}, "change.time: not an RFC 3339 time"),
    ({"service": "a", "time": "2026-11-27T13:55:00"}, "has no timezone"),
    ({"service": "a", "kind": "reboot", "time": "2026-11-27T13:55:00Z"}, "kind: 'reboot' is not"),
    ({"changes": [{"service": "a", "time": "2026-11-27T13:55:00Z"}, {"time": "x"}]},
     "changes[1].service: required"),
])
def test_bad_change_payloads(store: IncidentStore, payload: object, words: str) -> None:
    with pytest.raises(IngestError, match=words.replace("[", r"\[")):
        parse_changes(payload)  # type: ignore[arg-type]
    assert count(store, ChangeEvent) == 0


def test_status_roles_and_metrics(store: IncidentStore) -> None:
    res = record_alerts(store, [event(starts=T0)], RoutingRules(), now=T0 + dt.timedelta(minutes=4))
    inc_id = int(res.outcomes[0]["incident_id"])
    with store.session() as s:
        inc = get_incident(s, inc_id)
        acknowledge(s, inc, actor="ana", at=T0 + dt.timedelta(minutes=6))
        assign(s, inc, role="commander", person="ana", actor="ana")
        set_status(s, inc, Status.identified, actor="ana", at=T0 + dt.timedelta(minutes=20))
        set_status(s, inc, Status.monitoring, actor="ana", at=T0 + dt.timedelta(minutes=30))
        set_status(s, inc, Status.resolved, actor="ana", at=T0 + dt.timedelta(minutes=50))
        with pytest.raises(IncidentError, match="only be reopened"):
            set_status(s, inc, Status.monitoring, actor="ana")
        with pytest.raises(IncidentError, match="unknown role"):
            assign(s, inc, role="chef", person="x", actor="ana")
    with store.session() as s:
        m = metrics(s)
    assert m["incidents"] == 1
    assert (m["mttd"]["mean"], m["mtta"]["mean"], m["mttm"]["mean"], m["mttr"]["mean"]) == \
        (4.0, 2.0, 30.0, 50.0)
    lines = timeline(store, inc_id)
    assert "Acknowledged by ana" in lines and "commander: ana" in lines
    assert "Status monitoring → resolved" in lines


def test_logs_are_stored_mined_and_scored_against_the_baseline(store: IncidentStore) -> None:
    from copilot.models import LogLine, LogPattern
    from ingest.log_intake import record_logs
    from ingest.logs import read_lines

    res = record_alerts(store, [event(starts=T0)], RoutingRules(), now=T0)
    inc_id = int(res.outcomes[0]["incident_id"])
    text = []
    for m in range(60):  # an hour of steady traffic before, twenty minutes after
        ts = T0 - dt.timedelta(minutes=60 - m)
        text.append(f"{ts.isoformat()} INFO request served in {m % 7 + 3} ms")
    for m in range(20):
        ts = T0 + dt.timedelta(minutes=m)
        text.append(f"{ts.isoformat()} INFO request served in {m % 5 + 9} ms")
        text += [f"{ts.isoformat()} ERROR pool timeout after {30 + n} s waiting for ledger-db"
                 for n in range(5)]
    out = record_logs(store, incident_id=inc_id, lines=list(read_lines(text)))
    assert out["lines"] == 180 and out["patterns"] == 2
    assert out["top"][0]["new"] and out["top"][0]["level"] == "ERROR"
    assert out["top"][0]["template"] == "pool timeout after <*> s waiting for ledger-db"
    assert not out["top"][1]["new"] and out["top"][1]["baseline"] == 60
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(LogLine)) == 180
        patterns = s.scalars(select(LogPattern).order_by(LogPattern.score.desc())).all()
        assert patterns[0].count == 100 and len(patterns[0].sample_line_ids) == 5
        linked = s.scalars(select(LogLine).where(LogLine.pattern_id == patterns[0].id)).all()
        assert len(linked) == 100
    assert "Top new or spiking: NEW ERROR ×100" in timeline(store, inc_id)[-1]
    with pytest.raises(IncidentError, match="no incident with id 99"):
        record_logs(store, incident_id=99, lines=[])


def test_changes_before_an_incident_are_noted_when_it_opens(store: IncidentStore) -> None:
    record_changes(store, parse_changes({"id": "d9", "service": "checkout-api", "kind": "deploy",
                                         "version": "2.84.0", "time": "2026-11-27T13:56:00Z"}))
    record_changes(store, parse_changes({"id": "old", "service": "checkout-api",
                                         "time": "2026-11-27T09:00:00Z"}))
    res = record_alerts(store, [event(starts=T0)], RoutingRules(), now=T0)
    lines = timeline(store, int(res.outcomes[0]["incident_id"]))
    assert lines[0] == "Change: deploy of checkout-api 2.84.0"  # ordered by time, before opening
    assert not any("09:00" in t or t.endswith("checkout-api") and "deploy" not in t for t in lines)
    assert sum(t.startswith("Change:") for t in lines) == 1


def test_concurrent_deliveries_of_a_new_alert_do_not_fail(store: IncidentStore) -> None:
    """Two threads post the same new alert at once (as two API workers would)."""
    import threading

    results: list[object] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            results.append(record_alerts(store, [event()], RoutingRules(), now=T0))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert count(store, Alert) == 1 and count(store, Incident) == 1
