"""Who am I, API keys and webhook tokens, the audit log, and the running configuration."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from api.deps import Admin, StateDep, get_principal
from copilot import audit, auth
from copilot.auth import Principal

router = APIRouter(prefix="/v1", tags=["admin"])


class Me(BaseModel):
    name: str
    role: str
    permissions: list[str]


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    source: str | None
    prefix: str
    created_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class NewKey(KeyOut):
    key: str = Field(description="The key itself: shown only now, store it safely.")


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["responder", "commander", "comms", "admin"]


class TokenRequest(BaseModel):
    source: Literal["alertmanager", "grafana", "pagerduty", "generic"]
    name: str | None = Field(default=None, min_length=1, max_length=200)


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@router.get("/me", response_model=Me)
def me(who: Annotated[Principal, Depends(get_principal)]) -> Any:
    return Me(name=who.name, role=who.role, permissions=sorted(who.permissions))


@router.get("/admin/keys", response_model=list[KeyOut])
def keys(st: StateDep, _: Admin, include_revoked: bool = False) -> Any:
    with st.store.session() as s:
        return [auth.key_view(k) for k in auth.list_keys(s, include_revoked=include_revoked)]


def _new(st: Any, who: Principal, **kw: Any) -> Any:
    with st.store.session() as s:
        row, plain = auth.create_key(s, **kw)
        view = auth.key_view(row)
        audit.record(s, actor=who.name, role=who.role, action="key.create",
                     target=f"key:{row.id}", after=view)
        return {**view, "key": plain}


@router.post("/admin/keys", response_model=NewKey, status_code=201)
def create_key(body: KeyRequest, st: StateDep, who: Admin) -> Any:
    return _new(st, who, name=body.name, role=body.role)


@router.post("/admin/webhook-tokens", response_model=NewKey, status_code=201)
def create_webhook_token(body: TokenRequest, st: StateDep, who: Admin) -> Any:
    return _new(st, who, name=body.name or f"webhook-{body.source}", role=auth.WEBHOOK_ROLE,
                source=body.source)


@router.delete("/admin/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], st: StateDep,
               who: Admin) -> Any:
    with st.store.session() as s:
        row = auth.revoke(s, key_id)
        view = auth.key_view(row)
        audit.record(s, actor=who.name, role=who.role, action="key.revoke",
                     target=f"key:{row.id}", after=view)
        return view


@router.get("/admin/audit", response_model=list[AuditOut])
def audit_log(st: StateDep, _: Admin,
              limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
              target: Annotated[str | None, Query(max_length=200)] = None) -> Any:
    """Newest first."""
    with st.store.session() as s:
        return [AuditOut.model_validate(e, from_attributes=True)
                for e in audit.entries(s, limit=limit, target=target)]


@router.get("/admin/config")
def config(st: StateDep, _: Admin) -> dict[str, Any]:
    """The running settings; secrets are masked."""
    return st.settings.model_dump(mode="json")
