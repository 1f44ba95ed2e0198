"""Chat rooms and private groups: room rows, categories, membership, invites and bans.

Policy (who may do what) lives in :mod:`echochat.domain.rooms` and
:mod:`echochat.services.rooms`; this module only reads and writes rows. Functions ending in
``_txn`` run inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import room_members

__all__ = [
    "MemberRow",
    "members_of",
    "membership",
]


@dataclass(frozen=True)
class MemberRow:
    """One membership: the member's role, what they may see and whether they are muted."""

    room_id: int
    user_id: int
    role: str  # owner | moderator | member
    joined_at: datetime
    first_message_id: int
    read_upto: int
    muted_until: datetime | None


_MEMBER_COLS = (
    room_members.c.room_id,
    room_members.c.user_id,
    room_members.c.role,
    room_members.c.joined_at,
    room_members.c.first_message_id,
    room_members.c.read_upto,
    room_members.c.muted_until,
)


async def members_of(conn: AsyncConnection, room_id: int) -> list[int]:
    """The user ids of the room's members, in ascending order."""
    rows = await conn.execute(
        select(room_members.c.user_id)
        .where(room_members.c.room_id == room_id)
        .order_by(room_members.c.user_id)
    )
    return [int(u) for (u,) in rows]


async def membership(conn: AsyncConnection, room_id: int, user_id: int) -> MemberRow | None:
    """``user_id``'s membership of ``room_id``, or None when they are not a member."""
    row = (
        await conn.execute(
            select(*_MEMBER_COLS).where(
                room_members.c.room_id == room_id, room_members.c.user_id == user_id
            )
        )
    ).first()
    return None if row is None else MemberRow(**row._mapping)
