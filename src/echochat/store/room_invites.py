"""Invitations to private groups: pending, then accepted, declined or cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import room_invites, users

__all__ = [
    "InviteRow",
    "cancel_invites_txn",
    "get_invite",
    "insert_invite_txn",
    "invites_to",
    "pending_invite",
    "set_invite_status_txn",
]


@dataclass(frozen=True)
class InviteRow:
    id: int
    room_id: int
    from_user: int
    from_username: str
    from_display_name: str
    to_user: int
    to_username: str
    status: str
    created_at: datetime


_from = users.alias("inv_from")
_to = users.alias("inv_to")
_INVITE_COLS = (
    room_invites.c.id,
    room_invites.c.room_id,
    room_invites.c.from_user,
    _from.c.username.label("from_username"),
    _from.c.display_name.label("from_display_name"),
    room_invites.c.to_user,
    _to.c.username.label("to_username"),
    room_invites.c.status,
    room_invites.c.created_at,
)


def _invite_query() -> Select[Any]:
    return (
        select(*_INVITE_COLS)
        .join(_from, _from.c.id == room_invites.c.from_user)
        .join(_to, _to.c.id == room_invites.c.to_user)
    )


async def insert_invite_txn(
    conn: AsyncConnection, room_id: int, *, from_user: int, to_user: int, now: datetime
) -> int:
    result = await conn.execute(
        insert(room_invites)
        .values(room_id=room_id, from_user=from_user, to_user=to_user, created_at=now)
        .returning(room_invites.c.id)
    )
    return int(result.scalar_one())


async def get_invite(conn: AsyncConnection, invite_id: int) -> InviteRow | None:
    row = (await conn.execute(_invite_query().where(room_invites.c.id == invite_id))).first()
    return None if row is None else InviteRow(**row._mapping)


async def pending_invite(conn: AsyncConnection, room_id: int, to_user: int) -> InviteRow | None:
    row = (
        await conn.execute(
            _invite_query().where(
                room_invites.c.room_id == room_id,
                room_invites.c.to_user == to_user,
                room_invites.c.status == "pending",
            )
        )
    ).first()
    return None if row is None else InviteRow(**row._mapping)


async def invites_to(conn: AsyncConnection, user_id: int) -> list[InviteRow]:
    """Pending invites to ``user_id``, oldest first."""
    rows = await conn.execute(
        _invite_query()
        .where(room_invites.c.to_user == user_id, room_invites.c.status == "pending")
        .order_by(room_invites.c.id)
    )
    return [InviteRow(**row._mapping) for row in rows]


async def set_invite_status_txn(
    conn: AsyncConnection, invite_id: int, status: str, now: datetime
) -> bool:
    """Decide a pending invite; False when it was not pending any more (a race lost)."""
    result = await conn.execute(
        update(room_invites)
        .where(room_invites.c.id == invite_id, room_invites.c.status == "pending")
        .values(status=status, decided_at=now)
    )
    return bool(result.rowcount)


async def cancel_invites_txn(
    conn: AsyncConnection, room_id: int, to_user: int, now: datetime
) -> list[int]:
    """Cancel the pending invites of ``to_user`` to ``room_id`` (e.g. on a ban)."""
    where = and_(
        room_invites.c.room_id == room_id,
        room_invites.c.to_user == to_user,
        room_invites.c.status == "pending",
    )
    ids = [int(i) for (i,) in await conn.execute(select(room_invites.c.id).where(where))]
    if ids:
        await conn.execute(
            update(room_invites).where(where).values(status="cancelled", decided_at=now)
        )
    return ids
