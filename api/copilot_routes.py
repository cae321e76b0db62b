"""The copilot's tasks over HTTP, under ``/v1``: every task returns its typed result (the
OpenAPI schema is the pydantic model), and chat streams as Server-Sent Events.

Routes are plain ``def`` so the blocking work (retrieval, a model call) runs in the worker
thread pool, not on the event loop. Each route names the permission it needs (api/deps.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import Chatter, Drafter, Reader, Summarizer
from copilot.tasks.chat import Chat, ChatResult
from copilot.tasks.postmortem import Postmortem, PostmortemResult
from copilot.tasks.root_causes import RootCauseResult, RootCauses
from copilot.tasks.runbooks import RunbookResult, Runbooks
from copilot.tasks.status_update import StatusDraftResult, StatusUpdate
from copilot.tasks.summary import Summary, SummaryResult

router = APIRouter(prefix="/v1", tags=["copilot"])

BackendName = Literal["grounded", "local", "openai"]
BackendQuery = Annotated[BackendName | None, Query(
    description="Override the configured LLM backend for this request.")]


def get_copilot(request: Request, backend: BackendQuery = None) -> Any:
    from copilot.errors import ConfigError
    from copilot.tasks.base import TaskError

    try:
        return request.app.state.copilot.copilot(backend)
    except ConfigError as exc:
        if backend is None:
            raise  # the configured backend is broken: 503
        raise TaskError(f"backend {backend!r} is not available on this server: {exc}") from exc


CopilotDep = Annotated[Any, Depends(get_copilot)]


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8_000)


class ChatRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4_000)
    history: list[Turn] = Field(default_factory=list, max_length=50)


IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class AlertBody(BaseModel):
    labels: dict[str, Annotated[str, Field(max_length=2_000)]] = Field(
        description="Must include alertname.", max_length=100)
    annotations: dict[str, Annotated[str, Field(max_length=8_000)]] = Field(
        default_factory=dict, max_length=100)
    expr: str = Field(default="", max_length=8_000)
    status: Literal["firing", "resolved"] = "firing"


@router.get("/incidents/{incident_id}/root-causes", response_model=RootCauseResult)
def root_causes(incident_id: IncidentId, copilot: CopilotDep, _: Reader) -> Any:
    """Ranked hypotheses with evidence and a confirming check, or an abstention."""
    return copilot.run(RootCauses(), copilot.snapshot(incident_id))


@router.get("/incidents/{incident_id}/runbooks", response_model=RunbookResult)
def incident_runbooks(incident_id: IncidentId, copilot: CopilotDep, _: Reader) -> Any:
    return copilot.run(Runbooks(), copilot.snapshot(incident_id))


@router.post("/runbooks", response_model=RunbookResult)
def alert_runbooks(alert: AlertBody, copilot: CopilotDep, _: Reader) -> Any:
    """Runbooks for one alert (labels, annotations, PromQL expression)."""
    from copilot.context import snapshot_from_alert
    from copilot.tasks.base import TaskError

    if not alert.labels.get("alertname"):
        raise TaskError("labels.alertname: an alert needs its name")
    return copilot.run(Runbooks(), snapshot_from_alert(alert.model_dump()))


@router.get("/incidents/{incident_id}/status-draft", response_model=StatusDraftResult)
def status_draft(
    incident_id: IncidentId, copilot: CopilotDep, _: Drafter,
    stage: Literal["investigating", "identified", "monitoring", "resolved"] = "investigating",
    audience: Literal["customers", "internal"] = "customers",
) -> Any:
    """A status-update draft with the checks it passed or failed (not yet stored)."""
    task = StatusUpdate.from_settings(copilot.settings, stage=stage, audience=audience)
    return copilot.run(task, copilot.snapshot(incident_id))


@router.get("/incidents/{incident_id}/summary", response_model=SummaryResult)
def summary(incident_id: IncidentId, copilot: CopilotDep, _: Summarizer) -> Any:
    return copilot.run(Summary(), copilot.snapshot(incident_id))


@router.get("/incidents/{incident_id}/postmortem", response_model=PostmortemResult)
def postmortem(incident_id: IncidentId, copilot: CopilotDep, _: Summarizer) -> Any:
    """A postmortem draft; 400 while the incident is not resolved."""
    return copilot.run(Postmortem(), copilot.snapshot(incident_id))


@router.post("/incidents/{incident_id}/chat", response_model=ChatResult, responses={
    200: {"content": {"text/event-stream": {}},
          "description": "With `Accept: text/event-stream`: `token` events, then one `final` "
                         "event whose data is the ChatResult (and `replace`); an `error` event "
                         "if the answer fails midway."}})
def chat(incident_id: IncidentId, body: ChatRequest, request: Request, copilot: CopilotDep,
         _: Chatter) -> Any:
    """Answer a question about the incident with citations; streamed as Server-Sent Events
    when the client accepts ``text/event-stream``."""
    task = Chat(body.question, history=[(t.role, t.content) for t in body.history])
    snap = copilot.snapshot(incident_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return copilot.run(task, snap)
    events: Iterator[str] | AsyncIterator[str] = _sse(copilot.stream(task, snap))
    if copilot.llm is None:
        # A grounded answer is complete before its first word goes out: written here, in
        # this worker thread, instead of one thread-pool hop per word, which under load made
        # clients wait seconds between the first and the last word.
        events = _replay(list(events))
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _replay(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


class SearchHit(BaseModel):
    doc_id: str
    title: str
    kind: str
    source: str
    score: float
    services: list[str] = Field(default_factory=list)
    date: str | None = None
    chunks: list[dict[str, Any]] = Field(default_factory=list)


@router.get("/search", response_model=list[SearchHit])
def search(copilot: CopilotDep, _: Reader,
           q: Annotated[str, Query(min_length=1, max_length=1_000)],
           kind: Annotated[Literal["runbook", "postmortem", "document"] | None, Query()] = None,
           service: Annotated[str | None, Query(max_length=200)] = None,
           k: Annotated[int, Query(ge=1, le=50)] = 5) -> Any:
    """Hybrid search over the knowledge base (dense + BM25), best documents first."""
    from retrieval.hybrid import Filters

    filters = Filters(kinds=(kind,) if kind else (), services=(service,) if service else ())
    return [hit.to_dict() for hit in copilot.retriever.search(q, k=k, filters=filters)]


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Token events, then the final one. The 200 is already sent when a stream starts, so a
    failure midway becomes an ``error`` event rather than a status code."""
    import logging

    from copilot.errors import CopilotError

    try:
        for event in events:
            if event["type"] == "token":
                yield f"event: token\ndata: {json.dumps({'text': event['text']})}\n\n"
            else:
                data = {"replace": event["replace"],
                        "result": event["result"].model_dump(mode="json")}
                yield f"event: final\ndata: {json.dumps(data)}\n\n"
    except CopilotError as exc:
        yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n"
    except Exception as exc:
        logging.getLogger("copilot.api").error("chat stream failed", exc_info=exc)
        yield f"event: error\ndata: {json.dumps({'error': 'internal error; see the server log'})}\n\n"
