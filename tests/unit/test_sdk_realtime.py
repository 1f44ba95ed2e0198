"""The SDK's realtime connection and buddy calls against a real uvicorn server, in process.

httpx's ASGITransport cannot carry WebSockets, so each test starts uvicorn on a free
loopback port as an asyncio task (``LiveApp``) over a temporary SQLite data dir; the restart
test stops it and starts a new one on the same port and data dir. The server's heartbeat is
1 s, so every socket here also proves that the SDK's pings keep it open (the server closes a
socket silent for three periods).

No test sleeps to let something happen: each waits for the event it expects, under a
timeout. Where a test shows that an event did *not* arrive, it waits for a later event that
travels the same way (the per-user bus channel is first in, first out) and checks what came
before it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import uvicorn

from echochat.app import create_app
from echochat.client import (
    AuthError,
    BlockedUser,
    Buddy,
    BuddyRequestEvent,
    BuddyUpdateEvent,
    ConflictError,
    ConnectionLostError,
    DisconnectedError,
    EchoChatClient,
    Event,
    HelloEvent,
    KickedError,
    KickedEvent,
    NetworkError,
    NotFoundError,
    OpError,
    Presence,
    PresenceEvent,
    RealtimeConnection,
    TypingEvent,
)
from echochat.client._events import parse_event
from echochat.client._realtime import backoff_delay, websocket_url
from echochat.config import ResolvedSettings
from tests.conftest import free_port

PASSWORD = "violet-kettle-harbour-42"
WAIT = 5.0  # seconds any one expected event may take (they take milliseconds)
E = TypeVar("E", bound=Event)


class LiveApp:
    """``create_app`` served by uvicorn on 127.0.0.1:<port>, as a task of the test's loop."""

    def __init__(self, settings: ResolvedSettings) -> None:
        self.settings = settings
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.settings.settings.public_url

    async def start(self) -> None:
        s = self.settings.settings
        config = uvicorn.Config(
            create_app(s),
            host="127.0.0.1",
            port=s.port,
            log_level="warning",
            log_config=None,
            ws_max_size=s.max_frame_bytes,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(15):
            while not self.server.started:  # a bounded poll of uvicorn's own flag
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is None or self.task is None:
            return
        self.server.should_exit = True
        async with asyncio.timeout(15):
            await self.task
        self.server = self.task = None


@pytest.fixture
async def live(make_settings: Callable[..., ResolvedSettings]) -> AsyncIterator[LiveApp]:
    app = LiveApp(make_settings(port=free_port(), ws_heartbeat=1))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@dataclass
class Stream:
    """One consumer of a connection's events, with waits that skip what they do not need."""

    rt: RealtimeConnection
    seen: list[Event] = field(default_factory=list)
    skipped: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._it = self.rt.events()

    async def next(self, timeout: float = WAIT) -> Event:
        async with asyncio.timeout(timeout):
            event = await anext(self._it)
        self.seen.append(event)
        return event

    async def expect(self, kind: type[E], timeout: float = WAIT, **fields: Any) -> E:
        """The next event of class ``kind`` whose attributes equal ``fields``; others that
        arrive first are skipped (and kept in ``skipped``)."""
        self.skipped = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if isinstance(event, kind) and all(
                    getattr(event, k) == v for k, v in fields.items()
                ):
                    return event
                self.skipped.append(event)


async def user(live: LiveApp, name: str) -> EchoChatClient:
    client = EchoChatClient(live.url)
    await client.register(name, PASSWORD)
    return client


async def make_buddies(asker: EchoChatClient, other: EchoChatClient) -> None:
    assert other.user is not None
    request = await asker.request_buddy(other.user.username)
    await other.accept_request(request.id)


# --- the connection ---------------------------------------------------------------------


async def test_connect_says_hello_and_maps_errors(live: LiveApp) -> None:
    async with await user(live, "alice") as alice:
        async with await alice.connect() as rt:
            hello = await Stream(rt).expect(HelloEvent)
            assert hello.username == "alice"
            assert hello.session_id == (await alice.me()).session_id
            assert hello.heartbeat == 1.0
            assert rt.hello is hello and rt.connected
            assert "'alice' connected" in repr(rt)
            assert await rt.ping() >= 0

            with pytest.raises(OpError) as unknown:
                await rt.request("no.such.op", {"x": 1})
            assert (unknown.value.code, unknown.value.op) == ("unknown_op", "no.such.op")
            assert str(unknown.value) == "unknown_op (op 'no.such.op'): unknown op 'no.such.op'"
            with pytest.raises(OpError) as bad_field:
                await rt.request("presence.set", {"state": "sleepy"})
            assert bad_field.value.code == "invalid_input"
            with pytest.raises(OpError) as stranger:
                await rt.typing("nobody")
            assert stranger.value.code == "not_a_buddy"

            assert await rt.set_presence("busy", "  in a meeting ") == Presence(
                "busy", "in a meeting"
            )
            assert rt.connected  # errors leave the socket open
        assert rt.closed
        # ends quietly (closed by us), after the connect's offline.summary and the echo of
        # the state we chose
        assert [e.type async for e in rt.events()] == ["offline.summary", "presence.self"]
        with pytest.raises(DisconnectedError) as after:
            await rt.ping()
        assert after.value.code == "closed"


async def test_heartbeat_keeps_an_idle_socket_open(live: LiveApp) -> None:
    """The server closes a socket silent for three heartbeat periods (3 s here); the SDK
    pings at the period from hello, so no close and no reconnect (a new hello) happens."""
    async with await user(live, "kim") as kim, await kim.connect() as rt:
        stream = Stream(rt)
        await stream.expect(HelloEvent)
        with pytest.raises(TimeoutError):
            await stream.expect(HelloEvent, timeout=3.6)
        assert rt.connected and rt.reconnects == 0


async def test_buddies_presence_typing_stealth_block_and_logout(live: LiveApp) -> None:
    alice, bob, carol = [await user(live, n) for n in ("alice", "bob", "carol")]
    bob_s, carol_s = Stream(await bob.connect()), Stream(await carol.connect())
    first = Stream(await alice.connect())

    # alice asks bob; bob's socket gets the request, accepting tells both sides
    sent = await alice.request_buddy("bob", "hi bob", group="Friends")
    got = await bob_s.expect(BuddyRequestEvent)
    assert got.request == sent
    assert (sent.from_username, sent.to_username, sent.message) == ("alice", "bob", "hi bob")
    assert (await bob.buddies()).incoming == (sent,)
    assert (await alice.buddies()).outgoing == (sent,)
    accepted = await bob.accept_request(sent.id, group="Work")
    assert (accepted.username, accepted.group, accepted.state) == ("alice", "Work", "online")
    added = await bob_s.expect(BuddyUpdateEvent, action="added", username="alice")
    assert added.buddy == accepted and added.request_id == sent.id
    mine = await first.expect(BuddyUpdateEvent, action="added", username="bob")
    assert mine.buddy is not None and mine.buddy.group == "Friends"
    await make_buddies(carol, alice)
    await carol_s.expect(BuddyUpdateEvent, action="added", username="alice")

    # alice leaves, then connects again: bob sees her go and come
    await first.rt.close()
    await bob_s.expect(PresenceEvent, username="alice", state="offline")
    alice_s = Stream(await alice.connect())
    await bob_s.expect(PresenceEvent, username="alice", state="online")

    # busy with a status, typing, invisible
    await alice_s.rt.set_presence("busy", "in a meeting")
    await bob_s.expect(PresenceEvent, username="alice", state="busy", status="in a meeting")
    await alice_s.rt.typing("bob")
    await bob_s.expect(TypingEvent, username="alice", active=True)
    await alice_s.rt.typing("bob", active=False)
    await bob_s.expect(TypingEvent, username="alice", active=False)
    await alice_s.rt.set_presence("invisible")
    seen = await bob_s.expect(PresenceEvent, username="alice")
    assert (seen.state, seen.status, seen.online) == ("offline", "", False)
    assert (await bob.buddies()).get("alice") == Buddy(
        "alice", "alice", "Work", False, "offline", ""
    )
    await alice_s.rt.set_presence("online", "")
    await bob_s.expect(PresenceEvent, username="alice", state="online")

    # stealth towards bob: bob sees her offline, carol sees her as she is
    changed = await alice.update_buddy("bob", stealth=True)
    assert changed.stealth
    await alice_s.expect(BuddyUpdateEvent, action="changed", username="bob")
    await bob_s.expect(PresenceEvent, username="alice", state="offline")
    await alice_s.rt.set_presence("away", "lunch")
    await carol_s.expect(PresenceEvent, username="alice", state="away", status="lunch")
    bob_view = (await bob.buddies()).get("alice")
    assert bob_view is not None and bob_view.state == "offline"
    await alice.update_buddy("bob", stealth=False)
    # bob's next news of alice is her coming out of stealth: nothing leaked before it
    back = await bob_s.expect(PresenceEvent, username="alice")
    assert (back.state, back.status) == ("away", "lunch")

    # block: bob loses alice and hears nothing more of her presence
    await alice.block("bob")
    await bob_s.expect(BuddyUpdateEvent, action="removed", username="alice")
    await alice_s.expect(BuddyUpdateEvent, action="removed", username="bob")
    await alice_s.rt.set_presence("busy", "after the block")
    await carol_s.expect(PresenceEvent, username="alice", state="busy", status="after the block")
    hidden = await bob.request_buddy("alice")  # looks sent; reaches only bob's own socket
    await bob_s.expect(BuddyRequestEvent)
    assert hidden.to_username == "alice"
    assert not [e for e in bob_s.skipped if isinstance(e, PresenceEvent)]
    assert (await alice.buddies()).incoming == ()
    assert await alice.blocks() == [BlockedUser("bob", "bob")]
    with pytest.raises(ConflictError) as blocked:
        await alice.request_buddy("bob")
    assert blocked.value.code == "blocked"

    # signing out kicks the session's socket; the stream ends saying why, carol sees her go
    await alice.logout()
    kicked = await alice_s.expect(KickedEvent)
    assert kicked.reason == "logged_out"
    with pytest.raises(KickedError) as ended:
        await alice_s.next()
    assert ended.value.code == "logged_out" and ended.value.close_code == 1008
    assert alice_s.rt.closed and alice_s.rt.reconnects == 0
    await carol_s.expect(PresenceEvent, username="alice", state="offline")

    for client in (alice, bob, carol):
        await client.aclose()
    for stream in (bob_s, carol_s):
        await stream.rt.close()


async def test_reconnects_after_the_server_restarts(live: LiveApp) -> None:
    erin, frank = await user(live, "erin"), await user(live, "frank")
    await make_buddies(erin, frank)
    options: dict[str, Any] = {"reconnect_delay": 0.05, "reconnect_max_delay": 0.4}
    erin_s, frank_s = Stream(await erin.connect(**options)), Stream(await frank.connect(**options))
    await erin_s.expect(HelloEvent)
    await frank_s.expect(HelloEvent)
    await erin_s.rt.set_presence("busy", "before")
    await frank_s.expect(PresenceEvent, username="erin", state="busy", status="before")

    await live.stop()
    assert not erin_s.rt.closed
    waiting = asyncio.create_task(erin_s.rt.ping())  # sent once the connection is back
    await live.start()  # same port, same data dir: the sessions are still valid

    hello = await erin_s.expect(HelloEvent, timeout=10)
    await frank_s.expect(HelloEvent, timeout=10)
    assert hello.username == "erin"
    assert await asyncio.wait_for(waiting, WAIT) >= 0
    assert erin_s.rt.connected and erin_s.rt.reconnects == 1
    # the SDK restored erin's presence on the new socket before it counted as connected
    seen = (await frank.buddies()).get("erin")
    assert seen is not None and (seen.state, seen.status) == ("busy", "before")
    await erin_s.rt.set_presence("online", "after")
    await frank_s.expect(PresenceEvent, username="erin", state="online", status="after")

    for stream in (erin_s, frank_s):
        await stream.rt.close()
    for client in (erin, frank):
        await client.aclose()


async def test_policy_close_ends_the_stream_without_reconnecting(live: LiveApp) -> None:
    async with await user(live, "gina") as gina, await gina.connect() as rt:
        stream = Stream(rt)
        await stream.expect(HelloEvent)
        summary = await stream.next()  # every connect: hello, then offline.summary
        assert summary.type == "offline.summary"
        refused = 0
        for _ in range(40):  # the server forgives 20 bad frames, then closes (1008)
            try:
                await rt.request("garbage")
            except OpError:
                refused += 1
            except (ConnectionLostError, DisconnectedError):
                break
        assert refused > 20
        with pytest.raises(DisconnectedError) as ended:
            await stream.expect(Event)
        assert ended.value.code == "policy_violation" and ended.value.close_code == 1008
        assert "too_many_errors" in ended.value.message
        assert rt.closed and rt.reconnects == 0
        with pytest.raises(DisconnectedError):
            await rt.ping()


async def test_connect_failures_are_raised_at_once(live: LiveApp) -> None:
    async with EchoChatClient(live.url) as nobody:
        with pytest.raises(AuthError) as signed_out:
            await nobody.connect()
        assert signed_out.value.code == "not_authenticated"
    async with await user(live, "hank") as laptop, EchoChatClient(live.url) as phone:
        await phone.login("hank", PASSWORD)
        await laptop.revoke_session(next(s.id for s in await laptop.sessions() if not s.current))
        with pytest.raises(AuthError) as revoked:  # the upgrade's 401 body, parsed
            await phone.connect()
        assert (revoked.value.status, revoked.value.code) == (401, "session_revoked")
    nowhere = RealtimeConnection(FakeTokens(), f"ws://127.0.0.1:{free_port()}/ws")
    with pytest.raises(NetworkError) as refused:  # nothing listens there
        await nowhere.open()
    assert refused.value.code == "network_error"


class FakeTokens:
    async def valid_access_token(self) -> str:
        return "not-a-token"

    async def refresh(self) -> None:
        raise AssertionError("not needed")


async def test_buddy_groups_requests_and_blocks_over_rest(live: LiveApp) -> None:
    async with await user(live, "ivy") as ivy, await user(live, "jack") as jack:
        assert "Family" in await ivy.create_group("Family")
        groups = await ivy.rename_group("Family", "Kin")
        assert "Kin" in groups and "Family" not in groups

        declined = await ivy.request_buddy("jack", "hello")
        await jack.decline_request(declined.id)
        assert (await ivy.buddies()).outgoing == ()
        cancelled = await ivy.request_buddy("jack")
        await ivy.cancel_request(cancelled.id)
        assert (await jack.buddies()).incoming == ()

        request = await ivy.request_buddy("jack", group="Kin")
        await jack.accept_request(request.id)
        listed = await ivy.buddies()
        jack_entry = listed.get("jack")
        assert jack_entry is not None and jack_entry.group == "Kin"
        assert listed.in_group("Kin") == (jack_entry,)
        moved = await ivy.update_buddy("jack", group="Other")
        assert moved.group == "Other" and "Other" in (await ivy.buddies()).groups
        remaining = await ivy.delete_group("Other")
        assert "Other" not in remaining
        after = (await ivy.buddies()).get("jack")
        assert after is not None and after.group == remaining[0]

        await ivy.remove_buddy("jack")
        assert (await ivy.buddies()).get("jack") is None
        assert (await jack.buddies()).get("ivy") is None
        await ivy.block("jack")
        assert [b.username for b in await ivy.blocks()] == ["jack"]
        await ivy.unblock("jack")
        assert await ivy.blocks() == []

        with pytest.raises(NotFoundError) as nobody:
            await ivy.request_buddy("nobody-here")
        assert nobody.value.code == "user_not_found"
        with pytest.raises(NotFoundError) as not_blocked:
            await ivy.unblock("jack")
        assert not_blocked.value.code == "not_blocked"
        with pytest.raises(NotFoundError) as not_buddy:
            await ivy.remove_buddy("jack")
        assert not_buddy.value.code == "not_a_buddy"


# --- without a server -------------------------------------------------------------------


def test_events_are_typed_and_unknown_ones_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    typed = parse_event("presence", {"username": "a", "state": "busy", "status": "x"})
    assert isinstance(typed, PresenceEvent) and typed.state == "busy" and typed.online
    assert typed.data == {"username": "a", "state": "busy", "status": "x"}
    assert "data=" not in repr(typed)
    unknown = parse_event("dm.message", {"id": 7})
    assert type(unknown) is Event and unknown.type == "dm.message" and unknown.data == {"id": 7}
    assert repr(unknown) == "Event(type='dm.message', data={'id': 7})"
    with caplog.at_level(logging.WARNING, logger="echochat.client"):
        odd = parse_event("presence", {"username": "a", "state": "sleeping", "status": ""})
    assert type(odd) is Event and "unexpected shape" in caplog.text
    update = parse_event("buddy.update", {"action": "removed", "username": "b"})
    assert isinstance(update, BuddyUpdateEvent) and update.buddy is None
    assert update.request_id is None
    kicked = parse_event("kicked", {"reason": "banned", "message": "bye"})
    assert isinstance(kicked, KickedEvent) and kicked.reason == "banned"


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rand = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (60, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, 30.0, rand) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered


def test_websocket_url() -> None:
    assert websocket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/ws"
    assert websocket_url("https://example.org/chat/") == "wss://example.org/chat/ws"
    with pytest.raises(ValueError, match="http"):
        websocket_url("ftp://example.org")


def test_connection_lost_is_a_network_error() -> None:
    error = ConnectionLostError(0, "connection_lost", "gone")
    assert isinstance(error, NetworkError) and error.status == 0
    assert isinstance(KickedError("banned", "bye"), DisconnectedError)
