"""Direct messages: stored envelopes, per-conversation watermarks, and the per-user write
serialisation that keeps message ids in commit order (docs/protocol.md, "A Message").

Envelopes are kept as the JSON text the sender's envelope serialises to: ciphertext, wraps
and a signature, never plaintext. Every conversation has two ``dm_watermarks`` rows (one per
direction), created with its first message; they say how far each user's devices have
acknowledged the other's messages, and they are the conversation list.

The hot path (the checks of a send, and the group commit of messages and receipts) is
written as plain synchronous SQLAlchemy Core functions over a :class:`Connection`, run by
:func:`run_read` / :func:`run_write`: on PostgreSQL through the async engine
(``run_sync``), on SQLite in one hop to a small thread pool with its own synchronous
engine on the same file. Why: aiosqlite pays a thread hand-off per cursor call (four per
statement), which measured 0.5 ms of event-loop CPU per simple read against 0.03 ms for
one hop that runs the whole step; at a thousand DMs a second that is the difference
between a busy and a saturated event loop. The SQL is the same for both engines.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.domain.errors import Unavailable
from echochat.store.db import Database, _sqlite_begin, _sqlite_connect
from echochat.store.tables import blocks, device_keys, dm_watermarks, messages, users

__all__ = [
    "LOCK_NAMESPACE",
    "Checks",
    "Conn",
    "ConversationRow",
    "MessageRow",
    "Moved",
    "NewMessage",
    "PeerRow",
    "advance_many_txn",
    "by_client_ids",
    "checks_for",
    "conversations",
    "delete_message_txn",
    "ensure_pairs_txn",
    "history",
    "insert_many_txn",
    "lock_keys",
    "moved_marks",
    "newest_id",
    "offline_counts",
    "peer_for",
    "purge_before_txn",
    "replay",
    "run_read",
    "run_write",
    "set_muted_until_txn",
    "watermarks",
]

Conn = Connection  # what a batched step receives (it passes it back to this module)
T = TypeVar("T")

# Advisory lock namespace (the two-int form: namespace, user id), so message locks never
# collide with another feature's advisory locks.
LOCK_NAMESPACE = 0x4543
SWITCH_INTERVAL = 0.0005  # seconds; see _side()


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


_USERS_NAMED = select(
    users.c.id, users.c.username, users.c.display_name, users.c.muted_until
).where(func.lower(users.c.username).in_(bindparam("names", expanding=True)))
_BLOCKS_AMONG = select(blocks.c.user_id, blocks.c.blocked_id).where(
    tuple_(blocks.c.user_id, blocks.c.blocked_id).in_(bindparam("pairs", expanding=True))
)
_DEVICES_AMONG = select(device_keys.c.user_id, device_keys.c.device_id).where(
    tuple_(device_keys.c.user_id, device_keys.c.device_id).in_(bindparam("devices", expanding=True))
)


@dataclass(frozen=True)
class Checks:
    """What the checks of a batch need from the database."""

    peers: list[PeerRow | None]  # per ask
    muted_until: dict[str, datetime]  # the users asked about who have a mute (maybe past)


def checks_for(
    conn: Connection, asks: list[tuple[int, str, str | None]], senders: Iterable[str] = ()
) -> Checks:
    """For each (me, username, device id): ``username`` (case-insensitively) with the block
    flags both ways and whether the device is one of ``me``'s published devices; and for
    every name in ``asks`` and ``senders``, its server-wide mute, if it has one. Every
    check of a batch of sends and receipts in three queries, whatever the batch's size."""
    names = sorted({name.strip().lower() for _, name, _ in asks} | {*senders})
    if not names:
        return Checks([], {})
    found = {str(row.username).lower(): row for row in conn.execute(_USERS_NAMED, {"names": names})}
    muted = {name: row.muted_until for name, row in found.items() if row.muted_until is not None}
    pairs: set[tuple[int, int]] = set()
    devices: set[tuple[int, str]] = set()
    for me, name, device in asks:
        row = found.get(name.strip().lower())
        if row is not None:
            pairs |= {(me, int(row.id)), (int(row.id), me)}
        if device is not None:
            devices.add((me, device))
    blocked = (
        {(int(a), int(b)) for a, b in conn.execute(_BLOCKS_AMONG, {"pairs": sorted(pairs)})}
        if pairs
        else set()
    )
    published = (
        {(int(u), str(d)) for u, d in conn.execute(_DEVICES_AMONG, {"devices": sorted(devices)})}
        if devices
        else set()
    )
    out: list[PeerRow | None] = []
    for me, name, device in asks:
        row = found.get(name.strip().lower())
        if row is None:
            out.append(None)
            continue
        peer = int(row.id)
        out.append(
            PeerRow(
                id=peer,
                username=str(row.username),
                display_name=str(row.display_name),
                blocked_me=(peer, me) in blocked,
                blocked_by_me=(me, peer) in blocked,
                device_known=device is not None and (me, device) in published,
            )
        )
    return Checks(out, muted)


