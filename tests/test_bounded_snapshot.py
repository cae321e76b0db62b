"""An alert storm: a task and the incident page read a bounded part of a huge incident (the
first alert of each name, the most recent ones, every recent note) with exact counts."""

from __future__ import annotations

import datetime as dt

from copilot.context import (
    FIRST_AUTO,
    MAX_ALERTS,
    MAX_AUTO_ENTRIES,
    bounded_timeline,
    incident_items,
    snapshot_from_store,
)
from copilot.models import Alert, Severity, TimelineEntry
from copilot.tasks.summary import Summary

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _storm(store, alerts: int, entries: int) -> int:  # type: ignore[no-untyped-def]
    from copilot.incidents import open_incident

    with store.session() as s:
        incident = open_incident(s, title="storm", severity=Severity.SEV2, services=["api"],
                                 started_at=T0, at=T0)
        s.flush()
        for n in range(alerts):
            s.add(Alert(incident_id=incident.id, source="generic", fingerprint=f"fp-{n}",
                        name=f"Alert{n % 3}" if n < alerts - 1 else "LateAlert",
                        status="firing" if n % 2 else "resolved", service="api",
                        starts_at=T0 + dt.timedelta(seconds=n)))
        for n in range(entries):
            s.add(TimelineEntry(incident_id=incident.id, kind="alert", text=f"delivery {n}",
                                at=T0 + dt.timedelta(seconds=n)))
        s.add(TimelineEntry(incident_id=incident.id, kind="note", actor="Kim Park",
                            text="early note", at=T0 + dt.timedelta(seconds=5)))
        return incident.id


def test_a_storm_is_read_bounded_with_exact_counts(incident_store) -> None:  # type: ignore[no-untyped-def]
    incident_id = _storm(incident_store, alerts=1_000, entries=3_000)
    with incident_store.session() as s:
        snap = snapshot_from_store(s, incident_id, now=T0 + dt.timedelta(hours=2))
        timeline = bounded_timeline(s, incident_id)
    assert len(snap.alerts) <= MAX_ALERTS < snap.alert_count == 1_000
    assert snap.firing_count == 500
    names = {a.name for a in snap.alerts}
    assert names == {"Alert0", "Alert1", "Alert2", "LateAlert"}  # first of each, and the latest
    assert [a.id for a in snap.alerts] == sorted(a.id for a in snap.alerts)
    texts = [e.text for e in timeline]
    assert "early note" in texts  # what people wrote is never pushed out by a storm
    deliveries = {int(t.split()[1]) for t in texts if t.startswith("delivery ")}
    recent = MAX_AUTO_ENTRIES - FIRST_AUTO
    assert deliveries == set(range(FIRST_AUTO)) | set(range(3_000 - recent, 3_000))
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    summary = Summary().grounded(snap, incident_items(snap))
    lines = [line.text for section in summary.sections().values() for line in section]
    assert any("500 of 1000 alerts still firing" in text for text in lines), lines


def test_a_small_incident_is_read_whole(incident_store) -> None:  # type: ignore[no-untyped-def]
    incident_id = _storm(incident_store, alerts=12, entries=30)
    with incident_store.session() as s:
        snap = snapshot_from_store(s, incident_id, now=T0 + dt.timedelta(hours=2))
    assert len(snap.alerts) == snap.alert_count == 12 and snap.firing_count == 6
    assert len(snap.timeline) >= 31


def test_changes_before_an_incident_stamped_ahead_of_the_clock_are_kept(incident_store) -> None:  # type: ignore[no-untyped-def]
    """Replayed or imported incidents can carry times after the server's clock: the changes
    made before them still belong to them (the window ends at the incident's latest record,
    not at a "now" that precedes it)."""
    from copilot.models import ChangeEvent

    incident_id = _storm(incident_store, alerts=2, entries=1)
    with incident_store.session() as s:
        s.add(ChangeEvent(kind="feature_flag", service="dashboard", author="hk@example.com",
                          at=T0 - dt.timedelta(minutes=70), description="flag to 100%"))
        s.add(ChangeEvent(kind="deploy", service="api", at=T0 + dt.timedelta(days=3)))
    with incident_store.session() as s:
        before = snapshot_from_store(s, incident_id, now=T0 - dt.timedelta(days=10))
        later = snapshot_from_store(s, incident_id, now=T0 + dt.timedelta(hours=2))
    assert [c.description for c in before.changes] == ["flag to 100%"]
    assert [c.description for c in later.changes] == ["flag to 100%"]  # not the later deploy


def test_an_incident_stamped_ahead_of_the_clock_is_open_until_its_latest_record(incident_store) -> None:  # type: ignore[no-untyped-def]
    """Its summary says how long it has been open by its own records, not "0 min"."""
    incident_id = _storm(incident_store, alerts=2, entries=3)
    with incident_store.session() as s:
        snap = snapshot_from_store(s, incident_id, now=T0 - dt.timedelta(days=10))
    assert snap.now == T0 + dt.timedelta(seconds=5)  # the note, its latest record
    with incident_store.session() as s:  # a clock after the records is the clock
        assert snapshot_from_store(s, incident_id, now=T0 + dt.timedelta(hours=2)).now == (
            T0 + dt.timedelta(hours=2))
