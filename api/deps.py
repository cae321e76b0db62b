"""Request dependencies: the app state, the caller (from the API key) and permissions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from copilot.auth import Principal, authenticate

bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Bearer icp_…`.")
webhook_header = APIKeyHeader(name="X-Webhook-Token", auto_error=False,
                              description="A webhook token for this source (or use Bearer).")


def get_state(request: Request) -> Any:
    return request.app.state.copilot


StateDep = Annotated[Any, Depends(get_state)]


def _key(creds: HTTPAuthorizationCredentials | None) -> str | None:
    return creds.credentials if creds else None


def get_principal(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                     Security(bearer_scheme)]) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    with request.app.state.copilot.store.session() as session:
        principal = authenticate(session, _key(creds))
    request.state.principal = principal
    return principal


def need(permission: str) -> Any:
    """A dependency that lets the request through only with ``permission``."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(permission)
        return principal

    check.__name__ = f"need_{permission}"
    return Depends(check)


Reader = Annotated[Principal, need("read")]
Writer = Annotated[Principal, need("incident_write")]
Noter = Annotated[Principal, need("note")]
Chatter = Annotated[Principal, need("chat")]
Summarizer = Annotated[Principal, need("summary")]
Drafter = Annotated[Principal, need("drafts")]
Ingester = Annotated[Principal, need("ingest")]
Admin = Annotated[Principal, need("admin")]


def webhook_principal(
    source: str, request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    token: Annotated[str | None, Security(webhook_header)] = None,
) -> Principal:
    """A webhook token for exactly this source, or a key with the ``ingest`` permission."""
    from copilot.auth import WEBHOOK_ROLE, AuthError

    with request.app.state.copilot.store.session() as session:
        principal = authenticate(session, token or _key(creds))
    if principal.role == WEBHOOK_ROLE:
        if principal.source != source:
            raise AuthError(f"this webhook token is for source {principal.source!r}, not "
                            f"{source!r}", status=403)
    else:
        principal.require("ingest")
    request.state.principal = principal
    return principal
