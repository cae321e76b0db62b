"""Ingest over HTTP: alert webhooks (per-source tokens), change events, log lines and
knowledge-base documents. Everything is committed before the answer, so an acknowledged
delivery is never lost; each request is audited."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from api.deps import Ingester, StateDep, webhook_principal
from copilot import audit
from copilot.auth import Principal
from copilot.errors import IngestError

router = APIRouter(prefix="/v1", tags=["ingest"])
_ingest_lock = threading.Lock()
RAW_BODY = {"content": {"application/json": {"schema": {"type": "object"}},
                        "text/plain": {"schema": {"type": "string"}}}, "required": True}




class AlertsAccepted(BaseModel):
    accepted: int
    outcomes: list[dict[str, Any]] = Field(
        description="Per alert: alert_id, incident_id and outcome (opened incident, attached, "
                    "duplicate, resolved…).")


class ChangesAccepted(BaseModel):
    accepted: int
    results: list[dict[str, Any]] = Field(description="Per change: id, outcome, incidents noted.")


class LogPatternOut(BaseModel):
    template: str
    level: str | None
    count: int
    baseline: int
    new: bool
    score: float


class LogsAccepted(BaseModel):
    lines: int
    total_lines: int
    patterns: int
    top: list[LogPatternOut]


class IngestReportOut(BaseModel):
    files: int
    documents: int
    new: int
    changed: int
    unchanged: int
    removed: int
    chunks_embedded: int
    chunks_reused: int
    chunks_deleted: int
    repaired: list[str]
    errors: list[dict[str, Any]]
    seconds: float


@router.post("/webhooks/alerts/{source}", response_model=AlertsAccepted,
             openapi_extra={"requestBody": RAW_BODY})
async def post_alerts(source: Literal["alertmanager", "grafana", "pagerduty", "generic"],
                      request: Request, st: StateDep,
                      who: Annotated[Principal, Depends(webhook_principal)]) -> Any:
    """Alertmanager (v4), Grafana, PagerDuty (V3) or generic JSON, exactly as sent."""
    from starlette.concurrency import run_in_threadpool

    from ingest.alerts import parse_alert_payload
    from ingest.intake import record_alerts

    raw = await request.body()  # the app's middleware has enforced the size limit
    events = parse_alert_payload(source, raw, max_bytes=st.settings.max_payload_bytes)

    def audited(s: Any, result: Any) -> None:
        audit.record(s, actor=who.name, role=who.role, action="ingest.alerts",
                     target=f"source:{source}",
                     after={"accepted": len(events),
                            "outcomes": [o.get("outcome") for o in result.outcomes]})

    # The alerts and their audit entry commit together, before we answer.
    result = await run_in_threadpool(record_alerts, st.store, events, st.rules, audit=audited)
    return {"accepted": len(events), "outcomes": result.outcomes}


@router.post("/ingest/changes", response_model=ChangesAccepted, openapi_extra={"requestBody": RAW_BODY})
async def post_changes(request: Request, st: StateDep, who: Ingester) -> dict[str, Any]:
    """Deploys, config changes and feature flags: one JSON object or a list of them."""
    from starlette.concurrency import run_in_threadpool

    from ingest.changes import parse_changes, record_changes

    raw = await request.body()  # the app's middleware has enforced the size limit
    changes = parse_changes(raw, max_bytes=st.settings.max_payload_bytes)

    def store() -> Any:
        results = record_changes(st.store, changes, window_minutes=st.rules.window_minutes)
        with st.store.session() as s:
            audit.record(s, actor=who.name, role=who.role, action="ingest.changes",
                         after={"accepted": len(changes)})
        return results

    return {"accepted": len(changes), "results": await run_in_threadpool(store)}


@router.post("/ingest/logs", response_model=LogsAccepted, openapi_extra={"requestBody": RAW_BODY})
async def post_logs(request: Request, st: StateDep, who: Ingester,
                    incident: Annotated[int, Query(ge=1, le=2**31 - 1)],
                    service: Annotated[str | None, Query(max_length=200)] = None) -> Any:
    """Plain-text or JSON log lines in the body, one per line, for incident ``incident``."""
    from starlette.concurrency import run_in_threadpool

    from ingest.log_intake import record_logs
    from ingest.logs import read_lines

    raw = await request.body()  # the app's middleware has enforced the size limit
    lines = list(read_lines(raw.decode("utf-8", "replace").splitlines(), default_service=service))
    if not lines:  # else an empty post would add a "0 log lines added" timeline entry
        raise IngestError("no log lines in the body: send text or JSON lines, one per line",
                          reason="schema")

    def store() -> Any:
        result = record_logs(st.store, incident_id=incident, lines=lines)
        with st.store.session() as s:
            audit.record(s, actor=who.name, role=who.role, action="ingest.logs",
                         target=f"incident:{incident}", after={"lines": len(lines)})
        return result

    return await run_in_threadpool(store)


class DocumentIn(BaseModel):
    filename: str = Field(min_length=1, max_length=200,
                          description="Name with its type: .md, .txt, .rst, .json, .jsonl")
    content: str = Field(max_length=1_000_000)


class DocumentsIn(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1, max_length=200)
    kind: Literal["runbook", "postmortem", "document"] | None = None


STAGING = ".staging-"
STALE_STAGING_SECONDS = 3600


def _remove_stale_staging(folder: FsPath) -> None:
    """A request killed mid-upload leaves its staging folder behind; an hour later it is
    nobody's."""
    now = time.time()
    for path in folder.glob(f"{STAGING}*"):
        try:
            if now - path.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@router.post("/ingest/documents", response_model=IngestReportOut)
def post_documents(body: DocumentsIn, st: StateDep, who: Ingester) -> Any:
    """Add or update knowledge-base documents (kept under ``<data_dir>/uploads``). Every file
    is parsed first; if one fails nothing is written and the error names it."""
    from ingest.documents import parse_file
    from ingest.pipeline import run_ingest

    uploads = st.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(uploads.parent)
    with tempfile.TemporaryDirectory(dir=uploads.parent, prefix=STAGING) as tmp:
        staged = FsPath(tmp) / "uploads"
        staged.mkdir()
        for n, doc in enumerate(body.documents):
            if not SAFE_NAME.match(doc.filename) or ".." in doc.filename:
                raise IngestError(f"documents.{n}.filename: {doc.filename!r} is not a plain file "
                                  "name (letters, digits, '.', '_', '-')", reason="schema")
            path = staged / doc.filename
            path.write_text(doc.content, encoding="utf-8")
            try:
                parse_file(path, root=staged, kind=body.kind,
                           max_bytes=st.settings.max_file_bytes)
            except IngestError as exc:
                raise IngestError(f"documents.{n} ({doc.filename}): {exc}",
                                  reason="schema") from exc
        with _ingest_lock:
            for path in staged.iterdir():
                shutil.move(str(path), uploads / path.name)
            report = run_ingest([uploads], index=st.copilot().retriever.index,
                                settings=st.settings, kind=body.kind)
    with st.store.session() as s:
        audit.record(s, actor=who.name, role=who.role, action="ingest.documents",
                     after={"files": [d.filename for d in body.documents],
                            "documents": report.documents, "new": report.new,
                            "changed": report.changed})
    return report.to_dict()
