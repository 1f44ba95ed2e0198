"""The SDK and the server's ``resync`` event (docs/protocol.md, "Lost wake-ups"), against
the real app served by uvicorn on a loopback port over a temporary SQLite database.

Losses are made in the real bus only: the app's ``bus.publish_many`` fails (as a Redis
publish does when Redis is away) or silently loses (as Redis pub/sub does across a
reconnect) chosen publishes, and the hub's subscription is told it overflowed (what the
Redis bus does after a reconnect). Everything else is the server's own code path.

Every wait is for an event, under a timeout. Where a test shows that something did *not*
arrive (a duplicate, one more replay round), it sends a later marker message down the same
path and checks what came before it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from fastapi import FastAPI

from echochat.bus import Bus
from echochat.client import Event, RealtimeConnection, ResyncEvent
from echochat.client._realtime import Ask, lowered
from echochat.config import ResolvedSettings
from echochat.realtime.hub import Hub
from echochat.services import dm as dm_service
from tests.conftest import free_port
from tests.roommsgutil import add_member, make_room
from tests.unit.test_sdk_dm import Inbox, _NoTokens, inbox, signed_in
from tests.unit.test_sdk_realtime import WAIT, LiveApp
from tests.unit.test_sdk_rooms import member, text_is
from tests.wsutil import MakeSettings, Server, serve

RETRY_WAIT = 15.0  # the server retries a failed resync publish with a backoff (<= 5 s)


@pytest.fixture
async def live(make_settings: Callable[..., ResolvedSettings]) -> AsyncIterator[LiveApp]:
    app = LiveApp(make_settings(port=free_port(), ws_heartbeat=5, replay_page=2))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def served(live: LiveApp) -> FastAPI:
    assert live.server is not None
    return cast(FastAPI, live.server.config.app)


class FlakyBus:
    """The app's real bus, with chosen publishes failing or lost: the next ``fail_dm``
    carrying a ``dm.message`` raise, the next ``lose_dm`` vanish, the next ``fail_room``
    ``room.message`` raise, and those carrying a ``resync`` raise while ``hold_resync``."""

    def __init__(self, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fail_dm = 0
        self.lose_dm = 0
        self.fail_room = 0
        self.hold_resync = False
        self._real = bus.publish_many
        self._real_one = bus.publish
        monkeypatch.setattr(bus, "publish_many", self.publish_many)
        monkeypatch.setattr(bus, "publish", self.publish)

    async def publish(self, channel: str, payload: bytes) -> None:
        if b'"room.message"' in payload and self.fail_room > 0:
            self.fail_room -= 1
            raise ConnectionError("the bus is away (test)")
        await self._real_one(channel, payload)

    async def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        carries = b"".join(payload for _, payload in messages)
        if b'"dm.message"' in carries and self.fail_dm > 0:
            self.fail_dm -= 1
            raise ConnectionError("the bus is away (test)")
        if b'"dm.message"' in carries and self.lose_dm > 0:
            self.lose_dm -= 1
            return
        if b'"resync"' in carries and self.hold_resync:
            raise ConnectionError("the bus is still away (test)")
        await self._real(messages)


class Rounds:
    """Watches a connection's replay rounds (each a ``hello`` page after page): how many
    began, how many ran at once at most, and the ``hello`` data sent."""

    def __init__(self, rt: RealtimeConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self.running = 0
        self.most = 0
        self.hellos: list[dict[str, Any]] = []
        self._replay = rt._replay
        monkeypatch.setattr(rt, "_replay", self.replay)

    async def replay(self, ask: Ask) -> None:
        async def watched(data: dict[str, Any]) -> dict[str, Any]:
            self.hellos.append(dict(data))
            return await ask(data)

        self.started += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self._replay(watched)
        finally:
            self.running -= 1


def resyncs(box: Inbox) -> list[ResyncEvent]:
    return [i for i in box.items if isinstance(i, ResyncEvent)]


async def resync_count(box: Inbox, n: int, timeout: float = WAIT) -> ResyncEvent:
    """Waits until ``box`` got ``n`` resync events; the last one."""
    await box.wait(lambda i: isinstance(i, ResyncEvent) and len(resyncs(box)) >= n, timeout)
    return resyncs(box)[n - 1]


def hub_of(live: LiveApp) -> Hub:
    hub = served(live).state.hub
    assert isinstance(hub, Hub)
    return hub


def overflow(live: LiveApp) -> None:
    """The hub's bus subscription lost messages (as after a Redis reconnect)."""
    sub = hub_of(live)._sub
    assert sub is not None
    sub.signal_overflow()


