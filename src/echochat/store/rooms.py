"""Chat rooms and private groups: room rows, categories, membership, invites and bans.

Policy (who may do what) lives in :mod:`echochat.domain.rooms` and the room services; this
module only reads and writes rows. Invites are in :mod:`echochat.store.room_invites`,
categories in :mod:`echochat.store.room_categories`. Functions ending in ``_txn`` run inside
the caller's transaction. Other areas import :func:`members_of`, :func:`membership` and
:func:`room_ids_of` (message fan-out and the hub's room index).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import (
    blocks,
    buddies,
    room_bans,
    room_categories,
    room_members,
    room_messages,
    rooms,
    users,
)

__all__ = [
    "BanInfo",
    "BanRow",
    "Conn",
    "MemberInfo",
    "MemberRow",
    "MyRoomRow",
    "RoomRow",
    "add_member_txn",
    "ban_of",
    "ban_txn",
    "bans_of",
    "delete_room_txn",
    "get_room",
    "insert_room_txn",
    "max_message_id",
    "member_count",
    "member_counts",
    "member_info",
    "member_rows",
    "members_of",
    "membership",
    "my_rooms",
    "online_counts",
    "presence_hidden_from",
    "presence_hidden_to",
    "public_rooms",
    "remove_member_txn",
    "room_ids_of",
    "set_muted_txn",
    "set_role_txn",
    "unban_txn",
    "update_room_txn",
]

Conn = AsyncConnection  # what services pass back to this module
UNREAD_CAP = 1000
_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class RoomRow:
    id: int
    kind: str  # public | group
    name: str
    topic: str
    category_id: int | None
    category_slug: str | None
    owner_id: int | None
    owner_username: str | None
    encrypted: bool
    capacity: int | None
    created_at: datetime


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


@dataclass(frozen=True)
class MemberInfo:
    """A membership with the member's names (member lists)."""

    user_id: int
    username: str
    display_name: str
    role: str
    joined_at: datetime
    muted_until: datetime | None


@dataclass(frozen=True)
class MyRoomRow:
    room: RoomRow
    role: str
    first_message_id: int
    read_upto: int
    muted_until: datetime | None
    last_message_id: int
    unread: int


@dataclass(frozen=True)
class BanRow:
    room_id: int
    user_id: int
    by_id: int | None
    reason: str
    created_at: datetime
    until: datetime | None


def _chunks(ids: Iterable[int]) -> list[list[int]]:
    items = sorted(set(ids))
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


# rooms ------------------------------------------------------------------------------------

_owner = users.alias("owner_u")
_ROOM_COLS = (
    rooms.c.id,
    rooms.c.kind,
    rooms.c.name,
    rooms.c.topic,
    rooms.c.category_id,
    room_categories.c.slug.label("category_slug"),
    rooms.c.owner_id,
    _owner.c.username.label("owner_username"),
    rooms.c.encrypted,
    rooms.c.capacity,
    rooms.c.created_at,
)


def _room_query() -> Select[Any]:
    return (
        select(*_ROOM_COLS)
        .outerjoin(room_categories, room_categories.c.id == rooms.c.category_id)
        .outerjoin(_owner, _owner.c.id == rooms.c.owner_id)
    )


def _room(mapping: Any) -> RoomRow:
    return RoomRow(**{k: mapping[k] for k in RoomRow.__dataclass_fields__})


async def get_room(conn: AsyncConnection, room_id: int, *, lock: bool = False) -> RoomRow | None:
    """The room; ``lock`` (in a transaction) holds its row until the commit on PostgreSQL
    (``FOR NO KEY UPDATE``: inserts that only reference the room, such as its messages, are
    not held up), so membership changes of one room are serialised (SQLite has one writer
    anyway)."""
    if lock:
        await conn.execute(
            select(rooms.c.id).where(rooms.c.id == room_id).with_for_update(key_share=True)
        )
    row = (await conn.execute(_room_query().where(rooms.c.id == room_id))).first()
    return None if row is None else _room(row._mapping)


