"""The `resync` event in a real browser against a live server (docs/protocol.md, "Lost
wake-ups"): the page lowers its cursors as told, resumes with `hello` on the open socket
(one replay at a time, a second `resync` coalesced into one more round), shows every message
once and in order, and refreshes what is never replayed. First with a `resync` injected into
Bob's socket after a DM's wake-up was dropped on its way to him; then for real, with the
server's Redis pub/sub connection killed while Alice writes. Also the cursor arithmetic on
its own, in Chromium.

Bob's socket goes through a tap (Playwright's WebSocket routing) that records every frame
both ways. Screenshots go to test-output/<test id>/.
"""

from __future__ import annotations

import asyncio
import json
import re
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
    frames to the page may be dropped (`drop`) and frames injected (:meth:`inject`)."""

    def __init__(self) -> None:
        self.frames: list[Sent] = []
        self.dropped: list[Frame] = []
        self.drop: Callable[[Frame], bool] = lambda _frame: False
        self.page_side: WebSocketRoute | None = None
        self._news = asyncio.Event()

    async def attach(self, page: Page) -> None:
        """Route the page's sockets through the tap and connect again."""
        await page.route_web_socket(WS, self._route)
        await page.reload()

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.page_side = ws

        def to_server(message: str | bytes) -> None:
            self._note("page", message)
            server.send(message)

        def to_page(message: str | bytes) -> None:
            frame = self._note("server", message)
            if self.drop(frame):
                self.dropped.append(frame)
                return
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


def resync_frame(cursor: int | None) -> Frame:
    data: Frame = {"reason": "publish", "cursor": cursor, "rooms": {}}
    return {"op": "ev", "type": "resync", "data": data}


def hello_cursors(frames: list[Sent]) -> list[int | None] | None:
    """The cursors of the `hello` ops among ``frames``, once each was answered (None while
    one is waiting); fails if one was sent while another was waiting: two replays at once."""
    waiting: str | None = None
    cursors: list[int | None] = []
    for who, frame in frames:
        if who == "page" and frame.get("op") == "hello":
            assert waiting is None, f"two replays at once: {frames}"
            waiting = str(frame["ref"])
            cursors.append(frame["data"].get("cursor"))
        elif waiting is not None and who == "server" and frame.get("ref") == waiting:
            assert frame.get("op") == "ok", frame
            waiting = None
    return None if waiting is not None else cursors


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
  const fresh = new Socket();
  await fresh.onResync(null, { reason: "publish", cursor: 10, rooms: { 4: 2 } });
  fresh.lowerCursors();
  return { cursor: tracked.cursor, rooms: [...tracked.roomCursors], again: tracked.lowerTo,
           fresh: [fresh.cursor, [...fresh.roomCursors]] };
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
        "fresh": [None, []],  # no cursor yet: none made up
    }


async def test_a_resync_lowers_the_cursor_and_replays_each_message_once(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob, tap = await tapped_buddies(new_context, watch, shared_server, people)
    lines = bob.messages(alice.name).locator(".pm-line__text")
    await alice.send(bob.name, "one")
    await expect(lines).to_have_text(["one"])
    # The wake-up of "two" never reaches Bob (as when the server could not publish it);
    # "three" does, so Bob's cursor is past the message he lacks.
    tap.drop = lambda frame: is_event(frame, "dm.message")
    await alice.send(bob.name, "two")
    await tap.wait_for("dropped wake-up", lambda: bool(tap.dropped))
    tap.drop = lambda _frame: False
    await alice.send(bob.name, "three")
    await expect(lines).to_have_text(["one", "three"])
    one, two, _three = sorted(
        int(frame["data"]["id"])
        for who, frame in tap.frames
        if who == "server" and is_event(frame, "dm.message")
    )

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
    await alice.send(bob.name, "after")
    await expect(lines).to_have_text(["before", "around the kill", "after"])
    await bob.chat.connected()
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()
