"""Direct messages: stored envelopes, per-conversation watermarks, and the per-user write
serialisation that keeps message ids in commit order (docs/protocol.md, "A Message").

Envelopes are kept as the JSON text the sender's envelope serialises to: ciphertext, wraps
and a signature, never plaintext. Every conversation has two ``dm_watermarks`` rows (one per
direction), created with its first message; they say how far each user's devices have
acknowledged the other's messages, and they are the conversation list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.db import Database
from echochat.store.tables import blocks, device_keys, dm_watermarks, messages, users

__all__ = [
    "Conn",
    "ConversationRow",
    "MessageRow",
    "NewMessage",
    "PeerRow",
    "advance_txn",
    "by_client_id",
    "conversations",
    "ensure_pair_txn",
    "history",
    "insert_txn",
    "newest_from",
    "newest_id",
    "offline_counts",
    "peer_for",
    "purge_before_txn",
    "replay",
    "serialized",
    "watermarks",
]

Conn = AsyncConnection  # what a service's batched step receives (it passes it back here)

# Advisory lock namespace (the two-int form: namespace, user id), so message locks never
# collide with another feature's advisory locks.
_LOCK_NAMESPACE = 0x4543


@dataclass(frozen=True)
class PeerRow:
    """The other user of a conversation, as seen by ``me``."""

    id: int
    username: str
    display_name: str
    blocked_me: bool  # they blocked me
    blocked_by_me: bool  # I blocked them
    device_known: bool  # my ``device_id`` (if asked) is in my key directory


@dataclass(frozen=True)
class NewMessage:
    conv: str
    sender_id: int
    recipient_id: int
    sender_device: str
    client_id: str
    envelope: str
    created_at: datetime


@dataclass(frozen=True)
class MessageRow:
    id: int
    conv: str
    sender_id: int
    recipient_id: int
    sender: str
    recipient: str
    sender_device: str
    client_id: str
    envelope: str
    created_at: datetime


@dataclass(frozen=True)
class ConversationRow:
    peer_id: int
    username: str
    display_name: str
    conv: str
    delivered_upto: int  # my devices have the peer's messages up to here
    read_upto: int
    peer_delivered_upto: int  # the peer's devices have mine up to here
    peer_read_upto: int
    last_id: int
    last_at: datetime
    unread: int
    offline: int


async def peer_for(
    conn: AsyncConnection, me: int, username: str, device_id: str | None
) -> PeerRow | None:
    """``username`` (case-insensitively) with the block flags both ways and whether
    ``device_id`` is one of ``me``'s published devices: every check of a send in one query."""
    blocked_me = exists().where(blocks.c.user_id == users.c.id, blocks.c.blocked_id == me)
    blocked_by_me = exists().where(blocks.c.user_id == me, blocks.c.blocked_id == users.c.id)
    device = exists().where(device_keys.c.user_id == me, device_keys.c.device_id == device_id)
    row = (
        await conn.execute(
            select(
                users.c.id,
                users.c.username,
                users.c.display_name,
                blocked_me.label("blocked_me"),
                blocked_by_me.label("blocked_by_me"),
                device.label("device_known"),
            ).where(func.lower(users.c.username) == username.strip().lower())
        )
    ).first()
    if row is None:
        return None
    return PeerRow(
        id=int(row.id),
        username=str(row.username),
        display_name=str(row.display_name),
        blocked_me=bool(row.blocked_me),
        blocked_by_me=bool(row.blocked_by_me),
        device_known=device_id is not None and bool(row.device_known),
    )


# --- writing -------------------------------------------------------------------------------


@asynccontextmanager
async def serialized(db: Database, user_ids: Iterable[int]) -> AsyncIterator[None]:
    """Hold a lock per user for the block, so that two writes involving the same user run
    one after the other, commit *and* what follows the commit (the events).

    Why: on PostgreSQL an id is drawn from the sequence at INSERT, but concurrent
    transactions may commit in another order. Without this, bob could be handed message 12
    (committed first) and then 11, and a client that resumed from cursor 12 would never
    see 11. Holding both participants' locks from before the INSERT until the events are
    published makes every user's messages commit and arrive in id order, across processes.
    The locks are session-level advisory locks taken in ascending order (no deadlock),
    released with ``pg_advisory_unlock_all`` (or by closing the connection if that fails).
    SQLite needs nothing: it has one writer, and one process publishes in commit order.
    """
    keys = sorted({int(u) % 2**31 for u in user_ids})
    if db.dialect != "postgresql" or not keys:
        yield
        return
    async with db.engine.connect() as conn:
        await conn.execute(
            text("SELECT pg_advisory_lock(:ns, k) FROM unnest(CAST(:keys AS int[])) AS k"),
            {"ns": _LOCK_NAMESPACE, "keys": keys},
        )
        await conn.commit()
        try:
            yield
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock_all()"))
                await conn.commit()
            except BaseException:
                await conn.invalidate()  # a closed session holds no locks
                raise