async def public_rooms(
    conn: AsyncConnection, *, category_id: int | None = None, q: str | None = None
) -> list[RoomRow]:
    """Public rooms, by category position then name; ``q`` matches names (any case)."""
    query = _room_query().where(rooms.c.kind == "public")
    if category_id is not None:
        query = query.where(rooms.c.category_id == category_id)
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(rooms.c.name).like(pattern + "%", escape="\\"))
    query = query.order_by(
        func.coalesce(room_categories.c.position, 1_000_000), func.lower(rooms.c.name), rooms.c.id
    )
    return [_room(row._mapping) for row in await conn.execute(query)]


async def insert_room_txn(
    conn: AsyncConnection,
    *,
    kind: str,
    name: str,
    topic: str,
    category_id: int | None,
    owner_id: int | None,
    encrypted: bool,
    capacity: int | None,
    created_by: int | None,
    now: datetime,
) -> int:
    result = await conn.execute(
        insert(rooms)
        .values(
            kind=kind,
            name=name,
            topic=topic,
            category_id=category_id,
            owner_id=owner_id,
            encrypted=encrypted,
            capacity=capacity,
            created_by=created_by,
            created_at=now,
        )
        .returning(rooms.c.id)
    )
    return int(result.scalar_one())


async def update_room_txn(conn: AsyncConnection, room_id: int, **values: object) -> None:
    """Set the given columns (name, topic, category_id, capacity, owner_id)."""
    if values:
        await conn.execute(update(rooms).where(rooms.c.id == room_id).values(**values))


async def delete_room_txn(conn: AsyncConnection, room_id: int) -> bool:
    """Delete the room; members, bans, invites and messages go with it (ON DELETE CASCADE)."""
    result = await conn.execute(delete(rooms).where(rooms.c.id == room_id))
    return bool(result.rowcount)


async def max_message_id(conn: AsyncConnection, room_id: int) -> int:
    """The room's newest message id (0 when it has none)."""
    value = (
        await conn.execute(
            select(func.coalesce(func.max(room_messages.c.id), 0)).where(
                room_messages.c.room_id == room_id
            )
        )
    ).scalar_one()
    return int(value)


# membership -------------------------------------------------------------------------------

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


async def room_ids_of(conn: AsyncConnection, user_id: int) -> list[int]:
    """The rooms and groups ``user_id`` is a member of, in ascending order."""
    rows = await conn.execute(
        select(room_members.c.room_id)
        .where(room_members.c.user_id == user_id)
        .order_by(room_members.c.room_id)
    )
    return [int(r) for (r,) in rows]


async def member_count(conn: AsyncConnection, room_id: int) -> int:
    value = (
        await conn.execute(
            select(func.count()).select_from(room_members).where(room_members.c.room_id == room_id)
        )
    ).scalar_one()
    return int(value)


async def member_counts(conn: AsyncConnection, room_ids: Iterable[int]) -> dict[int, int]:
    """Members per room, one query per 500 rooms (rooms without members are left out)."""
    out: dict[int, int] = {}
    for chunk in _chunks(room_ids):
        rows = await conn.execute(
            select(room_members.c.room_id, func.count())
            .where(room_members.c.room_id.in_(chunk))
            .group_by(room_members.c.room_id)
        )
        out.update({int(r): int(n) for r, n in rows})
    return out


async def online_counts(
    conn: AsyncConnection, room_ids: Iterable[int], online: Iterable[int]
) -> dict[int, int]:
    """Per room, how many of its members are among the ``online`` user ids."""
    rooms_list = sorted(set(room_ids))
    out: dict[int, int] = {}
    if not rooms_list:
        return out
    for chunk in _chunks(online):
        rows = await conn.execute(
            select(room_members.c.room_id, func.count())
            .where(room_members.c.room_id.in_(rooms_list), room_members.c.user_id.in_(chunk))
            .group_by(room_members.c.room_id)
        )
        for room_id, n in rows:
            out[int(room_id)] = out.get(int(room_id), 0) + int(n)
    return out


