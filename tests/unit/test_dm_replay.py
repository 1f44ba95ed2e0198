"""Resuming after a disconnect (docs/protocol.md, "Resuming"; ARCHITECTURE section 6): a
client cut off in the middle of a burst reconnects with its cursor and, paging through the
``hello`` replay while live messages keep arriving, ends with every message exactly once
(after de-duplication by id), in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.dmutil import Person, alice_and_bob, person, send
from tests.wsutil import Frame, MakeSettings, Server, Socket, serve

PAGE = 5


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings, replay_page=PAGE) as started:
        yield started


@pytest.fixture
async def pair(server: Server) -> AsyncIterator[tuple[Person, Person]]:
    async with alice_and_bob(server) as both:
        yield both


class Client:
    """What a client does with ``dm.message``: keep each id once, remember the highest id
    it processed (its cursor)."""

    def __init__(self) -> None:
        self.seen: dict[int, Frame] = {}
        self.order: list[int] = []  # ids in the order they were first processed
        self.duplicates = 0

    def take(self, message: Frame) -> None:
        if message["id"] in self.seen:
            self.duplicates += 1
            return
        self.seen[message["id"]] = message
        self.order.append(message["id"])

    @property
    def cursor(self) -> int:
        return max(self.seen, default=0)


@dataclass
class Page:
    after: int  # the cursor sent in hello
    reply: Frame  # the ok's data
    ids: list[int]  # every dm.message before the ok, replayed or live, in arrival order

    @property
    def replayed(self) -> list[int]:
        """The replay: the server queues it in one go right before the ``ok``, so it is the
        last ``replayed`` messages; live ones (maybe copies) can only come before it."""
        count = self.reply["replayed"]
        return self.ids[len(self.ids) - count :]


async def resume(sock: Socket, client: Client, cursor: int) -> list[Page]:
    """Page through the replay from ``cursor``. Live messages arriving meanwhile are taken
    too (de-duplicated), but do not move the cursor while ``more`` is true."""
    pages: list[Page] = []
    while True:
        ref = await sock.send_op("hello", {"cursor": cursor})
        ids: list[int] = []
        while True:
            frame = await sock.recv()
            if frame.get("op") == "ok" and frame.get("ref") == ref:
                break
            assert frame.get("op") == "ev", frame
            if frame["type"] == "dm.message":
                ids.append(frame["data"]["id"])
                client.take(frame["data"])
        page = Page(cursor, frame["data"], ids)
        assert page.reply["replayed"] <= PAGE
        replayed = page.replayed
        assert len(replayed) == page.reply["replayed"]
        assert all(cursor < i <= page.reply["cursor"] for i in replayed), page
        assert replayed == sorted(set(replayed)), page  # in id order, none twice
        assert not replayed or replayed[-1] == page.reply["cursor"]
        pages.append(page)
        cursor = page.reply["cursor"]
        if not page.reply["more"]:
            return pages


async def test_a_client_cut_off_in_a_burst_resumes_with_every_message_once_in_order(
    server: Server, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    alice_sock = await server.connect(alice.user)
    bob_phone = await server.connect(bob.user)  # bob's other device, which stays online
    bob_sock = await server.connect(bob.user)
    start = await bob_sock.call("hello")
    assert start == {"cursor": 0, "replayed": 0, "more": False}

    total = 40
    sent: list[int] = []
    cut = asyncio.Event()
    missed_enough = asyncio.Event()
    envelopes = [await alice.seal("bob", f"burst {i}") for i in range(total)]

    async def burst() -> None:
        for index, envelope in enumerate(envelopes):
            sent.append((await send(alice_sock, "bob", envelope))["message"]["id"])
            if index == 9:
                await cut.wait()  # bob is cut off while the burst goes on
            if index == 24:
                missed_enough.set()

    sender = asyncio.create_task(burst())
    client = Client()
    while len(client.seen) < 8:
        frame = await bob_sock.event("dm.message")
        client.take(frame["data"])
    bob_sock.ws.transport.abort()  # cut off: no close handshake
    cursor = client.cursor
    cut.set()
    await missed_enough.wait()
    # bob's phone sends two messages while this device is away: they are replayed as well
    own = [
        (await send(bob_phone, "alice", await bob.seal("alice", f"from phone {i}")))["message"][
            "id"
        ]
        for i in range(2)
    ]

    back = await server.connect(bob.user)
    pages = await resume(back, client, cursor)
    assert len(pages) >= 3  # more than one page was needed
    replayed = [i for page in pages for i in page.replayed]
    assert replayed == sorted(set(replayed))  # in id order, page after page, none twice
    assert replayed[0] > cursor
    # what the replay covered is exactly bob's messages from the cursor to its end
    assert set(replayed) == {i for i in [*sent, *own] if cursor < i <= pages[-1].reply["cursor"]}
    # then live: the rest of the burst
    await sender
    live: list[int] = []
    while not set(sent) <= set(client.seen):
        message = (await back.event("dm.message"))["data"]
        live.append(message["id"])
        client.take(message)
    assert live == sorted(live)
    await back.assert_quiet(
        lambda f: f.get("type") == "dm.message" and f["data"]["id"] not in client.seen
    )

    assert set(client.seen) == set(sent) | set(own)
    assert sorted(client.order) == sorted(set(sent) | set(own))  # each exactly once
    assert [client.seen[i]["sender"] for i in own] == ["bob", "bob"]
    texts = [await bob.open(client.seen[i]) for i in sent]
    assert texts == [f"burst {i}" for i in range(total)]
    for sock in (alice_sock, bob_phone, back):
        await sock.close()


async def test_hello_without_cursor_gives_the_newest_id_and_replays_nothing(
    server: Server, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    alice_sock = await server.connect(alice.user)
    ids = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"m{i}")))["message"]["id"]
        for i in range(3)
    ]
    bob_sock = await server.connect(bob.user)
    assert await bob_sock.call("hello") == {"cursor": ids[-1], "replayed": 0, "more": False}
    assert await bob_sock.call("hello", {"device_id": "phone"}) == {
        "cursor": ids[-1],
        "replayed": 0,
        "more": False,
    }
    # a cursor at or past the newest replays nothing and keeps the cursor
    assert await bob_sock.call("hello", {"cursor": ids[-1]}) == {
        "cursor": ids[-1],
        "replayed": 0,
        "more": False,
    }
    assert await bob_sock.call("hello", {"cursor": 10**9}) == {
        "cursor": 10**9,
        "replayed": 0,
        "more": False,
    }
    await bob_sock.assert_quiet()
    # the sender's own messages count for the sender
    assert (await alice_sock.call("hello"))["cursor"] == ids[-1]
    # a cursor in the middle replays just the rest, in order
    ref = await bob_sock.send_op("hello", {"cursor": ids[0]})
    first, second = await bob_sock.event("dm.message"), await bob_sock.event("dm.message")
    assert [first["data"]["id"], second["data"]["id"]] == ids[1:]
    assert await bob.open(second["data"]) == "m2"
    assert (await bob_sock.reply(ref))["data"] == {"cursor": ids[-1], "replayed": 2, "more": False}
    for bad in ({"cursor": -1}, {"cursor": "1"}, {"cursor": 1.5}):
        assert (await bob_sock.error("hello", bad))["code"] == "invalid_input"
    # a third user sees nothing of theirs
    carol = await person(server.http, server.url, "carol")
    carol_sock = await server.connect(carol.user)
    assert await carol_sock.call("hello", {"cursor": 0}) == {
        "cursor": 0,
        "replayed": 0,
        "more": False,
    }
    for sock in (alice_sock, bob_sock, carol_sock):
        await sock.close()
    await carol.aclose()


async def test_a_replay_page_never_overflows_the_socket_queue(make_settings: MakeSettings) -> None:
    """``replay_page`` is capped to half the socket's queue, so a replay cannot get the
    client dropped as too slow."""
    async with serve(make_settings, ws_queue=8, replay_page=100) as server:
        alice = await person(server.http, server.url, "alice")
        bob = await person(server.http, server.url, "bob")
        alice_sock = await server.connect(alice.user)
        ids = [
            (await send(alice_sock, "bob", await alice.seal("bob", f"m{i}")))["message"]["id"]
            for i in range(10)
        ]
        bob_sock = await server.connect(bob.user)
        client = Client()
        pages = await resume(bob_sock, client, 0)
        assert [p.reply["replayed"] for p in pages] == [4, 4, 2]
        assert [p.ids for p in pages] == [ids[:4], ids[4:8], ids[8:]]
        assert client.order == ids
        assert "time" in await bob_sock.call("ping", {})
        for sock in (alice_sock, bob_sock):
            await sock.close()
        await alice.aclose()
        await bob.aclose()
