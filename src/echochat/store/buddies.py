"""Buddy lists: groups, mutual buddy rows (one per direction), requests and blocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import blocks, buddies, buddy_groups, buddy_requests, users

__all__ = [
    "BuddyRow",
    "RequestRow",
    "add_pair_txn",
    "block_txn",
    "blocked_between",
    "blocked_ids",
    "buddy_of",
    "buddy_rows",
    "cancel_pending_between_txn",
    "delete_group_txn",
    "ensure_group_txn",
    "get_request",
    "group_names",
    "insert_request_txn",
    "pending_between",
    "remove_pair_txn",
    "rename_group_txn",
    "requests_for",
    "set_request_status_txn",
    "unblock_txn",
    "update_buddy_txn",
    "watchers",
    "watchers_back",
]


@dataclass(frozen=True)
class BuddyRow:
    user_id: int
    username: str
    display_name: str
    group_name: str
    stealth: bool


@dataclass(frozen=True)
class RequestRow:
    id: int
    from_user: int
    from_username: str
    from_display_name: str
    to_user: int
    to_username: str
    message: str
    group_name: str
    status: str
    hidden: bool
    created_at: datetime


async def group_names(conn: AsyncConnection, user_id: int) -> list[str]:
    rows = await conn.execute(
        select(buddy_groups.c.name)
        .where(buddy_groups.c.user_id == user_id)
        .order_by(buddy_groups.c.position, buddy_groups.c.name)
    )
    return [name for (name,) in rows]


async def ensure_group_txn(conn: AsyncConnection, user_id: int, name: str) -> None:
    exists = (
        await conn.execute(
            select(buddy_groups.c.name).where(
                buddy_groups.c.user_id == user_id, buddy_groups.c.name == name
            )
        )
    ).first()
    if exists is None:
        position = (
            await conn.execute(
                select(func.coalesce(func.max(buddy_groups.c.position), -1)).where(
                    buddy_groups.c.user_id == user_id
                )
            )
        ).scalar_one()
        await conn.execute(
            insert(buddy_groups).values(user_id=user_id, name=name, position=int(position) + 1)
        )


async def rename_group_txn(conn: AsyncConnection, user_id: int, old: str, new: str) -> bool:
    result = await conn.execute(
        update(buddy_groups)
        .where(buddy_groups.c.user_id == user_id, buddy_groups.c.name == old)
        .values(name=new)
    )
    await conn.execute(
        update(buddies)
        .where(buddies.c.user_id == user_id, buddies.c.group_name == old)
        .values(group_name=new)
    )
    return bool(result.rowcount)


async def delete_group_txn(conn: AsyncConnection, user_id: int, name: str, move_to: str) -> bool:
    await conn.execute(
        update(buddies)
        .where(buddies.c.user_id == user_id, buddies.c.group_name == name)
        .values(group_name=move_to)
    )
    result = await conn.execute(
        delete(buddy_groups).where(buddy_groups.c.user_id == user_id, buddy_groups.c.name == name)
    )
    return bool(result.rowcount)


_BUDDY_COLS = (
    buddies.c.buddy_id.label("user_id"),
    users.c.username,
    users.c.display_name,
    buddies.c.group_name,
    buddies.c.stealth,
)


async def buddy_rows(conn: AsyncConnection, user_id: int) -> list[BuddyRow]:
    rows = await conn.execute(
        select(*_BUDDY_COLS)
        .join(users, users.c.id == buddies.c.buddy_id)
        .where(buddies.c.user_id == user_id)
        .order_by(func.lower(users.c.display_name))
    )
    return [BuddyRow(**row._mapping) for row in rows]


async def buddy_of(conn: AsyncConnection, user_id: int, buddy_id: int) -> BuddyRow | None:
    row = (
        await conn.execute(
            select(*_BUDDY_COLS)
            .join(users, users.c.id == buddies.c.buddy_id)
            .where(buddies.c.user_id == user_id, buddies.c.buddy_id == buddy_id)
        )
    ).first()
    return None if row is None else BuddyRow(**row._mapping)


async def watchers(conn: AsyncConnection, user_id: int) -> list[tuple[int, bool]]:
    """Who sees ``user_id``'s presence: (buddy id, whether user_id is stealthed to them)."""
    rows = await conn.execute(
        select(buddies.c.buddy_id, buddies.c.stealth).where(buddies.c.user_id == user_id)
    )
    return [(int(b), bool(s)) for b, s in rows]


async def watchers_back(conn: AsyncConnection, user_id: int) -> list[tuple[int, bool]]:
    """For each buddy of ``user_id``: whether that buddy is stealthed towards ``user_id``."""
    rows = await conn.execute(
        select(buddies.c.user_id, buddies.c.stealth).where(buddies.c.buddy_id == user_id)
    )
    return [(int(b), bool(s)) for b, s in rows]


async def add_pair_txn(conn: AsyncConnection, a: int, a_group: str, b: int, b_group: str) -> None:
    await ensure_group_txn(conn, a, a_group)
    await ensure_group_txn(conn, b, b_group)
    for user_id, buddy_id, group in ((a, b, a_group), (b, a, b_group)):
        exists = (
            await conn.execute(
                select(buddies.c.user_id).where(
                    buddies.c.user_id == user_id, buddies.c.buddy_id == buddy_id
                )
            )
        ).first()
        if exists is None:
            await conn.execute(
                insert(buddies).values(user_id=user_id, buddy_id=buddy_id, group_name=group)
            )


async def remove_pair_txn(conn: AsyncConnection, a: int, b: int) -> bool:
    result = await conn.execute(
        delete(buddies).where(
            or_(
                and_(buddies.c.user_id == a, buddies.c.buddy_id == b),
                and_(buddies.c.user_id == b, buddies.c.buddy_id == a),
            )
        )
    )
    return bool(result.rowcount)


