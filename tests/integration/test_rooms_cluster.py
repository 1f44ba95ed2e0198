"""Room membership across two ``echochat serve`` processes on one PostgreSQL database and
one Redis (issue 7): membership events reach members on the other process, online counts
see presence on both processes, a member removed on one process gets no later room message
on the other (the roomcast membership hook keeps every hub's room index right), and joins
racing through both processes never overfill a room (the room row's lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.test_realtime_cluster import cluster_env, no_tracebacks
from tests.wsutil import API, Socket, User, cookieless, open_socket, register

pytestmark = pytest.mark.integration

CAPACITY = 4  # public rooms' capacity on this cluster


@pytest.fixture
def cluster(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., LiveServer],
) -> tuple[LiveServer, LiveServer]:
    env = {
        **cluster_env(pg_url, redis_server, redis_prefix),
        "ECHOCHAT_ROOM_CAPACITY": str(CAPACITY),
    }
    first = live_server_factory(env=env)  # migrates; the second finds the schema current
    second = live_server_factory(env=env)
    return first, second


@asynccontextmanager
async def http_to(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with cookieless(httpx.AsyncClient(base_url=server.url, timeout=10)) as http:
        yield http


async def ok(
    http: httpx.AsyncClient, method: str, path: str, who: User, json: Any = None, **params: Any
) -> Any:
    response = await http.request(
        method, f"{API}{path}", json=json, headers=who.headers, params=params or None
    )
    assert response.is_success, response.text
    return response.json() if response.content else None


async def member_event(sock: Socket, room: int, user: str, action: str) -> dict[str, Any]:
    frame = await sock.event("room.member", room=room, user=user, action=action)
    data: dict[str, Any] = frame["data"]
    return data


async def test_membership_crosses_processes(cluster: tuple[LiveServer, LiveServer]) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await register(via_a, "alice")
        bob = await register(via_b, "bob")
        carol = await register(via_b, "carol")
        alice_on_a = await open_socket(a.url, alice)
        bob_on_b = await open_socket(b.url, bob)
        carol_on_b = await open_socket(b.url, carol)
        socks = (alice_on_a, bob_on_b, carol_on_b)

        # a public room: joins through either process reach members on both
        lobby = (await ok(via_b, "GET", "/rooms", bob, q="Lobby"))["rooms"][0]["id"]
        await ok(via_a, "POST", f"/rooms/{lobby}/join", alice)
        await ok(via_b, "POST", f"/rooms/{lobby}/join", bob)
        joined = await member_event(alice_on_a, lobby, "bob", "join")
        assert joined["member"]["state"] == "online" and joined["member_count"] == 2
        await member_event(bob_on_b, lobby, "bob", "join")
        # online counts see the devices of both processes
        for via, who in ((via_a, alice), (via_b, bob)):
            listing = (await ok(via, "GET", "/rooms", who, q="Lobby"))["rooms"][0]
            assert (listing["member_count"], listing["online_count"]) == (2, 2)

        # a group made on A; invited and accepted on B; everyone hears of it where they are
        group = (await ok(via_a, "POST", "/rooms", alice, {"name": "Friends"}))["id"]
        for who in (bob, carol):
            invite = await ok(
                via_a, "POST", f"/rooms/{group}/invites", alice, {"username": who.username}
            )
            sock = bob_on_b if who is bob else carol_on_b
            event = (await sock.event("room.invite"))["data"]["invite"]
            assert event["id"] == invite["id"] and event["room"]["name"] == "Friends"
            await ok(via_b, "POST", f"/invites/{invite['id']}/accept", who)
            await member_event(alice_on_a, group, who.username, "join")
        members = (await ok(via_b, "GET", f"/rooms/{group}/members", carol))["members"]
        assert [(m["username"], m["state"]) for m in members] == [
            ("alice", "online"),
            ("bob", "online"),
            ("carol", "online"),
        ]

        # a message from A reaches the members on B (the hub on B learnt of the joins)
        sent = await alice_on_a.call(
            "room.send", {"room": group, "client_id": "m-1", "text": "hello both"}
        )
        for sock in (bob_on_b, carol_on_b):
            message = (await sock.event("room.message", room=group))["data"]
            assert message["id"] == sent["message"]["id"] and message["text"] == "hello both"

        # kicked on A: bob on B is told, and gets no later message of the room
        await ok(via_a, "POST", f"/rooms/{group}/kick", alice, {"username": "bob"})
        kicked = await member_event(bob_on_b, group, "bob", "kick")
        assert (kicked["by"], kicked["member_count"]) == ("alice", 2)
        await member_event(carol_on_b, group, "bob", "kick")
        after = await alice_on_a.call(
            "room.send", {"room": group, "client_id": "m-2", "text": "bob is gone"}
        )
        message = (await carol_on_b.event("room.message", room=group))["data"]
        assert message["id"] == after["message"]["id"]
        # a buzz published after that message reaches bob; nothing of the room came before it
        await alice_on_a.call("buzz", {"to": "bob"})
        frame = await bob_on_b.next_matching(
            lambda f: f.get("type") in ("buzz", "room.message"), "the buzz"
        )
        assert frame["type"] == "buzz", frame

        # deleted on A: the members on B are told
        await ok(via_a, "DELETE", f"/rooms/{group}", alice)
        gone = (await carol_on_b.event("room.update", action="deleted"))["data"]
        assert gone["room"]["id"] == group
        await bob_on_b.assert_quiet(lambda f: f.get("type") == "room.update")
        for sock in socks:
            await sock.close()
    no_tracebacks(a, b)


async def test_racing_joins_through_both_processes_never_overfill_a_room(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        people = [
            (via, await register(via, f"user{i}"))
            for i, via in enumerate([via_a, via_b] * (CAPACITY - 1))
        ]
        first = people[0][1]
        chess = (await ok(via_a, "GET", "/rooms", first, q="Chess"))["rooms"][0]
        assert chess["capacity"] == CAPACITY
        answers = await asyncio.gather(
            *(
                via.post(f"{API}/rooms/{chess['id']}/join", headers=who.headers)
                for via, who in people
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * CAPACITY + [409] * (len(people) - CAPACITY), [
            r.text for r in answers
        ]
        assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"room_full"}
        listing = (await ok(via_b, "GET", "/rooms", first, q="Chess"))["rooms"][0]
        assert listing["member_count"] == CAPACITY
    no_tracebacks(a, b)
