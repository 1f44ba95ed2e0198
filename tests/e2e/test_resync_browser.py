"""The `resync` event in a real browser against a live server (docs/protocol.md, "Lost
wake-ups"): the page lowers its cursors as told, resumes with `hello` on the open socket
(one replay at a time, a second `resync` coalesced into one more round), shows every message
once and in order, and refreshes what is never replayed. First with a `resync` injected into
Bob's socket after a DM's wake-up was dropped on its way to him; then for real, with the
server's Redis pub/sub connection killed while Alice writes. Also the cursor arithmetic on
its own, in Chromium, and the review's edge cases: a "bus" resync waits (jitter) and resumes
from the cursor held when it came, a resync during a fresh page's first `hello` lowers no
cursor it did not have, and a `hello` failing for another reason than `invalid_input`
keeps the cursor for the reconnect.

Bob's socket goes through a tap (Playwright's WebSocket routing) that records every frame
both ways; it can also hold back frames to the page, put frames ahead of one, and answer
the page's ops itself. Screenshots go to test-output/<test id>/.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Request, WebSocketRoute, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import Cast
from tests.e2e.conftest import SHARED_LIMITS, NewContext, Watch
from tests.e2e.pm import Pm
from tests.e2e.test_dm_browser import buddies_with_keys
from tests.integration.test_resync_redis import kill_pubsub

pytestmark = pytest.mark.asyncio(loop_scope="session")

WS = re.compile(r"/ws(\?.*)?$")
Frame = dict[str, Any]
# Who sent a frame through the tap: the page, the server, or the test (injected).
Sent = tuple[str, Frame]


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    return SHARED_LIMITS


class Tap:
    """A page's socket routed through the test: every frame both ways is recorded in order;
    frames to the page may be dropped (`drop`), have frames injected ahead of them
    (`ahead`) or be injected (:meth:`inject`); the page's frames may be answered by the
    test instead of the server (`answer`)."""

    def __init__(self) -> None:
        self.frames: list[Sent] = []
        self.dropped: list[Frame] = []
        self.drop: Callable[[Frame], bool] = lambda _frame: False
        self.ahead: Callable[[Frame], list[Frame]] = lambda _frame: []
        self.answer: Callable[[Frame], Frame | None] = lambda _frame: None
        self.page_side: WebSocketRoute | None = None
        self._news = asyncio.Event()

    async def attach(self, page: Page, url: str | None = None) -> None:
        """Route the page's sockets through the tap and connect again (at ``url``)."""
        await page.route_web_socket(WS, self._route)
        if url is None:
            await page.reload()
        else:
            await page.goto(url)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.page_side = ws

        def to_server(message: str | bytes) -> None:
            frame = self._note("page", message)
            reply = self.answer(frame)
            if reply is not None:
                self.inject(reply)
                return
            server.send(message)

        def to_page(message: str | bytes) -> None:
            frame = self._note("server", message)
            if self.drop(frame):
                self.dropped.append(frame)
                return
            for first in self.ahead(frame):
                self.inject(first)
            ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)

    def _note(self, who: str, message: str | bytes) -> Frame:
        frame: Frame = json.loads(message)
        self.frames.append((who, frame))
        self._news.set()
        return frame

    def inject(self, frame: Frame) -> None:
        assert self.page_side is not None, "no socket routed yet"
        self.page_side.send(json.dumps(frame))
        self._note("test", json.dumps(frame))

    async def wait_for(self, what: str, found: Callable[[], bool], timeout: float = 10) -> None:
        """Until ``found()`` holds, checked after each frame (bounded)."""
        try:
            async with asyncio.timeout(timeout):
                while not found():
                    self._news.clear()
                    await self._news.wait()
        except TimeoutError:
            last = "\n  ".join(f"{who}: {frame}" for who, frame in self.frames[-20:])
            raise AssertionError(f"no {what} in {timeout} s; the last frames:\n  {last}") from None


