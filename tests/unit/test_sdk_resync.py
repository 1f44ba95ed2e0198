"""The SDK and the server's ``resync`` event (docs/protocol.md, "Lost wake-ups"), against
the real app served by uvicorn on a loopback port over a temporary SQLite database.

Losses are made in the real bus only: the app's ``bus.publish_many`` fails (as a Redis
publish does when Redis is away) or silently loses (as Redis pub/sub does across a
reconnect) chosen publishes, and the hub's subscription is told it overflowed (what the
Redis bus does after a reconnect). Everything else is the server's own code path.

Every wait is for an event, under a timeout. Where a test shows that something did *not*
arrive (a duplicate, one more replay round), it sends a later marker message down the same
path and checks what came before it. The random wait before a ``bus`` resync's round is
none here (``RESYNC_JITTER`` 0), except where a test holds it (:class:`Pause`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from fastapi import FastAPI

from echochat.bus import Bus, BusUnavailable
from echochat.client import Event, RealtimeConnection, ResyncEvent, _realtime
from echochat.client._realtime import RESYNC_JITTER, Ask, lowered, resync_delay
from echochat.config import ResolvedSettings
from echochat.realtime.hub import Hub
from echochat.services import dm as dm_service
from tests.conftest import free_port
from tests.roommsgutil import add_member, make_room
from tests.unit.test_sdk_dm import Inbox, _dm, _NoTokens, inbox, signed_in
from tests.unit.test_sdk_realtime import WAIT, LiveApp
from tests.unit.test_sdk_rooms import member, text_is
from tests.wsutil import MakeSettings, Server, serve

RETRY_WAIT = 15.0  # the server retries a failed resync publish with a backoff (<= 5 s)


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resume at once after a ``bus`` resync (tests that check the wait hold it instead)."""
    monkeypatch.setattr(_realtime, "RESYNC_JITTER", 0.0)


