"""The DM group commit's database side: one batch's statements written once, run by two
drivers (docs/performance.md, "dm").

The writer (``services/dm.py``) describes a batch as a *plan*: a generator that yields
:class:`Op` values (check these senders and recipients, insert these messages, move these
watermarks...) and receives each one's result. A :class:`WriterSession` runs the plan:

- **SQLite** (:class:`_LocalSession`): the whole plan in one hop to the SQLite thread, in
  one ``BEGIN IMMEDIATE`` transaction, through the synchronous functions of
  :mod:`echochat.store.messages` (as before).
- **PostgreSQL** (:class:`_PgSession`): one pooled connection held by the writer for as
  long as it has work, driven through asyncpg directly with fixed statements that take
  arrays (``unnest``), so every statement is prepared once per connection and a batch of
  any size is one round trip per statement. The per-user advisory locks (why they exist:
  :func:`echochat.store.messages.lock_keys`) are taken on the same connection, in the
  same round trip as the ``BEGIN``, and released together with the next batch's locks.
  A batch costs about seven round trips (locks and BEGIN, the checks, the INSERT, the
  watermarks' SELECT and UPDATE, COMMIT, and the bus publish) where the SQLAlchemy path
  needed about twenty (two pool checkouts, each pinged with BEGIN / ``;`` / ROLLBACK, a
  prepare per statement whose IN list changed length, and a lock connection of its own);
  at one writer per process, round trips are the cluster's latency.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from echochat.domain.errors import Unavailable
from echochat.store import messages as store
from echochat.store.db import Database
from echochat.store.messages import Checks, MessageRow, Moved, NewMessage, PeerRow

__all__ = [
    "Op",
    "Plan",
    "WriterSession",
    "advance_many",
    "by_client_ids",
    "checks",
    "drive",
    "ensure_pairs",
    "insert_many",
    "writer_session",
]

log = logging.getLogger("echochat.dm")

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Op(Generic[R]):
    """One step of a plan: the synchronous function (SQLite: ``fn(conn, *args)``) and the
    asyncpg one (PostgreSQL: ``await fn(raw, *args)``), which return the same thing."""

    local: Callable[..., R]
    pg: Callable[..., Awaitable[R]]
    args: tuple[Any, ...]


Plan = Generator[Op[Any], Any, T]


def drive(conn: store.Conn, plan: Plan[T]) -> T:
    """Run ``plan`` synchronously on ``conn`` (a transaction the caller opened)."""
    try:
        op = next(plan)
        while True:
            op = plan.send(op.local(conn, *op.args))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def _drive_pg(raw: Any, plan: Plan[T]) -> T:
    try:
        op = next(plan)
        while True:
            op = plan.send(await op.pg(raw, *op.args))
    except StopIteration as stop:
        result: T = stop.value
        return result


# --- the statements on PostgreSQL ------------------------------------------------------------
# Fixed texts (asyncpg prepares each once per connection and keeps it); a batch is arrays.

_PG_CHECKS = """
SELECT a.ord, u.id, u.username, u.display_name, u.muted_until,
       me.username AS me_name, me.muted_until AS me_muted,
       EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.blocked_id = a.me),
       EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = a.me AND b.blocked_id = u.id),
       a.device IS NOT NULL AND EXISTS (
           SELECT 1 FROM device_keys d WHERE d.user_id = a.me AND d.device_id = a.device)
FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS a(me, name, device, ord)
LEFT JOIN users u ON lower(u.username) = a.name
LEFT JOIN users me ON me.id = a.me
ORDER BY a.ord
"""

_PG_ENSURE_PAIRS = """
INSERT INTO dm_watermarks (user_id, peer_id, conv)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])
ON CONFLICT (user_id, peer_id) DO NOTHING
"""

# ids are drawn in the order of the rows (ORDER BY the position in the batch)
_PG_INSERT = """
INSERT INTO messages (conv, sender_id, recipient_id, sender_device, client_id, envelope,
                      created_at)
SELECT conv, sender_id, recipient_id, sender_device, client_id, envelope, created_at
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[])
     WITH ORDINALITY AS b(conv, sender_id, recipient_id, sender_device, client_id, envelope,
                          created_at, ord)
ORDER BY ord
ON CONFLICT (sender_id, client_id) DO NOTHING
RETURNING id, sender_id, client_id
"""

_PG_BY_CLIENT_IDS = """
SELECT m.id, m.conv, m.sender_id, m.recipient_id, s.username, r.username, m.sender_device,
       m.client_id, m.envelope, m.created_at
