"""Lost wake-ups (docs/protocol.md, "Lost wake-ups"): the bus is at-most-once, so when
events meant for a socket may be gone the server says so with ``resync`` and the client's
``hello`` replays what was missed from the database.

- The hub's bus subscription overflowed or reconnected (``reason: "bus"``): every socket of
  the process is told, behind every frame it already has; sessions are re-checked at once.
- A commit's publish failed (``reason: "publish"``): the users (DMs) or the room's members
  are told once the bus takes it again, with cursors just below the first message missed,
  which later messages may already have passed.

The publish failures are injected in front of the real bus; everything else is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import insert

from echochat.bus import Bus, BusUnavailable
from echochat.services import resync
from echochat.store import sessions as session_store
from echochat.store.tables import room_members
from tests.dmutil import Person, alice_and_bob, dm_event, send
from tests.roommsgutil import (
    add_member,
    make_room,
    no_room_messages,
    remove_member,
    room_event,
    say,
)
from tests.wsutil import (
    API,
    Frame,
    MakeSettings,
    Server,
    Socket,
    befriend,
    expect_error,
    open_socket,
    serve,
)


class FlakyBus:
    """The app's real bus, with ``publish_many`` and ``publish`` failing while a test
    says so for the payloads it picks (a Redis outage, as the writers see it)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.failing: Callable[[bytes], bool] = lambda _: False
        self.failed = 0
        self._failure = asyncio.Event()
        self.published: list[tuple[str, bytes]] = []  # what publish_many got through
        self.real_many = bus.publish_many
        self.real_one = bus.publish

    def install(self) -> None:
        bus: Any = self.bus
        bus.publish_many = self.publish_many
        bus.publish = self.publish

    def fail_when(self, *markers: bytes) -> None:
        self.failing = lambda payload: any(marker in payload for marker in markers)

    def heal(self) -> None:
        self.failing = lambda _: False

    def _check(self, payloads: Iterable[bytes]) -> None:
        if any(self.failing(payload) for payload in payloads):
            self.failed += 1
            self._failure.set()
            raise BusUnavailable("Redis bus at test: injected outage")

    async def failures(self, count: int) -> None:
        """Until ``count`` publishes have failed in all."""
        async with asyncio.timeout(5):
            while self.failed < count:
                self._failure.clear()
                await self._failure.wait()

    async def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        self._check(payload for _, payload in messages)
        await self.real_many(messages)
        self.published += messages

    async def publish(self, channel: str, payload: bytes) -> None:
        self._check([payload])
        await self.real_one(channel, payload)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries every 20 ms at most: a test's waits never race the backoff's growth."""
    monkeypatch.setattr(resync, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(resync, "MAX_DELAY", 0.02)


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings) as started:
        yield started


@pytest.fixture
async def pair(server: Server) -> AsyncIterator[tuple[Person, Person]]:
    async with alice_and_bob(server) as both:
        yield both


def scrape(server: Server) -> str:
    """The process's /metrics text."""
    return generate_latest(server.app.state.metrics.registry).decode()


async def hello(sock: Socket, **data: Any) -> tuple[list[int], Frame]:
    """The ``hello`` op: the ids of the ``dm.message`` events replayed before its ``ok``."""
    ref = await sock.send_op("hello", data)
    ids: list[int] = []
    while True:
        frame = await sock.recv()
        if frame.get("op") == "ok" and frame.get("ref") == ref:
            return ids, frame["data"]
        if frame.get("type") == "dm.message":
            ids.append(frame["data"]["id"])


