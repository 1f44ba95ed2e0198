"""``store.dm_batch``: the DM group commit's statements, run by both drivers on the same
data, must give the same answers (SQLite through the synchronous SQLAlchemy functions,
PostgreSQL through asyncpg with array statements); a plan that fails is rolled back and
leaves the session usable; on PostgreSQL the per-user locks are held from ``locked()``
until the next batch's locks or the end of the run, and nothing (no lock, no open
transaction) outlives a session, whether it ended well, with an error, or cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from echochat.store import Database, dm_batch
from echochat.store import messages as store
from echochat.store.migrate import upgrade
from echochat.store.tables import blocks, device_keys, messages, users

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
MUTED = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}"
    return str(request.getfixturevalue("pg_url"))


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[Database]:
    database = Database.create(url, pool_size=3)
    try:
        await upgrade(database)
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    async with migrated(db_url) as database:
        yield database


async def people(db: Database) -> dict[str, int]:
    """ann, ben (muted), cat (who blocked ann), dan (whom ann blocked); ann has a device."""
    ids: dict[str, int] = {}
    async with db.transaction() as conn:
        for name in ("ann", "ben", "cat", "dan"):
            row = await conn.execute(
                insert(users)
                .values(
                    username=name,
                    display_name=name.title(),
                    muted_until=MUTED if name == "ben" else None,
                )
                .returning(users.c.id)
            )
            ids[name] = int(row.scalar_one())
        await conn.execute(
            insert(blocks),
            [
                {"user_id": ids["cat"], "blocked_id": ids["ann"]},
                {"user_id": ids["ann"], "blocked_id": ids["dan"]},
            ],
        )
        await conn.execute(
            insert(device_keys).values(
                user_id=ids["ann"], device_id="dev-ann1", x25519="x", ed25519="e", signature="s"
            )
        )
    return ids


def note(conv: str, sender: int, recipient: int, client_id: str) -> store.NewMessage:
    return store.NewMessage(
        conv=conv,
        sender_id=sender,
        recipient_id=recipient,
        sender_device="dev-ann1",
        client_id=client_id,
        envelope='{"v":1,"n":"' + client_id + '"}',
        created_at=AT,
    )


async def run(db: Database, *ops: dm_batch.Op[Any]) -> list[Any]:
    """The ops as one plan in one transaction; their results."""

    def plan() -> dm_batch.Plan[list[Any]]:
        results = []
        for op in ops:
            results.append((yield op))
        return results

    async with dm_batch.writer_session(db) as session:
        return await session.write(plan())


async def test_both_drivers_answer_alike(db: Database) -> None:
    ids = await people(db)
    ann, ben = ids["ann"], ids["ben"]
    asks: list[tuple[int, str, str | None]] = [
        (ann, " Ben ", "dev-ann1"),
        (ann, "cat", None),
        (ann, "DAN", "dev-nope"),
        (ann, "zed", None),
        (ben, "ann", None),
    ]
    conv = "dm:ann:ben"
    batch = [note(conv, ann, ben, "c1"), note(conv, ben, ann, "c1"), note(conv, ann, ben, "c1")]
    found, _, inserted = await run(
        db,
        dm_batch.checks(asks, {"ann"}),
        dm_batch.ensure_pairs([(ann, ben, conv)]),
        dm_batch.insert_many(batch),
    )
    peers = found.peers
    assert peers[0] == store.PeerRow(ben, "ben", "Ben", False, False, True)
    assert peers[1] == store.PeerRow(ids["cat"], "cat", "Cat", True, False, False)
    assert peers[2] == store.PeerRow(ids["dan"], "dan", "Dan", False, True, False)
    assert peers[3] is None
    assert peers[4] == store.PeerRow(ann, "ann", "Ann", False, False, False)
    assert found.muted_until == {"ben": MUTED}
    # ids in list order; the second (ann, c1) is skipped: the first wins
    assert list(inserted) == [(ann, "c1"), (ben, "c1")]
    first, second = inserted[(ann, "c1")], inserted[(ben, "c1")]
    assert first < second

    again, rows, _ = await run(
        db,
        dm_batch.insert_many(batch[:1]),
        dm_batch.by_client_ids([(ann, "c1"), (ann, "nope")]),
        dm_batch.ensure_pairs([(ann, ben, conv)]),  # already there: nothing happens
    )
    assert again == {}
    assert rows == {
        (ann, "c1"): store.MessageRow(
            id=first,
            conv=conv,
            sender_id=ann,
            recipient_id=ben,
            sender="ann",
            recipient="ben",
            sender_device="dev-ann1",
            client_id="c1",
            envelope='{"v":1,"n":"c1"}',
            created_at=AT,
        )
    }

    # watermarks: clamped to the peer's newest message, never back, read carries delivered
    (moved,) = await run(
        db, dm_batch.advance_many({(ben, ann): (first + 100, 0), (ann, 999): (5, 5)})
    )
    assert moved == {(ben, ann): store.Moved(0, 0, first, 0)}  # no rows for (ann, 999)
    (moved,) = await run(db, dm_batch.advance_many({(ann, ben): (0, second), (ben, ann): (0, 0)}))
    assert moved == {
        (ann, ben): store.Moved(0, 0, second, second),
        (ben, ann): store.Moved(first, 0, first, 0),
    }
    async with db.read() as conn:
        marks = await conn.execute(
            text("SELECT user_id, peer_id, delivered_upto, read_upto FROM dm_watermarks")
        )
        assert sorted(tuple(r) for r in marks) == sorted(
            [(ann, ben, second, second), (ben, ann, first, 0)]
        )


async def test_a_failed_plan_is_rolled_back_and_the_session_goes_on(db: Database) -> None:
    ids = await people(db)
    ann, ben = ids["ann"], ids["ben"]

    def failing() -> dm_batch.Plan[None]:
        yield dm_batch.insert_many([note("dm:ann:ben", ann, ben, "lost")])
        raise RuntimeError("the batch failed after its INSERT")

    def fine() -> dm_batch.Plan[dict[tuple[int, str], int]]:
        inserted: dict[tuple[int, str], int] = yield dm_batch.insert_many(
            [note("dm:ann:ben", ann, ben, "kept")]
        )
        return inserted

    async with dm_batch.writer_session(db) as session:
        async with session.locked(["ann", "ben"]):
            with pytest.raises(RuntimeError, match="after its INSERT"):
                await session.write(failing())
        assert session.usable
        async with session.locked(["ann", "ben"]):
            kept = await session.write(fine())
    assert list(kept) == [(ann, "kept")]
    async with db.read() as conn:
        stored = (await conn.execute(select(messages.c.client_id))).scalars()
        assert list(stored) == ["kept"]


# --- PostgreSQL: the locks ---------------------------------------------------------------------


async def advisory_locks(db: Database, *, waiting: bool = False) -> int:
    """Advisory locks held (or, ``waiting``, asked for and not granted yet)."""
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = :g"),
            {"g": not waiting},
        )
        return int(found.scalar_one())


async def open_transactions(db: Database) -> int:
    """This database's other sessions that sit inside a transaction."""
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        )
        return int(found.scalar_one())


