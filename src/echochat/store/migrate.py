"""Schema migrations (Alembic) driven from code, and the schema state check.

The schema is changed only here: no DDL at start-up outside migrations. A database that is
behind the code is upgraded (automatically on the embedded default, else by
``echochat db upgrade``); a database that is *ahead* of the code (a newer EchoChat migrated
it) is refused, never half-used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from echochat.store.db import Database

__all__ = ["MigrationError", "SchemaState", "SchemaStatus", "schema_state", "upgrade"]


class SchemaStatus(StrEnum):
    EMPTY = "empty"
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"


class MigrationError(Exception):
    """The schema cannot be used as it is; the message says what to run."""


@dataclass(frozen=True)
class SchemaState:
    status: SchemaStatus
    current: str | None
    head: str
    pending: list[str]

    def describe(self) -> str:
        if self.status is SchemaStatus.CURRENT:
            return f"up to date (revision {self.current})"
        if self.status is SchemaStatus.EMPTY:
            return f"empty: {len(self.pending)} migration(s) to apply; run 'echochat db upgrade'"
        if self.status is SchemaStatus.BEHIND:
            return (
                f"behind: at {self.current}, code expects {self.head}; "
                f"{len(self.pending)} migration(s) to apply; run 'echochat db upgrade'"
            )
        return (
            f"ahead: the database is at revision {self.current}, which this EchoChat does not "
            f"know (newest it knows: {self.head}); upgrade EchoChat or restore a backup"
        )


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("echochat.store") / "migrations"))
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _state_sync(conn: Connection) -> SchemaState:
    script = _script()
    head = script.get_current_head()
    assert head is not None
    current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return SchemaState(SchemaStatus.CURRENT, current, head, [])
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        return SchemaState(SchemaStatus.AHEAD, current, head, [])
    pending = [
        rev.revision for rev in reversed(list(script.iterate_revisions(head, current or "base")))
    ]
    status = SchemaStatus.EMPTY if current is None else SchemaStatus.BEHIND
    return SchemaState(status, current, head, pending)


async def schema_state(db: Database) -> SchemaState:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_state_sync)


async def upgrade(
    db: Database, *, on_step: Callable[[str, int, int], Any] | None = None
) -> SchemaState:
    """Apply every pending migration, one transaction each; ``on_step(rev, done, total)``."""
    state = await schema_state(db)
    if state.status is SchemaStatus.AHEAD:
        raise MigrationError(state.describe())
    total = len(state.pending)
    for done, revision in enumerate(state.pending, start=1):

        def _run(conn: Connection, revision: str = revision) -> None:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        async with db.engine.begin() as conn:
            await conn.run_sync(_run)
        if on_step is not None:
            on_step(revision, done, total)
    return await schema_state(db)


async def ensure_current(db: Database, *, migrate: bool) -> SchemaState:
    """Upgrade if allowed, else refuse a schema that is not exactly current."""
    state = await schema_state(db)
    if state.status is SchemaStatus.CURRENT:
        return state
    if state.status is SchemaStatus.AHEAD or not migrate:
        raise MigrationError(f"database schema is {state.describe()}")
    return await upgrade(db)
