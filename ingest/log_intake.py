"""Log intake for an incident: store the lines, (re)mine the incident's patterns, and score each
as new or spiking relative to the lines from before the incident started."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from copilot.incidents import get_incident, log
from copilot.models import LogLine, LogPattern
from copilot.store import IncidentStore
from ingest.logmine import DrainMiner, Template
from ingest.logs import ParsedLine, mine_patterns


class _RecordingMiner(DrainMiner):
    """Remembers which template each line joined, to link stored lines to their pattern."""

    def __init__(self) -> None:
        super().__init__()
        self.assigned: dict[int, int] = {}

    def add(self, text: str, *, line_id: int | None = None, when: Any = None,
            level: str | None = None) -> Template:
        template = super().add(text, line_id=line_id, when=when, level=level)
        if line_id is not None:
            self.assigned[line_id] = template.id
        return template


def record_logs(store: IncidentStore, *, incident_id: int, lines: list[ParsedLine],
                top: int = 5) -> dict[str, Any]:
    """Store ``lines`` for the incident and recompute its patterns; one transaction."""
    with store.session() as session:
        incident = get_incident(session, incident_id)
        rows = [LogLine(incident_id=incident.id, ts=ln.ts, level=ln.level, service=ln.service,
                        message=ln.message) for ln in lines]
        session.add_all(rows)
        session.flush()
        stored = session.scalars(select(LogLine).where(LogLine.incident_id == incident.id)
                                 .order_by(LogLine.id)).all()
        parsed = [ParsedLine(line_no=r.id, ts=r.ts, level=r.level, service=r.service,
                             message=r.message, raw=r.message) for r in stored]
        miner = _RecordingMiner()
        stats = mine_patterns(parsed, incident_start=incident.started_at, miner=miner)
        # Lines point at the old patterns: unlink them before the patterns go (foreign key).
        session.execute(update(LogLine).where(LogLine.incident_id == incident.id)
                        .values(pattern_id=None).execution_options(synchronize_session="fetch"))
        session.execute(delete(LogPattern).where(LogPattern.incident_id == incident.id))
        session.flush()
        by_template: dict[int, LogPattern] = {}
        for st in stats:
            pattern = LogPattern(
                incident_id=incident.id, template=st.template, count=st.count,
                baseline_count=st.baseline_count, first_seen=st.first_seen,
                last_seen=st.last_seen, level=st.level, sample_line_ids=st.sample_line_nos,
                score=round(st.score, 4))
            session.add(pattern)
            by_template[st.template_id] = pattern
        session.flush()
        for row in stored:
            tpl = miner.assigned.get(row.id)
            if tpl is not None and tpl in by_template:
                row.pattern_id = by_template[tpl].id
        leaders = [s for s in stats[:top]]
        summary = "; ".join(f"{'NEW ' if s.is_new else ''}{s.level or ''} ×{s.incident_count} "
                            f"{s.template[:80]}" for s in leaders[:3])
        log(incident, f"{len(rows)} log lines added ({len(stats)} patterns). "
            f"Top new or spiking: {summary}", kind="logs")
        return {"lines": len(rows), "total_lines": len(stored), "patterns": len(stats),
                "top": [{"template": s.template, "level": s.level, "count": s.count,
                         "baseline": s.baseline_count, "new": s.is_new,
                         "score": round(s.score, 3)} for s in leaders]}
