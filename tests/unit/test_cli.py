"""The ``echochat`` command, run in-process with Typer's CliRunner on a temporary data dir."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from click.testing import Result
from sqlalchemy import insert, select, text
from typer.testing import CliRunner

from echochat import __version__
from echochat.cli.main import app
from echochat.store import Database
from echochat.store.migrate import schema_state
from echochat.store.tables import audit_log, role_assignments, users
from tests.unit.test_migrations import upgrade_to_first_revision

UNREACHABLE_PG = "postgresql://u:secretpw@127.0.0.1:1/x"


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand, as the argument lists that reach it."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = [()]

    def walk(group: Any, prefix: tuple[str, ...]) -> None:
        # Typer bundles its own click: recognise groups by their subcommands.
        for name, sub in getattr(group, "commands", {}).items():
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean environment: no ECHOCHAT_* variables but the data dir, a fresh cwd."""
    for key in list(os.environ):
        if key.startswith("ECHOCHAT_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = tmp_path / "data"
    monkeypatch.setenv("ECHOCHAT_DATA_DIR", str(data))
    monkeypatch.setenv("COLUMNS", "500")  # Rich reads it on each print: no wrapped tables
    # `serve` configures logging (basicConfig(force=True)) with the runner's stderr: undo it.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name).level for name in ("alembic", "aiosqlite", "asyncio")}
    yield data
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in loggers.items():
        logging.getLogger(name).setLevel(old)


def invoke(data_dir: Path, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    """Run ``echochat ARGS``; check the exit code, that no traceback and no generated secret
    key is shown; return everything printed (stdout and stderr)."""
    result: Result = CliRunner().invoke(app, list(args), env=env)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"echochat {' '.join(args)} crashed:\n{output}") from (
            result.exception
        )
    assert result.exit_code == code, f"echochat {' '.join(args)} -> {result.exit_code}:\n{output}"
    assert "Traceback" not in output
    secret_file = data_dir / "secret_key"
    if secret_file.exists():
        assert secret_file.read_text().strip() not in output
    return output


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'echochat.sqlite3').resolve()}"


def add_users(data_dir: Path, *names: str) -> None:
    async def go() -> None:
        db = Database.create(sqlite_url(data_dir))
        try:
            async with db.transaction() as conn:
                for name in names:
                    await conn.execute(
                        insert(users).values(username=name, display_name=name.title())
                    )
        finally:
            await db.close()

    asyncio.run(go())


def fetch(data_dir: Path, query: Any) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        db = Database.create(sqlite_url(data_dir))
        try:
            async with db.read() as conn:
                return [tuple(row) for row in await conn.execute(query)]
        finally:
            await db.close()

    return asyncio.run(go())


def admins(data_dir: Path) -> list[str]:
    query = (
        select(users.c.username)
        .join(role_assignments, role_assignments.c.user_id == users.c.id)
        .where(role_assignments.c.role == "admin")
        .order_by(users.c.username)
    )
    return [name for (name,) in fetch(data_dir, query)]


def audit_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    query = select(
        audit_log.c.action, audit_log.c.actor, audit_log.c.target, audit_log.c.details
    ).order_by(audit_log.c.id)
    return fetch(data_dir, query)


@pytest.fixture
def migrated(data_dir: Path) -> Path:
    invoke(data_dir, "db", "upgrade")
    add_users(data_dir, "alice", "bob", "carol")
    return data_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- version and help ----------------------------------------------------------------------


def test_version(data_dir: Path) -> None:
    output = invoke(data_dir, "--version")
    assert output.strip() == f"echochat {__version__}"


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "echochat")
def test_help_of_every_command(data_dir: Path, path: tuple[str, ...]) -> None:
    output = invoke(data_dir, *path, "--help")
    assert "Usage" in output
    assert not data_dir.exists()  # --help touches nothing


def test_every_command_is_covered_by_help_test() -> None:
    names = {" ".join(p) for p in _command_paths()}
    expected = {"serve", "doctor", "db", "db upgrade", "db current", "admin"}
    expected |= {"admin status", "admin grant", "admin revoke"}
    assert expected <= names


# --- db ------------------------------------------------------------------------------------


def test_db_current_without_database(data_dir: Path) -> None:
    line = one_line_error(invoke(data_dir, "db", "current", code=1))
    assert "no database yet" in line
    assert "echochat db upgrade" in line
    assert not data_dir.exists()  # a read-only command creates nothing


def test_db_upgrade_then_current(data_dir: Path) -> None:
    output = invoke(data_dir, "db", "upgrade")
    assert "up to date" in output
    assert (data_dir / "echochat.sqlite3").is_file()
    output = invoke(data_dir, "db", "current")
    assert "up to date" in output
    assert str((data_dir / "echochat.sqlite3").resolve()) in output
    invoke(data_dir, "db", "current", "--check")
    assert "already up to date" in invoke(data_dir, "db", "upgrade")


def mark_ahead(data_dir: Path) -> None:
    async def go() -> None:
        db = Database.create(sqlite_url(data_dir))
        try:
            async with db.transaction() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        finally:
            await db.close()

    asyncio.run(go())