async def test_a_lost_bus_subscription_tells_every_socket_to_resync_behind_what_it_had(
    server: Server, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    bob_1 = await open_socket(server.url, bob.user)
    bob_2 = await open_socket(server.url, bob.user)
    alice_sock = await open_socket(server.url, alice.user)
    sent = (await send(alice_sock, "bob", await alice.seal("bob", "before the loss")))["message"]

    sub = server.hub._sub
    assert sub is not None
    sub.signal_overflow()  # what the Redis bus does after its pub/sub connection came back

    for sock in (bob_1, bob_2):
        assert await dm_event(sock) == sent  # what it had comes first
        event = await sock.event("resync")
        assert event["data"] == {"reason": "bus", "cursor": None, "rooms": {}}
        ids, reply = await hello(sock, cursor=sent["id"] - 1)
        assert ids == [sent["id"]] and reply["more"] is False
    assert (await alice_sock.event("resync"))["data"]["reason"] == "bus"
    assert "echochat_bus_losses_total 1.0" in scrape(server)
    for sock in (bob_1, bob_2, alice_sock):
        await sock.close()


async def test_a_lost_bus_subscription_rechecks_the_sessions_at_once(
    server: Server, pair: tuple[Person, Person]
) -> None:
    """A kick order may have been among the lost events: a session ended meanwhile is
    closed now, not at the 30 s re-check."""
    _, bob = pair
    sock = await open_socket(server.url, bob.user)
    (conn,) = server.hub.connections_of(bob.user.id)
    # ended in the database only, as if its kick order had been lost with the bus
    async with server.ctx.db.transaction() as db:
        ended = await session_store.revoke_txn(
            db, conn.principal.session_id, now=server.ctx.clock(), reason="test"
        )
    assert ended

    assert server.hub._sub is not None
    server.hub._sub.signal_overflow()
    await sock.event("resync")
    kicked = await sock.event("kicked")
    assert kicked["data"]["reason"] == "session_revoked"
    await sock.close()


async def test_a_failed_dm_publish_is_told_again_with_a_cursor_below_the_missed_message(
    server: Server, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    flaky = FlakyBus(server.ctx.bus)
    flaky.install()
    alice_sock = await open_socket(server.url, alice.user)
    bob_sock = await open_socket(server.url, bob.user)
    first = (await send(alice_sock, "bob", await alice.seal("bob", "warm-up")))["message"]
    assert await dm_event(bob_sock) == first

    # The publish after the commit fails, and so do the first tries to say so.
    flaky.fail_when(b'"dm.message"', b'"resync"')
    missed = (await send(alice_sock, "bob", await alice.seal("bob", "lost wake-up")))["message"]
    await flaky.failures(2)  # the publish, and the first try to say so
    # A later message gets through first: bob's cursor passes the missed one.
    flaky.fail_when(b'"resync"')
    later = (await send(alice_sock, "bob", await alice.seal("bob", "later")))["message"]
    assert later["id"] > missed["id"]
    assert await dm_event(bob_sock) == later
    assert server.ctx.lost.pending == 2  # alice's channel and bob's, waiting for the bus
    assert "echochat_resync_pending 2.0" in scrape(server)
    assert "echochat_publish_losses_total 2.0" in scrape(server)

    flaky.heal()  # the retry with backoff gets through now
    for sock in (bob_sock, alice_sock):
        event = await sock.event("resync")
        assert event["data"] == {"reason": "publish", "cursor": missed["id"] - 1, "rooms": {}}
    assert server.ctx.lost.pending == 0
    ids, reply = await hello(bob_sock, cursor=missed["id"] - 1)
    assert ids == [missed["id"], later["id"]] and reply["more"] is False
    # not a frame of it left behind: the missed message came only through the replay
    await bob_sock.assert_quiet()
    for sock in (bob_sock, alice_sock):
        await sock.close()


async def test_a_failed_room_publish_is_told_again_to_the_members_with_the_rooms_cursor(
    server: Server, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    room = await make_room(server.ctx, name="Lost and found")
    for who in (alice, bob):
        await add_member(server.ctx, room, who.user.id)
    flaky = FlakyBus(server.ctx.bus)
    flaky.install()
    alice_sock = await open_socket(server.url, alice.user)
    bob_sock = await open_socket(server.url, bob.user)

    flaky.fail_when(b'"room.message"')
    missed = (await say(alice_sock, room, "nobody heard this"))["message"]
    flaky.heal()
    later = (await say(alice_sock, room, "but this one"))["message"]
    assert (await room_event(bob_sock))["id"] == later["id"]  # the first to reach bob
    event = await bob_sock.event("resync")
    assert event["data"] == {
        "reason": "publish",
        "cursor": None,
        "rooms": {str(room): missed["id"] - 1},
    }
    assert (await alice_sock.event("resync"))["data"] == event["data"]
    ref = await bob_sock.send_op("hello", {"rooms": {str(room): missed["id"] - 1}})
    assert (await room_event(bob_sock, missed["id"]))["text"] == "nobody heard this"
    assert (await room_event(bob_sock, later["id"]))["text"] == "but this one"
    assert (await bob_sock.reply(ref))["data"]["rooms_replayed"] == 2
    await alice_sock.close()
    await bob_sock.close()


async def test_pending_losses_merge_per_channel_and_stop_with_the_server(
    make_settings: MakeSettings,
) -> None:
    """However long the bus stays away, one pending entry per channel (the lowest cursor
    wins), and stopping the server gives up on them without hanging."""
    async with serve(make_settings) as started:
        lost = started.ctx.lost
        flaky = FlakyBus(started.ctx.bus)
        flaky.install()
        flaky.fail_when(b'"resync"')
        for cursor in (50, 20, 30):
            lost.note(started.ctx.bus, "user:1", cursor=cursor)
        lost.note(started.ctx.bus, "user:1", rooms={7: 9})
        lost.note(started.ctx.bus, "room:7", rooms={7: 12})
        lost.note(started.ctx.bus, "room:7", rooms={7: 4})
        await flaky.failures(2)  # tried, and retried
        assert lost.pending == 2
        pending = {ch: (loss.cursor, loss.rooms) for ch, loss in lost._pending.items()}
        assert pending == {"user:1": (20, {7: 9}), "room:7": (None, {7: 4})}
    assert lost._task is None


async def test_stopping_makes_one_last_try_for_what_is_pending(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus came back while the retry sleeps: the server stopping does not wait for the
    next retry, nor give up before one last try (other processes' sockets need it)."""
    monkeypatch.setattr(resync, "MAX_DELAY", 60.0)
    monkeypatch.setattr(resync, "FIRST_DELAY", 60.0)
    async with serve(make_settings) as started:
        flaky = FlakyBus(started.ctx.bus)
        flaky.install()
        flaky.fail_when(b'"resync"')
        started.ctx.lost.note(started.ctx.bus, "user:1", cursor=41)
        await flaky.failures(1)  # now asleep for a minute
        flaky.heal()
    assert [channel for channel, _ in flaky.published] == ["user:1"]
    assert b'"cursor":41' in flaky.published[0][1]
    assert started.ctx.lost.pending == 0


async def test_a_bus_outage_answers_unavailable_never_a_500(
    server: Server, pair: tuple[Person, Person]
) -> None:
    """A request or op whose publish fails says so (503 / ``unavailable``, safe to repeat);
    the socket stays open."""
    alice, bob = pair
    await befriend(server.http, alice.user, bob.user)
    flaky = FlakyBus(server.ctx.bus)
    flaky.install()
    flaky.fail_when(b'"buddy.groups"', b'"typing"')
    made = await server.http.post(
        f"{API}/buddies/groups", json={"name": "Work"}, headers=alice.headers
    )
    error = expect_error(made, 503, "unavailable")
    assert "try again" in error["message"]
    assert made.headers["retry-after"] == "5"
    sock = await open_socket(server.url, alice.user)
    refused = await sock.error("typing", {"to": bob.name, "active": True})
    assert refused["code"] == "unavailable"
    flaky.heal()
    assert (await sock.call("ping", {})) is not None  # the socket carries on
    await sock.close()


async def test_a_membership_order_lost_with_the_bus_is_repaired_and_told(
    server: Server, pair: tuple[Person, Person]
) -> None:
    """Bob joined a room, but the order telling his process was lost: the re-check after
    the loss finds the room, subscribes its channel, and tells bob's sockets to resync a
    second time (what the room said until then was never routed to them); from then on
    the room's messages reach him live."""
    alice, bob = pair
    room = await make_room(server.ctx, name="Found again")
    await add_member(server.ctx, room, alice.user.id)
    bob_sock = await open_socket(server.url, bob.user)
    alice_sock = await open_socket(server.url, alice.user)
    async with server.ctx.db.transaction() as db:  # joined, with no order on the bus
        await db.execute(
            insert(room_members).values(
                room_id=room, user_id=bob.user.id, role="member", first_message_id=0
            )
        )
    assert room not in server.hub.rooms_here(bob.user.id)

    assert server.hub._sub is not None
    server.hub._sub.signal_overflow()
    await bob_sock.event("resync")  # the loss
    await bob_sock.event("resync")  # the room index repaired
    assert room in server.hub.rooms_here(bob.user.id)
    said = (await say(alice_sock, room, "now you hear me"))["message"]
    assert (await room_event(bob_sock, said["id"]))["text"] == "now you hear me"
    for sock in (bob_sock, alice_sock):
        await sock.close()


async def test_a_membership_order_that_cannot_be_published_is_retried_as_a_reread(
    server: Server, pair: tuple[Person, Person]
) -> None:
    """Joining and leaving commit even when the order to the processes cannot be published
    (no 500, no 503): the order is retried as ``Q`` (read the user's rooms again). A join
    found that way is told with ``resync`` and heard live; a leave stops the routing."""
    alice, bob = pair
    room = await make_room(server.ctx, name="Retried")
    await add_member(server.ctx, room, alice.user.id)
    alice_sock = await open_socket(server.url, alice.user)
    bob_sock = await open_socket(server.url, bob.user)
    flaky = FlakyBus(server.ctx.bus)
    flaky.install()
    flaky.failing = lambda payload: payload.startswith(b"R") or payload == b"Q"

    await add_member(server.ctx, room, bob.user.id)  # the order fails: no exception
    await flaky.failures(2)  # the order, and the first retry of the re-read
    assert room not in server.hub.rooms_here(bob.user.id)
    flaky.failing = lambda payload: payload.startswith(b"R")  # the re-read gets through
    await bob_sock.event("resync")
    assert room in server.hub.rooms_here(bob.user.id)
    said = (await say(alice_sock, room, "welcome"))["message"]
    assert (await room_event(bob_sock, said["id"]))["text"] == "welcome"

    await remove_member(server.ctx, room, bob.user.id)  # its order fails too
    await server.wait_for(
        lambda: room not in server.hub.rooms_here(bob.user.id), "the re-read of bob's rooms"
    )
    gone = (await say(alice_sock, room, "bob has gone"))["message"]
    # routed by now (to alice's socket, and to bob's had he still been in the index): a
    # ping's reply on bob's socket comes after anything routed to it
    assert (await room_event(alice_sock, gone["id"]))["text"] == "bob has gone"
    await bob_sock.assert_quiet(no_room_messages)
    assert [channel for channel, payload in flaky.published if payload == b"Q"] == [
        f"user:{bob.user.id}"
    ] * 2
    for sock in (bob_sock, alice_sock):
        await sock.close()
