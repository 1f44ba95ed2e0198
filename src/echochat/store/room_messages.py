"""Room messages: rows, the checks of a batch of sends, history, replay, read watermarks,
tombstones, and the per-room write serialisation that keeps ids in commit order per room
(docs/protocol.md, "Room messages").

Plain rooms store the text as sent (``kind`` text); encrypted groups store the sender's
envelope as JSON text (``kind`` e2ee) and the server never reads its content. A deleted
message keeps its row (id, room, sender) with an empty body: a tombstone.

Like :mod:`echochat.store.messages`, the hot path is plain synchronous SQLAlchemy Core over
a :class:`Connection`, run with :func:`echochat.store.messages.run_read` /
:func:`~echochat.store.messages.run_write` (one hop to a thread on SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from echochat.store.db import Database
from echochat.store.tables import device_keys, room_members, room_messages, rooms, users

__all__ = [
    "Access",
    "NewRoomMessage",
    "RoomMessageRow",
    "by_client_ids",
    "check_sends",
    "history",
    "insert_many_txn",
    "mark_read_txn",
    "member_devices",
    "message",
    "newest_ids",
    "replay",
    "rooms_of",
    "rooms_of_many",
    "serialized",
    "tombstone_txn",
    "unread_counts",
]

# Advisory lock namespace for rooms (the two-int form: namespace, room id); store/messages.py
# uses 0x4543 for users.
_LOCK_NAMESPACE = 0x5253


@dataclass(frozen=True)
class Access:
    """What a send into ``room_id`` by ``user_id`` needs to know, read in the batch."""

    room_id: int
    user_id: int
    room_kind: str | None  # public | group; None: no such room
    encrypted: bool
    member: bool
    role: str  # the member's role ("" when not a member)
    first_message_id: int
    read_upto: int
    room_muted_until: datetime | None
    user_muted_until: datetime | None


@dataclass(frozen=True)
class NewRoomMessage:
    room_id: int
    sender_id: int
    sender_device: str
    client_id: str
    kind: str  # text | e2ee
    body: str
    created_at: datetime


@dataclass(frozen=True)
class RoomMessageRow:
    id: int
    room_id: int
    sender_id: int
    sender: str
    sender_device: str
    client_id: str
    kind: str
    body: str
    created_at: datetime
    deleted_at: datetime | None


# --- the checks of a batch ------------------------------------------------------------------

_ROOMS = select(rooms.c.id, rooms.c.kind, rooms.c.encrypted).where(
    rooms.c.id.in_(bindparam("ids", expanding=True))
)
_MEMBERS = select(
    room_members.c.room_id,
    room_members.c.user_id,
    room_members.c.role,
    room_members.c.first_message_id,
    room_members.c.read_upto,
    room_members.c.muted_until,
).where(
    tuple_(room_members.c.room_id, room_members.c.user_id).in_(bindparam("pairs", expanding=True))
)
_USER_MUTES = select(users.c.id, users.c.muted_until).where(
    users.c.id.in_(bindparam("ids", expanding=True))
)


def check_sends(conn: Connection, asks: list[tuple[int, int]]) -> list[Access]:
    """For each (room id, user id): the room, the membership and both mutes. Three queries
    whatever the batch's size."""
    if not asks:
        return []
    room_ids = sorted({r for r, _ in asks})
    user_ids = sorted({u for _, u in asks})
    found = {int(i): (str(k), bool(e)) for i, k, e in conn.execute(_ROOMS, {"ids": room_ids})}
    members = {
        (int(r), int(u)): (str(role), int(first), int(read), muted)
        for r, u, role, first, read, muted in conn.execute(_MEMBERS, {"pairs": sorted(set(asks))})
    }
    mutes = {int(i): m for i, m in conn.execute(_USER_MUTES, {"ids": user_ids})}
    out = []
    for room_id, user_id in asks:
        kind, encrypted = found.get(room_id, (None, False))
        member = members.get((room_id, user_id))
        out.append(
            Access(
                room_id=room_id,
                user_id=user_id,
                room_kind=kind,
                encrypted=encrypted,
                member=member is not None,
                role=member[0] if member else "",
                first_message_id=member[1] if member else 0,
                read_upto=member[2] if member else 0,
                room_muted_until=member[3] if member else None,
                user_muted_until=mutes.get(user_id),
            )
        )
    return out