async def member_info(conn: AsyncConnection, room_id: int, user_id: int) -> MemberInfo | None:
    """One member with their names (None: not a member)."""
    row = (
        await conn.execute(
            select(
                room_members.c.user_id,
                users.c.username,
                users.c.display_name,
                room_members.c.role,
                room_members.c.joined_at,
                room_members.c.muted_until,
            )
            .join(users, users.c.id == room_members.c.user_id)
            .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
        )
    ).first()
    return None if row is None else MemberInfo(**row._mapping)


async def member_rows(conn: AsyncConnection, room_id: int) -> list[MemberInfo]:
    """The members with their names: owner, moderators, then members, each by name."""
    rank = case(
        (room_members.c.role == "owner", 0), (room_members.c.role == "moderator", 1), else_=2
    )
    rows = await conn.execute(
        select(
            room_members.c.user_id,
            users.c.username,
            users.c.display_name,
            room_members.c.role,
            room_members.c.joined_at,
            room_members.c.muted_until,
        )
        .join(users, users.c.id == room_members.c.user_id)
        .where(room_members.c.room_id == room_id)
        .order_by(rank, func.lower(users.c.display_name), users.c.id)
    )
    return [MemberInfo(**row._mapping) for row in rows]


async def add_member_txn(
    conn: AsyncConnection,
    room_id: int,
    user_id: int,
    *,
    role: str,
    first_message_id: int,
    now: datetime,
) -> None:
    """A new member sees messages with an id above ``first_message_id`` and starts with
    nothing unread."""
    await conn.execute(
        insert(room_members).values(
            room_id=room_id,
            user_id=user_id,
            role=role,
            joined_at=now,
            first_message_id=first_message_id,
            read_upto=first_message_id,
        )
    )


async def remove_member_txn(conn: AsyncConnection, room_id: int, user_id: int) -> bool:
    result = await conn.execute(
        delete(room_members).where(
            room_members.c.room_id == room_id, room_members.c.user_id == user_id
        )
    )
    return bool(result.rowcount)


async def set_role_txn(conn: AsyncConnection, room_id: int, user_id: int, role: str) -> None:
    await conn.execute(
        update(room_members)
        .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
        .values(role=role)
    )


async def set_muted_txn(
    conn: AsyncConnection, room_id: int, user_id: int, until: datetime | None
) -> None:
    await conn.execute(
        update(room_members)
        .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
        .values(muted_until=until)
    )


async def my_rooms(conn: AsyncConnection, user_id: int) -> list[MyRoomRow]:
    """``user_id``'s rooms and groups with their newest visible message id and the number
    of others' messages above the read watermark (at most ``UNREAD_CAP``)."""
    msg = room_messages
    floor = case(
        (room_members.c.read_upto > room_members.c.first_message_id, room_members.c.read_upto),
        else_=room_members.c.first_message_id,
    )
    unread_ids = (
        select(msg.c.id)
        .where(
            msg.c.room_id == room_members.c.room_id,
            msg.c.id > floor,
            msg.c.sender_id != user_id,
            msg.c.deleted_at.is_(None),
        )
        .limit(UNREAD_CAP)
        .correlate(room_members)
        .subquery()
    )
    unread = select(func.count()).select_from(unread_ids).scalar_subquery()
    last = (
        select(func.coalesce(func.max(msg.c.id), 0))
        .where(msg.c.room_id == room_members.c.room_id, msg.c.id > room_members.c.first_message_id)
        .correlate(room_members)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(
            *_ROOM_COLS,
            room_members.c.role.label("my_role"),
            room_members.c.first_message_id,
            room_members.c.read_upto,
            room_members.c.muted_until,
            last.label("last_message_id"),
            unread.label("unread"),
        )
        .select_from(room_members)
        .join(rooms, rooms.c.id == room_members.c.room_id)
        .outerjoin(room_categories, room_categories.c.id == rooms.c.category_id)
        .outerjoin(_owner, _owner.c.id == rooms.c.owner_id)
        .where(room_members.c.user_id == user_id)
        .order_by(rooms.c.kind.desc(), func.lower(rooms.c.name), rooms.c.id)
    )
    return [
        MyRoomRow(
            room=_room(m),
            role=m["my_role"],
            first_message_id=int(m["first_message_id"]),
            read_upto=int(m["read_upto"]),
            muted_until=m["muted_until"],
            last_message_id=int(m["last_message_id"] or 0),
            unread=int(m["unread"] or 0),
        )
        for m in (row._mapping for row in rows)
    ]


