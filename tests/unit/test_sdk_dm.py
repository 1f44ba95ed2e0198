"""The SDK's direct messages (``Messenger``, the DM calls of the client and the connection)
against the real app served by uvicorn on a loopback port, over a temporary SQLite database.

Every wait is for an event, under a timeout. Where a test shows that something did *not*
arrive (a duplicate), it sends a later marker message down the same path and checks what
came before it: messages to one user arrive in id order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from echochat.client import (
    BuzzEvent,
    DirectMessage,
    DmMessageEvent,
    DmReceiptEvent,
    EchoChatClient,
    Event,
    Messenger,
    NotFoundError,
    OfflineSummaryEvent,
    OpError,
    RealtimeConnection,
    UndecryptableMessage,
    e2ee,
)
from echochat.config import ResolvedSettings
from echochat.store import Database
from echochat.store.tables import messages as messages_table
from tests.conftest import free_port
from tests.unit.test_sdk_realtime import PASSWORD, WAIT, LiveApp

ROOT = Path(__file__).resolve().parents[2]
Item = Event | DirectMessage


@pytest.fixture
async def live(make_settings: Callable[..., ResolvedSettings]) -> AsyncIterator[LiveApp]:
    app = LiveApp(make_settings(port=free_port(), ws_heartbeat=5, replay_page=3))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


class Inbox:
    """Collects everything a messenger yields (one consumer task); waits for items."""

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger
        self.items: list[Item] = []
        self.failure: BaseException | None = None
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for item in self.messenger.events():
                async with self._changed:
                    self.items.append(item)
                    self._changed.notify_all()
        except BaseException as exc:
            self.failure = exc
            raise

    async def wait(self, match: Callable[[Item], bool], timeout: float = WAIT) -> Item:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = next((i for i in self.items if match(i)), None)
                if found is not None:
                    return found
                assert self.failure is None, self.failure
                await self._changed.wait()

    async def text(self, text: str) -> DirectMessage:
        item = await self.wait(lambda i: isinstance(i, DirectMessage) and i.text == text)
        assert isinstance(item, DirectMessage)
        return item

    def received(self) -> list[DirectMessage]:
        """Messages from others, in the order they arrived."""
        return [i for i in self.items if isinstance(i, DirectMessage) and not i.outgoing]

    async def close(self) -> None:
        await self.messenger.close()
        await asyncio.wait_for(self._task, WAIT)


async def signed_in(live: LiveApp, name: str) -> EchoChatClient:
    client = EchoChatClient(live.url)
    await client.register(name, PASSWORD)
    return client


async def inbox(client: EchoChatClient, **options: Any) -> Inbox:
    options.setdefault("reconnect_delay", 0.05)
    options.setdefault("reconnect_max_delay", 0.2)
    return Inbox(await Messenger.start(client, **options))


# --- sending and receiving ----------------------------------------------------------------


async def test_send_and_receive_decrypted_with_delivered_receipt(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    try:
        text = "hi bob \N{WAVING HAND SIGN} مرحبا"
        stored = await alice.messenger.send("bob", text)
        assert stored.conv == "dm:alice:bob"
        assert (stored.sender, stored.recipient) == ("alice", "bob")
        assert stored.sender_device == alice.messenger.device_id
        assert stored.envelope["client_id"] == stored.client_id

        got = await bob.text(text)
        assert (got.id, got.sender, got.peer, got.outgoing) == (stored.id, "alice", "alice", False)
        assert got.conv == "dm:alice:bob" and got.client_id == stored.client_id
        assert got.payload == {"type": "text", "text": text} and got.ok
        # the sender's own socket sees it too, decrypted with its own wrap
        own = await alice.text(text)
        assert own.outgoing and own.peer == "bob" and own.id == stored.id

        # bob's messenger acknowledged delivery by itself; both sides hear of it
        for side in (alice, bob):
            await side.wait(
                lambda i: (
                    isinstance(i, DmReceiptEvent)
                    and (i.kind, i.reader, i.peer, i.upto)
                    == ("delivered", "bob", "alice", stored.id)
                )
            )
        conversations = {c.username: c for c in await alice_c.conversations()}
        assert conversations["bob"].peer_delivered_upto == stored.id
        assert conversations["bob"].peer_read_upto == 0

        # read, on request
        assert await bob.messenger.mark_read("alice") == stored.id
        await alice.wait(lambda i: isinstance(i, DmReceiptEvent) and i.kind == "read")
        (conv,) = await bob_c.conversations()
        assert (conv.username, conv.unread, conv.offline, conv.my_read_upto) == (
            "alice",
            0,
            0,
            stored.id,
        )
    finally:
        await alice.close()
        await bob.close()


async def test_send_refusals_are_typed(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice = await inbox(alice_c)
    try:
        with pytest.raises(e2ee.E2EEError) as no_keys:  # bob never set up encryption
            await alice.messenger.send("bob", "hello?")
        assert no_keys.value.code == "no_keys"
        with pytest.raises(NotFoundError) as missing:
            await alice.messenger.send("nobody", "hello?")
        assert missing.value.code == "user_not_found"
        bob = await inbox(bob_c)
        try:
            await alice.messenger.keys("bob")  # cached from before the block
            await bob_c.block("alice")
            with pytest.raises(OpError) as hidden:  # a block looks like a missing user
                await alice.messenger.send("bob", "hello?")
            assert (hidden.value.op, hidden.value.code) == ("dm.send", "user_not_found")
            with pytest.raises(OpError) as buzz:
                await alice.messenger.buzz("bob")
            assert buzz.value.code == "user_not_found"
            alice.messenger.forget_keys("bob")
            with pytest.raises(NotFoundError):  # and so does bob's key directory
                await alice.messenger.send("bob", "hello?")
            await bob_c.unblock("alice")
            await alice_c.block("bob")
            with pytest.raises(OpError) as blocked:
                await alice.messenger.send("bob", "hello?")
            assert blocked.value.code == "blocked"
        finally:
            await bob.close()
    finally:
        await alice.close()


async def test_a_retry_with_the_same_client_id_is_stored_once(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    try:
        envelope = await alice.messenger.seal("bob", "once")
        first = await alice.messenger.connection.send_dm("bob", envelope)
        again = await alice.messenger.connection.send_dm("bob", envelope)
        over_http = await alice_c.post_dm("bob", envelope)
        assert not first.duplicate and again.duplicate and over_http.duplicate
        assert again.message == first.message == over_http.message

        # A send cut off by a dropped socket: the frame left, the reply was lost; the
        # connection comes back and sends the same envelope again.
        rt = alice.messenger.connection
        ws = rt._ws
        assert ws is not None
        real_send = ws.send

        async def send_then_cut(message: Any, text: bool | None = None) -> None:
            await real_send(message)
            if '"dm.send"' in str(message):
                ws.transport.abort()  # the network goes away right after the frame

        ws.send = send_then_cut  # type: ignore[method-assign]
        cut = await alice.messenger.send("bob", "cut off")
        assert rt.reconnects == 1

        await alice.messenger.send("bob", "marker")
        await bob.text("marker")
        assert [m.text for m in bob.received()] == ["once", "cut off", "marker"]
        assert [m.id for m in bob.received()][1] == cut.id
        history = await bob.messenger.history("alice")
        assert [m.text for m in history.messages] == ["once", "cut off", "marker"]
    finally:
        await alice.close()
        await bob.close()


async def test_reconnect_with_the_cursor_gets_missed_messages_exactly_once(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    try:
        await alice.messenger.send("bob", "before")
        await bob.text("before")

        # Cut bob off in the middle of a burst: his connection comes back by itself with
        # its cursor; the server replays in pages of 3 (replay_page) while live ones arrive.
        burst = [f"burst {i}" for i in range(12)]

        async def sender() -> None:
            for text in burst:
                await alice.messenger.send("bob", text)

        task = asyncio.create_task(sender())
        await bob.text("burst 2")
        bob_ws = bob.messenger.connection._ws
        assert bob_ws is not None
        bob_ws.transport.abort()
        await task
        await bob.text("burst 11")
        assert [m.text for m in bob.received()] == ["before", *burst]
        assert bob.messenger.connection.reconnects == 1

        # Closed for good; the messages sent meanwhile come back with the kept cursor
        # (4 of them: two replay pages), announced by offline.summary.
        cursor, keyring, device = (
            bob.messenger.cursor,
            bob.messenger.keyring,
            bob.messenger.device_id,
        )
        await bob.close()
        away = [f"away {i}" for i in range(4)]
        for text in away:
            await alice.messenger.send("bob", text)
        back = await inbox(bob_c, keyring=keyring, device_id=device, cursor=cursor)
        try:
            summary = await back.wait(lambda i: isinstance(i, OfflineSummaryEvent))
            assert isinstance(summary, OfflineSummaryEvent)
            assert [(s.username, s.count) for s in summary.senders] == [("alice", 4)]
            assert summary.total == 4
            await back.text("away 3")
            assert [m.text for m in back.received()] == away
            assert back.messenger.connection.replayed == 4

            # a fresh connection without cursor replays nothing: history is fetched instead
            fresh = await inbox(bob_c, keyring=keyring, device_id=device)
            try:
                await alice.messenger.send("bob", "live")
                await fresh.text("live")
                assert [m.text for m in fresh.received()] == ["live"]
                page = await fresh.messenger.history("alice", limit=3)
                assert [m.text for m in page.messages] == ["away 2", "away 3", "live"]
                assert page.has_more
            finally:
                await fresh.close()
        finally:
            await back.close()
    finally:
        await alice.close()


async def test_history_is_decrypted_both_ways_and_pages(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    try:
        sent = []
        for i in range(5):
            sender, to = (alice, "bob") if i % 2 == 0 else (bob, "alice")
            sent.append(await sender.messenger.send(to, f"m{i}"))
        newest = await bob.messenger.history("alice", limit=3)
        assert [(m.text, m.outgoing) for m in newest.messages] == [
            ("m2", False),
            ("m3", True),
            ("m4", False),
        ]
        assert newest.has_more and all(m.ok for m in newest.messages)
        older = await bob.messenger.history("alice", before=newest.messages[0].id, limit=3)
        assert [m.text for m in older.messages] == ["m0", "m1"] and not older.has_more
        after = await alice.messenger.history("bob", after=sent[2].id)
        assert [m.text for m in after.messages] == ["m3", "m4"]
        with pytest.raises(NotFoundError):
            await alice.messenger.history("nobody")
    finally:
        await alice.close()
        await bob.close()


async def test_buzz_arrives_and_is_rate_limited(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    try:
        await alice.messenger.buzz("bob")
        await bob.wait(lambda i: isinstance(i, BuzzEvent) and i.username == "alice")
        refusals = []
        for _ in range(5):  # 3 per 10 seconds by default
            try:
                await alice.messenger.buzz("bob")
            except OpError as exc:
                refusals.append(exc.code)
        assert refusals and set(refusals) == {"rate_limited"}
    finally:
        await alice.close()
        await bob.close()


# --- what others cannot read, and what the server cannot fake ------------------------------


async def test_a_third_user_cannot_decrypt(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    carol_c = await signed_in(live, "carol")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    carol = await Messenger.start(carol_c, connect=False)
    try:
        stored = await alice.messenger.send("bob", "for bob only")
        with pytest.raises(e2ee.E2EEError) as refused:
            e2ee.open_envelope(
                stored.envelope,
                expected_conv="dm:alice:bob",
                me_user="carol",
                my_device_keys=carol.keyring.device(carol.device_id),
                sender_keys=await carol.keys("alice"),
            )
        assert refused.value.code == "not_a_recipient"
        seen_by_carol = await carol.open(stored)
        assert seen_by_carol is not None and seen_by_carol.error is not None
        assert seen_by_carol.payload == {} and seen_by_carol.text is None
        # and the server does not hand carol their conversation
        assert (await carol.history("alice")).messages == ()
    finally:
        await alice.close()
        await bob.close()


async def tamper(settings: ResolvedSettings, message_id: int) -> None:
    """What a malicious server could do: change a stored envelope (one ciphertext byte)."""
    db = Database.create(settings.settings.resolved_database_url)
    try:
        async with db.transaction() as conn:
            row = (
                await conn.execute(
                    select(messages_table.c.envelope).where(messages_table.c.id == message_id)
                )
            ).one()
            envelope = json.loads(row.envelope)
            ct = envelope["ct"]
            envelope["ct"] = ("B" if ct[0] == "A" else "A") + ct[1:]
            await conn.execute(
                update(messages_table)
                .where(messages_table.c.id == message_id)
                .values(envelope=json.dumps(envelope))
            )
    finally:
        await db.close()


async def test_a_tampered_envelope_is_a_clear_error_not_a_crash(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice = await inbox(alice_c)
    bob = await Messenger.start(bob_c)
    try:
        await bob.close()
        cursor, keyring, device = bob.cursor, bob.keyring, bob.device_id
        bad = await alice.messenger.send("bob", "tampered with")
        await alice.messenger.send("bob", "fine")
        await tamper(live.settings, bad.id)

        page = await alice.messenger.history("bob")
        assert [(m.text, m.error.code if m.error else None) for m in page.messages] == [
            (None, "bad_signature"),
            ("fine", None),
        ]
        bob = await Messenger.start(
            bob_c, keyring=keyring, device_id=device, cursor=cursor, reconnect_delay=0.05
        )
        stream = bob.messages()
        with pytest.raises(UndecryptableMessage) as raised:
            async with asyncio.timeout(WAIT):
                await anext(stream)
        assert raised.value.code == "bad_signature" and raised.value.dm.id == bad.id
        assert isinstance(raised.value, e2ee.E2EEError)
        async with asyncio.timeout(WAIT):  # the connection carries on
            following = await anext(bob.messages())
        assert following.text == "fine"
        skipping = await alice.messenger.send("bob", "after")
        async with asyncio.timeout(WAIT):
            assert (await anext(bob.messages(errors="skip"))).id == skipping.id
    finally:
        await alice.close()
        await bob.close()


async def test_a_new_device_of_the_sender_is_fetched_when_it_writes(live: LiveApp) -> None:
    alice_c, bob_c = await signed_in(live, "alice"), await signed_in(live, "bob")
    alice, bob = await inbox(alice_c), await inbox(bob_c)
    second_c = EchoChatClient(live.url)
    await second_c.login("alice", PASSWORD)
    try:
        await alice.messenger.send("bob", "from the laptop")
        await bob.text("from the laptop")
        # alice's second device (same identity, new device key); bob's cached directory of
        # alice lacks it (they are not buddies: no keys.changed reaches bob)
        phone = await Messenger.start(
            second_c, keyring=alice.messenger.keyring, connect=False, label="phone"
        )
        await phone.send("bob", "from the phone")
        got = await bob.text("from the phone")
        assert got.sender_device == phone.device_id != alice.messenger.device_id
        # an identity key that changes is never accepted silently
        await Messenger.start(second_c, connect=False, reset_identity=True)
        with pytest.raises(e2ee.E2EEError) as changed:
            await bob.messenger.keys("alice", refresh=True)
        assert changed.value.code == "identity_changed"
    finally:
        await alice.close()
        await bob.close()
        await second_c.aclose()


# --- the bot of docs/sdk.md -----------------------------------------------------------------


async def published(messenger: Messenger, username: str, task: asyncio.Task[None]) -> None:
    """Wait until ``username`` has published keys (a bounded poll of the key directory)."""
    async with asyncio.timeout(WAIT):
        while True:
            assert not task.done(), task
            try:
                await messenger.keys(username, refresh=True)
                return
            except e2ee.E2EEError as exc:
                if exc.code != "no_keys":
                    raise
            await asyncio.sleep(0.02)


def _docs_bot() -> str:
    """The echo bot exactly as docs/sdk.md shows it, without its last line (asyncio.run)."""
    text = (ROOT / "docs" / "sdk.md").read_text()
    match = re.search(r"<!-- echo-bot -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/sdk.md lost its echo bot"
    code = match.group(1)
    lines = code.rstrip().splitlines()
    assert lines[-1].startswith("asyncio.run(echo_bot(")
    assert len([line for line in lines if line.strip()]) <= 12  # "a bot in ten lines"
    return "\n".join(lines[:-1])


async def test_the_echo_bot_of_the_docs(
    live: LiveApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bot_c = await signed_in(live, "echobot")
    await bot_c.aclose()
    namespace: dict[str, Any] = {}
    exec(compile(_docs_bot(), "docs/sdk.md", "exec"), namespace)
    alice = await inbox(await signed_in(live, "alice"))
    try:
        for run in (1, 2):  # the second run restores its keys from echobot.keys
            bot = asyncio.create_task(namespace["echo_bot"](live.url, "echobot", PASSWORD))
            try:
                sent = f"ping {run} \N{ROBOT FACE}"
                await published(alice.messenger, "echobot", bot)
                await alice.messenger.send("echobot", sent)  # the bot may not be online yet
                echo = await alice.text(f"echo: {sent}")
                assert echo.sender == "echobot" and echo.ok
            finally:
                bot.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await bot
        assert (tmp_path / "echobot.keys").stat().st_mode & 0o777 == 0o600
    finally:
        await alice.close()


# --- the resume rules, frame by frame -------------------------------------------------------


class _NoTokens:
    async def valid_access_token(self) -> str:
        raise AssertionError("not used")

    async def refresh(self) -> None:
        raise AssertionError("not used")


def _dm(mid: int) -> str:
    message = {
        "id": mid,
        "conv": "dm:alice:bob",
        "sender": "alice",
        "recipient": "bob",
        "sender_device": "devicealice1",
        "client_id": f"m-{mid}",
        "created_at": "2026-12-02T03:04:05+00:00",
        "envelope": {"v": 1},
    }
    return json.dumps({"op": "ev", "type": "dm.message", "data": message})


def _hello_ok(rt: RealtimeConnection, data: dict[str, Any]) -> str:
    """The ``ok`` of a ``hello`` the connection sent (its pending request)."""
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    ref = f"h{len(rt._pending)}"
    rt._pending[ref] = ("hello", future)
    return json.dumps({"op": "ok", "ref": ref, "data": data})


async def test_replay_pages_and_live_messages_are_handed_on_once_in_id_order() -> None:
    """The frames a reconnecting client may read, in a fixed order (docs/protocol.md,
    "Resuming"): the connection kept cursor 10 and sent it in ``hello``; the server replays
    11-13 (page 1, more) and 14-15 (page 2, last), while live messages 14 and 16 overtake the
    replay and 9 (at or below the cursor) and 12 (twice) come again."""
    rt = RealtimeConnection(_NoTokens(), "ws://127.0.0.1:1/ws", cursor=10)
    rt._floor, rt._replaying = 10, True  # what _greet does before sending hello
    frames = [
        _dm(14),  # live, ahead of the replay
        _dm(9),
        _dm(11),
        _dm(12),
        _dm(12),
        _dm(13),
        _hello_ok(rt, {"cursor": 13, "replayed": 3, "more": True}),
        _dm(14),  # replayed: already held
        _dm(15),
        _dm(16),  # live
        _hello_ok(rt, {"cursor": 15, "replayed": 2, "more": False}),
        _dm(17),
        _dm(16),
    ]
    handed: list[int] = []
    cursors: list[int | None] = []
    for frame in frames:
        rt._accept(frame)
        while not rt._queue.empty():
            event = rt._queue.get_nowait()
            assert isinstance(event, DmMessageEvent)
            handed.append(event.message.id)
        cursors.append(rt.cursor)
    assert handed == [11, 12, 13, 14, 15, 16, 17]
    # the cursor follows the pages during the replay, then the live messages
    assert cursors == [10, 10, 10, 10, 10, 10, 13, 13, 13, 13, 16, 17, 17]
    assert rt.replayed == 5
