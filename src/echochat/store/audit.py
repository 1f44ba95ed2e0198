"""The audit log: append-only from the application's side (no update or delete here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import audit_log

__all__ = ["AuditRow", "append_txn", "page"]


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    target_type: str
    target: str
    ip: str
    details: dict[str, Any]


async def append_txn(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    actor_id: int | None = None,
    target_type: str = "",
    target: str = "",
    ip: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_log).values(
            actor=actor[:100],
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target=target[:200],
            ip=ip[:64],
            details=details or {},
        )
    )


async def page(
    conn: AsyncConnection,
    *,
    action: str = "",
    actor: str = "",
    target: str = "",
    before: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Newest first. ``action`` matches exactly or as a prefix before a dot (``user`` finds
    ``user.ban``); ``actor`` and ``target`` match exactly, ignoring case; ``before`` pages
    by id (the smallest id of the previous page)."""
    query = select(
        audit_log.c.id,
        audit_log.c.at,
        audit_log.c.actor_id,
        audit_log.c.actor,
        audit_log.c.action,
        audit_log.c.target_type,
        audit_log.c.target,
        audit_log.c.ip,
        audit_log.c.details,
    )
    if action:
        prefix = action.rstrip(".")
        query = query.where(
            or_(
                audit_log.c.action == prefix,
                audit_log.c.action.startswith(prefix + ".", autoescape=True),
            )
        )
    if actor:
        query = query.where(func.lower(audit_log.c.actor) == actor.lower())
    if target:
        query = query.where(func.lower(audit_log.c.target) == target.lower())
    if before is not None:
        query = query.where(audit_log.c.id < before)
    rows = await conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit))
    return [AuditRow(**{**row._mapping, "details": dict(row.details or {})}) for row in rows]
