"""The audit log: append-only from the application's side (no update or delete here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import audit_log

__all__ = ["append_txn"]


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
