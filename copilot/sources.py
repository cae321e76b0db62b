"""What a citation points at: any id the copilot cites (``chunk:<id>``, ``alert:N``,
``change:N``, ``timeline:N``, ``pattern:N``, ``log:N``, ``incident:N``) resolved to its full
text, for the panel's source viewer and for checking citations in evaluations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from copilot.incidents import IncidentError, get_incident
from copilot.models import Alert, LogLine

ID_FORMS = "alert:N, change:N, timeline:N, pattern:N, log:N, incident:N or chunk:<id>"


@dataclass
class Source:
    id: str
    kind: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}


def resolve(copilot: Any, incident_id: int, source_id: str) -> Source:
    """The source ``source_id`` of incident ``incident_id``; IncidentError if there is none."""
    kind, _, key = source_id.partition(":")
    if kind == "chunk":
        chunk = copilot.retriever.index.catalog.get_chunks([key]).get(key)
        if chunk is None:
            raise IncidentError(f"no incident source {source_id!r}: no such chunk")
        return Source(source_id, str(chunk.metadata.get("kind", "chunk")),
                      str(chunk.metadata.get("title", chunk.doc_id)), chunk.text,
                      {"doc_id": chunk.doc_id, **_plain(chunk.metadata)})
    with copilot.store.session() as s:
        get_incident(s, incident_id)
        if kind == "log" and key.isdigit():
            line = s.get(LogLine, int(key))
            if line is None or line.incident_id != incident_id:
                raise IncidentError(f"no incident source {source_id!r}: no such log line")
            return Source(source_id, "log", f"{line.service or 'log'} {line.level or ''}".strip(),
                          line.message, {"ts": line.ts.isoformat() if line.ts else None,
                                         "pattern_id": line.pattern_id})
    from copilot.context import incident_items

    for item in incident_items(copilot.snapshot(incident_id)):
        if item.id == source_id:
            text = item.text
            if kind == "pattern" and key.isdigit():
                text += "\n\n" + "\n".join(_sample_lines(copilot, incident_id, int(key)))
            if kind == "alert" and key.isdigit():
                text += _alert_labels(copilot, int(key))
            return Source(item.id, item.kind, item.title or item.id, text, _plain(item.meta))
    raise IncidentError(f"no incident source {source_id!r}: ids look like {ID_FORMS}")


def source_text(copilot: Any, incident_id: int, source_id: str) -> str:
    """The source's full text, or "" when it does not exist."""
    try:
        return resolve(copilot, incident_id, source_id).text
    except IncidentError:
        return ""


def _sample_lines(copilot: Any, incident_id: int, pattern_id: int) -> list[str]:
    with copilot.store.session() as s:
        rows = s.scalars(select(LogLine).where(LogLine.pattern_id == pattern_id,
                                               LogLine.incident_id == incident_id)
                         .order_by(LogLine.ts, LogLine.id).limit(5))
        return [f"[log:{r.id}] {r.ts.isoformat() if r.ts else ''} {r.message}" for r in rows]


def _alert_labels(copilot: Any, alert_id: int) -> str:
    with copilot.store.session() as s:
        a = s.get(Alert, alert_id)
        labels = ", ".join(f"{k}={v}" for k, v in sorted((a.labels or {}).items())) if a else ""
        return f"\n\nlabels: {labels}" if labels else ""