def peer_for(conn: Connection, me: int, username: str, device_id: str | None) -> PeerRow | None:
    """One peer of :func:`checks_for`."""
    return checks_for(conn, [(me, username, device_id)]).peers[0]


# --- running the hot path ----------------------------------------------------------------------


@dataclass(frozen=True)
class _SqliteSide:
    engine: Engine
    executor: ThreadPoolExecutor


_sides: weakref.WeakKeyDictionary[Database, _SqliteSide] = weakref.WeakKeyDictionary()


def _begin(conn: Any) -> None:
    # Reads here are single statements: no BEGIN (nor the ROLLBACK that would follow), each
    # statement is its own snapshot. Writes take the write lock up front, as store.db does.
    if conn.get_execution_options().get("sqlite_begin") != "NONE":
        _sqlite_begin(conn)


def _side(db: Database) -> _SqliteSide | None:
    """The synchronous engine and threads for ``db`` when it is SQLite (same pragmas and
    BEGIN as :mod:`echochat.store.db`), else None."""
    if db.dialect != "sqlite":
        return None
    side = _sides.get(db)
    if side is None:
        engine = create_engine(
            make_url(db.url).set(drivername="sqlite"), pool_size=4, max_overflow=0
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _begin)
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="echochat-sqlite")
        # The writer thread and the event loop share the GIL. A thread that gets it back
        # after each SQLite call (which releases it) waits up to the switch interval (5 ms
        # by default) while the loop is busy: a batch of a few dozen statements then took
        # 100+ ms of mostly waiting. 0.5 ms took the bar's p50 from 270 to 68 ms
        # (docs/performance.md, "dm").
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        side = _sides[db] = _SqliteSide(engine, executor)
    return side


async def run_read(db: Database, step: Callable[[Connection], T]) -> T:
    """Run ``step`` (synchronous reads) on a connection of ``db``. On SQLite each of its
    statements reads its own snapshot (no surrounding transaction)."""
    side = _side(db)
    if side is None:
        async with db.read() as conn:
            return await conn.run_sync(step)

    def work() -> T:
        with side.engine.connect() as conn:
            return step(conn.execution_options(sqlite_begin="NONE"))

    return await asyncio.get_running_loop().run_in_executor(side.executor, work)


async def run_write(db: Database, step: Callable[[Connection], T]) -> T:
    """Run ``step`` in one write transaction of ``db``: committed when it returns, rolled
    back if it raises. On SQLite it holds the in-process writer queue and the write lock
    from the start (BEGIN IMMEDIATE), like :meth:`Database.transaction`."""
    side = _side(db)
    if side is None:
        async with db.transaction() as conn:
            return await conn.run_sync(step)

    def work() -> T:
        with side.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                return step(conn)

    queue = db.write_queue
    assert queue is not None
    async with queue:
        try:
            return await asyncio.get_running_loop().run_in_executor(side.executor, work)
        except OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise
            raise Unavailable(
                "the database is busy; try again in a moment", code="database_busy"
            ) from exc