class Pause:
    """The wait before a ``bus`` resync's round, held: ``delays`` drawn, ``reached`` when
    one began, which ends when ``gate`` opens (as if the delay ran out then)."""

    def __init__(self, rt: RealtimeConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.delays: list[float] = []
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()
        monkeypatch.setattr(_realtime, "RESYNC_JITTER", RESYNC_JITTER)
        monkeypatch.setattr(rt, "_resync_pause", self.pause)

    async def pause(self, delay: float) -> None:
        self.delays.append(delay)
        self.reached.set()
        await self.gate.wait()


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


class Told:
    """The ``resync`` events ``rt``'s reader took (in frame order, before they are handed
    on: that waits for their round to start)."""

    def __init__(self, rt: RealtimeConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[ResyncEvent | None] = []
        self._changed = asyncio.Condition()
        self._real = rt._resync
        monkeypatch.setattr(rt, "_resync", self.resync)

    def resync(self, event: ResyncEvent | None) -> None:
        self._real(event)
        self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def count(self, n: int, timeout: float = WAIT) -> ResyncEvent | None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= n)
        return self.events[n - 1]


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
    pause = Pause(bob.messenger.connection, monkeypatch)
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
        assert pause.delays == []  # a publish resync (a few users) resumes at once
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


async def test_a_bus_resync_waits_then_resumes_from_the_cursors_it_found(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, flaky, rounds = await pair(live, monkeypatch)
    pause = Pause(bob.messenger.connection, monkeypatch)
    told = Told(bob.messenger.connection, monkeypatch)
    try:
        before = await alice.messenger.send("bob", "before")
        await bob.text("before")
        flaky.lose_dm = 1
        lost = await alice.messenger.send("bob", "lost")
        hellos, started = len(rounds.hellos), rounds.started

        # the resync: bob draws its wait (0 .. 3 s); no round begins, and the event is not
        # handed on yet (a caller refetches on it: not all of a process's sockets at once)
        overflow(live)
        await told.count(1)
        async with asyncio.timeout(WAIT):
            await pause.reached.wait()
        [delay] = pause.delays
        assert 0.0 <= delay <= RESYNC_JITTER == 3.0
        assert rounds.started == started

        # meanwhile a live message moves the cursor past the lost one
        during = await alice.messenger.send("bob", "during")
        await bob.text("during")
        assert bob.messenger.cursor == during.id
        assert rounds.started == started and resyncs(bob) == []

        pause.gate.set()  # the wait is over: the round asks from where bob stood at resync
        event = await resync_count(bob, 1)
        assert (event.reason, event.cursor, dict(event.rooms)) == ("bus", None, {})
        one = await bob.text("lost")
        assert bob.items.index(event) < bob.items.index(one)
        assert rounds.hellos[hellos]["cursor"] == before.id
        marker = await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert received(bob) == [before.id, during.id, lost.id, marker.id]
        assert rounds.started == started + 1 and pause.delays == [delay]
        assert bob.messenger.cursor == marker.id
    finally:
        await alice.close()
        await bob.close()


class AllRounds:
    """The replay rounds of every connection (patched on the class): the ``hello`` data
    each of ``who``'s rounds sent, and an event per round of theirs that ended."""

    def __init__(self, who: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.who = who
        self.hellos: list[dict[str, Any]] = []
        self.ended = 0
        self._changed = asyncio.Condition()
        real = RealtimeConnection._replay
        rounds = self

        async def replay(rt: RealtimeConnection, ask: Ask) -> None:
            if rt._hello is None or rt._hello.username != rounds.who:
                return await real(rt, ask)

            async def watched(data: dict[str, Any]) -> dict[str, Any]:
                rounds.hellos.append(dict(data))
                return await ask(data)

            try:
                await real(rt, watched)
            finally:
                async with rounds._changed:
                    rounds.ended += 1
                    rounds._changed.notify_all()

        monkeypatch.setattr(RealtimeConnection, "_replay", replay)

    async def wait_ended(self, n: int) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: self.ended >= n)


async def test_a_publish_resync_before_the_first_hello_reply_lowers_nothing(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection without a cursor, in its first ``hello``, gets a ``publish`` resync
    naming a cursor: it has none to lower, and after the reply it replays no history."""
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice = await inbox(alice_c)
    flaky = FlakyBus(served(live).state.ctx.bus, monkeypatch)
    held = HeldReplay("bob", monkeypatch)
    rounds = AllRounds("bob", monkeypatch)
    found: list[int | None] = []
    resynced = asyncio.Event()
    real = RealtimeConnection._resync

    def watched(rt: RealtimeConnection, event: ResyncEvent | None) -> None:
        if rt._hello is not None and rt._hello.username == "bob":
            found.append(rt.cursor)
            resynced.set()
        real(rt, event)

    monkeypatch.setattr(RealtimeConnection, "_resync", watched)
    held.armed = True
    starting = asyncio.create_task(inbox(bob_c))
    bob: Inbox | None = None
    try:
        async with asyncio.timeout(WAIT):
            await held.reached.wait()  # bob's first hello (no cursor) waits on the server
        flaky.fail_dm, flaky.hold_resync = 1, True
        one = await alice.messenger.send("bob", "one")
        flaky.hold_resync = False
        async with asyncio.timeout(RETRY_WAIT):
            await resynced.wait()
        assert found == [None]  # it came before the reply: bob had no cursor

        held.gate.set()
        async with asyncio.timeout(WAIT):
            bob = await starting
        await rounds.wait_ended(2)  # the greeting, then the resync's round
        start = rounds.hellos[0]
        assert "cursor" not in start
        assert rounds.hellos[1]["cursor"] >= one.id  # not lowered to one.id - 1
        [event] = resyncs(bob)
        assert (event.reason, event.cursor) == ("publish", one.id - 1)

        marker = await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert received(bob) == [marker.id]  # "one" is history: not replayed as if live
        assert bob.messenger.connection.replayed == 0
        assert rounds.ended == 2
    finally:
        if bob is None:
            starting.cancel()
            with contextlib.suppress(BaseException):
                bob = await starting
        await alice.close()
        if bob is not None:
            await bob.close()


class Broken:
    """The next replay round of ``rt`` fails with a bug (not a network error) once ``gate``
    opens, while it replays (its ``hello`` is never sent); ``reached`` when it began. Also
    ``dm_read``: set when the reader took a ``dm.message`` frame."""

    def __init__(self, rt: RealtimeConnection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = True
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()
        self.dm_read = asyncio.Event()
        self._replay = rt._replay
        self._accept = rt._accept
        monkeypatch.setattr(rt, "_replay", self.replay)
        monkeypatch.setattr(rt, "_accept", self.accept)

    async def replay(self, ask: Ask) -> None:
        if not self.armed:
            return await self._replay(ask)
        self.armed = False

        async def broken(data: dict[str, Any]) -> dict[str, Any]:
            self.reached.set()
            await self.gate.wait()
            raise RuntimeError("a bug in the round (test)")

        return await self._replay(broken)

    def accept(self, raw: str | bytes) -> None:
        self._accept(raw)
        if '"dm.message"' in (raw if isinstance(raw, str) else raw.decode()):
            self.dm_read.set()


async def test_a_bug_in_a_resync_round_drops_the_socket_and_the_reconnect_resumes(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, _, rounds = await pair(live, monkeypatch)
    rt = bob.messenger.connection
    try:
        first = await alice.messenger.send("bob", "first")
        await bob.text("first")
        broken = Broken(rt, monkeypatch)
        reconnects = rt.reconnects

        overflow(live)
        async with asyncio.timeout(WAIT):
            await broken.reached.wait()  # the round replays: live messages are held
        broken.dm_read.clear()
        live_one = await alice.messenger.send("bob", "live")
        async with asyncio.timeout(WAIT):
            await broken.dm_read.wait()
        assert received(bob) == [first.id]

        broken.gate.set()  # the bug: the socket is dropped, the reconnect hands "live" on
        await bob.text("live")
        assert rt.reconnects == reconnects + 1
        marker = await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert received(bob) == [first.id, live_one.id, marker.id]
        assert rt.cursor == marker.id and rounds.most == 1
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
    told = Told(bob.messenger.connection, monkeypatch)
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
        # and another bus loss; the reader takes them, no second round begins (and they
        # are handed on as the next one starts)
        flaky.hold_resync = False
        event = await told.count(2, RETRY_WAIT)
        assert event is not None and (event.reason, event.cursor) == ("publish", a.id - 1)
        overflow(live)
        await told.count(3)
        assert rounds.started == started + 1 and len(resyncs(bob)) == 1

        held.gate.set()  # the page (c) ends the round; one more round, from a's cursor
        got = await bob.text("a")
        assert resyncs(bob) == told.events
        assert bob.items.index(resyncs(bob)[2]) < bob.items.index(got)
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


class _Draws:
    """A ``random.Random`` stand-in: what ``uniform`` was asked, answering ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.asked: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.asked.append((low, high))
        return self.value


def test_the_wait_before_a_resync_round() -> None:
    assert RESYNC_JITTER == 3.0
    draws = _Draws(1.25)
    rand = cast(Any, draws)
    assert resync_delay("bus", RESYNC_JITTER, rand) == 1.25
    assert resync_delay("something new", RESYNC_JITTER, rand) == 1.25
    assert resync_delay(None, RESYNC_JITTER, rand) == 1.25  # a malformed one
    assert draws.asked == [(0.0, 3.0)] * 3
    assert resync_delay("publish", RESYNC_JITTER, rand) == 0.0
    assert resync_delay("bus", 0.0, rand) == 0.0
    assert len(draws.asked) == 3


def test_a_resync_lowers_the_cursors_it_names_and_never_invents_one() -> None:
    assert lowered(None, 5, None) is None
    assert lowered(20, None, 10) == 20
    assert lowered(20, 15, 10) == 15
    assert lowered(20, 3, 10) == 10  # never below where the connection started

    fresh = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws")
    fresh._accept(_frame({"reason": "publish", "cursor": 5, "rooms": {}}))
    fresh._accept(_frame({"reason": "bus", "cursor": None, "rooms": {}}))
    assert fresh.cursor is None and fresh.room_cursors is None
    assert fresh._lower_to is None  # resolved as it came: no cursor held, nothing to lower
    assert _queued(fresh) == []  # handed on as their round starts
    assert [type(e) for e in fresh._resync_events] == [ResyncEvent, ResyncEvent]
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
    event = rt._resync_events[0]
    assert isinstance(event, ResyncEvent)
    assert (event.reason, event.cursor, dict(event.rooms)) == ("publish", 25, {1: 45, 3: 7})

    # bus: the lowering is the cursors held as it came; live messages before the round
    # move them on, and the round starts from where they were
    bus = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws", cursor=10)
    bus._rooms, bus._room_origin = {1: 50}, {1: 40}
    bus._resumed({"cursor": 30, "more": False})
    bus._accept(_frame({"reason": "bus", "cursor": None, "rooms": {}}))
    bus._accept(_dm(35))
    bus._rooms[1] = 55
    assert bus.cursor == 35
    bus._lower()
    assert bus.cursor == 30 and bus.room_cursors == {1: 50}

    # a malformed resync is passed on untyped, and still resumes (from the own cursors)
    odd = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws", cursor=10)
    odd._accept(_frame({"reason": 1}))
    [untyped] = odd._resync_events
    assert type(untyped) is Event and untyped.type == "resync"
    assert odd._resync_wanted.is_set() and odd.cursor == 10


# --- a hello the server cannot answer now ------------------------------------------------


async def test_a_hello_refused_for_now_reconnects_instead_of_ending(
    live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``unavailable`` (the server's bus is down) to the ``hello`` of a reconnect says "not
    now", not "never": the connection reconnects again and resumes, nothing missed."""
    alice, bob, _, _ = await pair(live, monkeypatch)
    rt = bob.messenger.connection
    real = dm_service.replay
    refused: list[int] = []

    async def busy(*args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            raise BusUnavailable("Redis bus at test: injected outage")
        return await real(*args, **kwargs)

    try:
        before = await alice.messenger.send("bob", "before")
        await bob.text("before")
        monkeypatch.setattr(dm_service, "replay", busy)
        ws = rt._ws
        assert ws is not None
        ws.transport.abort()  # the network drops bob's socket
        missed = await alice.messenger.send("bob", "while away")
        await bob.text("while away")
        assert refused == [1] and rt.reconnects == 2  # refused once, then resumed
        assert received(bob) == [before.id, missed.id]
    finally:
        await alice.close()
        await bob.close()
