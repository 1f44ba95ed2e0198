"""Room messages across two ``echochat serve`` processes on one PostgreSQL database and one
Redis (issue 7: "fan-out across two processes on PostgreSQL + Redis; resume after reconnect
with nothing missing"). Rooms and memberships go through the real API (rooms-core's), so
the membership hook (``services.roomcast.membership_changed``) is exercised as deployed: a
kicked member hears nothing more on either process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.test_dm_cluster import close_all, http_to
from tests.integration.test_realtime_cluster import cluster_env, no_tracebacks
from tests.roommsgutil import no_room_messages, room_event, say
from tests.wsutil import API, Frame, Socket, User, open_socket, register

pytestmark = pytest.mark.integration

PAGE = 4


@pytest.fixture
def cluster(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., LiveServer],
) -> tuple[LiveServer, LiveServer]:
    env = {
        **cluster_env(pg_url, redis_server, redis_prefix),
        "ECHOCHAT_REPLAY_PAGE": str(PAGE),
        "ECHOCHAT_RATE_LIMIT_LOGIN_IP": "1000/hour",
        "ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
        "ECHOCHAT_RATE_LIMIT_ROOM_ACCOUNT": "1000/10seconds",
    }
    first = live_server_factory(env=env)  # migrates; the second finds the schema current
    second = live_server_factory(env=env)
    return first, second


async def ok(response: httpx.Response, status: int = 200) -> Frame:
    assert response.status_code == status, response.text
    body: Frame = response.json() if response.content else {}
    return body


async def make_group(http: httpx.AsyncClient, owner: User, *members: User) -> int:
    """A private group of ``owner`` with ``members``, invited and accepted through the API."""
    room = await ok(
        await http.post(f"{API}/rooms", json={"name": "Team"}, headers=owner.headers), 201
    )
    for who in members:
        invite = await ok(
            await http.post(
                f"{API}/rooms/{room['id']}/invites",
                json={"username": who.username},
                headers=owner.headers,
            ),
            201,
        )
        await ok(await http.post(f"{API}/invites/{invite['id']}/accept", headers=who.headers))
    return int(room["id"])


async def public_room(http: httpx.AsyncClient, *members: User) -> int:
    rooms = (await ok(await http.get(f"{API}/rooms", headers=members[0].headers)))["rooms"]
    room = int(rooms[0]["id"])
    for who in members:
        await ok(await http.post(f"{API}/rooms/{room}/join", headers=who.headers))
    return room


async def test_fan_out_across_processes_in_order_and_a_kicked_member_hears_nothing(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice, bob, carol = [await register(via_a, n) for n in ("alice", "bob", "carol")]
        group = await make_group(via_a, alice, bob, carol)
        lobby = await public_room(via_b, alice, bob, carol)
        alice_on_a = await open_socket(a.url, alice)
        bob_on_b = await open_socket(b.url, bob)
        carol_on_a = await open_socket(a.url, carol)
        carol_on_b = await open_socket(b.url, carol)
        everyone = (alice_on_a, bob_on_b, carol_on_a, carol_on_b)

        message = (await say(alice_on_a, group, "from A"))["message"]
        for sock in everyone:
            assert await room_event(sock) == message
        # over HTTP through B, heard on A
        posted = await ok(
            await via_b.post(
                f"{API}/rooms/{group}/messages",
                json={"client_id": "http-1", "text": "from B"},
                headers=bob.headers,
            ),
            201,
        )
        for sock in everyone:
            assert await room_event(sock) == posted
        # typing crosses processes too, not to the typist
        await bob_on_b.call("room.typing", {"room": group, "active": True})
        for sock in (alice_on_a, carol_on_b):
            assert (await sock.event("room.typing"))["data"]["username"] == "bob"

        # concurrent bursts through both processes: every socket gets the room in id order
        async def burst(sock: Socket, tag: str) -> list[int]:
            refs = [
                await sock.send_op(
                    "room.send", {"room": group, "client_id": f"{tag}-{n}", "text": tag}
                )
                for n in range(15)
            ]
            replies = [await sock.reply(ref, timeout=30) for ref in refs]
            assert all(r["op"] == "ok" for r in replies), replies
            return [r["data"]["message"]["id"] for r in replies]

        results = await asyncio.gather(
            burst(alice_on_a, "a"), burst(bob_on_b, "b"), burst(carol_on_a, "c")
        )
        ids = sorted(i for part in results for i in part)
        assert len(set(ids)) == 45
        for name, sock in zip(("alice A", "bob B", "carol A", "carol B"), everyone, strict=True):
            got: list[int] = []
            try:
                while len(got) < len(ids):
                    got.append((await room_event(sock))["id"])
            except AssertionError:
                raise AssertionError(
                    f"{name} got {len(got)} of {len(ids)}: {got} vs {ids}"
                ) from None
            assert got == ids, name

        # alice (the owner, on A) kicks carol: carol's sockets on both processes hear
        # nothing of the group afterwards, though the lobby still reaches them
        await ok(
            await via_a.post(
                f"{API}/rooms/{group}/kick", json={"username": "carol"}, headers=alice.headers
            ),
            204,
        )
        after = (await say(bob_on_b, group, "carol is out"))["message"]
        assert (await room_event(alice_on_a, after["id"]))["text"] == "carol is out"
        marker = (await say(alice_on_a, lobby, "marker"))["message"]
        for sock in (carol_on_a, carol_on_b):
            frame = await sock.next_matching(
                lambda f: f.get("type") == "room.message", "a room message"
            )
            assert frame["data"]["id"] == marker["id"]  # no group message came before it
            await sock.assert_quiet(no_room_messages)
            error = await sock.error("room.send", {"room": group, "client_id": "x", "text": "?"})
            assert error["code"] == "room_not_found"
        await close_all(*everyone)
    no_tracebacks(a, b)


async def test_resume_on_the_other_process_misses_nothing(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a:
        alice, bob = [await register(via_a, n) for n in ("alice", "bob")]
        group = await make_group(via_a, alice, bob)
        alice_on_a = await open_socket(a.url, alice)
        bob_on_b = await open_socket(b.url, bob)
        start = await bob_on_b.call("hello", {"rooms": {}})
        cursor = start["rooms"][str(group)]
        first = (await say(alice_on_a, group, "before"))["message"]
        assert (await room_event(bob_on_b))["id"] == first["id"]
        cursor = first["id"]
        bob_on_b.ws.transport.abort()  # gone without a goodbye

        missed = [
            (await say(alice_on_a, group, f"while away {i}"))["message"]["id"]
            for i in range(2 * PAGE + 1)
        ]
        back = await open_socket(a.url, bob)  # back, on the other process
        seen: dict[int, Frame] = {}
        pages = 0
        while True:
            reply = await back.call("hello", {"rooms": {str(group): cursor}})
            pages += 1
            while len([i for i in seen if i > cursor]) < reply["rooms_replayed"]:
                message = await room_event(back)
                seen.setdefault(message["id"], message)
            cursor = reply["rooms"][str(group)]
            if not reply["more"]:
                break
        assert pages == 3
        assert sorted(seen) == missed
        assert [seen[i]["text"] for i in missed] == [f"while away {i}" for i in range(2 * PAGE + 1)]
        # and live again on the new process
        live = (await say(alice_on_a, group, "live"))["message"]
        assert (await room_event(back, live["id"]))["text"] == "live"
        await close_all(alice_on_a, back)
    no_tracebacks(a, b)
