"""API keys and webhook tokens: roles, permissions, and keys stored only as hashes.

A key is ``icp_`` + 32 random bytes (URL-safe). Its SHA-256 is what the store keeps: the key
has 256 bits of entropy, so a slow password hash would add nothing but latency to every
request. The plaintext is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from copilot.errors import CopilotError
from copilot.models import ApiKey, utcnow

ROLES = ("responder", "commander", "comms", "admin")
WEBHOOK_ROLE = "webhook"
WEBHOOK_SOURCES = ("alertmanager", "grafana", "pagerduty", "generic")
PERMISSIONS = ("read", "chat", "note", "summary", "incident_write", "drafts", "override",
               "ingest", "admin")
GRANTS: dict[str, frozenset[str]] = {
    "responder": frozenset({"read", "chat", "note"}),
    "commander": frozenset({"read", "chat", "note", "summary", "incident_write", "drafts",
                            "override"}),
    "comms": frozenset({"read", "drafts"}),
    "admin": frozenset(PERMISSIONS),
    WEBHOOK_ROLE: frozenset(),
}
KEY_PREFIX = "icp_"


class AuthError(CopilotError):
    """No key, an unknown or revoked key (401), or a role without the permission (403)."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role (or webhook source)."""

    key_id: int | None
    name: str
    role: str
    source: str | None = None

    @property
    def permissions(self) -> frozenset[str]:
        return GRANTS.get(self.role, frozenset())

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise AuthError(f"role {self.role!r} ({self.name}) may not do this: it needs the "
                            f"{permission!r} permission, which roles "
                            f"{', '.join(r for r in ROLES if permission in GRANTS[r])} have",
                            status=403)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def create_key(session: Session, *, name: str, role: str,
               source: str | None = None) -> tuple[ApiKey, str]:
    """A new key (or webhook token when ``role`` is ``webhook``); returns the row and the
    plaintext, which is not stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise CopilotError("a key needs a name of 1 to 200 characters")
    if role == WEBHOOK_ROLE:
        if source not in WEBHOOK_SOURCES:
            raise CopilotError(f"unknown webhook source {source!r}: use one of "
                               f"{', '.join(WEBHOOK_SOURCES)}")
    elif role not in ROLES:
        raise CopilotError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    elif source is not None:
        raise CopilotError("only webhook tokens have a source")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role, source=source, prefix=plain[:10], key_hash=hash_key(plain))
    session.add(row)
    session.flush()
    return row, plain


def authenticate(session: Session, key: str | None) -> Principal:
    if not key:
        raise AuthError("an API key is required: send 'Authorization: Bearer <key>'")
    digest = hash_key(key.strip())
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    # compare_digest keeps the final comparison constant-time; the lookup is by hash, so the
    # key itself is never compared.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise AuthError("unknown API key")
    if row.revoked_at is not None:
        raise AuthError(f"API key {row.prefix}… was revoked")
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now  # at most once a minute: not a write on every request
    return Principal(row.id, row.name, row.role, row.source)


def revoke(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise CopilotError(f"no API key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def list_keys(session: Session, *, include_revoked: bool = False) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def key_view(row: ApiKey) -> dict[str, object]:
    """A key as the API and the audit log show it: never the hash."""
    return {"id": row.id, "name": row.name, "role": row.role, "source": row.source,
            "prefix": row.prefix, "created_at": row.created_at.isoformat() if row.created_at else None,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None}


DEMO_KEY_PREFIX = "demo-"


def rotate_demo_keys(session: Session) -> dict[str, str]:
    """Revoke the previous demo keys and make one per role; returns role → plaintext."""
    for row in list_keys(session):
        if row.name.startswith(DEMO_KEY_PREFIX):
            row.revoked_at = utcnow()
    return {role: create_key(session, name=f"{DEMO_KEY_PREFIX}{role}", role=role)[1]
            for role in ROLES}
