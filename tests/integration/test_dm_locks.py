"""The per-user write locks of ``store.messages.serialized`` on PostgreSQL (what keeps each
user's messages committed and published in id order across processes): held for the
block, so a second holder of any of the same names waits; released when it ends (also
when it raises), with the pooled connection back in its usual isolation level.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from echochat.store.db import Database
from echochat.store.messages import serialized

pytestmark = pytest.mark.integration


async def advisory_locks(db: Database, *, waiting: bool = False) -> int:
    """Advisory locks held (or, ``waiting``, asked for and not granted yet)."""
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = :g"),
            {"g": not waiting},
        )
        return int(found.scalar_one())


async def test_locks_are_held_for_the_block_and_released_after(pg_url: str) -> None:
    db = Database.create(pg_url, pool_size=2)
    try:
        order: list[str] = []
        inside = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with serialized(db, ["alice", "bob"]):
                order.append("first in")
                inside.set()
                await release.wait()
                order.append("first out")

        async def second() -> None:
            await inside.wait()
            async with serialized(db, ["bob", "carol"]):  # shares bob
                order.append("second in")

        task_1, task_2 = asyncio.create_task(first()), asyncio.create_task(second())
        await inside.wait()
        async with asyncio.timeout(10):  # second waits in PostgreSQL for bob's lock
            while not await advisory_locks(db, waiting=True):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert order == ["first in"]
        assert await advisory_locks(db) >= 2  # alice, bob (and carol's, before bob's)
        release.set()
        async with asyncio.timeout(10):
            await asyncio.gather(task_1, task_2)
        assert order == ["first in", "first out", "second in"]
        assert await advisory_locks(db) == 0

        with pytest.raises(RuntimeError):
            async with serialized(db, ["dave"]):
                raise RuntimeError("the batch failed")
        assert await advisory_locks(db) == 0
        # the pooled connections (both in use at once: all of them) went back to
        # ordinary transactions: a rollback undoes
        async with db.engine.connect() as one, db.engine.connect() as two:
            for conn in (one, two):
                await conn.execute(text("CREATE TEMP TABLE t (x int)"))
                await conn.rollback()
                missing = await conn.execute(text("SELECT to_regclass('pg_temp.t') IS NULL"))
                assert missing.scalar_one() is True
    finally:
        await db.close()
