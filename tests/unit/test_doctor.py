"""``echochat doctor``, check by check, each with its failure: settings changed in the admin
panel (provenance ``admin``), migrations behind, admins, Redis, SMTP (a real aiosmtpd server,
and a port nobody listens on), the GIF provider, disk space. Run in-process with Typer's
CliRunner (helpers from test_cli.py); the basics (provenance, masked URLs, an unreachable
database) are in test_cli.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import insert

from echochat.cli import doctor
from echochat.store import Database
from echochat.store.tables import server_settings
from tests.conftest import free_port
from tests.unit.test_cli import (
    UNREACHABLE_PG,
    data_dir,
    invoke,
    mark_ahead,
    migrated,
    settings_rows,
    sqlite_url,
)
from tests.unit.test_migrations import upgrade_to_first_revision

__all__ = ["data_dir", "migrated"]  # fixtures used here

SMTP_PASSWORD = "smtp-pass-never-printed"


def check_line(output: str, name: str) -> str:
    """The Checks table line of check ``name``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│|┃ ").split("│")]
        if len(cells) == 3 and cells[0] == name:
            return line
    raise AssertionError(f"no check {name!r} in:\n{output}")


def level(output: str, name: str) -> str:
    cells = [c.strip() for c in check_line(output, name).strip("│|┃ ").split("│")]
    return cells[1]


def next_steps(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("What to do next")
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


@pytest.fixture
def admin_db(migrated: Path) -> Path:
    """A migrated data dir with an admin, so the baseline doctor run is clean."""
    invoke(migrated, "admin", "grant", "alice")
    return migrated


def test_a_healthy_setup_passes(admin_db: Path) -> None:
    output = invoke(admin_db, "doctor")
    for name in ("data dir", "disk space", "database", "migrations", "admins", "bus", "email"):
        assert level(output, name) == "ok", check_line(output, name)
    assert "up to date (revision " in check_line(output, "migrations")
    assert "alice" in check_line(output, "admins")
    assert "echochat.sqlite3" in check_line(output, "admins")  # which database they are in
    assert "outbox" in check_line(output, "email")
    assert "none" in check_line(output, "gif provider")
    assert output.splitlines()[-1] == "All checks passed."


def test_admin_panel_values_show_provenance_admin_and_no_secret(admin_db: Path) -> None:
    async def override() -> None:
        db = Database.create(sqlite_url(admin_db))
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    insert(server_settings),
                    [
                        {"key": "upload_max_bytes", "value": 1234567},
                        {"key": "gif_provider", "value": "giphy"},
                        {"key": "gif_api_key", "value": "gif-key-never-printed"},
                        {"key": "registration_open", "value": False},
                    ],
                )
        finally:
            await db.close()

    asyncio.run(override())
    output = invoke(admin_db, "doctor")
    rows = settings_rows(output)
    assert "1234567" in rows["upload_max_bytes"]
    for name in ("upload_max_bytes", "gif_provider", "gif_api_key", "registration_open"):
        assert rows[name].rstrip(" │").endswith("admin"), rows[name]
    assert rows["port"].rstrip(" │").endswith("default")
    assert "gif-key-never-printed" not in output
    assert "giphy" in check_line(output, "gif provider")
    assert "key set" in check_line(output, "gif provider")
    assert level(output, "gif provider") == "ok"


