"""The console mail backend's outbox: what would have been emailed, for the admin to read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import email_outbox

__all__ = ["OutboxRow", "append_txn", "latest"]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    created_at: datetime
    to_addr: str
    subject: str
    body: str


async def append_txn(conn: AsyncConnection, *, to: str, subject: str, body: str) -> None:
    await conn.execute(insert(email_outbox).values(to_addr=to, subject=subject[:200], body=body))


async def latest(
    conn: AsyncConnection, *, to: str | None = None, limit: int = 20
) -> list[OutboxRow]:
    query = (
        select(
            email_outbox.c.id,
            email_outbox.c.created_at,
            email_outbox.c.to_addr,
            email_outbox.c.subject,
            email_outbox.c.body,
        )
        .order_by(email_outbox.c.id.desc())
        .limit(limit)
    )
    if to is not None:
        query = query.where(email_outbox.c.to_addr == to)
    return [OutboxRow(**row._mapping) for row in await conn.execute(query)]
