"""Direct messages across two ``echochat serve`` processes on one PostgreSQL database and one
Redis (ARCHITECTURE sections 3 and 6, issue 6): a message sent through process A reaches the
recipient on process B; a client that reconnects to the other process resumes with nothing
missing; and under concurrent sends through both processes every user's sockets receive
their messages in id order (the per-user advisory locks of ``store/messages.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.conftest import LiveServer
from tests.dmutil import (
    Person,
    dm_event,
    get_history,
    person,
    post_message,
    send,
    send_refused,
)
from tests.integration.test_realtime_cluster import cluster_env, no_tracebacks
from tests.wsutil import Socket, cookieless, open_socket

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
    }
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


async def test_a_dm_sent_through_one_process_reaches_the_other(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await person(via_a, a.url, "alice")
        bob = await person(via_b, b.url, "bob")
        alice_on_a = await open_socket(a.url, alice.user)
        bob_on_b = await open_socket(b.url, bob.user)
        bob_on_a = await open_socket(a.url, bob.user)

        reply = await send(alice_on_a, "bob", await alice.seal("bob", "from A to B"))
        message = reply["message"]
        assert await dm_event(bob_on_b) == message
        assert await dm_event(bob_on_a) == message
        assert await dm_event(alice_on_a) == message
        assert await bob.open(message) == "from A to B"

        # bob answers over HTTP through B; alice hears it on A
        response = await post_message(via_b, bob, "alice", await bob.seal("alice", "B to A"))
        assert response.status_code == 201, response.text
        answer = await dm_event(alice_on_a)
        assert answer == response.json() and answer["id"] > message["id"]
        assert await alice.open(answer) == "B to A"

        # a receipt made on B reaches alice on A; the conversation agrees on both
        await bob_on_b.call("dm.read", {"peer": "alice", "upto": message["id"]})
        receipt = (await alice_on_a.event("dm.receipt"))["data"]
        assert (receipt["reader"], receipt["kind"], receipt["upto"]) == (
            "bob",
            "read",
            message["id"],
        )
        for via in (via_a, via_b):
            listing = (await via.get("/api/v1/conversations", headers=alice.headers)).json()
            (conversation,) = listing["conversations"]
            assert conversation["peer_read_upto"] == message["id"]
        # buzz across processes
        assert await alice_on_a.call("buzz", {"to": "bob"}) == {}
        assert (await bob_on_b.event("buzz"))["data"] == {"username": "alice"}
        await close_all(alice_on_a, bob_on_b, bob_on_a)
        for who in (alice, bob):
            await who.aclose()
    no_tracebacks(a, b)


async def test_resume_on_the_other_process_misses_nothing(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    a, b = cluster
    async with http_to(a) as via_a:
        alice = await person(via_a, a.url, "alice")
        bob = await person(via_a, a.url, "bob")
        alice_on_a = await open_socket(a.url, alice.user)
        bob_on_b = await open_socket(b.url, bob.user)
        seen: dict[int, dict[str, object]] = {}
        first = await send(alice_on_a, "bob", await alice.seal("bob", "before"))
        seen[first["message"]["id"]] = await dm_event(bob_on_b)
        cursor = max(seen)
        bob_on_b.ws.transport.abort()  # gone without a goodbye

        missed = [
            (await send(alice_on_a, "bob", await alice.seal("bob", f"while away {i}")))["message"][
                "id"
            ]
            for i in range(2 * PAGE + 1)
        ]
        offline = await open_socket(a.url, bob.user)  # back, on the other process
        assert offline.summary == {
            "senders": [{"username": "alice", "display_name": "alice", "count": 2 * PAGE + 2}],
            "total": 2 * PAGE + 2,
        }
        pages = 0
        while True:
            reply = await offline.call("hello", {"cursor": cursor})
            pages += 1
            while len([i for i in seen if i > cursor]) < reply["replayed"]:
                message = await dm_event(offline)
                seen[message["id"]] = message
            cursor = reply["cursor"]
            if not reply["more"]:
                break
        assert pages == 3
        assert sorted(seen) == [first["message"]["id"], *missed]
        assert [await bob.open(seen[i]) for i in missed] == [
            f"while away {i}" for i in range(2 * PAGE + 1)
        ]
        await close_all(alice_on_a, offline)
        for who in (alice, bob):
            await who.aclose()
    no_tracebacks(a, b)


async def test_concurrent_sends_through_both_processes_arrive_in_id_order(
    cluster: tuple[LiveServer, LiveServer],
) -> None:
    """Senders on both processes write to bob (and to each other) at once; each of bob's
    sockets, on either process, gets every message, in strictly increasing id order."""
    a, b = cluster
    per_sender = 25
    async with http_to(a) as via_a:
        bob = await person(via_a, a.url, "bob")
        senders: list[Person] = [await person(via_a, a.url, f"sender{i}") for i in range(4)]
        bob_on_a = await open_socket(a.url, bob.user)
        bob_on_b = await open_socket(b.url, bob.user)
        sockets = [await open_socket((a, b)[i % 2].url, s.user) for i, s in enumerate(senders)]
        plans = []
        for index, sender in enumerate(senders):
            other = senders[(index + 1) % len(senders)].name
            plans.append(
                [
                    (to, await sender.seal(to, f"{sender.name} {n}"))
                    for n in range(per_sender)
                    for to in (["bob", other] if n % 5 == 0 else ["bob"])
                ]
            )

        async def blast(sock: Socket, plan: list[tuple[str, dict[str, object]]]) -> list[int]:
            refs = [await sock.send_op("dm.send", {"to": to, "envelope": e}) for to, e in plan]
            replies = [await sock.reply(ref, timeout=30) for ref in refs]
            assert all(r["op"] == "ok" for r in replies), replies
            return [
                r["data"]["message"]["id"]
                for r, (to, _) in zip(replies, plan, strict=True)
                if to == "bob"
            ]

        results = await asyncio.gather(*(blast(s, p) for s, p in zip(sockets, plans, strict=True)))
        to_bob = sorted(i for ids in results for i in ids)
        assert len(to_bob) == len(set(to_bob)) == per_sender * len(senders)
        for sock in (bob_on_a, bob_on_b):
            received: list[int] = []
            while len(received) < len(to_bob):
                received.append((await dm_event(sock))["id"])
            assert received == to_bob  # all of them, in id order
        # each sender's own socket saw its messages (sent and received) in order too
        for sock in sockets:
            own = [f["data"]["id"] for f in sock.pending if f.get("type") == "dm.message"]
            assert own == sorted(own)
        await close_all(bob_on_a, bob_on_b, *sockets)
        for who in (bob, *senders):
            await who.aclose()
    no_tracebacks(a, b)


async def test_the_dm_rate_limit_is_shared_and_checked_first(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., LiveServer],
) -> None:
    """On Redis (pipelined hits) the limit is one counter for both processes and still the
    first check: a refused send is not stored, and says nothing about the recipient."""
    env = {
        **cluster_env(pg_url, redis_server, redis_prefix),
        "ECHOCHAT_RATE_LIMIT_DM_ACCOUNT": "3/minute",
        "ECHOCHAT_RATE_LIMIT_LOGIN_IP": "1000/hour",
    }
    a = live_server_factory(env=env)
    b = live_server_factory(env=env)
    async with http_to(a) as via_a, http_to(b) as via_b:
        alice = await person(via_a, a.url, "alice")
        bob = await person(via_b, b.url, "bob")
        alice_on_a = await open_socket(a.url, alice.user)
        alice_on_b = await open_socket(b.url, alice.user)
        sent = [
            await send(sock, "bob", await alice.seal("bob", f"m{i}"))
            for i, sock in enumerate([alice_on_a, alice_on_b, alice_on_a])
        ]
        for sock in (alice_on_b, alice_on_a):
            refused = await send_refused(sock, "bob", await alice.seal("bob", "one too many"))
            assert refused["code"] == "rate_limited", refused
            for to in ("nobody", "no\x00body"):  # no hint whether they exist
                assert (await send_refused(sock, to, {"v": 1}))["code"] == "rate_limited"
        history = await get_history(via_b, bob, "alice")
        assert history.status_code == 200, history.text
        stored = [m["id"] for m in history.json()["messages"]]
        assert stored == [reply["message"]["id"] for reply in sent]
        await close_all(alice_on_a, alice_on_b)
        for who in (alice, bob):
            await who.aclose()
    no_tracebacks(a, b)
