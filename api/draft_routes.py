"""The drafts workflow over HTTP (copilot/drafts.py) and the public status feed."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.deps import Drafter, Reader, StateDep
from copilot import drafts
from copilot.auth import Principal
from copilot.guardrails.draft_checks import Check, DraftText
from copilot.incidents import get_incident
from copilot.tasks.status_update import StatusUpdate

router = APIRouter(prefix="/v1", tags=["drafts"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


class DraftVersionOut(BaseModel):
    version: int
    title: str
    body: str
    author: str | None
    created_at: dt.datetime
    passed: bool


class DraftOut(BaseModel):
    id: int
    incident_id: int
    stage: str
    audience: str
    state: Literal["draft", "approved", "rejected"]
    version: int
    title: str
    body: str
    components: list[str]
    next_update_at: dt.datetime | None
    checks: list[Check]
    passed: bool
    author: str | None
    approved_by: str | None
    override_reason: str | None
    reject_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    published_at: dt.datetime | None
    versions: list[DraftVersionOut] = Field(default_factory=list)


class DraftRequest(BaseModel):
    stage: Literal["investigating", "identified", "monitoring", "resolved"]
    audience: Literal["customers", "internal"] = "customers"


class DraftEdit(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    components: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None,
                                                                           max_length=50)
    base_version: int = Field(ge=1, description="The version this edit was made on.")


class Approval(BaseModel):
    override_reason: str | None = Field(
        default=None, max_length=2_000,
        description="Approve although blocking checks fail (override permission: commander).")


class Rejection(BaseModel):
    reason: str = Field(min_length=1, max_length=2_000)


class FeedUpdate(BaseModel):
    id: int
    incident_id: int
    stage: str
    title: str
    body: str
    components: list[str]
    published_at: str | None
    next_update_at: str | None


class Feed(BaseModel):
    updated_at: str | None
    updates: list[FeedUpdate]


def _checker(st: Any, incident_id: int, stage: str, audience: str) -> drafts.CheckFn:
    """The status-update task's checks over the incident as it is now."""
    copilot = st.copilot()
    task = StatusUpdate.from_settings(copilot.settings, stage=stage, audience=audience)

    def check(text: DraftText) -> list[Check]:
        return task.run_checks(text, copilot.snapshot(incident_id))

    return check


@router.get("/incidents/{incident_id}/drafts", response_model=list[DraftOut])
def incident_drafts(incident_id: Id, st: StateDep, _: Reader) -> Any:
    with st.store.session() as s:
        get_incident(s, incident_id)
        return [drafts.view(d) for d in drafts.list_drafts(s, incident_id)]


@router.post("/incidents/{incident_id}/drafts", response_model=DraftOut, status_code=201)
def generate_draft(incident_id: Id, body: DraftRequest, st: StateDep, who: Drafter) -> Any:
    """Write a draft with the copilot (stored as version 1, with its checks)."""
    copilot = st.copilot()
    task = StatusUpdate.from_settings(copilot.settings, stage=body.stage, audience=body.audience)
    result = copilot.run(task, copilot.snapshot(incident_id))
    with st.store.session() as s:
        draft = drafts.create(
            s, incident_id=incident_id, stage=body.stage, audience=body.audience,
            title=result.title, body=result.body, components=list(result.components),
            next_update_at=result.next_update_at, checks=result.checks, who=who)
        return drafts.view(draft)


@router.get("/drafts/{draft_id}", response_model=DraftOut)
def draft(draft_id: Id, st: StateDep, _: Reader) -> Any:
    with st.store.session() as s:
        return drafts.view(drafts.get_draft(s, draft_id))


def _step(st: Any, draft_id: int, who: Principal, action: str, **kw: Any) -> Any:
    with st.store.session() as s:
        d = drafts.get_draft(s, draft_id)
        ident = (d.incident_id, d.stage.value, d.audience)
    check = _checker(st, *ident)  # the snapshot is read outside the write transaction
    with st.store.session() as s:
        d = drafts.get_draft(s, draft_id)
        if action == "edit":
            drafts.edit(s, d, check=check, who=who, **kw)
        elif action == "approve":
            drafts.approve(s, d, check=check, who=who, **kw)
        else:
            drafts.reject(s, d, who=who, **kw)
        s.flush()
        return drafts.view(d)


@router.put("/drafts/{draft_id}", response_model=DraftOut, responses={409: {}})
def edit_draft(draft_id: Id, body: DraftEdit, st: StateDep, who: Drafter) -> Any:
    """Save an edit as a new version; the checks run again on it."""
    return _step(st, draft_id, who, "edit", title=body.title, body=body.body,
                 components=body.components, base_version=body.base_version)


@router.post("/drafts/{draft_id}/approve", response_model=DraftOut, responses={
    409: {"description": "A blocking check fails: `failed_checks` lists them."}})
def approve_draft(draft_id: Id, body: Approval, st: StateDep, who: Drafter) -> Any:
    """Approve; a customer update is published to the feed. Refused while a blocking check
    fails, unless a commander gives ``override_reason`` (audited)."""
    return _step(st, draft_id, who, "approve", override_reason=body.override_reason)


@router.post("/drafts/{draft_id}/reject", response_model=DraftOut)
def reject_draft(draft_id: Id, body: Rejection, st: StateDep, who: Drafter) -> Any:
    return _step(st, draft_id, who, "reject", reason=body.reason)


@router.get("/feed/status.json", response_model=Feed, tags=["feed"])
def status_feed(st: StateDep) -> Any:
    """Approved customer updates, newest first, for a status page. Public: it holds only
    text a comms lead approved for customers."""
    with st.store.session() as s:
        return drafts.feed(s)