async def update_buddy_txn(
    conn: AsyncConnection,
    user_id: int,
    buddy_id: int,
    *,
    group_name: str | None = None,
    stealth: bool | None = None,
) -> None:
    values: dict[str, object] = {}
    if group_name is not None:
        values["group_name"] = group_name
    if stealth is not None:
        values["stealth"] = stealth
    if values:
        await conn.execute(
            update(buddies)
            .where(buddies.c.user_id == user_id, buddies.c.buddy_id == buddy_id)
            .values(**values)
        )


# requests ---------------------------------------------------------------------------------

_from = users.alias("from_u")
_to = users.alias("to_u")
_REQ_COLS = (
    buddy_requests.c.id,
    buddy_requests.c.from_user,
    _from.c.username.label("from_username"),
    _from.c.display_name.label("from_display_name"),
    buddy_requests.c.to_user,
    _to.c.username.label("to_username"),
    buddy_requests.c.message,
    buddy_requests.c.group_name,
    buddy_requests.c.status,
    buddy_requests.c.hidden,
    buddy_requests.c.created_at,
)


def _request_query() -> Select[Any]:
    return (
        select(*_REQ_COLS)
        .join(_from, _from.c.id == buddy_requests.c.from_user)
        .join(_to, _to.c.id == buddy_requests.c.to_user)
    )


async def insert_request_txn(
    conn: AsyncConnection,
    *,
    from_user: int,
    to_user: int,
    message: str,
    group_name: str,
    hidden: bool,
    now: datetime,
) -> int:
    result = await conn.execute(
        insert(buddy_requests)
        .values(
            from_user=from_user,
            to_user=to_user,
            message=message,
            group_name=group_name,
            hidden=hidden,
            created_at=now,
        )
        .returning(buddy_requests.c.id)
    )
    return int(result.scalar_one())


async def get_request(conn: AsyncConnection, request_id: int) -> RequestRow | None:
    row = (await conn.execute(_request_query().where(buddy_requests.c.id == request_id))).first()
    return None if row is None else RequestRow(**row._mapping)


async def pending_between(conn: AsyncConnection, from_user: int, to_user: int) -> RequestRow | None:
    row = (
        await conn.execute(
            _request_query().where(
                buddy_requests.c.from_user == from_user,
                buddy_requests.c.to_user == to_user,
                buddy_requests.c.status == "pending",
            )
        )
    ).first()
    return None if row is None else RequestRow(**row._mapping)


async def requests_for(conn: AsyncConnection, user_id: int) -> list[RequestRow]:
    """Pending requests to or from ``user_id`` (hidden ones only for their sender)."""
    rows = await conn.execute(
        _request_query()
        .where(
            buddy_requests.c.status == "pending",
            or_(
                buddy_requests.c.from_user == user_id,
                and_(buddy_requests.c.to_user == user_id, buddy_requests.c.hidden.is_(False)),
            ),
        )
        .order_by(buddy_requests.c.id)
    )
    return [RequestRow(**row._mapping) for row in rows]


async def set_request_status_txn(
    conn: AsyncConnection, request_id: int, status: str, now: datetime
) -> bool:
    result = await conn.execute(
        update(buddy_requests)
        .where(buddy_requests.c.id == request_id, buddy_requests.c.status == "pending")
        .values(status=status, decided_at=now)
    )
    return bool(result.rowcount)


async def cancel_pending_between_txn(
    conn: AsyncConnection, a: int, b: int, now: datetime
) -> list[int]:
    ids = [
        rid
        for (rid,) in await conn.execute(
            select(buddy_requests.c.id).where(
                buddy_requests.c.status == "pending",
                or_(
                    and_(buddy_requests.c.from_user == a, buddy_requests.c.to_user == b),
                    and_(buddy_requests.c.from_user == b, buddy_requests.c.to_user == a),
                ),
            )
        )
    ]
    if ids:
        await conn.execute(
            update(buddy_requests)
            .where(buddy_requests.c.id.in_(ids))
            .values(status="cancelled", decided_at=now)
        )
    return ids


# blocks -----------------------------------------------------------------------------------


async def blocked_between(conn: AsyncConnection, a: int, b: int) -> tuple[bool, bool]:
    """(a blocked b, b blocked a)."""
    rows = await conn.execute(
        select(blocks.c.user_id).where(
            or_(
                and_(blocks.c.user_id == a, blocks.c.blocked_id == b),
                and_(blocks.c.user_id == b, blocks.c.blocked_id == a),
            )
        )
    )
    blockers = {int(r) for (r,) in rows}
    return a in blockers, b in blockers


async def blocked_ids(conn: AsyncConnection, user_id: int) -> list[tuple[int, str, str]]:
    rows = await conn.execute(
        select(blocks.c.blocked_id, users.c.username, users.c.display_name)
        .join(users, users.c.id == blocks.c.blocked_id)
        .where(blocks.c.user_id == user_id)
        .order_by(users.c.username)
    )
    return [(int(i), str(u), str(d)) for i, u, d in rows]


async def block_txn(conn: AsyncConnection, user_id: int, blocked_id: int) -> bool:
    exists = (
        await conn.execute(
            select(blocks.c.user_id).where(
                blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id
            )
        )
    ).first()
    if exists is not None:
        return False
    await conn.execute(insert(blocks).values(user_id=user_id, blocked_id=blocked_id))
    return True


async def unblock_txn(conn: AsyncConnection, user_id: int, blocked_id: int) -> bool:
    result = await conn.execute(
        delete(blocks).where(blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id)
    )
    return bool(result.rowcount)
