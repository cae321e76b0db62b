"""The audit log: every write and every approval, with who, what, when, before and after.

``record`` adds the entry to the caller's session, so it commits (or rolls back) with the
change it describes.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from copilot.models import AuditEntry


def plain(value: Any) -> Any:
    """JSON-safe copy of a value for the log (datetimes as ISO, enums as their value)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def record(session: Session, *, actor: str, role: str, action: str, target: str = "",
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEntry:
    entry = AuditEntry(actor=actor, role=role, action=action, target=target,
                       before=plain(before) if before is not None else None,
                       after=plain(after) if after is not None else None)
    session.add(entry)
    return entry


def entries(session: Session, *, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if target:
        query = query.where(AuditEntry.target == target)
    return list(session.scalars(query))