# --- writing -------------------------------------------------------------------------------


def lock_keys(usernames: Iterable[str]) -> list[int]:
    """The keys of the per-user advisory locks (PostgreSQL) of these usernames, ascending.

    Why the locks: on PostgreSQL an id is drawn from the sequence at INSERT, but concurrent
    transactions may commit in another order. Without them, bob could be handed message 12
    (committed first) and then 11, and a client that resumed from cursor 12 would never
    see 11. Holding both participants' locks from before the INSERT until the events are
    published makes every user's messages commit and arrive in id order, across processes
    (:class:`echochat.store.dm_batch.WriterSession` takes them, in ascending order, so two
    processes cannot deadlock). They are keyed by the (canonical, lower-case) username,
    which a send knows before it looks anyone up; two names sharing a key only wait for
    each other. SQLite needs none: it has one writer, and one process publishes in commit
    order."""
    return sorted({zlib.crc32(name.encode()) & 0x7FFFFFFF for name in usernames})


def _insert_messages(dialect: Any) -> Any:
    return (
        dialect.insert(messages)
        .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
        .returning(messages.c.id, messages.c.sender_id, messages.c.client_id)
    )


def _insert_pairs(dialect: Any) -> Any:
    return dialect.insert(dm_watermarks).on_conflict_do_nothing(
        index_elements=["user_id", "peer_id"]
    )


_INSERT_MESSAGES = {d.dialect.name: _insert_messages(d) for d in (sqlite, postgresql)}
_INSERT_PAIRS = {d.dialect.name: _insert_pairs(d) for d in (sqlite, postgresql)}


# SQLite: the same INSERT as ``_INSERT_MESSAGES`` written out, run as driver SQL. With
# SQLAlchemy's "insertmanyvalues" the per-row parameter processing was ~40% of the writer
# thread's work in a batch (docs/performance.md, "dm").
_SQLITE_INSERT_HEAD = (
    "INSERT INTO messages (conv, sender_id, recipient_id, sender_device, client_id, "
    "envelope, created_at) VALUES "
)
_SQLITE_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_SQLITE_INSERT_TAIL = (
    " ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id, sender_id, client_id"
)
_SQLITE_ROWS_PER_INSERT = 1000  # 7,000 variables: well under SQLite's 32,766


def insert_many_txn(conn: Connection, batch: list[NewMessage]) -> dict[tuple[int, str], int]:
    """Store a batch of messages in one statement, ids in list order; the new id per
    (sender_id, client_id). A pair that exists already (or twice in the batch: the first
    wins) is skipped and absent from the answer."""
    if not batch:
        return {}
    if conn.dialect.name == "sqlite":
        return _insert_many_sqlite(conn, batch)
    rows = conn.execute(
        _INSERT_MESSAGES[conn.dialect.name],
        [
            {
                "conv": m.conv,
                "sender_id": m.sender_id,
                "recipient_id": m.recipient_id,
                "sender_device": m.sender_device,
                "client_id": m.client_id,
                "envelope": m.envelope,
                "created_at": m.created_at,
            }
            for m in batch
        ],
    )
    return {(int(sender), str(client)): int(new_id) for new_id, sender, client in rows}


def _insert_many_sqlite(conn: Connection, batch: list[NewMessage]) -> dict[tuple[int, str], int]:
    kind = messages.c.created_at.type
    stamp = kind.dialect_impl(conn.dialect).bind_processor(conn.dialect)  # as SQLAlchemy's
    assert stamp is not None
    out: dict[tuple[int, str], int] = {}
    for start in range(0, len(batch), _SQLITE_ROWS_PER_INSERT):
        chunk = batch[start : start + _SQLITE_ROWS_PER_INSERT]
        params: list[Any] = []
        for m in chunk:
            params += (
                m.conv,
                m.sender_id,
                m.recipient_id,
                m.sender_device,
                m.client_id,
                m.envelope,
                stamp(m.created_at),
            )
        sql = _SQLITE_INSERT_HEAD + ", ".join([_SQLITE_INSERT_ROW] * len(chunk))
        rows = conn.exec_driver_sql(sql + _SQLITE_INSERT_TAIL, tuple(params))
        out.update({(int(sender), str(client)): int(new_id) for new_id, sender, client in rows})
    return out


