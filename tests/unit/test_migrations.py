"""Migrations on SQLite: state, the seeded role table, refusal of a database that is ahead,
case-insensitive uniqueness and the SQLite pragmas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.domain.errors import Conflict
from echochat.domain.roles import PERMISSIONS, ROLE_PERMISSIONS, ROLES
from echochat.services.roles import grant_role, list_admins, revoke_role
from echochat.store import Database
from echochat.store import users as user_store
from echochat.store.migrate import (
    MigrationError,
    SchemaStatus,
    ensure_current,
    schema_state,
    upgrade,
)
from echochat.store.tables import metadata, permissions, role_assignments, roles, users
from tests.apps import running


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.create(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def migrated(db: Database) -> Database:
    await upgrade(db)
    return db


async def add_user(db: Database, username: str, email: str | None = None) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(
            insert(users).values(username=username, display_name=username.title(), email=email)
        )
        return int(result.inserted_primary_key[0])


async def test_upgrade_from_empty(db: Database) -> None:
    before = await schema_state(db)
    assert before.status is SchemaStatus.EMPTY
    assert before.current is None
    assert before.pending
    assert before.pending[-1] == before.head
    assert "echochat db upgrade" in before.describe()

    steps: list[tuple[str, int, int]] = []
    after = await upgrade(db, on_step=lambda rev, done, total: steps.append((rev, done, total)))

    assert after.status is SchemaStatus.CURRENT
    assert after.current == after.head == before.head
    assert after.pending == []
    total = len(before.pending)
    assert steps == [(rev, i, total) for i, rev in enumerate(before.pending, start=1)]
    assert "up to date" in after.describe()


async def test_upgrade_when_current_is_a_no_op(migrated: Database) -> None:
    steps: list[tuple[str, int, int]] = []
    state = await upgrade(migrated, on_step=lambda *step: steps.append(step))
    assert state.status is SchemaStatus.CURRENT
    assert steps == []
    assert (await ensure_current(migrated, migrate=False)).status is SchemaStatus.CURRENT


async def test_ensure_current_migrates_only_when_allowed(db: Database) -> None:
    with pytest.raises(MigrationError, match="echochat db upgrade"):
        await ensure_current(db, migrate=False)
    assert (await schema_state(db)).status is SchemaStatus.EMPTY
    state = await ensure_current(db, migrate=True)
    assert state.status is SchemaStatus.CURRENT


async def test_migrated_role_table_equals_domain_table(migrated: Database) -> None:
    async with migrated.read() as conn:
        table = await user_store.role_permission_table(conn)
        role_rows = dict((await conn.execute(select(roles.c.name, roles.c.description))).all())
        perm_rows = dict(
            (await conn.execute(select(permissions.c.name, permissions.c.description))).all()
        )
    assert table == {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
    assert role_rows == ROLES
    assert perm_rows == PERMISSIONS


# SQLite cannot reflect expression indexes (lower(username)); they are checked by the
# uniqueness tests below, and compared for real on PostgreSQL in the integration suite.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_tables_module_matches_migrated_schema(migrated: Database) -> None:
    """tables.py and the migrations describe the same schema (no drift either way)."""

    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with migrated.read() as conn:
        assert await conn.run_sync(diff) == []


async def upgrade_to_first_revision(db: Database) -> str:
    """Apply only the first migration, the way an older EchoChat left the database."""
    first = (await schema_state(db)).pending[0]

    def run(conn: Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(files("echochat.store") / "migrations"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, first)

    async with db.transaction() as conn:
        await conn.run_sync(run)
    return first


async def test_database_behind_is_upgraded_only_when_allowed(db: Database) -> None:
    empty = await schema_state(db)
    assert len(empty.pending) >= 2  # there is a "behind" state to build
    first = await upgrade_to_first_revision(db)
    state = await schema_state(db)
    assert state.status is SchemaStatus.BEHIND
    assert state.current == first
    assert state.pending == empty.pending[1:]
    assert "echochat db upgrade" in state.describe()
    with pytest.raises(MigrationError, match="behind"):
        await ensure_current(db, migrate=False)
    steps: list[str] = []
    after = await upgrade(db, on_step=lambda rev, done, total: steps.append(rev))
    assert after.status is SchemaStatus.CURRENT
    assert steps == empty.pending[1:]


async def mark_ahead(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))


async def test_database_ahead_is_refused(migrated: Database) -> None:
    await mark_ahead(migrated)
    state = await schema_state(migrated)
    assert state.status is SchemaStatus.AHEAD
    assert state.current == "9999_from_the_future"
    for migrate in (True, False):
        with pytest.raises(MigrationError, match="ahead"):
            await ensure_current(migrated, migrate=migrate)
    with pytest.raises(MigrationError, match="ahead"):
        await upgrade(migrated)
    # Refusing did not touch the database.
    assert (await schema_state(migrated)).current == "9999_from_the_future"


async def test_app_refuses_to_start_on_a_database_ahead(
    make_settings: Callable[..., ResolvedSettings],
) -> None:
    settings = make_settings().settings
    db = Database.create(settings.resolved_database_url)
    try:
        await upgrade(db)
        await mark_ahead(db)
    finally:
        await db.close()
    app = create_app(settings)
    with pytest.raises(MigrationError, match="ahead"):
        async with running(app):
            pass


async def test_app_refuses_empty_database_without_auto_migrate(
    make_settings: Callable[..., ResolvedSettings],
) -> None:
    app = create_app(make_settings(auto_migrate=False).settings)
    with pytest.raises(MigrationError, match="echochat db upgrade"):
        async with running(app):
            pass


async def test_username_unique_case_insensitively(migrated: Database) -> None:
    await add_user(migrated, "alice")
    with pytest.raises(IntegrityError):
        await add_user(migrated, "Alice")
    with pytest.raises(IntegrityError):
        await add_user(migrated, "ALICE")
    await add_user(migrated, "bob")
    async with migrated.read() as conn:
        names = (await conn.execute(select(users.c.username).order_by(users.c.id))).scalars()
        assert list(names) == ["alice", "bob"]
        found = await user_store.by_username(conn, "ALICE")
        assert found is not None
        assert found.username == "alice"


async def test_email_unique_case_insensitively_and_nulls_allowed(migrated: Database) -> None:
    await add_user(migrated, "alice", "Alice@Example.org")
    with pytest.raises(IntegrityError):
        await add_user(migrated, "bob", "alice@example.ORG")
    await add_user(migrated, "bob")
    await add_user(migrated, "carol")
    await add_user(migrated, "dave", None)
    async with migrated.read() as conn:
        nulls = (
            await conn.execute(select(users.c.username).where(users.c.email.is_(None)))
        ).scalars()
        assert sorted(nulls) == ["bob", "carol", "dave"]


async def test_foreign_keys_are_enforced(migrated: Database) -> None:
    with pytest.raises(IntegrityError):
        async with migrated.transaction() as conn:
            await conn.execute(
                insert(role_assignments).values(user_id=12345, role="admin", granted_by="test")
            )
    alice = await add_user(migrated, "alice")
    with pytest.raises(IntegrityError):
        async with migrated.transaction() as conn:
            await conn.execute(
                insert(role_assignments).values(user_id=alice, role="emperor", granted_by="test")
            )


async def test_sqlite_pragmas(migrated: Database) -> None:
    async with migrated.read() as conn:
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        synchronous = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
    assert str(journal).lower() == "wal"
    assert foreign_keys == 1
    assert synchronous == 2  # FULL


# --- the last-admin guard under concurrency ------------------------------------------------


async def race_revokes(
    db: Database, monkeypatch: pytest.MonkeyPatch, first: str, second: str
) -> list[object]:
    """Revoke admin from two users at once. Each revoke, once it has counted the admins,
    waits (bounded) for the other to count too: if the transactions do not serialise, both
    see two admins, which is exactly the race the guard must survive."""
    real_count = user_store.count_with_role
    counted = 0
    both_counted = asyncio.Event()

    async def count_then_wait(conn: Any, role: str, **kwargs: Any) -> int:
        nonlocal counted
        result = await real_count(conn, role, **kwargs)
        counted += 1
        if counted >= 2:
            both_counted.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):  # a serialised peer cannot count before we commit
                await both_counted.wait()
        return result

    monkeypatch.setattr(user_store, "count_with_role", count_then_wait)
    try:
        return await asyncio.gather(
            revoke_role(db, first, "admin", actor="test"),
            revoke_role(db, second, "admin", actor="test"),
            return_exceptions=True,
        )
    finally:
        monkeypatch.setattr(user_store, "count_with_role", real_count)


async def check_last_admin_race(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await add_user(db, "alice")
    await add_user(db, "bob")
    for _ in range(2):
        await grant_role(db, "alice", "admin", actor="test")
        await grant_role(db, "bob", "admin", actor="test")
        results = await race_revokes(db, monkeypatch, "alice", "bob")
        assert sorted(map(repr, results)).count("True") == 1, results
        conflicts = [r for r in results if isinstance(r, Conflict)]
        assert len(conflicts) == 1, results
        assert conflicts[0].code == "last_admin"
        assert len(await list_admins(db)) == 1


async def test_last_admin_guard_holds_under_concurrent_revokes(
    migrated: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await check_last_admin_race(migrated, monkeypatch)
