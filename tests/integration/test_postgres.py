"""The same store, app and CLI on a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.domain.roles import ROLE_PERMISSIONS
from echochat.store import Database
from echochat.store import users as user_store
from echochat.store.migrate import MigrationError, SchemaStatus, schema_state, upgrade
from echochat.store.tables import audit_log, metadata, users
from tests.apps import running
from tests.unit.test_cli import invoke
from tests.unit.test_migrations import check_last_admin_race

pytestmark = pytest.mark.integration


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    db = Database.create(pg_url)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def migrated(pg_db: Database) -> Database:
    await upgrade(pg_db)
    return pg_db


async def add_user(db: Database, username: str, email: str | None = None) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            insert(users).values(username=username, display_name=username.title(), email=email)
        )


async def test_migrations_from_empty(pg_db: Database) -> None:
    assert pg_db.dialect == "postgresql"
    before = await schema_state(pg_db)
    assert before.status is SchemaStatus.EMPTY
    steps: list[str] = []
    after = await upgrade(pg_db, on_step=lambda rev, done, total: steps.append(rev))
    assert after.status is SchemaStatus.CURRENT
    assert steps == before.pending


async def test_tables_module_matches_migrated_schema(migrated: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with migrated.read() as conn:
        assert await conn.run_sync(diff) == []


async def test_role_table_equals_domain_table(migrated: Database) -> None:
    async with migrated.read() as conn:
        table = await user_store.role_permission_table(conn)
    assert table == {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}


async def test_username_and_email_unique_case_insensitively(migrated: Database) -> None:
    await add_user(migrated, "alice", "Alice@Example.org")
    with pytest.raises(IntegrityError):
        await add_user(migrated, "ALICE")
    with pytest.raises(IntegrityError):
        await add_user(migrated, "bob", "alice@EXAMPLE.org")
    await add_user(migrated, "bob")
    await add_user(migrated, "carol")
    async with migrated.read() as conn:
        names = (await conn.execute(select(users.c.username).order_by(users.c.id))).scalars()
        assert list(names) == ["alice", "bob", "carol"]


async def test_app_on_postgres_is_ready(
    make_settings: Callable[..., ResolvedSettings], pg_url: str
) -> None:
    settings = make_settings(database_url=pg_url, auto_migrate=True).settings
    app = create_app(settings)
    async with (
        running(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=settings.public_url
        ) as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "bus": "ok"}
    db = Database.create(pg_url)
    try:
        assert (await schema_state(db)).status is SchemaStatus.CURRENT
    finally:
        await db.close()


async def test_app_refuses_empty_postgres_without_auto_migrate(
    make_settings: Callable[..., ResolvedSettings], pg_url: str
) -> None:
    settings = make_settings(database_url=pg_url).settings
    assert not settings.migrate_at_start  # the default on PostgreSQL
    app = create_app(settings)
    with pytest.raises(MigrationError, match="echochat db upgrade"):
        async with running(app):
            pass
    db = Database.create(pg_url)
    try:
        assert (await schema_state(db)).status is SchemaStatus.EMPTY  # nothing half-done
    finally:
        await db.close()


async def test_last_admin_guard_holds_under_concurrent_revokes(
    migrated: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await check_last_admin_race(migrated, monkeypatch)


# --- the CLI against PostgreSQL ------------------------------------------------------------


def test_cli_against_postgres(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ECHOCHAT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "500")
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ECHOCHAT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ECHOCHAT_DATABASE_URL", pg_url)
    name = make_url(pg_url).database
    assert name

    line = invoke(data_dir, "admin", "status", "alice", code=1).strip()
    assert "echochat db upgrade" in line  # empty database: told what to run

    assert "up to date" in invoke(data_dir, "db", "upgrade")
    assert "up to date" in invoke(data_dir, "db", "current")

    async def seed() -> None:
        db = Database.create(pg_url)
        try:
            await add_user(db, "alice")
            await add_user(db, "bob")
        finally:
            await db.close()

    asyncio.run(seed())
    assert "alice now has role admin" in invoke(data_dir, "admin", "grant", "alice")
    output = invoke(data_dir, "admin", "status", "alice")
    database_line = next(line for line in output.splitlines() if line.startswith("database"))
    assert f"name: {name}" in database_line
    assert "postgresql+asyncpg://" in database_line
    assert "admin:basic" in output

    assert "last admin" in invoke(data_dir, "admin", "revoke", "alice", code=1)
    invoke(data_dir, "admin", "grant", "bob")
    invoke(data_dir, "admin", "revoke", "alice")

    async def audit() -> list[tuple[str, str]]:
        db = Database.create(pg_url)
        try:
            async with db.read() as conn:
                rows = await conn.execute(
                    select(audit_log.c.action, audit_log.c.target).order_by(audit_log.c.id)
                )
                return [(a, t) for a, t in rows]
        finally:
            await db.close()

    assert asyncio.run(audit()) == [
        ("role.grant", "alice"),
        ("role.grant", "bob"),
        ("role.revoke", "alice"),
    ]
    doctor = invoke(data_dir, "doctor")
    assert name in doctor
    assert "bob" in doctor
