"""The status-update drafts workflow: generate → edit → approve or reject.

Every version is kept (``draft_versions``). Checks run on every version and again at approval,
on the text being approved; approval is refused while a blocking check fails, unless someone
with the ``override`` permission gives a reason. An approved customer update is published to
the status feed. Each step writes its audit entry in the same transaction.

The checks themselves come from the caller (``check``: the status-update task's checks over
the incident's current snapshot), so this module stays free of retrieval and models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from copilot import audit
from copilot.auth import AuthError, Principal
from copilot.errors import CopilotError
from copilot.guardrails.draft_checks import Check, DraftText, failures
from copilot.models import DraftVersion, Status, StatusDraft, utcnow

CheckFn = Callable[[DraftText], list[Check]]
MIN_OVERRIDE_REASON = 10


class WorkflowError(CopilotError):
    """A draft step that cannot be taken. ``status`` is the HTTP code (404, 409);
    ``failed`` holds the blocking checks that failed when an approval is refused."""

    def __init__(self, message: str, *, status: int = 409,
                 failed: list[Check] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.failed = failed or []


def get_draft(session: Session, draft_id: int) -> StatusDraft:
    draft = session.get(StatusDraft, draft_id)
    if draft is None:
        raise WorkflowError(f"no draft with id {draft_id}", status=404)
    return draft


def list_drafts(session: Session, incident_id: int) -> list[StatusDraft]:
    return list(session.scalars(select(StatusDraft).where(StatusDraft.incident_id == incident_id)
                                .order_by(StatusDraft.id.desc())))


def view(draft: StatusDraft, *, versions: bool = True) -> dict[str, Any]:
    checks = [Check.model_validate(c) for c in draft.checks]
    out: dict[str, Any] = {
        "id": draft.id, "incident_id": draft.incident_id, "stage": draft.stage.value,
        "audience": draft.audience, "state": draft.state, "version": draft.version,
        "title": draft.title, "body": draft.body, "components": list(draft.components),
        "next_update_at": draft.next_update_at, "checks": [c.model_dump() for c in checks],
        "passed": not failures(checks), "author": draft.author, "approved_by": draft.approved_by,
        "override_reason": draft.override_reason, "reject_reason": draft.reject_reason,
        "created_at": draft.created_at, "updated_at": draft.updated_at,
        "published_at": draft.published_at,
    }
    if versions:
        out["versions"] = [
            {"version": v.version, "title": v.title, "body": v.body, "author": v.author,
             "created_at": v.created_at,
             "passed": not failures(Check.model_validate(c) for c in v.checks)}
            for v in draft.versions]
    return out


def _text(draft: StatusDraft) -> DraftText:
    return DraftText(title=draft.title, body=draft.body, components=list(draft.components),
                     next_update_at=draft.next_update_at)


def _audit_view(draft: StatusDraft) -> dict[str, Any]:
    return {k: v for k, v in view(draft, versions=False).items()
            if k in ("state", "version", "title", "body", "components", "passed",
                     "approved_by", "override_reason", "reject_reason", "published_at")}


def create(session: Session, *, incident_id: int, stage: str, audience: str, title: str,
           body: str, components: list[str], next_update_at: dt.datetime | None,
           checks: list[Check], who: Principal) -> StatusDraft:
    draft = StatusDraft(incident_id=incident_id, stage=Status(stage), audience=audience,
                        title=title, body=body, components=components,
                        next_update_at=next_update_at, author=who.name,
                        checks=[c.model_dump() for c in checks], version=1)
    draft.versions.append(DraftVersion(version=1, title=title, body=body, components=components,
                                       checks=draft.checks, author=f"copilot for {who.name}"))
    session.add(draft)
    session.flush()
    audit.record(session, actor=who.name, role=who.role, action="draft.generate",
                 target=f"draft:{draft.id}", after=_audit_view(draft))
    return draft


def _open(draft: StatusDraft) -> None:
    if draft.state != "draft":
        raise WorkflowError(f"draft {draft.id} is {draft.state}; only an open draft can change")


def edit(session: Session, draft: StatusDraft, *, title: str, body: str,
         components: list[str] | None, base_version: int, check: CheckFn,
         who: Principal) -> StatusDraft:
    """A new version; refused when ``base_version`` is not the current one (someone else
    saved in between: reload and merge)."""
    _open(draft)
    if base_version != draft.version:
        raise WorkflowError(f"draft {draft.id} is at version {draft.version}, not {base_version}: "
                         "someone saved a newer version; reload it and apply your edit again")
    before = _audit_view(draft)
    draft.title, draft.body = title, body
    if components is not None:
        draft.components = components
    checks = check(_text(draft))
    draft.checks = [c.model_dump() for c in checks]
    draft.version += 1
    draft.versions.append(DraftVersion(version=draft.version, title=title, body=body,
                                       components=list(draft.components), checks=draft.checks,
                                       author=who.name))
    audit.record(session, actor=who.name, role=who.role, action="draft.edit",
                 target=f"draft:{draft.id}", before=before, after=_audit_view(draft))
    return draft


def approve(session: Session, draft: StatusDraft, *, check: CheckFn, who: Principal,
            override_reason: str | None = None) -> StatusDraft:
    _open(draft)
    before = _audit_view(draft)
    checks = check(_text(draft))  # again: the incident may have changed since the last edit
    draft.checks = [c.model_dump() for c in checks]
    failed = failures(checks)
    reason = (override_reason or "").strip()
    if failed:
        if not reason:
            names = ", ".join(f"{c.name} ({c.detail})" if c.detail else c.name for c in failed)
            raise WorkflowError(f"draft {draft.id} fails blocking checks: {names}; fix the text, or "
                             "a commander may approve it with an override reason", failed=failed)
        if not who.can("override"):
            raise AuthError(f"role {who.role!r} cannot override failed checks; a commander can",
                            status=403)
        if len(reason) < MIN_OVERRIDE_REASON:
            raise WorkflowError(f"an override reason needs at least {MIN_OVERRIDE_REASON} "
                             "characters saying why the failed checks are acceptable",
                             status=422, failed=failed)
        draft.override_reason = reason
    draft.state = "approved"
    draft.approved_by = who.name
    if draft.audience == "customers":
        draft.published_at = utcnow()
    audit.record(session, actor=who.name, role=who.role,
                 action="draft.approve_override" if failed else "draft.approve",
                 target=f"draft:{draft.id}", before=before,
                 after={**_audit_view(draft),
                        "failed_checks": [c.model_dump() for c in failed]})
    return draft


def reject(session: Session, draft: StatusDraft, *, reason: str, who: Principal) -> StatusDraft:
    _open(draft)
    before = _audit_view(draft)
    draft.state = "rejected"
    draft.reject_reason = reason.strip()
    audit.record(session, actor=who.name, role=who.role, action="draft.reject",
                 target=f"draft:{draft.id}", before=before, after=_audit_view(draft))
    return draft


def feed(session: Session, *, limit: int = 50) -> dict[str, Any]:
    """Approved customer updates, newest first: what a status page reads."""
    rows = list(session.scalars(
        select(StatusDraft).where(StatusDraft.published_at.is_not(None),
                                  StatusDraft.audience == "customers")
        .order_by(StatusDraft.published_at.desc(), StatusDraft.id.desc()).limit(limit)))
    updates = [{"id": d.id, "incident_id": d.incident_id, "stage": d.stage.value,
                "title": d.title, "body": d.body, "components": list(d.components),
                "published_at": d.published_at.isoformat() if d.published_at else None,
                "next_update_at": d.next_update_at.isoformat() if d.next_update_at else None}
               for d in rows]
    return {"updated_at": updates[0]["published_at"] if updates else None, "updates": updates}