def is_event(frame: Frame, kind: str) -> bool:
    return frame.get("op") == "ev" and frame.get("type") == kind


def resync_frame(cursor: int | None, reason: str = "publish") -> Frame:
    data: Frame = {"reason": reason, "cursor": cursor, "rooms": {}}
    return {"op": "ev", "type": "resync", "data": data}


def hello_cursors(frames: list[Sent]) -> list[int | None] | None:
    """The cursors of the `hello` ops among ``frames``, once each was answered (None while
    one is waiting); fails if one was sent while another was waiting: two replays at once.
    Only the test (`Tap.answer`) refuses one."""
    waiting: str | None = None
    cursors: list[int | None] = []
    for who, frame in frames:
        if who == "page" and frame.get("op") == "hello":
            assert waiting is None, f"two replays at once: {frames}"
            waiting = str(frame["ref"])
            cursors.append(frame["data"].get("cursor"))
        elif waiting is not None and who != "page" and frame.get("ref") == waiting:
            assert frame.get("op") == "ok" or who == "test", frame
            waiting = None
    return None if waiting is not None else cursors


def dm_ids(frames: list[Sent]) -> list[int]:
    """The ids of the `dm.message` events the server sent among ``frames``."""
    return [
        int(frame["data"]["id"])
        for who, frame in frames
        if who == "server" and is_event(frame, "dm.message")
    ]


def refetch(path: str) -> Callable[[Request], bool]:
    return lambda request: request.method == "GET" and request.url.endswith(f"/api/v1{path}")


async def tapped_buddies(
    new_context: NewContext, watch: Watch, server: LiveServer, people: Cast
) -> tuple[Pm, Pm, Tap]:
    """Alice and Bob on /chat with keys; Bob's socket through a tap; Alice's PM window open."""
    alice, bob = await buddies_with_keys(new_context, watch, server, people)
    tap = Tap()
    await tap.attach(bob.page)
    await bob.chat.connected()
    await alice.open_from_list(bob.name)
    return alice, bob, tap


async def lose_a_wake_up(alice: Pm, bob: Pm, tap: Tap) -> list[int]:
    """Alice sends "one", "two", "three": the wake-up of "two" never reaches Bob (as when
    the server could not publish it), "three" does, so Bob's cursor is past the message he
    lacks. The three ids."""
    lines = bob.messages(alice.name).locator(".pm-line__text")
    await alice.send(bob.name, "one")
    await expect(lines).to_have_text(["one"])
    tap.drop = lambda frame: is_event(frame, "dm.message")
    await alice.send(bob.name, "two")
    await tap.wait_for("dropped wake-up", lambda: bool(tap.dropped))
    tap.drop = lambda _frame: False
    await alice.send(bob.name, "three")
    await expect(lines).to_have_text(["one", "three"])
    return sorted(dm_ids(tap.frames))


async def still_live(alice: Pm, bob: Pm, shown: list[str], text: str) -> None:
    """Afterwards: a live DM still comes to Bob's window (below the ``shown`` lines), Bob is
    online, and neither page had a problem."""
    await alice.send(bob.name, text)
    await expect(bob.messages(alice.name).locator(".pm-line__text")).to_have_text([*shown, text])
    await bob.chat.connected()
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