def test_db_ahead_is_reported(migrated: Path) -> None:
    mark_ahead(migrated)
    output = invoke(migrated, "db", "current", code=1)
    assert "ahead" in output
    assert "9999_future" in output
    assert "ahead" in invoke(migrated, "db", "upgrade", code=1).splitlines()[-1]
    line = one_line_error(invoke(migrated, "admin", "status", "alice", code=1))
    assert "ahead" in line
    assert "9999_future" in fetch(migrated, text("SELECT version_num FROM alembic_version"))[0]


def test_db_upgrade_on_database_ahead_is_one_line(migrated: Path) -> None:
    mark_ahead(migrated)
    line = one_line_error(invoke(migrated, "db", "upgrade", code=1))
    assert "ahead" in line


# --- admin ---------------------------------------------------------------------------------


def test_admin_grant_is_stored_and_audited(migrated: Path) -> None:
    output = invoke(migrated, "admin", "grant", "alice")
    assert "alice now has role admin" in output
    assert admins(migrated) == ["alice"]
    [(action, actor, target, details)] = audit_rows(migrated)
    assert action == "role.grant"
    assert actor.startswith("cli:")
    assert len(actor) > len("cli:")
    assert target == "alice"
    assert details == {"role": "admin"}
    # Granting again changes nothing and writes no audit row.
    assert "alice already had role admin" in invoke(migrated, "admin", "grant", "ALICE")
    assert len(audit_rows(migrated)) == 1


def test_admin_status_shows_roles_permissions_and_database(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "alice")
    output = invoke(migrated, "admin", "status", "alice")
    lines = {line.split(None, 1)[0]: line for line in output.splitlines() if line.strip()}
    assert "admin" in lines["roles"]
    assert "user" in lines["roles"]
    for permission in ("admin:basic", "users:manage", "settings:manage", "audit:read"):
        assert permission in lines["permissions"]
    assert str((migrated / "echochat.sqlite3").resolve()) in lines["database"]

    output = invoke(migrated, "admin", "status", "bob")
    lines = {line.split(None, 1)[0]: line for line in output.splitlines() if line.strip()}
    assert lines["roles"].split(None, 1)[1].strip() == "user"
    assert "(none)" in lines["permissions"]
    assert "echochat.sqlite3" in lines["database"]


def test_moderator_role(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "carol", "--role", "moderator")
    output = invoke(migrated, "admin", "status", "carol")
    assert "moderator" in output
    assert "reports:review" in output
    assert "settings:manage" not in output
    assert admins(migrated) == []


def test_last_admin_cannot_be_revoked(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "alice")
    line = one_line_error(invoke(migrated, "admin", "revoke", "alice", code=1))
    assert "last admin" in line
    assert admins(migrated) == ["alice"]
    assert [row[0] for row in audit_rows(migrated)] == ["role.grant"]


def test_grant_bob_then_revoke_alice(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "alice")
    invoke(migrated, "admin", "grant", "bob")
    output = invoke(migrated, "admin", "revoke", "alice")
    assert "alice no longer has role admin" in output
    assert admins(migrated) == ["bob"]
    rows = audit_rows(migrated)
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("role.grant", "alice", {"role": "admin"}),
        ("role.grant", "bob", {"role": "admin"}),
        ("role.revoke", "alice", {"role": "admin"}),
    ]
    assert all(r[1].startswith("cli:") for r in rows)
    # bob is now the last admin.
    assert "last admin" in invoke(migrated, "admin", "revoke", "bob", code=1)
    # Revoking a role someone does not hold is not an error and is not audited.
    assert "did not have" in invoke(migrated, "admin", "revoke", "carol")
    assert len(audit_rows(migrated)) == 3


@pytest.mark.parametrize("command", ["status", "grant", "revoke"])
def test_unknown_user(migrated: Path, command: str) -> None:
    line = one_line_error(invoke(migrated, "admin", command, "zed", code=1))
    assert "no user named 'zed'" in line
    assert "echochat.sqlite3" in line  # which database was searched


def test_unknown_role(migrated: Path) -> None:
    line = one_line_error(invoke(migrated, "admin", "grant", "alice", "--role", "emperor", code=1))
    assert "unknown role 'emperor'" in line
    assert admins(migrated) == []


def test_admin_without_database(data_dir: Path) -> None:
    line = one_line_error(invoke(data_dir, "admin", "status", "alice", code=1))
    assert "no database yet" in line


# --- doctor --------------------------------------------------------------------------------


