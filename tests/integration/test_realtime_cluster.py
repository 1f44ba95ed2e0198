"""Realtime across processes: two ``echochat serve`` processes on one PostgreSQL database and
one Redis (ARCHITECTURE section 3, issue 4). What is done through one process reaches
sockets held by the other; a process killed with SIGKILL leaves no ghost online.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.wsutil import API, Socket, befriend, cookieless, open_socket, register

pytestmark = pytest.mark.integration

PRESENCE_TTL = 2  # seconds: a killed process's users go offline within about this
KICK_WITHIN = 1.0
PUBLIC_URL = "http://chat.cluster.test"  # what a load balancer in front of both would be


def cluster_env(pg_url: str, redis_server: str, redis_prefix: str) -> dict[str, str]:
    return {
        "ECHOCHAT_DATABASE_URL": pg_url,
        "ECHOCHAT_AUTO_MIGRATE": "1",
        "ECHOCHAT_REDIS_URL": redis_server,
        "ECHOCHAT_REDIS_PREFIX": redis_prefix,
        # Every process of one deployment signs and checks tokens with the same key, and
        # has the same public URL (the load balancer's), which is also the tokens' issuer.
        "ECHOCHAT_SECRET_KEY": secrets.token_urlsafe(36),
        "ECHOCHAT_PUBLIC_URL": PUBLIC_URL,
        "ECHOCHAT_PRESENCE_TTL": str(PRESENCE_TTL),
        "ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
    }


@pytest.fixture
def cluster(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., LiveServer],
) -> tuple[LiveServer, LiveServer]:
    env = cluster_env(pg_url, redis_server, redis_prefix)
    first = live_server_factory(env=env)  # migrates; the second finds the schema current
    second = live_server_factory(env=env)
    return first, second


@asynccontextmanager
async def http_to(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with cookieless(httpx.AsyncClient(base_url=server.url, timeout=10)) as http:
        yield http


async def close_all(*socks: Socket) -> None:
    for sock in socks:
        await sock.close()


def no_tracebacks(*servers: LiveServer) -> None:
    for server in servers:
        log = server.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]


async def test_requests_presence_and_kicks_cross_processes(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await register(via_a, "alice")
        bob = await register(via_b, "bob")
        alice_on_a = await open_socket(a.url, alice)
        bob_on_b = await open_socket(b.url, bob)

        # a buddy request sent through A reaches bob's socket on B
        response = await via_a.post(
            f"{API}/buddies/requests",
            json={"username": "bob", "message": "hello from A"},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        request = response.json()
        event = await bob_on_b.event("buddy.request")
        assert event["data"]["request"] == request
        assert (await alice_on_a.event("buddy.request"))["data"]["request"] == request

        # accepted through B: alice's socket on A hears of it, with bob's live presence
        accepted = await via_b.post(
            f"{API}/buddies/requests/{request['id']}/accept", headers=bob.headers
        )
        assert accepted.status_code == 200, accepted.text
        added = await alice_on_a.event("buddy.update", action="added")
        assert added["data"]["buddy"]["username"] == "bob"
        assert added["data"]["buddy"]["state"] == "online"

        # a presence change on B reaches the buddy on A, and the other way round
        await bob_on_b.call("presence.set", {"state": "busy", "status": "on B"})
        assert await alice_on_a.presence("bob") == {
            "username": "bob",
            "state": "busy",
            "status": "on B",
        }
        await alice_on_a.call("presence.set", {"state": "away", "status": "on A"})
        assert await bob_on_b.presence("alice") == {
            "username": "alice",
            "state": "away",
            "status": "on A",
        }
        # both processes agree on what the lists show
        for via in (via_a, via_b):
            listing = (await via.get(f"{API}/buddies", headers=alice.headers)).json()
            (buddy,) = listing["buddies"]
            assert (buddy["state"], buddy["status"]) == ("busy", "on B")

        # devices on both processes aggregate: a second bob device on A (it starts with
        # what bob chose last), set online, wins
        bob_on_a = await open_socket(a.url, bob)
        await bob_on_a.call("presence.set", {"state": "online"})
        assert (await alice_on_a.presence("bob"))["state"] == "online"
        await bob_on_b.call("presence.set", {"state": "busy"})
        await bob_on_a.close()
        assert (await alice_on_a.presence("bob"))["state"] == "busy"

        # typing goes across too
        assert await alice_on_a.call("typing", {"to": "bob"}) == {}
        assert (await bob_on_b.event("typing"))["data"] == {"username": "alice", "active": True}

        # signing out through A kicks the session's socket on B
        out = await via_a.post(f"{API}/auth/logout", headers=bob.headers)
        assert out.status_code == 204, out.text
        started = time.monotonic()
        kicked = await bob_on_b.event("kicked", timeout=KICK_WITHIN)
        assert kicked["data"]["reason"] == "logged_out"
        closed = await bob_on_b.closed(timeout=KICK_WITHIN)
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert time.monotonic() - started <= KICK_WITHIN + 0.5
        # ... and bob, now without a device anywhere, is offline for alice on A
        assert (await alice_on_a.presence("bob"))["state"] == "offline"
        assert "time" in await alice_on_a.call("ping", {})
        await close_all(alice_on_a)
    no_tracebacks(a, b)


async def test_killed_process_leaves_no_ghost(cluster: tuple[LiveServer, LiveServer]) -> None:
    a, b = cluster
    async with http_to(a) as via_a:
        alice = await register(via_a, "alice")
        bob = await register(via_a, "bob")
        carol = await register(via_a, "carol")
        await befriend(via_a, alice, bob)
        await befriend(via_a, alice, carol)
        bob_on_b = await open_socket(b.url, bob)
        carol_on_b = await open_socket(b.url, carol)
        await carol_on_b.call("presence.set", {"state": "busy", "status": "doomed"})
        alice_on_a = await open_socket(a.url, alice)
        listing = (await via_a.get(f"{API}/buddies", headers=alice.headers)).json()
        states = {x["username"]: x["state"] for x in listing["buddies"]}
        assert states == {"bob": "online", "carol": "busy"}

        b.kill()
        killed_at = time.monotonic()
        limit = PRESENCE_TTL * 5  # the sweep runs every ttl/3 s on the surviving process
        gone: dict[str, Any] = {}
        for _ in range(2):
            event = await alice_on_a.event("presence", timeout=limit, state="offline")
            gone[event["data"]["username"]] = time.monotonic() - killed_at
        assert set(gone) == {"bob", "carol"}
        dropped = await bob_on_b.closed()  # the TCP connection died with its process
        assert dropped.rcvd is None
        assert max(gone.values()) <= limit
        listing = (await via_a.get(f"{API}/buddies", headers=alice.headers)).json()
        assert {x["state"] for x in listing["buddies"]} == {"offline"}

        # the users come back on the surviving process, and are seen again
        back = await open_socket(a.url, bob)
        assert (await alice_on_a.presence("bob"))["state"] == "online"
        await close_all(back, alice_on_a)
    no_tracebacks(a)
