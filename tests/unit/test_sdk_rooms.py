"""The SDK's rooms (``echochat.client.rooms.Rooms``) against the real app served by uvicorn
in this process: an end-to-end encrypted group among three SDK users (issue 7: all read; a
fourth user and the server cannot; after a member leaves, new envelopes are not wrapped for
their devices and the server refuses one that still is; a new member reads from their join
on), plain rooms, and resuming room messages after a dropped socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from echochat.client import ConflictError, EchoChatClient, Messenger, NotFoundError, OpError
from echochat.client.e2ee import E2EEError
from echochat.client.rooms import GroupMessage, RoomMessage, Rooms
from echochat.store.tables import room_messages as room_messages_table
from tests.roommsgutil import add_member, make_room, remove_member
from tests.wsutil import PASSWORD, MakeSettings, Server, serve

WAIT = 5.0


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings, replay_page=3) as started:
        yield started


@dataclass
class Member:
    """One SDK user: client, messenger (keys + socket), rooms, and what arrived."""

    name: str
    client: EchoChatClient
    messenger: Messenger
    rooms: Rooms
    items: list[Any]
    task: asyncio.Task[None]
    changed: asyncio.Event

    @property
    def user_id(self) -> int:
        assert self.client.user is not None
        return self.client.user.id

    async def wait(self, match: Callable[[Any], bool], what: str) -> Any:
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    found = next((i for i in self.items if match(i)), None)
                    if found is not None:
                        return found
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {what}; got {self.items}") from None

    def messages(self, room: int) -> list[Any]:
        return [
            i for i in self.items if isinstance(i, GroupMessage | RoomMessage) and i.room == room
        ]

    async def close(self) -> None:
        await self.messenger.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()


async def member(server: Server, name: str) -> Member:
    client = EchoChatClient(server.url)
    await client.register(name, PASSWORD)
    messenger = await Messenger.start(client)
    rooms = await Rooms.start(client, messenger=messenger)
    items: list[Any] = []
    changed = asyncio.Event()

    async def collect() -> None:
        async for item in rooms.events(messenger.events()):
            items.append(item)
            changed.set()

    task = asyncio.create_task(collect())
    return Member(name, client, messenger, rooms, items, task, changed)


def text_is(room: int, text: str) -> Callable[[Any], bool]:
    return lambda i: isinstance(i, GroupMessage | RoomMessage) and i.room == room and i.text == text


async def test_an_encrypted_group_among_three_sdk_users(server: Server) -> None:
    alice, bob, carol, dave = [await member(server, n) for n in ("alice", "bob", "carol", "dave")]
    group = await make_room(server.ctx, kind="group", encrypted=True, name="Secret")
    await add_member(server.ctx, group, alice.user_id, role="owner")
    for who in (bob, carol):
        await add_member(server.ctx, group, who.user_id)
    await server.wait_for(lambda: len(server.hub.room_members_here(group)) == 3, "index")

    # all three read it (the sender's own copy too), verified and decrypted
    sent, duplicate = await alice.rooms.send(group, "meet at noon", encrypted=True)
    assert not duplicate and sent.kind == "e2ee" and sent.text is None
    for who in (alice, bob, carol):
        got = await who.wait(text_is(group, "meet at noon"), "the first message")
        assert got.ok and got.sender == "alice" and got.id == sent.id
    wrapped = {(k["user"], k["device"]) for k in (sent.envelope or {})["keys"]}
    devices = {(m.name, m.messenger.device_id) for m in (alice, bob, carol)}
    assert wrapped == devices
    answer, _ = await bob.rooms.send(group, "noon works", encrypted=True)
    for who in (alice, carol):
        assert (await who.wait(text_is(group, "noon works"), "bob's answer")).ok

    # a fourth user: no history, no events, and the envelope itself does not open
    with pytest.raises(NotFoundError) as refused:
        await dave.rooms.history(group)
    assert refused.value.code == "room_not_found"
    assert dave.messages(group) == []
    opened = await dave.rooms.open(sent)
    assert opened.error is not None and opened.error.code == "not_a_recipient"
    # and the server: no plaintext anywhere in what it stored
    async with server.ctx.db.read() as conn:
        bodies = [b for (b,) in await conn.execute(select(room_messages_table.c.body))]
    assert bodies and all("noon" not in b for b in bodies)
    assert all(json.loads(b)["conv"] == f"group:{group}" for b in bodies)

    # carol leaves: the next envelope is not wrapped for her devices
    stale = await alice.rooms.seal(group, "still wrapped for carol", client_id="stale-1")
    await remove_member(server.ctx, group, carol.user_id)
    with pytest.raises(OpError) as refused_stale:
        await alice.messenger.connection.request(
            "room.send", {"room": group, "client_id": "stale-1", "envelope": stale}
        )
    assert refused_stale.value.code == "stale_members"
    with pytest.raises(ConflictError) as refused_http:  # over HTTP too, naming the members
        await alice.client._request(
            "POST", f"/rooms/{group}/messages", json={"client_id": "stale-1", "envelope": stale}
        )
    assert refused_http.value.code == "stale_members"
    assert refused_http.value.details["members"] == ["alice", "bob"]
    after, _ = await alice.rooms.send(group, "carol is gone", encrypted=True)  # re-sealed
    assert {k["user"] for k in (after.envelope or {})["keys"]} == {"alice", "bob"}
    assert (await bob.wait(text_is(group, "carol is gone"), "after carol left")).ok
    # a marker carol does get, published after those: nothing of the group came before it
    lobby = await make_room(server.ctx)
    await add_member(server.ctx, lobby, carol.user_id)
    await add_member(server.ctx, lobby, alice.user_id)
    await server.wait_for(lambda: carol.user_id in server.hub.room_members_here(lobby), "lobby")
    await alice.rooms.send(lobby, "marker")
    await carol.wait(text_is(lobby, "marker"), "the marker")
    assert [m.id for m in carol.messages(group)] == [sent.id, answer.id]  # nothing later
    assert (await carol.rooms.open(after)).error.code == "not_a_recipient"  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        await carol.rooms.history(group)

    # a new member reads from their join on: live, in history, and not what came before
    erin = await member(server, "erin")
    await add_member(server.ctx, group, erin.user_id)
    await server.wait_for(lambda: erin.user_id in server.hub.room_members_here(group), "erin")
    welcome, _ = await bob.rooms.send(group, "welcome erin", encrypted=True)
    assert {k["user"] for k in (welcome.envelope or {})["keys"]} == {"alice", "bob", "erin"}
    assert (await erin.wait(text_is(group, "welcome erin"), "the welcome")).ok
    page = await erin.rooms.history(group)
    assert [m.id for m in page.messages] == [welcome.id]
    assert (await erin.rooms.open(sent)).error.code == "not_a_recipient"  # type: ignore[union-attr]
    # a plain message is refused in an encrypted group
    with pytest.raises(OpError) as plain:
        await erin.rooms.send(group, "in clear")
    assert plain.value.code == "encryption_required"
    for who in (alice, bob, carol, dave, erin):
        await who.close()


async def test_plain_rooms_and_resume_after_a_dropped_socket(server: Server) -> None:
    alice, bob = await member(server, "alice"), await member(server, "bob")
    room = await make_room(server.ctx)
    for who in (alice, bob):
        await add_member(server.ctx, room, who.user_id)
    await server.wait_for(lambda: len(server.hub.room_members_here(room)) == 2, "index")
    first, _ = await alice.rooms.send(room, "<i>hi</i> all")
    got = await bob.wait(text_is(room, "<i>hi</i> all"), "the plain message")
    assert isinstance(got, RoomMessage) and got.kind == "text" and got.id == first.id
    again, duplicate = await alice.rooms.send(room, "other", client_id=first.client_id)
    assert duplicate and again.id == first.id
    assert bob.rooms.cursors[room] == first.id

    # bob's socket drops; alice posts a few; bob's connection comes back and the server
    # replays them (pages of 3), each once, in order
    connection = bob.messenger.connection
    reconnects = connection.reconnects
    ws = connection._ws
    assert ws is not None
    ws.transport.abort()
    ids = [(await alice.rooms.send(room, f"while away {i}"))[0].id for i in range(7)]
    await bob.wait(text_is(room, "while away 6"), "the last missed message")
    assert connection.reconnects > reconnects
    assert [m.id for m in bob.messages(room)] == [first.id, *ids]
    assert bob.rooms.cursors[room] == ids[-1]

    # read watermark, typing, history, delete
    assert await bob.rooms.mark_read(room, ids[2]) == ids[2]
    await bob.rooms.typing(room)
    page = await bob.rooms.history(room, limit=3)
    assert [m.id for m in page.messages] == ids[-3:] and page.has_more
    await alice.rooms.delete(room, ids[0])
    page = await bob.rooms.history(room, after=first.id, limit=1)
    assert page.messages[0].deleted and page.messages[0].text is None
    for who in (alice, bob):
        await who.close()


async def test_encrypted_send_without_keys_is_refused_locally(server: Server) -> None:
    client = EchoChatClient(server.url)
    await client.register("frank", PASSWORD)
    rooms = Rooms(client)
    with pytest.raises(E2EEError) as refused:
        await rooms.send(1, "x", encrypted=True)
    assert refused.value.code == "no_keys"
    await client.aclose()