_MEMBER_DEVICES = (
    select(room_members.c.room_id, users.c.username, device_keys.c.device_id)
    .join(users, users.c.id == room_members.c.user_id)
    .join(device_keys, device_keys.c.user_id == room_members.c.user_id, isouter=True)
    .where(room_members.c.room_id.in_(bindparam("ids", expanding=True)))
)


def member_devices(
    conn: Connection, room_ids: Iterable[int]
) -> dict[int, tuple[set[str], set[tuple[str, str]]]]:
    """Per room: the members' usernames and their published devices (username, device id)."""
    wanted = sorted(set(room_ids))
    out: dict[int, tuple[set[str], set[tuple[str, str]]]] = {r: (set(), set()) for r in wanted}
    if not wanted:
        return out
    for room_id, username, device in conn.execute(_MEMBER_DEVICES, {"ids": wanted}):
        names, devices = out[int(room_id)]
        names.add(str(username))
        if device is not None:
            devices.add((str(username), str(device)))
    return out


# --- writing ----------------------------------------------------------------------------------


@asynccontextmanager
async def serialized(db: Database, room_ids: Iterable[int]) -> AsyncIterator[None]:
    """Hold a lock per room for the block (a send: from before its INSERT until its event
    is published), so that every room's messages commit and reach the bus in id order,
    across processes. Session-level advisory locks in ascending order on PostgreSQL (see
    :func:`echochat.store.messages.lock_keys` for why); nothing on SQLite, which has one
    writer and one process."""
    keys = sorted({int(r) & 0x7FFFFFFF for r in room_ids})
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


def _insert(dialect: Any) -> Any:
    return (
        dialect.insert(room_messages)
        .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
        .returning(room_messages.c.id, room_messages.c.sender_id, room_messages.c.client_id)
    )


_INSERT = {d.dialect.name: _insert(d) for d in (sqlite, postgresql)}


def insert_many_txn(conn: Connection, batch: list[NewRoomMessage]) -> dict[tuple[int, str], int]:
    """Store a batch in one statement, ids in list order; the new id per (sender_id,
    client_id). A pair that exists already (or twice in the batch: the first wins) is
    skipped and absent from the answer."""
    if not batch:
        return {}
    rows = conn.execute(
        _INSERT[conn.dialect.name],
        [
            {
                "room_id": m.room_id,
                "sender_id": m.sender_id,
                "sender_device": m.sender_device,
                "client_id": m.client_id,
                "kind": m.kind,
                "body": m.body,
                "created_at": m.created_at,
            }
            for m in batch
        ],
    )
    return {(int(sender), str(client)): int(new_id) for new_id, sender, client in rows}


def tombstone_txn(conn: Connection, message_id: int, by: int, at: datetime) -> bool:
    """Empty the message's body and mark it deleted; False if it was already."""
    result = conn.execute(
        update(room_messages)
        .where(room_messages.c.id == message_id, room_messages.c.deleted_at.is_(None))
        .values(body="", deleted_at=at, deleted_by=by)
    )
    return bool(result.rowcount)


def mark_read_txn(conn: Connection, room_id: int, user_id: int, upto: int) -> tuple[bool, int]:
    """Move the member's read watermark forward to ``upto`` (clamped to the room's newest
    message); (moved, the watermark now). Not a member: (False, -1)."""
    newest = int(
        conn.execute(
            select(func.coalesce(func.max(room_messages.c.id), 0)).where(
                room_messages.c.room_id == room_id
            )
        ).scalar_one()
    )
    target = min(upto, newest)
    moved = conn.execute(
        update(room_members)
        .where(
            room_members.c.room_id == room_id,
            room_members.c.user_id == user_id,
            room_members.c.read_upto < target,
        )
        .values(read_upto=target)
    ).rowcount
    if moved:
        return True, target
    current = conn.execute(
        select(room_members.c.read_upto).where(
            room_members.c.room_id == room_id, room_members.c.user_id == user_id
        )
    ).scalar()
    return False, -1 if current is None else int(current)


# --- reading ----------------------------------------------------------------------------------


def _query() -> Select[Any]:
    return select(
        room_messages.c.id,
        room_messages.c.room_id,
        room_messages.c.sender_id,
        users.c.username.label("sender"),
        room_messages.c.sender_device,
        room_messages.c.client_id,
        room_messages.c.kind,
        room_messages.c.body,
        room_messages.c.created_at,
        room_messages.c.deleted_at,
    ).join(users, users.c.id == room_messages.c.sender_id)