def test_gif_provider_without_a_key_fails(admin_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_GIF_PROVIDER", "giphy")
    output = invoke(admin_db, "doctor", code=1)
    assert level(output, "gif provider") == "FAIL"
    assert "without an API key" in check_line(output, "gif provider")
    assert any("gif_api_key" in step for step in next_steps(output))
    assert "gif provider" in output.splitlines()[-1]


def test_gif_key_from_the_environment_is_never_printed(
    admin_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHOCHAT_GIF_PROVIDER", "giphy")
    monkeypatch.setenv("ECHOCHAT_GIF_API_KEY", "env-gif-key-secret")
    output = invoke(admin_db, "doctor")
    assert "env-gif-key-secret" not in output
    assert level(output, "gif provider") == "ok"


# --- migrations ----------------------------------------------------------------------------------


@pytest.fixture
def behind(data_dir: Path) -> Path:
    async def make_behind() -> None:
        db = Database.create(sqlite_url(data_dir))
        try:
            await upgrade_to_first_revision(db)
        finally:
            await db.close()

    data_dir.mkdir()
    asyncio.run(make_behind())
    return data_dir


def test_unreachable_database_says_what_to_do(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHOCHAT_DATABASE_URL", UNREACHABLE_PG)
    output = invoke(data_dir, "doctor", code=1)
    assert level(output, "database") == "FAIL"
    assert "secretpw" not in output
    assert any("database_url" in step for step in next_steps(output))
    for later in ("migrations", "admins"):  # nothing to look at without the database
        assert f"│ {later} " not in output


def test_database_ahead_of_the_code_fails(admin_db: Path) -> None:
    mark_ahead(admin_db)
    output = invoke(admin_db, "doctor", code=1)
    assert level(output, "migrations") == "FAIL"
    assert "9999_future" in check_line(output, "migrations")
    assert any("restore a backup" in step for step in next_steps(output))


def test_database_behind_fails_without_auto_migrate(
    behind: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHOCHAT_AUTO_MIGRATE", "false")
    output = invoke(behind, "doctor", code=1)
    assert level(output, "migrations") == "FAIL"
    assert "behind" in check_line(output, "migrations")
    assert any("echochat db upgrade" in step for step in next_steps(output))
    assert "migrations" in output.splitlines()[-1]


def test_database_behind_is_a_warning_when_serve_migrates_itself(behind: Path) -> None:
    output = invoke(behind, "doctor", code=1)  # no admin in that old database: a failure
    assert level(output, "migrations") == "WARN"
    assert any("auto_migrate" in step for step in next_steps(output))
    assert "migrations" not in output.splitlines()[-1]  # only the admins check failed


# --- Redis ---------------------------------------------------------------------------------------


def test_reachable_redis(
    admin_db: Path, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHOCHAT_REDIS_URL", redis_server)
    monkeypatch.setenv("ECHOCHAT_REDIS_PREFIX", "echochat-doctor-test:")
    output = invoke(admin_db, "doctor")
    assert level(output, "redis") == "ok"
    assert "reachable" in check_line(output, "redis")


def test_unreachable_redis_says_what_to_do(admin_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOCHAT_REDIS_URL", f"redis://:redispw@127.0.0.1:{free_port()}/0")
    output = invoke(admin_db, "doctor", code=1)
    assert level(output, "redis") == "FAIL"
    assert "redispw" not in output
    assert any("redis_url" in step for step in next_steps(output))


# --- email ---------------------------------------------------------------------------------------


class Quiet:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_port() -> Iterator[int]:
    """An SMTP server on a free loopback port that accepts logins with SMTP_PASSWORD."""
    port = free_port()
    controller = Controller(
        Quiet(),
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def smtp_env(monkeypatch: pytest.MonkeyPatch, port: int, security: str, **more: str) -> None:
    monkeypatch.setenv("ECHOCHAT_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("ECHOCHAT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ECHOCHAT_SMTP_PORT", str(port))
    monkeypatch.setenv("ECHOCHAT_SMTP_SECURITY", security)
    for name, value in more.items():
        monkeypatch.setenv(f"ECHOCHAT_{name.upper()}", value)


def test_smtp_that_answers(admin_db: Path, smtp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_env(monkeypatch, smtp_port, "none")
    output = invoke(admin_db, "doctor")
    assert level(output, "email") == "ok"
    assert f"127.0.0.1:{smtp_port}" in check_line(output, "email")

    smtp_env(monkeypatch, smtp_port, "none", smtp_username="mailer", smtp_password=SMTP_PASSWORD)
    output = invoke(admin_db, "doctor")
    assert "login accepted" in check_line(output, "email")
    assert SMTP_PASSWORD not in output


def test_smtp_wrong_password(
    admin_db: Path, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_env(monkeypatch, smtp_port, "none", smtp_username="mailer", smtp_password="wrong-pw")
    output = invoke(admin_db, "doctor", code=1)
    assert level(output, "email") == "FAIL"
    assert "login refused" in check_line(output, "email")
    assert any("smtp_password" in step for step in next_steps(output))
    assert "wrong-pw" not in output


def test_smtp_starttls_the_server_does_not_offer(
    admin_db: Path, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_env(monkeypatch, smtp_port, "starttls")
    output = invoke(admin_db, "doctor", code=1)
    assert "STARTTLS failed" in check_line(output, "email")
    assert any("smtp_security" in step for step in next_steps(output))


def test_smtp_tls_against_a_plain_server(
    admin_db: Path, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_env(monkeypatch, smtp_port, "tls")
    output = invoke(admin_db, "doctor", code=1)
    assert "TLS failed" in check_line(output, "email")
    assert any("'tls' for port 465" in step for step in next_steps(output))


def test_smtp_nobody_listening(admin_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    smtp_env(monkeypatch, port, "none")
    output = invoke(admin_db, "doctor", code=1)
    assert level(output, "email") == "FAIL"
    assert "cannot connect" in check_line(output, "email")
    steps = next_steps(output)
    assert any("smtp_host" in step and str(port) in step for step in steps)
    last = output.splitlines()[-1]
    assert "email" in last and "next:" in last


# --- disk ----------------------------------------------------------------------------------------


def test_low_disk_space_is_a_warning(admin_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the threshold raised above any real disk: the same code path as a nearly full one
    monkeypatch.setattr(doctor, "DISK_WARN_BYTES", 2**62)
    output = invoke(admin_db, "doctor")
    assert level(output, "disk space") == "WARN"
    assert "under 1 GiB" in check_line(output, "disk space")
    assert any("free some space" in step for step in next_steps(output))
    assert output.splitlines()[-1] == "All checks passed (see the warnings above)."