def ensure_pairs_txn(conn: Connection, pairs: list[tuple[int, int, str]]) -> None:
    """The two watermark rows of each conversation (a, b, conv), if missing."""
    if pairs:
        conn.execute(
            _INSERT_PAIRS[conn.dialect.name],
            [
                {"user_id": x, "peer_id": y, "conv": conv}
                for a, b, conv in pairs
                for x, y in ((a, b), (b, a))
            ],
        )


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


def by_client_ids(
    conn: Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], MessageRow]:
    """The messages of these (sender_id, client_id) pairs that exist."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = _message_query().where(tuple_(messages.c.sender_id, messages.c.client_id).in_(wanted))
    return {(r.sender_id, r.client_id): r for r in _rows(conn.execute(query))}


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


# --- watermarks ----------------------------------------------------------------------------


def watermarks(conn: Connection, user_id: int, peer_id: int) -> tuple[int, int]:
    """(delivered_upto, read_upto) of ``user_id`` for ``peer_id``'s messages."""
    row = conn.execute(
        select(dm_watermarks.c.delivered_upto, dm_watermarks.c.read_upto).where(
            dm_watermarks.c.user_id == user_id, dm_watermarks.c.peer_id == peer_id
        )
    ).first()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class Moved:
    """One conversation's watermarks (``user``'s for ``peer``'s messages) before and after
    :func:`advance_many_txn`."""

    delivered_before: int
    read_before: int
    delivered: int
    read: int