def settings_rows(output: str) -> dict[str, str]:
    """setting name -> the table line that shows it."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│|┃ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = line
    return rows


def test_doctor_shows_provenance_and_hides_the_secret(migrated: Path) -> None:
    (Path.cwd() / "echochat.toml").write_text('log_level = "warning"\n')
    output = invoke(migrated, "doctor", code=1)  # no admin yet: a failed check
    rows = settings_rows(output)
    assert rows["data_dir"].rstrip(" │").endswith("env")
    assert str(migrated) in rows["data_dir"]
    assert rows["log_level"].rstrip(" │").endswith("file")
    assert rows["port"].rstrip(" │").endswith("default")
    assert rows["secret_key"].rstrip(" │").endswith("generated")
    assert "echochat.toml" in output
    assert "admins" in output.splitlines()[-1]  # the one-line reason names the failed check
    secret = (migrated / "secret_key").read_text().strip()
    assert secret not in output

    invoke(migrated, "admin", "grant", "alice")
    output = invoke(migrated, "doctor")
    assert "alice" in output
    assert "up to date" in output


def test_doctor_before_anything_exists(data_dir: Path) -> None:
    output = invoke(data_dir, "doctor")
    assert "not created yet" in output
    assert not data_dir.exists()


def test_doctor_masks_database_password(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_DATABASE_URL", UNREACHABLE_PG)
    output = invoke(data_dir, "doctor", code=1)
    assert "***" in output
    assert "secretpw" not in output
    assert "database" in output.splitlines()[-1]


def test_invalid_setting_is_one_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_PORT", "eighty")
    for args in (("doctor",), ("db", "current"), ("db", "upgrade"), ("serve",)):
        line = one_line_error(invoke(data_dir, *args, code=1))
        assert "ECHOCHAT_PORT" in line


# --- serve refusals ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_serve_workers_without_redis(data_dir: Path) -> None:
    line = one_line_error(invoke(data_dir, "serve", "--workers", "2", code=1))
    assert "ECHOCHAT_REDIS_URL" in line


@pytest.mark.timeout(30)
def test_serve_port_in_use(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(invoke(data_dir, "serve", "--port", str(port), code=1))
    assert "already in use" in line
    assert str(port) in line


@pytest.mark.timeout(30)
def test_serve_corrupt_sqlite_file(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "echochat.sqlite3").write_bytes(b"\x13\x37 this is not a database \xff" * 200)
    output = invoke(data_dir, "serve", "--port", str(free_port()), code=1)
    line = one_line_error(output)
    assert "echochat.sqlite3" in line
    assert "not a database" in line


@pytest.mark.timeout(30)
def test_serve_data_dir_is_a_file(data_dir: Path) -> None:
    data_dir.write_text("a file, not a folder")
    line = one_line_error(invoke(data_dir, "serve", "--port", str(free_port()), code=1))
    assert str(data_dir) in line
    assert "ECHOCHAT_DATA_DIR" in line


@pytest.mark.timeout(30)
def test_serve_unreachable_postgres(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_DATABASE_URL", UNREACHABLE_PG)
    line = one_line_error(invoke(data_dir, "serve", "--port", str(free_port()), code=1))
    assert "postgresql+asyncpg://u:***@127.0.0.1:1/x" in line
    assert "secretpw" not in line


@pytest.mark.timeout(30)
def test_serve_unreachable_redis(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_REDIS_URL", "redis://:secretpw@127.0.0.1:1/0")
    output = invoke(data_dir, "serve", "--port", str(free_port()), code=1)
    assert "secretpw" not in output
    line = output.strip().splitlines()[-1]  # after the (SQLite) migration progress
    assert line.startswith("error: ")
    assert "redis://:***@127.0.0.1:1/0" in line
    assert "secretpw" not in line


def test_doctor_unreachable_redis(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_REDIS_URL", "redis://:secretpw@127.0.0.1:1/0")
    output = invoke(data_dir, "doctor", code=1)
    assert "redis://:***@127.0.0.1:1/0" in output
    assert "secretpw" not in output
    assert "redis" in output.splitlines()[-1]


def test_db_behind_is_reported_and_upgraded(data_dir: Path) -> None:
    async def make_behind() -> None:
        db = Database.create(sqlite_url(data_dir))
        try:
            assert len((await schema_state(db)).pending) >= 2  # a "behind" state exists
            await upgrade_to_first_revision(db)
        finally:
            await db.close()

    data_dir.mkdir()
    asyncio.run(make_behind())
    output = invoke(data_dir, "db", "current")
    assert "behind" in output
    assert "echochat db upgrade" in output
    assert "behind" in invoke(data_dir, "db", "current", "--check", code=1).splitlines()[-1]
    line = one_line_error(invoke(data_dir, "admin", "status", "alice", code=1))
    assert "echochat db upgrade" in line
    assert "up to date" in invoke(data_dir, "db", "upgrade")
    invoke(data_dir, "db", "current", "--check")


@pytest.mark.timeout(60)
def test_serve_first_run(live_server_factory: Callable[..., Any], tmp_path: Path) -> None:
    """A real `echochat serve` on an empty folder: data dir, secret key, migrations, URL."""
    (tmp_path / "fresh").mkdir()  # the server's working directory; the data dir is not there
    data = tmp_path / "fresh" / "data"
    server = live_server_factory(data_dir=data)
    assert (data / "secret_key").is_file()
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600
    assert (data / "echochat.sqlite3").is_file()
    response = httpx.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    server.stop()
    log = server.log_path.read_text()
    assert server.url in log
    assert "Traceback" not in log
    assert (data / "secret_key").read_text().strip() not in log
