"""Administration across processes (issue 8): two ``echochat serve`` processes on one
PostgreSQL database and one Redis. A ban through A kicks the user's socket on B at once;
a setting changed through A applies on B without a restart.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import pytest
from sqlalchemy import insert

from echochat.domain.errors import Conflict
from echochat.services import roles
from echochat.store import Database
from echochat.store.migrate import ensure_current
from echochat.store.tables import users
from tests.conftest import LiveServer
from tests.integration.test_realtime_cluster import cluster_env, http_to, no_tracebacks
from tests.wsutil import API, PASSWORD, expect_error, login, open_socket, register

pytestmark = pytest.mark.integration

KICK_WITHIN = 1.0
ADMIN = f"{API}/admin"


@pytest.fixture
def cluster(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., LiveServer],
) -> tuple[LiveServer, LiveServer]:
    """Two processes of one deployment: one PostgreSQL database, one Redis."""
    env = cluster_env(pg_url, redis_server, redis_prefix)
    first = live_server_factory(env=env)  # migrates; the second finds the schema current
    second = live_server_factory(env=env)
    return first, second


async def make_admin(pg_url: str, username: str) -> None:
    db = Database.create(pg_url)
    try:
        assert await roles.grant_role(db, username, "admin", actor="tests")
    finally:
        await db.close()


async def test_ban_through_a_kicks_the_socket_on_b(
    cluster: tuple[LiveServer, LiveServer], pg_url: str
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await register(via_a, "alice")
        await make_admin(pg_url, "alice")
        bob = await register(via_b, "bob")
        carol = await register(via_b, "carol")
        bob_on_b = await open_socket(b.url, bob)
        carol_on_b = await open_socket(b.url, carol)

        started = time.monotonic()
        response = await via_a.patch(
            f"{ADMIN}/users/bob",
            json={"banned": True, "ban_reason": "flooding"},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        kicked = await bob_on_b.event("kicked", timeout=KICK_WITHIN)
        assert kicked["data"]["reason"] == "banned"
        assert "flooding" in kicked["data"]["message"]
        closed = await bob_on_b.closed(timeout=KICK_WITHIN)
        assert closed.rcvd is not None
        assert time.monotonic() - started <= KICK_WITHIN + 0.5
        await carol_on_b.assert_quiet()

        refused = await via_b.post(
            f"{API}/auth/login", json={"username": "bob", "password": PASSWORD}
        )
        assert "flooding" in expect_error(refused, 403, "banned")["message"]
        refreshed = await via_b.post(
            f"{API}/auth/refresh", json={"refresh_token": bob.refresh_token}
        )
        assert refreshed.status_code in (401, 403), refreshed.text

        # sign-out everywhere through B closes carol's sockets on both processes
        carol_phone = await login(via_a, "carol")
        carol_on_a = await open_socket(a.url, carol_phone)
        out = await via_b.post(f"{ADMIN}/users/carol/logout", headers=alice.headers)
        assert out.json()["sessions_revoked"] == 2
        for sock in (carol_on_a, carol_on_b):
            event = await sock.event("kicked", timeout=KICK_WITHIN)
            assert event["data"]["reason"] == "session_revoked"
            await sock.closed(timeout=KICK_WITHIN)

        # the operator's `echochat admin ban` goes through the same bus: dave's socket closes
        dave = await register(via_a, "dave")
        dave_on_a = await open_socket(a.url, dave)
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "echochat",
            "admin",
            "ban",
            "dave",
            "--reason",
            "from the shell",
            env=a.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(cli.communicate(), 30)
        assert cli.returncode == 0, output.decode()
        event = await dave_on_a.event("kicked", timeout=KICK_WITHIN)
        assert event["data"]["reason"] == "banned"
        assert "from the shell" in event["data"]["message"]
        await dave_on_a.closed(timeout=KICK_WITHIN)
    no_tracebacks(a, b)


async def test_a_setting_changed_through_a_applies_on_b(
    cluster: tuple[LiveServer, LiveServer], pg_url: str
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await register(via_a, "alice")
        await make_admin(pg_url, "alice")
        response = await via_a.patch(
            f"{ADMIN}/settings",
            json={"room_capacity": 250, "rate_limit_register_ip": "1/hour"},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text

        async def seen_on_b() -> dict[str, object]:
            got = await via_b.get(f"{ADMIN}/settings", headers=alice.headers)
            return {s["name"]: s["value"] for s in got.json()["settings"]}

        async with asyncio.timeout(10):
            while (await seen_on_b())["room_capacity"] != 250:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)  # B's own view of its live settings
        assert (await seen_on_b())["rate_limit_register_ip"] == "1/hour"
        # and B acts on it: one registration per hour from this address
        await register(via_b, "carol")
        second = await via_b.post(
            f"{API}/auth/register", json={"username": "dave", "password": PASSWORD}
        )
        expect_error(second, 429, "rate_limited")

        # the registration policy too, read from the database by every process
        closed = await via_a.patch(
            f"{ADMIN}/settings", json={"registration_open": False}, headers=alice.headers
        )
        assert closed.status_code == 200, closed.text
        refused = await via_b.post(
            f"{API}/auth/register", json={"username": "erin", "password": PASSWORD}
        )
        expect_error(refused, 403, "registration_closed")
    no_tracebacks(a, b)


async def test_two_admins_removing_each_other_at_once_leave_one(pg_url: str) -> None:
    """The last-admin check holds under concurrency on PostgreSQL: two admins demoting (or
    banning) each other at the same moment cannot both succeed (a lock on the role)."""
    db = Database.create(pg_url)
    try:
        await ensure_current(db, migrate=True)
        async with db.transaction() as conn:
            for name in ("alice", "bob"):
                await conn.execute(insert(users).values(username=name, display_name=name))
        for name in ("alice", "bob"):
            await roles.grant_role(db, name, "admin", actor="tests")

        for _ in range(3):  # a few rounds: each must leave exactly one admin
            results = await asyncio.gather(
                roles.set_roles(db, "alice", set(), actor="bob"),
                roles.set_roles(db, "bob", set(), actor="alice"),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, Conflict)]
            assert len(refused) == 1 and refused[0].code == "last_admin", results
            assert len(await roles.list_admins(db)) == 1
            for name in ("alice", "bob"):
                await roles.grant_role(db, name, "admin", actor="tests")
    finally:
        await db.close()