# The watermark rows asked for with, per row, the peer's newest message in the
# conversation: the conversation's index walked down from its newest entry to the first
# from the peer (``max()`` with that filter would read the whole index). Locked on
# PostgreSQL until the commit (SQLite: the batch holds the database's write lock).
_NEWEST_FROM_PEER = (
    select(messages.c.id)
    .where(messages.c.conv == dm_watermarks.c.conv, messages.c.sender_id == dm_watermarks.c.peer_id)
    .order_by(messages.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_MARKS_AMONG = (
    select(
        dm_watermarks.c.user_id,
        dm_watermarks.c.peer_id,
        dm_watermarks.c.delivered_upto,
        dm_watermarks.c.read_upto,
        func.coalesce(_NEWEST_FROM_PEER, 0),
    )
    .where(
        tuple_(dm_watermarks.c.user_id, dm_watermarks.c.peer_id).in_(
            bindparam("pairs", expanding=True)
        )
    )
    .order_by(dm_watermarks.c.user_id, dm_watermarks.c.peer_id)
    .with_for_update(of=dm_watermarks)
)
_SET_MARKS = (
    update(dm_watermarks)
    .where(
        dm_watermarks.c.user_id == bindparam("b_user"),
        dm_watermarks.c.peer_id == bindparam("b_peer"),
    )
    .values(delivered_upto=bindparam("b_delivered"), read_upto=bindparam("b_read"))
)


# SQLite: the same two statements as driver SQL (as for the INSERT): SQLAlchemy expands the
# IN list and processes the parameters anew for every batch.
_SQLITE_MARKS_HEAD = (
    "SELECT w.user_id, w.peer_id, w.delivered_upto, w.read_upto, coalesce(("
    "SELECT m.id FROM messages AS m WHERE m.conv = w.conv AND m.sender_id = w.peer_id "
    "ORDER BY m.id DESC LIMIT 1), 0) FROM dm_watermarks AS w WHERE (w.user_id, w.peer_id) IN "
    "(VALUES "
)
_SQLITE_SET_MARKS = (
    "UPDATE dm_watermarks SET delivered_upto = ?, read_upto = ? WHERE user_id = ? AND peer_id = ?"
)
_SQLITE_PAIRS_PER_SELECT = 10000  # 20,000 variables: under SQLite's 32,766


def _marks_among(conn: Connection, pairs: list[tuple[int, int]]) -> list[Any]:
    if conn.dialect.name != "sqlite":
        return list(conn.execute(_MARKS_AMONG, {"pairs": pairs}))
    rows: list[Any] = []
    for start in range(0, len(pairs), _SQLITE_PAIRS_PER_SELECT):
        chunk = pairs[start : start + _SQLITE_PAIRS_PER_SELECT]
        sql = _SQLITE_MARKS_HEAD + ", ".join(["(?, ?)"] * len(chunk)) + ")"
        rows += conn.exec_driver_sql(sql, tuple(x for pair in chunk for x in pair))
    return rows


def moved_marks(
    rows: Iterable[Any], asks: dict[tuple[int, int], tuple[int, int]]
) -> tuple[dict[tuple[int, int], Moved], list[tuple[int, int, int, int]]]:
    """The watermark rows read for ``asks`` (user, peer, delivered, read, the peer's newest
    message) moved as asked: per conversation the values before and after, and the rows to
    write as (delivered, read, user, peer)."""
    out: dict[tuple[int, int], Moved] = {}
    changed: list[tuple[int, int, int, int]] = []
    for user, peer, delivered, read, newest in rows:
        key = (int(user), int(peer))
        want_delivered, want_read = asks[key]
        newest = int(newest)
        new_read = max(int(read), min(want_read, newest))
        new_delivered = max(int(delivered), min(want_delivered, newest), new_read)
        out[key] = Moved(int(delivered), int(read), new_delivered, new_read)
        if (new_delivered, new_read) != (delivered, read):
            changed.append((new_delivered, new_read, key[0], key[1]))
    return out, changed


def advance_many_txn(
    conn: Connection, asks: dict[tuple[int, int], tuple[int, int]]
) -> dict[tuple[int, int], Moved]:
    """Receipts of a whole batch in two statements: for each (user, peer) -> (delivered,
    read), move ``user``'s watermarks for ``peer``'s messages forward to those values
    (0: not asked), each clamped to the peer's newest message in the conversation; ``read``
    also moves ``delivered``, and nothing ever moves back. Per conversation that has
    watermark rows, the values before and after; the rows that changed are written with
    one executemany."""
    if not asks:
        return {}
    out, changed = moved_marks(_marks_among(conn, sorted(asks)), asks)
    if changed and conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_SET_MARKS, changed)
    elif changed:
        conn.execute(
            _SET_MARKS,
            [{"b_delivered": d, "b_read": r, "b_user": u, "b_peer": p} for d, r, u, p in changed],
        )
    return out


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


# --- moderation ----------------------------------------------------------------------------


async def set_muted_until_txn(conn: AsyncConnection, user_id: int, until: datetime | None) -> None:
    """A server-wide mute of the user until ``until`` (None lifts it): no DMs nor BUZZ!."""
    await conn.execute(update(users).where(users.c.id == user_id).values(muted_until=until))


async def delete_message_txn(conn: AsyncConnection, message_id: int) -> bool:
    """Delete one stored DM (its envelope with it); whether it existed."""
    result = await conn.execute(delete(messages).where(messages.c.id == message_id))
    return bool(result.rowcount)


# --- retention -------------------------------------------------------------------------------


async def purge_before_txn(conn: AsyncConnection, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` messages created before ``cutoff``; how many were deleted."""
    ids = select(messages.c.id).where(messages.c.created_at < cutoff).limit(batch)
    result = await conn.execute(delete(messages).where(messages.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)