async def wait_for_a_waiter(db: Database) -> None:
    async with asyncio.timeout(10):
        while not await advisory_locks(db, waiting=True):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[Database]:
    async with migrated(pg_url) as database:
        yield database


async def test_locks_last_until_the_next_batch_or_the_end_of_the_run(pg: Database) -> None:
    await people(pg)
    order: list[str] = []
    first_in, next_batch, end_run = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with dm_batch.writer_session(pg) as session:
            async with session.locked(["ann", "ben"]):
                order.append("first: ann, ben")
                first_in.set()
            await next_batch.wait()  # the batch is over; its locks are still held
            async with session.locked(["cat"]):  # ann and ben go, cat is taken
                order.append("first: cat")
            await end_run.wait()
        order.append("first: done")

    async def second() -> None:
        await first_in.wait()
        async with dm_batch.writer_session(pg) as session, session.locked(["ben", "dan"]):
            order.append("second: ben, dan")

    async def third() -> None:
        async with dm_batch.writer_session(pg) as session, session.locked(["cat"]):
            order.append("third: cat")

    task_1, task_2 = asyncio.create_task(first()), asyncio.create_task(second())
    await first_in.wait()
    await wait_for_a_waiter(pg)  # second waits in PostgreSQL for ben
    assert order == ["first: ann, ben"]
    next_batch.set()
    async with asyncio.timeout(10):
        await task_2
    # (first took cat in the round trip that let ben go, so either may have noted it first)
    assert sorted(order) == ["first: ann, ben", "first: cat", "second: ben, dan"]
    task_3 = asyncio.create_task(third())
    await wait_for_a_waiter(pg)  # cat is held until first's run ends
    end_run.set()
    async with asyncio.timeout(10):
        await asyncio.gather(task_1, task_3)
    assert sorted(order[3:]) == ["first: done", "third: cat"]  # third only after the run
    assert await advisory_locks(pg) == 0
    assert await open_transactions(pg) == 0