FROM messages m
JOIN users s ON s.id = m.sender_id
JOIN users r ON r.id = m.recipient_id
WHERE (m.sender_id, m.client_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
"""

# As store.messages._MARKS_AMONG: the rows asked for, each with the peer's newest message
# in the conversation (the clamp), locked until the commit.
_PG_MARKS = """
SELECT w.user_id, w.peer_id, w.delivered_upto, w.read_upto,
       coalesce((SELECT m.id FROM messages m
                 WHERE m.conv = w.conv AND m.sender_id = w.peer_id
                 ORDER BY m.id DESC LIMIT 1), 0)
FROM dm_watermarks w
WHERE (w.user_id, w.peer_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
ORDER BY w.user_id, w.peer_id
FOR UPDATE OF w
"""

_PG_SET_MARKS = """
UPDATE dm_watermarks AS w SET delivered_upto = a.delivered, read_upto = a.read
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
     AS a(delivered, read, user_id, peer_id)
WHERE w.user_id = a.user_id AND w.peer_id = a.peer_id
"""


async def _pg_checks(
    raw: Any, asks: list[tuple[int, str, str | None]], senders: Iterable[str] = ()
) -> Checks:
    """:func:`store.checks_for` in one statement. The mutes it reports are those of the
    users asked about and of the askers (the senders are askers)."""
    del senders  # every sender is the ``me`` of its ask
    if not asks:
        return Checks([], {})
    rows = await raw.fetch(
        _PG_CHECKS,
        [me for me, _, _ in asks],
        [name.strip().lower() for _, name, _ in asks],
        [device for _, _, device in asks],
    )
    peers: list[PeerRow | None] = []
    muted: dict[str, datetime] = {}
    for row in rows:
        _, peer, name, display, until, me_name, me_until, blocked_me, blocked_by_me, known = row
        if me_until is not None:
            muted[str(me_name).lower()] = me_until
        if peer is None:
            peers.append(None)
            continue
        if until is not None:
            muted[str(name).lower()] = until
        peers.append(
            PeerRow(
                id=int(peer),
                username=str(name),
                display_name=str(display),
                blocked_me=bool(blocked_me),
                blocked_by_me=bool(blocked_by_me),
                device_known=bool(known),
            )
        )
    return Checks(peers, muted)


async def _pg_ensure_pairs(raw: Any, pairs: list[tuple[int, int, str]]) -> None:
    if pairs:
        rows = [(x, y, conv) for a, b, conv in pairs for x, y in ((a, b), (b, a))]
        await raw.execute(
            _PG_ENSURE_PAIRS, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        )


async def _pg_insert_many(raw: Any, batch: list[NewMessage]) -> dict[tuple[int, str], int]:
    if not batch:
        return {}
    rows = await raw.fetch(
        _PG_INSERT,
        [m.conv for m in batch],
        [m.sender_id for m in batch],
        [m.recipient_id for m in batch],
        [m.sender_device for m in batch],
        [m.client_id for m in batch],
        [m.envelope for m in batch],
        [m.created_at for m in batch],
    )
    return {(int(sender), str(client)): int(new_id) for new_id, sender, client in rows}


async def _pg_by_client_ids(
    raw: Any, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], MessageRow]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await raw.fetch(_PG_BY_CLIENT_IDS, [s for s, _ in wanted], [c for _, c in wanted])
    found = [MessageRow(*row) for row in rows]
    return {(r.sender_id, r.client_id): r for r in found}


async def _pg_advance_many(
    raw: Any, asks: dict[tuple[int, int], tuple[int, int]]
) -> dict[tuple[int, int], Moved]:
    if not asks:
        return {}
    wanted = sorted(asks)
    rows = await raw.fetch(_PG_MARKS, [u for u, _ in wanted], [p for _, p in wanted])
    out, changed = store.moved_marks(rows, asks)
    if changed:
        await raw.execute(_PG_SET_MARKS, *(list(column) for column in zip(*changed, strict=True)))
    return out


# --- the plan's steps ---------------------------------------------------------------------------


def checks(asks: list[tuple[int, str, str | None]], senders: Iterable[str]) -> Op[Checks]:
    """Per (me, username, device): the user with the block flags both ways and whether the
    device is one of me's; and the server-wide mutes of the senders."""
    return Op(store.checks_for, _pg_checks, (asks, senders))


def ensure_pairs(pairs: list[tuple[int, int, str]]) -> Op[None]:
    return Op(store.ensure_pairs_txn, _pg_ensure_pairs, (pairs,))


def insert_many(batch: list[NewMessage]) -> Op[dict[tuple[int, str], int]]:
    return Op(store.insert_many_txn, _pg_insert_many, (batch,))


def by_client_ids(keys: list[tuple[int, str]]) -> Op[dict[tuple[int, str], MessageRow]]:
    return Op(store.by_client_ids, _pg_by_client_ids, (keys,))


def advance_many(
    asks: dict[tuple[int, int], tuple[int, int]],
) -> Op[dict[tuple[int, int], Moved]]:
    return Op(store.advance_many_txn, _pg_advance_many, (asks,))


# --- sessions --------------------------------------------------------------------------------


class WriterSession:
    """What the DM writer runs its batches through, for one run of batches."""

    usable = True  # False: the connection is in an unknown state; open a new session

    @asynccontextmanager
    async def locked(self, usernames: Iterable[str]) -> AsyncIterator[None]:
        """Hold the per-user locks of these users for the block (nothing on SQLite, which
        has one writer and publishes in commit order)."""
        yield

    async def write(self, plan: Plan[T]) -> T:
        """Run ``plan`` in one transaction: committed when it returns, rolled back if it
        raises."""
        raise NotImplementedError


class _LocalSession(WriterSession):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, plan: Plan[T]) -> T:
        return await store.run_write(self.db, lambda conn: drive(conn, plan))


# Read committed whatever the server's default: each statement sees what the previous
# holders of the batch's locks committed (a retried client id's original, for one).
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"


class _PgSession(WriterSession):
    """One asyncpg connection (checked out of the engine's pool by :func:`writer_session`)
    in autocommit, on which this session issues BEGIN / COMMIT itself."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.locked_keys = False  # session advisory locks are held (released lazily)
        self.in_transaction = False

    @asynccontextmanager
    async def locked(self, usernames: Iterable[str]) -> AsyncIterator[None]:
        keys = store.lock_keys(usernames)
        # One round trip: the previous batch's locks go, this batch's are taken in
        # ascending order (no deadlock between processes), and its transaction begins.
        parts = ["SELECT pg_advisory_unlock_all()"] if self.locked_keys else []
        if keys:
            # the simple-query protocol (several statements, one round trip) takes no
            # parameters: the keys are ints written out, nothing from a client
            numbers = ",".join(str(int(k)) for k in keys)
            parts.append(
                f"SELECT pg_advisory_lock({int(store.LOCK_NAMESPACE)}, k) "  # noqa: S608
                f"FROM unnest(ARRAY[{numbers}]::int[]) AS k"
            )
        if parts:
            # those ran in an implicit transaction: end it, so that the batch's own begins
            # after the wait for the locks (a fresh snapshot at any isolation default)
            parts.append("COMMIT")
        sql = "; ".join([*parts, _BEGIN])
        self.usable = False  # until the round trip is known to have completed
        await self.raw.execute(sql)
        self.locked_keys = bool(keys)
        self.in_transaction = True
        self.usable = True
        yield

    async def write(self, plan: Plan[T]) -> T:
        if not self.usable:
            raise Unavailable("the database connection was lost; try again", code="unavailable")
        if not self.in_transaction:
            self.usable = False
            await self.raw.execute(_BEGIN)
            self.usable = True
        self.in_transaction = False  # this plan owns it now: it ends in COMMIT or ROLLBACK
        try:
            result = await _drive_pg(self.raw, plan)
        except BaseException:
            self.usable = False
            try:
                await self.raw.execute("ROLLBACK")
                self.usable = True
            except Exception:  # noqa: S110 - the connection will be closed; the cause goes on
                pass
            raise
        self.usable = False  # a COMMIT that fails leaves the outcome unknown
        await self.raw.execute("COMMIT")
        self.usable = True
        return result

    async def release(self) -> None:
        """End the run: roll back a transaction begun and not used, drop the locks."""
        sql = "ROLLBACK; " if self.in_transaction else ""
        if self.locked_keys:
            sql += "SELECT pg_advisory_unlock_all()"
        if sql:
            self.usable = False
            await self.raw.execute(sql)
            self.in_transaction = self.locked_keys = False
            self.usable = True


@asynccontextmanager
async def writer_session(db: Database) -> AsyncIterator[WriterSession]:
    """A session for a run of batches. On PostgreSQL it holds one pooled connection; if
    anything leaves it in doubt (an error or a cancellation mid-statement), the connection
    is closed instead of going back to the pool: a closed session holds no locks and no
    transaction."""
    if db.dialect != "postgresql":
        yield _LocalSession(db)
        return
    async with db.engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        session = _PgSession(fairy.driver_connection)
        try:
            yield session
        finally:
            try:
                if session.usable:
                    try:
                        await session.release()
                    except Exception as exc:  # closing the connection releases it all
                        log.warning("DM writer: releasing its connection failed: %s", exc)
                        session.usable = False
            finally:
                # never back to the pool inside a transaction (SQLAlchemy's reset on return
                # only ends a transaction it began itself)
                if not session.usable or session.raw.is_in_transaction():
                    await conn.invalidate()