# The cursor arithmetic on its own (net/socket.js), on a socket never connected: resyncs
# before a replay gather the lowest cursors; applied, they only lower what the socket has.
LOWERING = """
async () => {
  const { Socket } = await import("/static/js/net/socket.js");
  const tracked = new Socket();
  tracked.cursor = 50;
  tracked.roomCursors = new Map([[1, 10], [2, 20]]);
  await tracked.onResync(null, { reason: "publish", cursor: 40, rooms: { 1: 5, 3: 1 } });
  await tracked.onResync(null, { reason: "publish", cursor: 45, rooms: { 1: 7, 2: 30 } });
  await tracked.onResync(null, { reason: "publish", cursor: "9", rooms: { x: 1, 2: -1 } });
  await tracked.onResync(null, { reason: "bus", cursor: null, rooms: {} });
  tracked.lowerCursors();
  // A fresh page: what a resync names is settled against the cursors it has when it
  // comes (none), not those the first `ok` gives it later.
  const fresh = new Socket();
  await fresh.onResync(null, { reason: "publish", cursor: 10, rooms: { 4: 2 } });
  fresh.cursor = 50;
  fresh.roomCursors.set(4, 9);
  fresh.lowerCursors();
  // "bus": my own cursors when it comes, whatever moves them up before the round.
  const bus = new Socket();
  bus.cursor = 30;
  bus.roomCursors = new Map([[1, 10]]);
  await bus.onResync(null, { reason: "bus", cursor: null, rooms: {} });
  bus.cursor = 35;
  bus.roomCursors.set(1, 12);
  bus.roomCursors.set(2, 7);
  bus.lowerCursors();
  return { cursor: tracked.cursor, rooms: [...tracked.roomCursors], again: tracked.lowerTo,
           fresh: [fresh.cursor, [...fresh.roomCursors]],
           bus: [bus.cursor, [...bus.roomCursors]] };
}
"""

# The wait of a "bus" resync: uniform in [0, 3 s), fixed only by the page's ?resync_delay=.
DELAYS = """
async () => {
  const s = await import("/static/js/net/socket.js");
  const random = Array.from({ length: 200 }, () => new s.Socket().resyncDelay());
  return { span: s.RESYNC_JITTER_MS, low: s.resyncDelay(() => 0),
           high: s.resyncDelay(() => 0.9999), random: random.every((ms) => ms >= 0 && ms < 3000),
           spread: new Set(random).size > 100,
           query: ["", "?resync_delay=250", "?resync_delay=0", "?resync_delay=-1",
                   "?resync_delay=x", "?resync_delay=", "?resync_delay=1e9"]
             .map((q) => s.resyncDelayFrom(q)?.() ?? null) };
}
"""


async def test_resyncs_only_lower_the_cursors_the_socket_has(
    shared_server: LiveServer, page: Page
) -> None:
    await page.goto(shared_server.url + "/login")
    out: dict[str, Any] = await page.evaluate(LOWERING)
    assert out == {
        "cursor": 40,  # the lowest asked for
        "rooms": [[1, 5], [2, 20]],  # room 3 is not tracked; 2 asked higher, then nonsense
        "again": None,  # applied once
        "fresh": [50, [[4, 9]]],  # no cursors when it came: none lowered later
        "bus": [30, [[1, 10], [2, 7]]],  # as they were when it came; room 2 came later
    }
    delays: dict[str, Any] = await page.evaluate(DELAYS)
    assert delays == {
        "span": 3000,
        "low": 0,
        "high": 2999,
        "random": True,
        "spread": True,
        "query": [None, 250, 0, None, None, None, None],
    }