def _rows(result: Any) -> list[RoomMessageRow]:
    return [RoomMessageRow(**row._mapping) for row in result]


def by_client_ids(
    conn: Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], RoomMessageRow]:
    """The messages of these (sender_id, client_id) pairs that exist."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = _query().where(tuple_(room_messages.c.sender_id, room_messages.c.client_id).in_(wanted))
    return {(r.sender_id, r.client_id): r for r in _rows(conn.execute(query))}


def message(conn: Connection, message_id: int) -> RoomMessageRow | None:
    rows = _rows(conn.execute(_query().where(room_messages.c.id == message_id)))
    return rows[0] if rows else None


def history(
    conn: Connection,
    room_id: int,
    *,
    floor: int,
    before: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[RoomMessageRow], bool]:
    """A page of the room above ``floor`` (the member's first visible id, exclusive), in
    ascending id order, and whether there is more in the direction of paging: upwards
    from ``after`` when given, else downwards from ``before`` (or from the newest)."""
    query = _query().where(
        room_messages.c.room_id == room_id,
        room_messages.c.id > max(floor, after if after is not None else floor),
    )
    if before is not None:
        query = query.where(room_messages.c.id < before)
    order = room_messages.c.id.asc() if after is not None else room_messages.c.id.desc()
    rows = _rows(conn.execute(query.order_by(order).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.sort(key=lambda r: r.id)
    return rows, has_more


def replay(conn: Connection, after: dict[int, int], limit: int) -> list[RoomMessageRow]:
    """The messages of each room with ``id > after[room]``, at most ``limit`` in all, in id
    order (so each room gets a prefix of what it missed). One index range per room."""
    rows: list[RoomMessageRow] = []
    for room_id, cursor in sorted(after.items()):
        rows += _rows(
            conn.execute(
                _query()
                .where(room_messages.c.room_id == room_id, room_messages.c.id > cursor)
                .order_by(room_messages.c.id)
                .limit(limit)
            )
        )
    rows.sort(key=lambda r: r.id)
    return rows[:limit]


def newest_ids(conn: Connection, room_ids: Iterable[int]) -> dict[int, int]:
    """The newest message id per room (0: none)."""
    wanted = sorted(set(room_ids))
    out = dict.fromkeys(wanted, 0)
    if wanted:
        query = (
            select(room_messages.c.room_id, func.max(room_messages.c.id))
            .where(room_messages.c.room_id.in_(wanted))
            .group_by(room_messages.c.room_id)
        )
        out.update({int(r): int(m) for r, m in conn.execute(query)})
    return out


def rooms_of(conn: Connection, user_id: int) -> dict[int, int]:
    """The user's rooms: room id -> first visible message id (exclusive)."""
    query = select(room_members.c.room_id, room_members.c.first_message_id).where(
        room_members.c.user_id == user_id
    )
    return {int(r): int(f) for r, f in conn.execute(query)}


def rooms_of_many(conn: Connection, user_ids: Iterable[int]) -> dict[int, set[int]]:
    """The rooms of each of these users (in chunks of 500 ids)."""
    wanted = sorted(set(user_ids))
    out: dict[int, set[int]] = {u: set() for u in wanted}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(room_members.c.user_id, room_members.c.room_id).where(
            room_members.c.user_id.in_(chunk)
        )
        for user_id, room_id in conn.execute(query):
            out[int(user_id)].add(int(room_id))
    return out


def unread_counts(conn: Connection, user_id: int) -> dict[int, tuple[int, int]]:
    """Per room of the user: (unread, newest visible message id). Unread counts the others'
    live messages above the member's read watermark (and above their first visible id)."""
    mine = room_members.alias("mine")
    pick = func.greatest if conn.dialect.name == "postgresql" else func.max
    floor: Any = pick(mine.c.read_upto, mine.c.first_message_id)
    unread = (
        select(func.count())
        .select_from(room_messages)
        .where(
            room_messages.c.room_id == mine.c.room_id,
            room_messages.c.id > floor,
            room_messages.c.sender_id != user_id,
            room_messages.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    last = (
        select(func.max(room_messages.c.id))
        .where(
            room_messages.c.room_id == mine.c.room_id,
            room_messages.c.id > mine.c.first_message_id,
        )
        .scalar_subquery()
    )
    query = select(mine.c.room_id, unread, last).where(mine.c.user_id == user_id)
    return {int(r): (int(n or 0), int(m or 0)) for r, n, m in conn.execute(query)}
