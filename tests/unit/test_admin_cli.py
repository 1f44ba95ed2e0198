"""``echochat admin ban/unban`` and roles changed from both sides (issue 8): the CLI and the
admin API write the same audit log, and the last admin survives either."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from echochat.app import create_app
from echochat.config import load_settings
from tests.apps import running
from tests.unit import test_cli
from tests.unit.test_cli import audit_rows, invoke, one_line_error
from tests.wsutil import API, PASSWORD

data_dir = test_cli.data_dir  # the CLI suite's fixtures: a clean environment, a migrated db
migrated = test_cli.migrated


def banned(data_dir: Path, username: str) -> bool:
    output = invoke(data_dir, "admin", "status", username)
    line = next(line for line in output.splitlines() if line.startswith("banned"))
    return line.split()[-1] == "yes"


def test_ban_and_unban_from_the_cli_are_audited(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "alice")
    output = invoke(migrated, "admin", "ban", "bob", "--reason", "spam bot")
    assert "bob is banned" in output
    assert banned(migrated, "bob")
    assert "bob is not banned" in invoke(migrated, "admin", "unban", "bob")
    assert not banned(migrated, "bob")
    rows = audit_rows(migrated)
    assert [(r[0], r[2]) for r in rows] == [
        ("role.grant", "alice"),
        ("user.ban", "bob"),
        ("user.unban", "bob"),
    ]
    assert rows[1][3] == {"reason": "spam bot", "sessions_revoked": 0}
    assert all(r[1].startswith("cli:") for r in rows)


def test_the_cli_cannot_ban_the_last_admin(migrated: Path) -> None:
    invoke(migrated, "admin", "grant", "alice")
    line = one_line_error(invoke(migrated, "admin", "ban", "alice", code=1))
    assert "last admin" in line
    assert not banned(migrated, "alice")
    one_line_error(invoke(migrated, "admin", "ban", "zed", code=1))
    assert [r[0] for r in audit_rows(migrated)] == ["role.grant"]
    # with a second admin, the first may be banned; the second then is the last
    invoke(migrated, "admin", "grant", "bob")
    invoke(migrated, "admin", "ban", "alice")
    assert "last admin" in invoke(migrated, "admin", "revoke", "bob", code=1)
    assert "last admin" in invoke(migrated, "admin", "ban", "bob", code=1)


def test_roles_changed_by_cli_and_api_share_the_audit_log(migrated: Path) -> None:
    """dave registers over HTTP, gets admin from the CLI, makes carol a moderator in the
    panel's API; the CLI then revokes it. All four steps are in the one audit log."""
    settings = load_settings(environ={"ECHOCHAT_DATA_DIR": str(migrated)}).settings

    async def with_app(step: Any) -> Any:
        app = create_app(settings)
        async with running(app) as manager:
            transport = httpx.ASGITransport(app=manager.app, client=("192.0.2.5", 1))
            async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
                return await step(http)

    async def sign_up(http: httpx.AsyncClient) -> str:
        response = await http.post(
            f"{API}/auth/register",
            json={"username": "dave", "password": PASSWORD, "token_response": True},
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["access_token"]
        return token

    token = asyncio.run(with_app(sign_up))
    invoke(migrated, "admin", "grant", "dave")

    async def promote(http: httpx.AsyncClient) -> None:
        response = await http.patch(
            f"{API}/admin/users/carol",
            json={"roles": ["moderator"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text

    asyncio.run(with_app(promote))
    invoke(migrated, "admin", "revoke", "carol", "--role", "moderator")
    rows = [r for r in audit_rows(migrated) if r[0].startswith("role.")]
    assert [(r[0], r[2], r[3]["role"]) for r in rows] == [
        ("role.grant", "dave", "admin"),
        ("role.grant", "carol", "moderator"),
        ("role.revoke", "carol", "moderator"),
    ]
    assert rows[0][1].startswith("cli:")
    assert rows[1][1] == "dave"
    assert rows[2][1].startswith("cli:")
