"""WAL checkpoints off the writers' path (store/db.py, SqliteCheckpointer)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.store import Database
from echochat.store.db import WAL_SAFETY_PAGES
from tests.apps import running


async def test_background_checkpoints_copy_the_wal_and_stop_with_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    db = Database.create(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
            autocheckpoint = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
        # SQLite's own checkpoints only as a safety net far above what the thread leaves.
        assert autocheckpoint == WAL_SAFETY_PAGES
        db.start_background_checkpoints(interval=0.02)
        checkpointer = db.checkpointer
        assert checkpointer is not None and checkpointer.alive
        for _ in range(50):
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": "x" * 2000})
        assert (path.parent / "db.sqlite3-wal").stat().st_size > 0
        for _ in range(2):  # the second run surely began after the last commit
            checkpointer.ran.clear()
            assert await asyncio.to_thread(checkpointer.ran.wait, 30), "no checkpoint ran"
        last = checkpointer.last
        # (busy, frames in the WAL, frames copied): every frame written is in the database.
        assert last is not None and last[0] == 0 and last[1] > 0 and last[2] == last[1], last
        with sqlite3.connect(path) as other:  # what the checkpoint copied is all there
            assert other.execute("SELECT count(*) FROM t").fetchone() == (50,)
    finally:
        await db.close()
    assert db.checkpointer is None and not checkpointer.alive


async def test_only_a_server_process_checkpoints_in_the_background(
    settings: ResolvedSettings,
) -> None:
    plain = create_app(settings.settings)
    async with running(plain):
        assert plain.state.ctx.db.checkpointer is None  # tests leave it to SQLite
    server = create_app(settings.settings, server_process=True)
    async with running(server):
        checkpointer = server.state.ctx.db.checkpointer
        assert checkpointer is not None and checkpointer.alive
    assert not checkpointer.alive  # stopped with the app


async def test_no_background_checkpoints_on_postgresql_urls_or_memory() -> None:
    for url in ("sqlite+aiosqlite:///:memory:", "postgresql+asyncpg://u@127.0.0.1:1/x"):
        db = Database.create(url)
        db.start_background_checkpoints()
        assert db.checkpointer is None
        await db.close()