def _upsert_ignore(conn: AsyncConnection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def insert_txn(conn: AsyncConnection, message: NewMessage) -> int | None:
    """Store a message; its new id, or None when (sender, client_id) exists already."""
    statement = (
        _upsert_ignore(conn, messages)
        .values(
            conv=message.conv,
            sender_id=message.sender_id,
            recipient_id=message.recipient_id,
            sender_device=message.sender_device,
            client_id=message.client_id,
            envelope=message.envelope,
            created_at=message.created_at,
        )
        .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
        .returning(messages.c.id)
    )
    found = (await conn.execute(statement)).scalar_one_or_none()
    return None if found is None else int(found)


async def ensure_pair_txn(conn: AsyncConnection, a: int, b: int, conv: str) -> None:
    """The conversation's two watermark rows, if missing."""
    statement = (
        _upsert_ignore(conn, dm_watermarks)
        .values(
            [
                {"user_id": a, "peer_id": b, "conv": conv},
                {"user_id": b, "peer_id": a, "conv": conv},
            ]
        )
        .on_conflict_do_nothing(index_elements=["user_id", "peer_id"])
    )
    await conn.execute(statement)


# --- reading messages --------------------------------------------------------------------------

_sender = users.alias("sender_u")
_recipient = users.alias("recipient_u")


def _message_query() -> Select[Any]:
    return (
        select(
            messages.c.id,
            messages.c.conv,
            messages.c.sender_id,
            messages.c.recipient_id,
            _sender.c.username.label("sender"),
            _recipient.c.username.label("recipient"),
            messages.c.sender_device,
            messages.c.client_id,
            messages.c.envelope,
            messages.c.created_at,
        )
        .join(_sender, _sender.c.id == messages.c.sender_id)
        .join(_recipient, _recipient.c.id == messages.c.recipient_id)
    )


def _rows(result: Any) -> list[MessageRow]:
    return [MessageRow(**row._mapping) for row in result]


async def by_client_id(conn: AsyncConnection, sender_id: int, client_id: str) -> MessageRow | None:
    found = _rows(
        await conn.execute(
            _message_query().where(
                messages.c.sender_id == sender_id, messages.c.client_id == client_id
            )
        )
    )
    return found[0] if found else None


async def replay(conn: AsyncConnection, user_id: int, after: int, limit: int) -> list[MessageRow]:
    """The user's messages (sent or received) with ``id > after``, in id order, at most
    ``limit``. Two index ranges merged, each read no further than ``limit`` rows."""
    rows: list[MessageRow] = []
    for column in (messages.c.sender_id, messages.c.recipient_id):
        rows += _rows(
            await conn.execute(
                _message_query()
                .where(column == user_id, messages.c.id > after)
                .order_by(messages.c.id)
                .limit(limit)
            )
        )
    rows.sort(key=lambda r: r.id)
    return rows[:limit]


async def newest_id(conn: AsyncConnection, user_id: int) -> int:
    """The highest id of a message the user sent or received (0: none)."""
    best = 0
    for column in (messages.c.sender_id, messages.c.recipient_id):
        found = (
            await conn.execute(select(func.max(messages.c.id)).where(column == user_id))
        ).scalar_one()
        best = max(best, int(found or 0))
    return best


async def history(
    conn: AsyncConnection, conv: str, *, before: int | None, after: int | None, limit: int
) -> tuple[list[MessageRow], bool]:
    """A page of the conversation in ascending id order, and whether there is more in the
    direction of paging: upwards from ``after`` when given, else downwards from ``before``
    (or from the newest)."""
    query = _message_query().where(messages.c.conv == conv)
    if before is not None:
        query = query.where(messages.c.id < before)
    if after is not None:
        query = query.where(messages.c.id > after)
        order = messages.c.id.asc()
    else:
        order = messages.c.id.desc()
    rows = _rows(await conn.execute(query.order_by(order).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.sort(key=lambda r: r.id)
    return rows, has_more


async def newest_from(conn: AsyncConnection, conv: str, sender_id: int) -> int:
    """The highest id ``sender_id`` sent in ``conv`` (0: none)."""
    found = (
        await conn.execute(
            select(func.max(messages.c.id)).where(
                messages.c.conv == conv, messages.c.sender_id == sender_id
            )
        )
    ).scalar_one()
    return int(found or 0)


# --- watermarks ----------------------------------------------------------------------------


async def watermarks(conn: AsyncConnection, user_id: int, peer_id: int) -> tuple[int, int]:
    """(delivered_upto, read_upto) of ``user_id`` for ``peer_id``'s messages."""
    row = (
        await conn.execute(
            select(dm_watermarks.c.delivered_upto, dm_watermarks.c.read_upto).where(
                dm_watermarks.c.user_id == user_id, dm_watermarks.c.peer_id == peer_id
            )
        )
    ).first()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _at_least(column: Any, value: int) -> Any:
    return case((column < value, value), else_=column)


async def advance_txn(
    conn: AsyncConnection,
    user_id: int,
    peer_id: int,
    kind: Literal["delivered", "read"],
    upto: int,
) -> tuple[int, int] | None:
    """Move a watermark forward to ``upto`` (read also moves delivered); the new
    (delivered_upto, read_upto), or None if it was there already."""
    where = [dm_watermarks.c.user_id == user_id, dm_watermarks.c.peer_id == peer_id]
    if kind == "read":
        values = {
            "read_upto": upto,
            "delivered_upto": _at_least(dm_watermarks.c.delivered_upto, upto),
        }
        where.append(dm_watermarks.c.read_upto < upto)
    else:
        values = {"delivered_upto": upto}
        where.append(dm_watermarks.c.delivered_upto < upto)
    row = (
        await conn.execute(
            update(dm_watermarks)
            .where(*where)
            .values(**values)
            .returning(dm_watermarks.c.delivered_upto, dm_watermarks.c.read_upto)
        )
    ).first()
    return None if row is None else (int(row[0]), int(row[1]))


# --- conversations ---------------------------------------------------------------------------


def _count_above(watermark: Any, mine: Any) -> Any:
    return (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.conv == mine.c.conv,
            messages.c.sender_id == mine.c.peer_id,
            messages.c.id > watermark,
        )
        .scalar_subquery()
    )


def _not_blocked(me: int, peer: Any) -> Any:
    return ~exists().where(
        or_(
            and_(blocks.c.user_id == me, blocks.c.blocked_id == peer),
            and_(blocks.c.user_id == peer, blocks.c.blocked_id == me),
        )
    )


async def conversations(conn: AsyncConnection, user_id: int) -> list[ConversationRow]:
    """Every conversation of the user that still has messages, except with users blocked
    either way, newest activity first. Each count reads only the messages above a
    watermark (index ``(conv, id)``)."""
    mine = dm_watermarks.alias("mine")
    theirs = dm_watermarks.alias("theirs")
    last_id = (
        select(func.max(messages.c.id)).where(messages.c.conv == mine.c.conv).scalar_subquery()
    )
    rows = (
        await conn.execute(
            select(
                mine.c.peer_id,
                users.c.username,
                users.c.display_name,
                mine.c.conv,
                mine.c.delivered_upto,
                mine.c.read_upto,
                theirs.c.delivered_upto.label("peer_delivered_upto"),
                theirs.c.read_upto.label("peer_read_upto"),
                last_id.label("last_id"),
                _count_above(mine.c.read_upto, mine).label("unread"),
                _count_above(mine.c.delivered_upto, mine).label("offline"),
            )
            .join(users, users.c.id == mine.c.peer_id)
            .join(
                theirs,
                and_(theirs.c.user_id == mine.c.peer_id, theirs.c.peer_id == mine.c.user_id),
            )
            .where(mine.c.user_id == user_id, _not_blocked(user_id, mine.c.peer_id))
        )
    ).all()
    rows = [r for r in rows if r.last_id is not None]
    times: dict[int, datetime] = {}
    if rows:
        found = await conn.execute(
            select(messages.c.id, messages.c.created_at).where(
                messages.c.id.in_([int(r.last_id) for r in rows])
            )
        )
        times = {int(i): at for i, at in found}
    out = [
        ConversationRow(
            peer_id=int(r.peer_id),
            username=str(r.username),
            display_name=str(r.display_name),
            conv=str(r.conv),
            delivered_upto=int(r.delivered_upto),
            read_upto=int(r.read_upto),
            peer_delivered_upto=int(r.peer_delivered_upto),
            peer_read_upto=int(r.peer_read_upto),
            last_id=int(r.last_id),
            last_at=times[int(r.last_id)],
            unread=int(r.unread),
            offline=int(r.offline),
        )
        for r in rows
        if int(r.last_id) in times
    ]
    out.sort(key=lambda c: c.last_id, reverse=True)
    return out


async def offline_counts(conn: AsyncConnection, user_id: int) -> list[tuple[str, str, int]]:
    """(username, display name, count) per sender of messages to the user above the
    user's delivered watermark for them (not from users blocked either way)."""
    mine = dm_watermarks.alias("mine")
    offline = _count_above(mine.c.delivered_upto, mine)
    rows = await conn.execute(
        select(users.c.username, users.c.display_name, offline.label("offline"))
        .join(users, users.c.id == mine.c.peer_id)
        .where(mine.c.user_id == user_id, _not_blocked(user_id, mine.c.peer_id))
        .order_by(users.c.username)
    )
    return [(str(u), str(d), int(n)) for u, d, n in rows if n]


# --- retention -------------------------------------------------------------------------------


async def purge_before_txn(conn: AsyncConnection, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` messages created before ``cutoff``; how many were deleted."""
    ids = select(messages.c.id).where(messages.c.created_at < cutoff).limit(batch)
    result = await conn.execute(delete(messages).where(messages.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)