async def pair(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> tuple[Inbox, Inbox, FlakyBus, Rounds]:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    flaky = FlakyBus(served(live).state.ctx.bus, monkeypatch)
    return alice, bob, flaky, Rounds(bob.messenger.connection, monkeypatch)


def received(box: Inbox) -> list[int]:
    return [m.id for m in box.received()]


# --- the publish path: a lowered cursor ----------------------------------------------------


async def test_a_failed_publish_is_resumed_from_the_lowered_cursor_once(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, flaky, rounds = await pair(live, monkeypatch)
    try:
        # m1's wake-up is lost and the server cannot tell anyone yet; m2 arrives live, so
        # bob's cursor moves past m1
        flaky.fail_dm, flaky.hold_resync = 1, True
        m1 = await alice.messenger.send("bob", "one")
        m2 = await alice.messenger.send("bob", "two")
        await bob.text("two")
        assert bob.messenger.cursor == m2.id
        assert received(bob) == [m2.id]
        hellos = len(rounds.hellos)

        flaky.hold_resync = False  # the bus is back: the server sends resync
        event = await resync_count(bob, 1, RETRY_WAIT)
        assert (event.reason, event.cursor, dict(event.rooms)) == ("publish", m1.id - 1, {})
        one = await bob.text("one")
        assert bob.items.index(event) < bob.items.index(one)
        assert rounds.hellos[hellos]["cursor"] == m1.id - 1

        m3 = await alice.messenger.send("bob", "three")
        await bob.text("three")
        assert received(bob) == [m2.id, m1.id, m3.id]  # each once; m2 not again
        assert bob.messenger.cursor == m3.id
        assert rounds.most == 1
    finally:
        await alice.close()
        await bob.close()


# --- the bus path: resume from the own cursor ----------------------------------------------


async def test_a_bus_resync_resumes_from_the_own_cursor(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, flaky, rounds = await pair(live, monkeypatch)
    try:
        before = await alice.messenger.send("bob", "before")
        await bob.text("before")
        flaky.lose_dm = 1  # pub/sub loses it, as across a Redis reconnect
        lost = await alice.messenger.send("bob", "lost")
        hellos, started = len(rounds.hellos), rounds.started

        overflow(live)
        event = await resync_count(bob, 1)
        assert (event.reason, event.cursor, dict(event.rooms)) == ("bus", None, {})
        await bob.text("lost")
        # hello again, from where bob stood (neither lowered nor invented)
        assert rounds.started == started + 1
        assert rounds.hellos[hellos]["cursor"] == before.id
        assert rounds.hellos[hellos]["device_id"] == bob.messenger.device_id

        marker = await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert received(bob) == [before.id, lost.id, marker.id]
        assert rounds.started == started + 1 and rounds.most == 1
    finally:
        await alice.close()
        await bob.close()


# --- rooms ------------------------------------------------------------------------------


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings, replay_page=2) as started:
        yield started


async def test_a_failed_room_publish_lowers_that_rooms_cursor(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await member(server, "alice"), await member(server, "bob")
    room, other = await make_room(server.ctx), await make_room(server.ctx, name="Other")
    for where in (room, other):
        for who in (alice, bob):
            await add_member(server.ctx, where, who.user_id)
    await server.wait_for(lambda: len(server.hub.room_members_here(other)) == 2, "index")
    rounds = Rounds(bob.messenger.connection, monkeypatch)
    flaky = FlakyBus(server.ctx.bus, monkeypatch)
    try:
        elsewhere, _ = await alice.rooms.send(other, "elsewhere")
        await bob.wait(text_is(other, "elsewhere"), "the other room's message")
        flaky.fail_room, flaky.hold_resync = 1, True
        one, _ = await alice.rooms.send(room, "one")
        two, _ = await alice.rooms.send(room, "two")
        await bob.wait(text_is(room, "two"), "the live message")
        assert bob.rooms.cursors[room] == two.id
        hellos = len(rounds.hellos)

        flaky.hold_resync = False
        await bob.wait(text_is(room, "one"), "the missed message")
        resync = next(i for i in bob.items if isinstance(i, ResyncEvent))
        assert (resync.reason, resync.cursor, dict(resync.rooms)) == (
            "publish",
            None,
            {room: one.id - 1},
        )
        sent = rounds.hellos[hellos]
        assert sent["rooms"] == {str(room): one.id - 1, str(other): elsewhere.id}
        assert sent["cursor"] == bob.messenger.cursor  # DMs: from where bob stood

        three, _ = await alice.rooms.send(room, "three")
        await bob.wait(text_is(room, "three"), "the marker")
        assert [m.id for m in bob.messages(room)] == [two.id, one.id, three.id]
        assert [m.id for m in bob.messages(other)] == [elsewhere.id]
        assert bob.rooms.cursors == {room: three.id, other: elsewhere.id}
    finally:
        for who in (alice, bob):
            await who.close()


# --- coalescing ---------------------------------------------------------------------------


class HeldReplay:
    """The server's replay of DMs (``services.dm.replay``, behind ``hello``), held once
    armed: ``who``'s next page waits for ``gate``; ``reached`` says it is waiting."""

    def __init__(self, who: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.who = who
        self.armed = False
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()
        self._real = dm_service.replay
        monkeypatch.setattr(dm_service, "replay", self.replay)

    async def replay(self, ctx: Any, principal: Any, *args: Any) -> Any:
        if self.armed and principal.username == self.who:
            self.armed = False
            self.reached.set()
            await self.gate.wait()
        return await self._real(ctx, principal, *args)


async def test_resyncs_during_a_replay_coalesce_into_one_more_round(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, flaky, rounds = await pair(live, monkeypatch)
    held = HeldReplay("bob", monkeypatch)
    try:
        first = await alice.messenger.send("bob", "first")
        await bob.text("first")
        # a's wake-up fails (the resync about it waits for the bus), b arrives live, c is
        # lost by pub/sub
        flaky.fail_dm, flaky.hold_resync = 1, True
        a = await alice.messenger.send("bob", "a")
        b = await alice.messenger.send("bob", "b")
        await bob.text("b")
        flaky.lose_dm = 1
        c = await alice.messenger.send("bob", "c")
        started, hellos = rounds.started, len(rounds.hellos)

        # a bus resync: bob's round asks from b on, and the server holds that page
        held.armed = True
        overflow(live)
        await resync_count(bob, 1)
        async with asyncio.timeout(WAIT):
            await held.reached.wait()
        assert rounds.hellos[hellos]["cursor"] == b.id

        # while the page is on its way: the resync about a (from below the page's start),
        # and another bus loss; the reader takes them, no second round begins
        flaky.hold_resync = False
        event = await resync_count(bob, 2, RETRY_WAIT)
        assert (event.reason, event.cursor) == ("publish", a.id - 1)
        overflow(live)
        await resync_count(bob, 3)
        assert rounds.started == started + 1

        held.gate.set()  # the page (c) ends the round; one more round, from a's cursor
        await bob.text("a")
        marker = await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert received(bob) == [first.id, b.id, c.id, a.id, marker.id]
        assert rounds.started == started + 2 and rounds.most == 1
        # the round held ended with that page; the next one began from a, lowered again
        assert rounds.hellos[hellos + 1]["cursor"] == a.id - 1
        assert bob.messenger.cursor == marker.id
    finally:
        await alice.close()
        await bob.close()


# --- the event and the cursors, without a server -------------------------------------------


def _frame(data: object) -> str:
    return json.dumps({"op": "ev", "type": "resync", "data": data})


def _queued(rt: RealtimeConnection) -> list[Event]:
    items: list[Event] = []
    while not rt._queue.empty():
        item = rt._queue.get_nowait()
        assert isinstance(item, Event)
        items.append(item)
    return items


def test_a_resync_lowers_the_cursors_it_names_and_never_invents_one() -> None:
    assert lowered(None, 5, None) is None
    assert lowered(20, None, 10) == 20
    assert lowered(20, 15, 10) == 15
    assert lowered(20, 3, 10) == 10  # never below where the connection started

    fresh = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws")
    fresh._accept(_frame({"reason": "publish", "cursor": 5, "rooms": {}}))
    fresh._accept(_frame({"reason": "bus", "cursor": None, "rooms": {}}))
    assert fresh.cursor is None and fresh.room_cursors is None
    assert [type(e) for e in _queued(fresh)] == [ResyncEvent, ResyncEvent]
    assert fresh._resync_wanted.is_set()

    rt = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws", cursor=10)
    rt._rooms = {1: 50, 2: 60}
    rt._room_origin = {1: 40, 2: 40}
    rt._resumed({"cursor": 30, "more": False})
    rt._accept(_frame({"reason": "publish", "cursor": 25, "rooms": {"1": 45, "3": 7}}))
    rt._accept(_frame({"reason": "publish", "cursor": 27, "rooms": {"1": 30}}))
    assert rt.cursor == 25  # the lowest asked for
    assert rt.room_cursors == {1: 40, 2: 60}  # room 1 not below its start; 3 not tracked
    rt._accept(_frame({"reason": "bus"}))
    assert rt.cursor == 25
    event = _queued(rt)[0]
    assert isinstance(event, ResyncEvent)
    assert (event.reason, event.cursor, dict(event.rooms)) == ("publish", 25, {1: 45, 3: 7})

    # a malformed resync is passed on untyped, and still resumes (from the own cursors)
    odd = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws", cursor=10)
    odd._accept(_frame({"reason": 1}))
    [untyped] = _queued(odd)
    assert type(untyped) is Event and untyped.type == "resync"
    assert odd._resync_wanted.is_set() and odd.cursor == 10