async def test_nothing_outlives_a_session_that_failed_or_was_cancelled(pg: Database) -> None:
    await people(pg)
    with pytest.raises(RuntimeError):
        async with dm_batch.writer_session(pg) as session, session.locked(["ann"]):
            raise RuntimeError("the batch failed")  # inside the transaction and the locks
    assert await advisory_locks(pg) == 0
    assert await open_transactions(pg) == 0

    async def hold(name: str, held: asyncio.Event | None = None) -> None:
        async with dm_batch.writer_session(pg) as session, session.locked([name]):
            if held is not None:
                held.set()
            await asyncio.Event().wait()

    held = asyncio.Event()
    task = asyncio.create_task(hold("ben", held))
    await held.wait()
    assert await advisory_locks(pg) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await advisory_locks(pg) == 0
    assert await open_transactions(pg) == 0

    # a statement cancelled mid-flight (a lock being waited for): the connection is
    # closed, not pooled in doubt
    blocker_held = asyncio.Event()
    task_b = asyncio.create_task(hold("cat", blocker_held))
    await blocker_held.wait()
    task_w = asyncio.create_task(hold("cat"))
    await wait_for_a_waiter(pg)  # the second is inside pg_advisory_lock
    task_w.cancel()
    task_b.cancel()
    for task in (task_w, task_b):
        with pytest.raises(asyncio.CancelledError):
            await task
    async with asyncio.timeout(10):  # the closed connection's backend goes away
        while await advisory_locks(pg) + await advisory_locks(pg, waiting=True):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert await open_transactions(pg) == 0
    # the pool still works, and its connections are in ordinary transactions
    assert list(await run(pg, dm_batch.checks([(1, "ann", None)], {"ann"})))
    async with pg.engine.connect() as conn:
        await conn.execute(text("CREATE TEMP TABLE t (x int)"))
        await conn.rollback()
        assert (await conn.execute(text("SELECT to_regclass('pg_temp.t') IS NULL"))).scalar_one()


async def test_a_batch_sees_what_the_holder_it_waited_for_committed(pg_url: str) -> None:
    """Even where transactions default to repeatable read: the batch's transaction (and its
    snapshot) begins after the wait for the locks, not at it."""
    async with migrated(pg_url) as setup:
        ids = await people(setup)
        async with setup.engine.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
            await conn.execute(
                text(
                    f'ALTER DATABASE "{name}" '
                    "SET default_transaction_isolation = 'repeatable read'"
                )
            )
            await conn.commit()
    async with migrated(pg_url) as pg:
        ann, ben = ids["ann"], ids["ben"]
        first_in, committed = asyncio.Event(), asyncio.Event()

        def insert() -> dm_batch.Plan[dict[tuple[int, str], int]]:
            inserted: dict[tuple[int, str], int] = yield dm_batch.insert_many(
                [note("dm:ann:ben", ann, ben, "c1")]
            )
            return inserted

        def find() -> dm_batch.Plan[dict[tuple[int, str], store.MessageRow]]:
            rows: dict[tuple[int, str], store.MessageRow] = yield dm_batch.by_client_ids(
                [(ann, "c1")]
            )
            return rows

        async def holder() -> None:
            async with dm_batch.writer_session(pg) as session, session.locked(["ann", "ben"]):
                first_in.set()
                await committed.wait()  # the other is waiting for ann by now
                await session.write(insert())

        async def waiter() -> dict[tuple[int, str], store.MessageRow]:
            await first_in.wait()
            async with dm_batch.writer_session(pg) as session, session.locked(["ann"]):
                return await session.write(find())

        task_1, task_2 = asyncio.create_task(holder()), asyncio.create_task(waiter())
        await first_in.wait()
        await wait_for_a_waiter(pg)
        committed.set()
        async with asyncio.timeout(10):
            _, found = await asyncio.gather(task_1, task_2)
        assert list(found) == [(ann, "c1")]
