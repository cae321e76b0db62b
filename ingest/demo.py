"""The demo: Lumenfield's knowledge base and its Black Friday incident, loaded the way a user's
own data would be (through ingest, the alert and change webhooks' parsers, and log intake)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from copilot.config import Settings

DEMO = Path(__file__).resolve().parent.parent / "demo"


def build_demo_kb(settings: Settings, retriever: Any, folder: Path = DEMO / "kb") -> Any:
    from ingest.pipeline import run_ingest

    return run_ingest([folder / "postmortems", folder / "runbooks"], index=retriever.index,
                      settings=settings, prune=True)


def load_demo_incident(settings: Settings, folder: Path = DEMO / "incident") -> list[int]:
    """Load the demo incident once: its changes, alerts and (when the incident is new) logs.
    Returns the ids of incidents this call opened."""
    if not folder.exists():
        return []
    from copilot.store import IncidentStore
    from ingest.alerts import parse_alert_payload
    from ingest.changes import parse_changes, record_changes
    from ingest.intake import record_alerts
    from ingest.log_intake import record_logs
    from ingest.logs import read_lines
    from ingest.routing import load_rules

    store = IncidentStore.open(settings)
    rules = load_rules(settings.routing_file)
    record_changes(store, parse_changes((folder / "changes.json").read_bytes()),
                   window_minutes=rules.window_minutes)
    opened: set[int] = set()
    for source, name in (("alertmanager", "alertmanager.json"), ("pagerduty", "pagerduty.json")):
        path = folder / name
        if path.exists():
            events = parse_alert_payload(source, path.read_bytes())
            # Delivered as if live: half a minute after the newest alert started, so detection
            # times are those of the story, not of whenever the demo was loaded.
            starts = [e.starts_at for e in events if e.starts_at]
            now = max(starts) + dt.timedelta(seconds=30) if starts else None
            result = record_alerts(store, events, rules, now=now)
            opened |= {int(o["incident_id"]) for o in result.outcomes
                       if "opened incident" in str(o["outcome"])}
    for log_file in sorted(folder.glob("*.log")):
        for incident_id in sorted(opened)[:1]:
            record_logs(store, incident_id=incident_id,
                        lines=list(read_lines(log_file, default_service=log_file.stem)))
    store.engine.dispose()
    return sorted(opened)
