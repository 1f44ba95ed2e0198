"""Resuming room messages after a disconnect (docs/protocol.md, "Room messages",
"Resuming"): a member cut off in the middle of a burst reconnects with a cursor per room
and, paging through the ``hello`` replay while live messages keep arriving, ends with every
message of every room exactly once (after de-duplication by id), in order per room.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.dmutil import person, send
from tests.roommsgutil import add_member, make_room, remove_member, say
from tests.wsutil import Frame, MakeSettings, Server, Socket, User, register, serve

PAGE = 5


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(
        make_settings, replay_page=PAGE, rate_limit_room_account="1000/10seconds"
    ) as started:
        yield started


class RoomClient:
    """What a client does with ``room.message``: each id once, a cursor per room."""

    def __init__(self) -> None:
        self.seen: dict[int, Frame] = {}
        self.order: dict[int, list[int]] = {}  # per room, ids in the order first processed
        self.duplicates = 0

    def take(self, message: Frame) -> None:
        if message["id"] in self.seen:
            self.duplicates += 1
            return
        self.seen[message["id"]] = message
        self.order.setdefault(message["room"], []).append(message["id"])

    def cursor(self, room: int) -> int:
        return max(self.order.get(room, [0]))


async def resume(sock: Socket, client: RoomClient, cursors: dict[int, int]) -> list[Frame]:
    """Page through the replay as the SDK does: live messages may overtake the replay on the
    wire, so what arrives during it is held and handed on in id order per room as the pages
    cover it (and all of it once no more pages follow). Every reply's data, in order."""
    replies = []
    held: dict[int, Frame] = {}
    while True:
        ref = await sock.send_op("hello", {"rooms": {str(r): c for r, c in cursors.items()}})
        arrived: list[int] = []
        while True:
            frame = await sock.recv()
            if frame.get("op") == "ok" and frame.get("ref") == ref:
                break
            assert frame.get("op") == "ev", frame
            if frame["type"] == "room.message":
                arrived.append(frame["data"]["id"])
                held.setdefault(frame["data"]["id"], frame["data"])
        reply: dict[str, Any] = frame["data"]
        count = reply["rooms_replayed"]
        assert count <= PAGE and reply["replayed"] == 0
        page = arrived[len(arrived) - count :] if count else []
        assert page == sorted(set(page))  # the replay itself: in id order, none twice
        replies.append(reply)
        cursors = {int(r): c for r, c in reply["rooms"].items() if int(r) in cursors}
        for mid in sorted(held):
            message = held[mid]
            if not reply["more"] or mid <= cursors.get(message["room"], 0):
                client.take(held.pop(mid))
        if not reply["more"]:
            return replies


async def test_cut_off_in_a_burst_resumes_every_room_exactly_once_in_order(
    server: Server,
) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    rooms = [await make_room(server.ctx), await make_room(server.ctx, kind="group")]
    for room in rooms:
        for who in (alice, bob):
            await add_member(server.ctx, room, who.id)
    alice_sock = await server.connect(alice)
    bob_sock = await server.connect(bob)
    start = await bob_sock.call("hello", {"rooms": {}})
    assert start == {
        "cursor": 0,
        "replayed": 0,
        "more": False,
        "rooms": {str(r): 0 for r in sorted(rooms)},
        "rooms_replayed": 0,
    }
    await server.wait_for(lambda: len(server.hub.room_members_here(rooms[0])) == 2, "index")

    total = 30
    sent: dict[int, list[int]] = {room: [] for room in rooms}
    cut = asyncio.Event()
    halfway = asyncio.Event()

    async def burst() -> None:
        for index in range(total):
            room = rooms[index % 2]
            sent[room].append((await say(alice_sock, room, f"burst {index}"))["message"]["id"])
            if index == 7:
                await cut.wait()
            if index == 18:
                halfway.set()

    sender = asyncio.create_task(burst())
    client = RoomClient()
    while len(client.seen) < 6:
        client.take((await bob_sock.event("room.message"))["data"])
    bob_sock.ws.transport.abort()  # cut off without a goodbye
    cursors = {room: client.cursor(room) for room in rooms}
    cut.set()
    await halfway.wait()

    back = await server.connect(bob)
    replies = await resume(back, client, cursors)
    assert len(replies) >= 3  # more than one page was needed
    await sender
    everything = sorted(i for ids in sent.values() for i in ids)
    while not set(everything) <= set(client.seen):
        client.take((await back.event("room.message"))["data"])
    await back.assert_quiet(
        lambda f: f.get("type") == "room.message" and f["data"]["id"] not in client.seen
    )
    for room in rooms:
        assert client.order[room] == sent[room]  # each once, in order per room
    texts = [client.seen[i]["text"] for i in everything]
    assert texts == [f"burst {i}" for i in range(total)]
    for sock in (alice_sock, back):
        await sock.close()