async def test_a_resync_lowers_the_cursor_and_replays_each_message_once(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob, tap = await tapped_buddies(new_context, watch, shared_server, people)
    lines = bob.messages(alice.name).locator(".pm-line__text")
    one, two, _three = await lose_a_wake_up(alice, bob, tap)

    # Two resyncs back to back: the second comes during the first's replay, so it lowers
    # the cursor once that round is over and runs one more; never two replays at once.
    mark = len(tap.frames)
    with_refetch = bob.page.expect_request(refetch("/conversations"))
    with_buddies = bob.page.expect_request(refetch("/buddies"))
    async with with_refetch, with_buddies:
        tap.inject(resync_frame(two - 1))
        tap.inject(resync_frame(one - 1))
        await tap.wait_for(
            "hello from the lowered cursors",
            lambda: hello_cursors(tap.frames[mark:]) == [two - 1, one - 1],
        )
    await expect(lines).to_have_text(["one", "two", "three"])
    await expect(bob.notes(alice.name)).to_have_count(0)
    await bob.chat.connected()
    assert hello_cursors(tap.frames[mark:]) == [two - 1, one - 1]
    after = [frame.get("op") for who, frame in tap.frames[mark:] if who == "page"]
    # A resync is no reconnect: my presence is not set again, nothing is sent again.
    assert "presence.set" not in after and "dm.send" not in after, after

    # Live messages still move the cursor afterwards.
    await alice.send(bob.name, "four")
    await expect(lines).to_have_text(["one", "two", "three", "four"])
    await bob.window(alice.name).screenshot(path=output_dir / "pm-after-resync.png")
    await bob.page.screenshot(path=output_dir / "bob-after-resync.png")
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


async def test_a_killed_bus_connection_resyncs_the_page(
    live_server_factory: Callable[..., LiveServer],
    redis_server: str,
    redis_prefix: str,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
) -> None:
    """A real lost wake-up: the server's Redis pub/sub connection is killed as Alice writes;
    once it is back, Bob's page gets `resync` (reason "bus"), resumes from its own cursor and
    shows the DM sent around the kill exactly once, whether its wake-up was lost or not."""
    env = {"ECHOCHAT_REDIS_URL": redis_server, "ECHOCHAT_REDIS_PREFIX": redis_prefix}
    alice, bob, tap = await tapped_buddies(new_context, watch, live_server_factory(env), people)
    lines = bob.messages(alice.name).locator(".pm-line__text")
    await alice.send(bob.name, "before")
    await expect(lines).to_have_text(["before"])

    mark = len(tap.frames)
    await kill_pubsub(redis_server, redis_prefix)
    await alice.send(bob.name, "around the kill")

    def resync_at() -> int | None:
        return next(
            (
                mark + n
                for n, (who, frame) in enumerate(tap.frames[mark:])
                if who == "server" and is_event(frame, "resync")
            ),
            None,
        )

    await tap.wait_for("resync", lambda: resync_at() is not None)
    at = resync_at()
    assert at is not None
    assert tap.frames[at][1]["data"] == {"reason": "bus", "cursor": None, "rooms": {}}
    await tap.wait_for("hello after the resync", lambda: bool(hello_cursors(tap.frames[at:])))
    # From the cursor the page had: the newest DM it was handed before the resync.
    had = max(
        int(frame["data"]["id"])
        for who, frame in tap.frames[:at]
        if who == "server" and is_event(frame, "dm.message")
    )
    assert hello_cursors(tap.frames[at:]) == [had]
    await expect(lines).to_have_text(["before", "around the kill"])
    await still_live(alice, bob, ["before", "around the kill"], "after")


async def test_resyncs_settle_against_the_cursors_held_when_they_come(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch
) -> None:
    """What a resync lowers is settled when it comes. A fresh page gets a "publish" resync
    during its first `hello` (no cursor yet): once the `ok` gave it a cursor, that resync
    must not lower it and replay old history as if it were new (PM windows popping open,
    sounds, unread counts). A "bus" resync (every socket of a process at once) waits (here a
    fixed ?resync_delay=, by default a random 0 .. 3 s) before its replay and resumes from
    the cursor the page had when it came, although a live DM moved it up meanwhile."""
    delay = 600
    alice, bob = await buddies_with_keys(new_context, watch, shared_server, people)
    tap = Tap()
    await tap.attach(bob.page, f"{shared_server.url}/chat?resync_delay={delay}")
    await bob.chat.connected()
    await alice.open_from_list(bob.name)
    window = bob.window(alice.name)
    lines = window.locator(".pm-line__text")
    await alice.send(bob.name, "one")
    await expect(lines).to_have_text(["one"])
    [one] = dm_ids(tap.frames)
    await window.get_by_role("button", name="Close").click()
    await expect(window).to_have_count(0)

    # A fresh page: the resync comes right before the `ok` of its first `hello`.
    mark = len(tap.frames)

    def hellos() -> list[Frame]:
        return [f for who, f in tap.frames[mark:] if who == "page" and f.get("op") == "hello"]

    def first_hello_ok(frame: Frame) -> list[Frame]:
        if frame.get("op") == "ok" and hellos() and frame.get("ref") == hellos()[0]["ref"]:
            tap.ahead = lambda _frame: []
            return [resync_frame(one - 1)]
        return []

    tap.ahead = first_hello_ok
    await bob.page.reload()
    await bob.chat.connected()
    await tap.wait_for("one more round", lambda: len(hello_cursors(tap.frames[mark:]) or []) == 2)
    given = next(
        f["data"]["cursor"]
        for who, f in tap.frames[mark:]
        if who == "server" and f.get("ref") == hellos()[0]["ref"]
    )
    assert given >= one
    assert hello_cursors(tap.frames[mark:]) == [None, given]
    assert dm_ids(tap.frames[mark:]) == []  # no old history replayed
    await expect(window).to_have_count(0)  # nothing popped open

    # A "bus" resync, and "two" (held back) live right behind it, during the wait.
    await bob.open_from_list(alice.name)
    await expect(lines).to_have_text(["one"])
    tap.drop = lambda frame: is_event(frame, "dm.message")
    await alice.send(bob.name, "two")
    await tap.wait_for("the wake-up of two", lambda: bool(tap.dropped))
    tap.drop = lambda _frame: False
    [two] = tap.dropped
    assert two["data"]["id"] > given
    mark = len(tap.frames)
    with_refetch = bob.page.expect_request(refetch("/conversations"))
    async with with_refetch:
        sent = time.monotonic()
        tap.inject(resync_frame(None, "bus"))
        tap.inject(two)
        await expect(lines).to_have_text(["one", "two"])  # live, during the wait
        await tap.wait_for("hello after the wait", lambda: bool(hello_cursors(tap.frames[mark:])))
        waited = time.monotonic() - sent
    assert waited >= delay / 1000, f"the replay began after {waited:.3f} s"
    assert hello_cursors(tap.frames[mark:]) == [given]  # not two's id: nothing skipped
    assert dm_ids(tap.frames[mark:]) == [two["data"]["id"]]  # replayed, shown once
    await expect(lines).to_have_text(["one", "two"])
    await still_live(alice, bob, ["one", "two"], "three")


async def test_a_hello_failing_otherwise_than_refused_keeps_the_cursor(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch
) -> None:
    """Only `invalid_input` means the server does not take the cursor. A `hello` answered with
    another error (here `unavailable`) gives up the connection; the reconnect resumes from the
    same cursor, so the DM whose wake-up was lost still comes."""
    alice, bob, tap = await tapped_buddies(new_context, watch, shared_server, people)
    lines = bob.messages(alice.name).locator(".pm-line__text")
    _one, two, _three = await lose_a_wake_up(alice, bob, tap)

    def unavailable(frame: Frame) -> Frame | None:
        if frame.get("op") != "hello":
            return None
        tap.answer = lambda _frame: None
        error = {"code": "unavailable", "message": "try again later"}
        return {"op": "err", "ref": frame["ref"], "error": error}

    tap.answer = unavailable
    mark = len(tap.frames)
    tap.inject(resync_frame(two - 1))
    await tap.wait_for(
        "the reconnect's hello", lambda: len(hello_cursors(tap.frames[mark:]) or []) == 2
    )
    assert hello_cursors(tap.frames[mark:]) == [two - 1, two - 1]
    assert dm_ids(tap.frames[mark:])[:1] == [two]
    await expect(lines).to_have_text(["one", "two", "three"])
    await still_live(alice, bob, ["one", "two", "three"], "four")