async def presence_hidden_from(conn: AsyncConnection, viewer_id: int) -> set[int]:
    """Users whose presence ``viewer_id`` must not see in a member list: those who set
    stealth towards the viewer, and those who blocked the viewer or whom the viewer blocked."""
    stealthed = select(buddies.c.user_id).where(
        buddies.c.buddy_id == viewer_id, buddies.c.stealth.is_(True)
    )
    blocked = select(blocks.c.user_id).where(blocks.c.blocked_id == viewer_id)
    blocking = select(blocks.c.blocked_id).where(blocks.c.user_id == viewer_id)
    rows = await conn.execute(stealthed.union(blocked, blocking))
    return {int(u) for (u,) in rows}


async def presence_hidden_to(conn: AsyncConnection, user_id: int) -> set[int]:
    """Users who must not see ``user_id``'s presence: those ``user_id`` set stealth towards,
    blocked, or was blocked by (the mirror of :func:`presence_hidden_from`)."""
    stealthed = select(buddies.c.buddy_id).where(
        buddies.c.user_id == user_id, buddies.c.stealth.is_(True)
    )
    blocking = select(blocks.c.blocked_id).where(blocks.c.user_id == user_id)
    blocked = select(blocks.c.user_id).where(blocks.c.blocked_id == user_id)
    rows = await conn.execute(stealthed.union(blocking, blocked))
    return {int(u) for (u,) in rows}


# bans -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BanInfo:
    """A ban with the names of the banned user and of who banned them."""

    username: str
    display_name: str
    by: str | None
    reason: str
    created_at: datetime
    until: datetime | None


async def bans_of(conn: AsyncConnection, room_id: int, now: datetime) -> list[BanInfo]:
    """The room's bans still in force at ``now``, newest first."""
    banned = users.alias("banned_u")
    banner = users.alias("banner_u")
    rows = await conn.execute(
        select(
            banned.c.username,
            banned.c.display_name,
            banner.c.username.label("by"),
            room_bans.c.reason,
            room_bans.c.created_at,
            room_bans.c.until,
        )
        .join(banned, banned.c.id == room_bans.c.user_id)
        .outerjoin(banner, banner.c.id == room_bans.c.by_id)
        .where(
            room_bans.c.room_id == room_id,
            or_(room_bans.c.until.is_(None), room_bans.c.until > now),
        )
        .order_by(room_bans.c.created_at.desc(), banned.c.username)
    )
    return [BanInfo(**row._mapping) for row in rows]


async def ban_of(conn: AsyncConnection, room_id: int, user_id: int) -> BanRow | None:
    row = (
        await conn.execute(
            select(room_bans).where(room_bans.c.room_id == room_id, room_bans.c.user_id == user_id)
        )
    ).first()
    return None if row is None else BanRow(**row._mapping)


async def ban_txn(
    conn: AsyncConnection,
    room_id: int,
    user_id: int,
    *,
    by_id: int,
    reason: str,
    until: datetime | None,
    now: datetime,
) -> None:
    """Ban (or re-ban with the new reason and end)."""
    await unban_txn(conn, room_id, user_id)
    await conn.execute(
        insert(room_bans).values(
            room_id=room_id,
            user_id=user_id,
            by_id=by_id,
            reason=reason,
            until=until,
            created_at=now,
        )
    )


async def unban_txn(conn: AsyncConnection, room_id: int, user_id: int) -> bool:
    result = await conn.execute(
        delete(room_bans).where(room_bans.c.room_id == room_id, room_bans.c.user_id == user_id)
    )
    return bool(result.rowcount)