async def test_cursors_answer_only_the_users_rooms_and_share_the_page_with_dms(
    server: Server,
) -> None:
    alice = await person(server.http, server.url, "alice")
    bob = await person(server.http, server.url, "bob")
    carol = await register(server.http, "carol")
    mine = await make_room(server.ctx)
    other = await make_room(server.ctx, kind="group")
    left = await make_room(server.ctx)
    for room in (mine, left):
        for who in (alice.user, bob.user):
            await add_member(server.ctx, room, who.id)
    await add_member(server.ctx, other, carol.id)
    alice_sock = await server.connect(alice.user)
    carol_sock = await server.connect(carol)
    hidden = (await say(carol_sock, other, "private"))["message"]["id"]
    room_ids = [(await say(alice_sock, mine, f"r{i}"))["message"]["id"] for i in range(4)]
    gone = (await say(alice_sock, left, "then bob left"))["message"]["id"]
    await remove_member(server.ctx, left, bob.user.id)
    dm_ids = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"d{i}")))["message"]["id"]
        for i in range(3)
    ]

    bob_sock = await server.connect(bob.user)
    # naming a room one is not in (or left) replays nothing of it and leaves it out
    ref = await bob_sock.send_op(
        "hello", {"cursor": 0, "rooms": {str(mine): 0, str(other): 0, str(left): 0}}
    )
    frames = []
    while True:
        frame = await bob_sock.recv()
        if frame.get("ref") == ref:
            break
        frames.append((frame["type"], frame["data"]["id"]))
    reply = frame["data"]
    # one page of PAGE: the DMs first, then the rooms in what is left
    assert frames == [("dm.message", i) for i in dm_ids] + [
        ("room.message", i) for i in room_ids[:2]
    ]
    assert reply == {
        "cursor": dm_ids[-1],
        "replayed": 3,
        "more": True,
        "rooms": {str(mine): room_ids[1]},
        "rooms_replayed": 2,
    }
    reply = await bob_sock.call("hello", {"cursor": dm_ids[-1], "rooms": {str(mine): room_ids[1]}})
    assert reply["rooms"] == {str(mine): room_ids[-1]} and reply["more"] is False
    replayed_rooms = [i for kind, i in frames if kind == "room.message"]
    assert hidden not in replayed_rooms and gone not in replayed_rooms
    # a cursor below the member's join replays only from the join on
    newcomer = await make_room(server.ctx)
    await add_member(server.ctx, newcomer, alice.user.id)
    before = (await say(alice_sock, newcomer, "before bob"))["message"]["id"]
    await add_member(server.ctx, newcomer, bob.user.id)
    after = (await say(alice_sock, newcomer, "after bob"))["message"]["id"]
    ref = await bob_sock.send_op("hello", {"rooms": {str(newcomer): 0}})
    got = await bob_sock.event("room.message", room=newcomer)
    assert got["data"]["id"] == after and after > before
    reply = (await bob_sock.reply(ref))["data"]
    assert reply["rooms"] == {str(mine): room_ids[-1], str(newcomer): after}
    for bad in ({"rooms": {"abc": 1}}, {"rooms": {"1": -1}}, {"rooms": [1]}, {"rooms": {"0": 1}}):
        assert (await bob_sock.error("hello", bad))["code"] == "invalid_input", bad
    for sock in (alice_sock, bob_sock, carol_sock):
        await sock.close()
    for who in (alice, bob):
        await who.aclose()


async def test_without_rooms_hello_is_unchanged(server: Server) -> None:
    carol: User = await register(server.http, "carol")
    room = await make_room(server.ctx)
    await add_member(server.ctx, room, carol.id)
    sock = await server.connect(carol)
    await say(sock, room, "hi")
    await sock.event("room.message")
    assert await sock.call("hello", {"cursor": 0}) == {"cursor": 0, "replayed": 0, "more": False}
    await sock.assert_quiet()
    await sock.close()
