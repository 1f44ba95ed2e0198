"""Engines for SQLite (embedded default) and PostgreSQL (cluster), one code path."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from echochat.config import mask_url
from echochat.domain.errors import Unavailable

__all__ = ["WAL_SAFETY_PAGES", "Database", "DatabaseUnavailable", "SqliteCheckpointer"]

log = logging.getLogger("echochat.store")

# SQLite checkpoints the WAL inside whichever commit takes it past this many pages. A
# running server checkpoints in the background instead (SqliteCheckpointer), so that this
# only bounds the WAL if that thread falls behind: far above what it lets accumulate.
WAL_SAFETY_PAGES = 8192  # 32 MiB of 4 KiB pages
# After a checkpoint the WAL file is cut back to this size when it restarts.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened; the message names it (password masked)."""


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event (below) issue BEGIN itself: the driver's own implicit
    # BEGIN comes only before the first write, leaving earlier reads outside the transaction.
    dbapi_connection.isolation_level = None
    _sqlite_pragmas(dbapi_connection)


def _sqlite_begin(conn: Any) -> None:
    # Write transactions take the write lock up front (BEGIN IMMEDIATE), so a
    # check-then-write (e.g. "is this the last admin?") cannot interleave with another.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes a commit durable before
    # we answer "ok" (ARCHITECTURE section 6); foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


class SqliteCheckpointer:
    """WAL checkpoints off the writers' path: a thread of its own runs a PASSIVE checkpoint
    (it waits for no reader or writer) every ``interval`` seconds on its own connection.

    Left to SQLite, the commit that takes the WAL past 1,000 pages copies it into the
    database file and syncs it, and every writer queued behind that commit waits: the
    long tail of DM latency (docs/performance.md, "dm"). The sqlite3 module releases the
    GIL while SQLite works, so the copy and its fsync run beside the event loop."""

    def __init__(self, path: str, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.runs = 0
        # (busy, frames in the WAL, frames checkpointed) of the last run
        self.last: tuple[int, int, int] | None = None
        self.ran = threading.Event()  # set after each run (tests wait on it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning(
                "background WAL checkpoints are off (%s); SQLite checkpoints in commits", exc
            )
            return
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while not self._stop.wait(self.interval):
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. the file went away: try again later
                    log.warning("WAL checkpoint failed: %s", exc)
                    continue
                self.last = (int(row[0]), int(row[1]), int(row[2]))
                self.runs += 1
                self.ran.set()
        finally:
            conn.close()


class Database:
    """Owns the async engine. Create with :meth:`open`, end with :meth:`close`."""

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        # SQLite has one writer; queueing writers here (not in SQLite's busy loop) keeps
        # them fair and off the 5 s busy timeout under load.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.checkpointer: SqliteCheckpointer | None = None

    @classmethod
    def create(cls, url: str, *, pool_size: int = 10) -> Database:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() != "sqlite":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        engine = create_async_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return cls(url, engine)

    @property
    def write_queue(self) -> asyncio.Lock | None:
        """SQLite's in-process writer queue (None on PostgreSQL): hold it around a write
        made outside :meth:`transaction` (e.g. a batch run on a thread), so that writers
        stay fair and off SQLite's busy timeout."""
        return self._write_lock

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def missing_file(self) -> Path | None:
        """For SQLite, the database file if it does not exist yet; else None."""
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        path = Path(url.database)
        return None if path.exists() else path

    @property
    def name(self) -> str:
        """The database's name: the file for SQLite, the database for PostgreSQL."""
        return make_url(self.url).database or ""

    async def ping(self, timeout: float = 5.0) -> None:
        """Round-trip to the database, or :class:`DatabaseUnavailable` naming why."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"database {self.masked_url} did not answer within {timeout:g}s"
            ) from exc
        except Exception as exc:
            raise DatabaseUnavailable(
                f"database {self.masked_url} is unreachable: {_reason(exc)}"
            ) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises.
        On SQLite it holds the write lock from the start (BEGIN IMMEDIATE)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            try:
                async with self.engine.connect() as conn:
                    await conn.execution_options(sqlite_begin="IMMEDIATE")
                    async with conn.begin():
                        yield conn
            except OperationalError as exc:
                if "locked" not in str(exc).lower():
                    raise
                raise Unavailable(
                    "the database is busy; try again in a moment", code="database_busy"
                ) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no commit needed)."""
        async with self.engine.connect() as conn:
            yield conn

    def start_background_checkpoints(self, interval: float = 0.5) -> None:
        """For a server on a SQLite file: checkpoint the WAL on a thread of its own instead
        of inside commits (see :class:`SqliteCheckpointer`). A no-op elsewhere."""
        url = make_url(self.url)
        if self.checkpointer is not None or url.get_backend_name() != "sqlite":
            return
        if not url.database or url.database == ":memory:":
            return
        self.checkpointer = SqliteCheckpointer(url.database, interval)
        self.checkpointer.start()

    async def close(self) -> None:
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
            self.checkpointer = None
        await self.engine.dispose()


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for a connection failure."""
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return message[:200]
