"""Room messages over ``/ws`` and HTTP against a real uvicorn server in this process
(docs/protocol.md, "Room messages"; issue 7 item 3): delivery to every member socket and to
nobody else, idempotent retries, the refusals of ``room.send`` in the documented order,
members who leave hearing nothing more, history from the join on, deletion, read
watermarks and typing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from websockets.protocol import State
from websockets.server import ServerProtocol

from echochat.domain.errors import Forbidden, NotFound
from echochat.realtime.wsserver import text_frame
from echochat.services import accounts, room_messages, roomcast
from echochat.store.tables import audit_log
from echochat.store.tables import room_messages as room_messages_table
from tests.roommsgutil import (
    add_member,
    cid,
    make_room,
    mute_in_room,
    mute_on_server,
    no_room_messages,
    refused,
    remove_member,
    room_event,
    say,
)
from tests.wsutil import API, MakeSettings, Server, User, expect_error, register, serve


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings, rate_limit_room_account="30/10seconds") as started:
        yield started


@pytest.fixture
async def people(server: Server) -> dict[str, User]:
    return {name: await register(server.http, name) for name in ("alice", "bob", "carol")}


async def test_a_message_reaches_every_member_socket_and_nobody_else(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx)
    for who in (alice, bob):
        await add_member(server.ctx, room, who.id)
    alice_sock = await server.connect(alice)
    bob_sock, bob_tab = await server.connect(bob), await server.connect(bob)
    carol_sock = await server.connect(carol)
    await server.wait_for(lambda: server.hub.room_members_here(room) == {alice.id, bob.id}, "index")

    reply = await say(alice_sock, room, "hello <b>room</b>", client_id="m-1")
    message = reply["message"]
    assert reply["duplicate"] is False
    assert message["room"] == room and message["sender"] == "alice"
    assert message["kind"] == "text" and message["text"] == "hello <b>room</b>"
    assert message["client_id"] == "m-1" and message["deleted"] is False
    for sock in (alice_sock, bob_sock, bob_tab):
        assert await room_event(sock) == message
    await carol_sock.assert_quiet(no_room_messages)

    # a retry of the same client_id answers the original and sends nothing again
    again = await say(alice_sock, room, "changed my mind", client_id="m-1")
    assert again == {"message": message, "duplicate": True}
    await bob_sock.assert_quiet(no_room_messages)
    async with server.ctx.db.read() as conn:
        count = len((await conn.execute(select(room_messages_table.c.id))).all())
    assert count == 1

    # ids increase in commit order; a burst arrives in order on every member socket
    ids = [(await say(bob_sock, room, f"n{i}"))["message"]["id"] for i in range(5)]
    assert ids == sorted(ids) and ids[0] > message["id"]
    got = [(await room_event(alice_sock))["id"] for _ in ids]
    assert got == ids
    for sock in (alice_sock, bob_sock, bob_tab, carol_sock):
        await sock.close()


async def test_racing_retries_store_one_message(server: Server, people: dict[str, User]) -> None:
    alice = people["alice"]
    room = await make_room(server.ctx)
    await add_member(server.ctx, room, alice.id)
    socks = [await server.connect(alice) for _ in range(3)]
    refs = [
        await s.send_op("room.send", {"room": room, "client_id": "same", "text": f"copy {i}"})
        for i, s in enumerate(socks)
    ]
    replies = [(await s.reply(r))["data"] for s, r in zip(socks, refs, strict=True)]
    assert len({r["message"]["id"] for r in replies}) == 1
    assert sorted(r["duplicate"] for r in replies) == [False, True, True]
    # the same client_id in another room is refused, not answered with a foreign message
    other = await make_room(server.ctx)
    await add_member(server.ctx, other, alice.id)
    error = await refused(socks[0], {"room": other, "client_id": "same", "text": "x"})
    assert error["code"] == "client_id_reused"
    for sock in socks:
        await sock.close()


async def test_refusals_in_the_documented_order(server: Server, people: dict[str, User]) -> None:
    alice, bob = people["alice"], people["bob"]
    public = await make_room(server.ctx)
    group = await make_room(server.ctx, kind="group")
    secret = await make_room(server.ctx, kind="group", encrypted=True)
    for room in (public, group, secret):
        await add_member(server.ctx, room, alice.id)
    bob_sock = await server.connect(bob)
    alice_sock = await server.connect(alice)

    # not a member: a public room says so, a private group does not exist for outsiders
    assert (await refused(bob_sock, {"room": public, "client_id": cid(), "text": "hi"}))[
        "code"
    ] == "not_a_member"
    for room in (group, secret, 999_999):
        error = await refused(bob_sock, {"room": room, "client_id": cid(), "text": "hi"})
        assert error["code"] == "room_not_found"
    # membership before shape: an outsider learns nothing from a bad message either
    error = await refused(bob_sock, {"room": group, "client_id": cid(), "text": ""})
    assert error["code"] == "room_not_found"

    # the shape, for members
    for text in ("", "   \n", "x" * (room_messages.TEXT_MAX + 1), "nul\x00"):
        error = await refused(alice_sock, {"room": public, "client_id": cid(), "text": text})
        assert error["code"] == "invalid_text", text
    assert len(
        (await say(alice_sock, public, "x" * room_messages.TEXT_MAX))["message"]["text"]
    ) == (room_messages.TEXT_MAX)
    envelope = {"v": 1}
    error = await refused(alice_sock, {"room": public, "client_id": cid(), "envelope": envelope})
    assert error["code"] == "not_encrypted"
    error = await refused(alice_sock, {"room": secret, "client_id": cid(), "text": "plain"})
    assert error["code"] == "encryption_required"
    error = await refused(alice_sock, {"room": secret, "client_id": "e-1", "envelope": envelope})
    assert error["code"] == "invalid_envelope"
    for bad in (
        {"room": public, "client_id": cid()},  # neither text nor envelope
        {"room": public, "client_id": cid(), "text": "a", "envelope": envelope},
        {"room": public, "text": "no client id"},
        {"room": public, "client_id": "", "text": "a"},
        {"room": "1", "client_id": cid(), "text": "a"},
        {"room": 0, "client_id": cid(), "text": "a"},
        {"room": public, "client_id": "x" * 65, "text": "a"},
        {"room": public, "client_id": cid(), "text": "a", "extra": 1},
    ):
        assert (await refused(alice_sock, bad))["code"] == "invalid_input", bad

    # muted in the room, then on the whole server: before the shape
    until = await mute_in_room(server.ctx, public, alice.id, 5)
    error = await refused(alice_sock, {"room": public, "client_id": cid(), "text": ""})
    assert error["code"] == "muted" and until.isoformat(timespec="minutes") in error["message"]
    assert (await say(alice_sock, group, "still fine here"))["duplicate"] is False
    await mute_on_server(server.ctx, alice.id, 5)
    error = await refused(alice_sock, {"room": group, "client_id": cid(), "text": "hi"})
    assert error["code"] == "muted"
    response = await server.http.post(
        f"{API}/rooms/{group}/messages",
        json={"client_id": cid(), "text": "hi"},
        headers=alice.headers,
    )
    expect_error(response, 403, "muted")
    for sock in (alice_sock, bob_sock):
        await sock.close()


async def test_the_rate_limit_comes_first_and_counts_refusals(
    make_settings: MakeSettings,
) -> None:
    async with serve(make_settings, rate_limit_room_account="3/minute") as server:
        alice = await register(server.http, "alice")
        sock = await server.connect(alice)
        for _ in range(3):  # refused (not a member), but counted
            assert (await refused(sock, {"room": 1, "client_id": cid(), "text": "x"}))[
                "code"
            ] == "not_a_member"
        error = await refused(sock, {"room": 1, "client_id": cid(), "text": "x"})
        assert error["code"] == "rate_limited"
        await sock.close()


async def test_a_member_who_leaves_or_is_kicked_hears_nothing_more(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx)
    for who in (alice, bob, carol):
        await add_member(server.ctx, room, who.id)
    socks = {who.username: await server.connect(who) for who in (alice, bob, carol)}
    bob_tab = await server.connect(bob)
    await server.wait_for(lambda: len(server.hub.room_members_here(room)) == 3, "index")
    first = (await say(socks["alice"], room, "before"))["message"]
    for sock in (socks["bob"], bob_tab, socks["carol"]):
        assert (await room_event(sock))["id"] == first["id"]

    await remove_member(server.ctx, room, bob.id)  # kicked: the hook ran after the commit
    after = (await say(socks["alice"], room, "after"))["message"]
    assert (await room_event(socks["carol"]))["id"] == after["id"]
    for sock in (socks["bob"], bob_tab):
        await sock.assert_quiet(no_room_messages)
        error = await refused(sock, {"room": room, "client_id": cid(), "text": "let me in"})
        assert error["code"] == "not_a_member"
    response = await server.http.get(f"{API}/rooms/{room}/messages", headers=bob.headers)
    expect_error(response, 403, "not_a_member")
    # a new socket of bob's does not get the room either (loaded from the database)
    fresh = await server.connect(bob)
    await say(socks["alice"], room, "again")
    await fresh.assert_quiet(no_room_messages)

    # joining again: live from now on; history only from the new join
    floor = await add_member(server.ctx, room, bob.id)
    await server.wait_for(lambda: bob.id in server.hub.room_members_here(room), "rejoin")
    welcome = (await say(socks["alice"], room, "welcome back"))["message"]
    for sock in (socks["bob"], bob_tab, fresh):
        assert (await room_event(sock, welcome["id"]))["text"] == "welcome back"
    page = (await server.http.get(f"{API}/rooms/{room}/messages", headers=bob.headers)).json()
    assert [m["text"] for m in page["messages"]] == ["welcome back"]
    assert page["first_message_id"] == floor
    for sock in (*socks.values(), bob_tab, fresh):
        await sock.close()


async def test_history_pages_both_ways_from_the_join_on(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx, kind="group")
    await add_member(server.ctx, room, alice.id, role="owner")
    sock = await server.connect(alice)
    early = [(await say(sock, room, f"early {i}"))["message"]["id"] for i in range(3)]
    await add_member(server.ctx, room, bob.id)
    late = []
    for i in range(5):
        response = await server.http.post(
            f"{API}/rooms/{room}/messages",
            json={"client_id": f"h-{i}", "text": f"late {i}"},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        late.append(response.json()["id"])
    again = await server.http.post(
        f"{API}/rooms/{room}/messages",
        json={"client_id": "h-0", "text": "retry"},
        headers=alice.headers,
    )
    assert again.status_code == 200 and again.json()["id"] == late[0]

    def ids(response_json: dict[str, object]) -> list[int]:
        return [m["id"] for m in response_json["messages"]]  # type: ignore[attr-defined, index]

    url = f"{API}/rooms/{room}/messages"
    everything = (await server.http.get(url, headers=alice.headers)).json()
    assert ids(everything) == early + late and everything["has_more"] is False
    newest = (await server.http.get(url, params={"limit": 2}, headers=bob.headers)).json()
    assert ids(newest) == late[-2:] and newest["has_more"] is True
    older = (
        await server.http.get(url, params={"limit": 2, "before": late[-2]}, headers=bob.headers)
    ).json()
    assert ids(older) == late[1:3] and older["has_more"] is True
    oldest = (
        await server.http.get(url, params={"limit": 5, "before": late[1]}, headers=bob.headers)
    ).json()
    assert ids(oldest) == late[:1] and oldest["has_more"] is False  # nothing from before bob
    newer = (
        await server.http.get(url, params={"after": 0, "limit": 3}, headers=bob.headers)
    ).json()
    assert ids(newer) == late[:3] and newer["has_more"] is True
    between = (
        await server.http.get(
            url, params={"after": late[0], "before": late[3]}, headers=bob.headers
        )
    ).json()
    assert ids(between) == late[1:3]
    # outsiders: a private group does not exist for them
    expect_error(await server.http.get(url, headers=carol.headers), 404, "room_not_found")
    expect_error(
        await server.http.get(f"{API}/rooms/424242/messages", headers=carol.headers),
        404,
        "room_not_found",
    )
    expect_error(
        await server.http.get(url, params={"limit": 0}, headers=bob.headers), 422, "invalid_input"
    )
    expect_error(await server.http.get(url), 401, "not_authenticated")
    await sock.close()


async def test_delete_author_moderator_and_admin(server: Server, people: dict[str, User]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx, kind="group")
    await add_member(server.ctx, room, alice.id, role="owner")
    await add_member(server.ctx, room, bob.id)
    bob_sock, alice_sock = await server.connect(bob), await server.connect(alice)
    await server.wait_for(lambda: len(server.hub.room_members_here(room)) == 2, "index")
    mine = (await say(bob_sock, room, "oops"))["message"]
    theirs = (await say(alice_sock, room, "the owner speaks"))["message"]
    url = f"{API}/rooms/{room}/messages"

    # a member may delete only their own; an outsider sees no such message
    expect_error(
        await server.http.delete(f"{url}/{theirs['id']}", headers=bob.headers),
        403,
        "not_a_moderator",
    )
    expect_error(
        await server.http.delete(f"{url}/{mine['id']}", headers=carol.headers),
        404,
        "message_not_found",
    )
    expect_error(
        await server.http.delete(
            f"{API}/rooms/{room + 1}/messages/{mine['id']}", headers=bob.headers
        ),
        404,
        "message_not_found",
    )
    response = await server.http.delete(f"{url}/{mine['id']}", headers=bob.headers)
    assert response.status_code == 204, response.text
    for sock in (alice_sock, bob_sock):
        event = await sock.event("room.message_deleted")
        assert event["data"] == {"room": room, "id": mine["id"], "by": "bob"}
    # the owner deletes bob's next one
    next_one = (await say(bob_sock, room, "spam"))["message"]
    response = await server.http.delete(f"{url}/{next_one['id']}", headers=alice.headers)
    assert response.status_code == 204
    # deleting twice changes nothing
    assert (
        await server.http.delete(f"{url}/{next_one['id']}", headers=alice.headers)
    ).status_code == 204

    page = (await server.http.get(url, headers=bob.headers)).json()
    by_id = {m["id"]: m for m in page["messages"]}
    assert by_id[mine["id"]]["deleted"] is True and by_id[mine["id"]]["text"] is None
    assert by_id[theirs["id"]]["deleted"] is False
    async with server.ctx.db.read() as conn:
        bodies = [b for (b,) in await conn.execute(select(room_messages_table.c.body))]
        audits = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.target, audit_log.c.details).where(
                    audit_log.c.action == "room.message_delete"
                )
            )
        ).all()
    assert "oops" not in bodies and "spam" not in bodies
    assert [(a, t) for a, t, _ in audits] == [
        ("bob", str(mine["id"])),
        ("alice", str(next_one["id"])),
    ]

    # a server moderator acting on a report (as_admin) needs no room role
    principal = await accounts.authenticate(server.ctx, carol.token)
    await room_messages.delete_message(
        server.ctx, principal, theirs["id"], reason="reported", as_admin=True
    )
    event = await bob_sock.event("room.message_deleted", id=theirs["id"])
    assert event["data"]["by"] == "carol"
    with pytest.raises(NotFound) as refused_delete:
        await room_messages.delete_message(server.ctx, principal, 10**9)
    assert refused_delete.value.code == "message_not_found"
    for sock in (alice_sock, bob_sock):
        await sock.close()


async def test_read_watermark_moves_forward_and_counts_unread(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx)
    for who in (alice, bob):
        await add_member(server.ctx, room, who.id)
    alice_sock = await server.connect(alice)
    bob_sock, bob_tab = await server.connect(bob), await server.connect(bob)
    ids = [(await say(alice_sock, room, f"m{i}"))["message"]["id"] for i in range(4)]
    bob_principal = await accounts.authenticate(server.ctx, bob.token)
    assert (await room_messages.unread(server.ctx, bob_principal))[room] == (4, ids[-1])

    assert await bob_sock.call("room.read", {"room": room, "upto": ids[1]}) == {"upto": ids[1]}
    for sock in (bob_sock, bob_tab):
        assert (await sock.event("room.read"))["data"] == {"room": room, "upto": ids[1]}
    assert (await room_messages.unread(server.ctx, bob_principal))[room] == (2, ids[-1])
    # backwards changes nothing and says where it stands; too far is clamped
    assert await bob_sock.call("room.read", {"room": room, "upto": ids[0]}) == {"upto": ids[1]}
    response = await server.http.post(
        f"{API}/rooms/{room}/read", json={"upto": 10**12}, headers=bob.headers
    )
    assert response.json() == {"upto": ids[-1]}
    assert (await room_messages.unread(server.ctx, bob_principal))[room] == (0, ids[-1])
    page = (await server.http.get(f"{API}/rooms/{room}/messages", headers=bob.headers)).json()
    assert page["read_upto"] == ids[-1]
    # outsiders and bad input
    carol_sock = await server.connect(carol)
    assert (await carol_sock.error("room.read", {"room": room, "upto": 1}))[
        "code"
    ] == "not_a_member"
    assert (await bob_sock.error("room.read", {"room": room, "upto": -1}))[
        "code"
    ] == "invalid_input"
    expect_error(
        await server.http.post(f"{API}/rooms/{room}/read", json={"upto": 1}, headers=carol.headers),
        403,
        "not_a_member",
    )
    for sock in (alice_sock, bob_sock, bob_tab, carol_sock):
        await sock.close()


async def test_typing_reaches_the_other_members_only(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = await make_room(server.ctx, kind="group")
    for who in (alice, bob):
        await add_member(server.ctx, room, who.id)
    alice_sock, bob_sock, carol_sock = [await server.connect(w) for w in (alice, bob, carol)]
    await server.wait_for(lambda: len(server.hub.room_members_here(room)) == 2, "index")
    assert await alice_sock.call("room.typing", {"room": room, "active": True}) == {}
    event = await bob_sock.event("room.typing")
    assert event["data"] == {"room": room, "username": "alice", "active": True}
    await alice_sock.assert_quiet(lambda f: f.get("type") == "room.typing")
    await carol_sock.assert_quiet(lambda f: f.get("type") == "room.typing")
    assert (await carol_sock.error("room.typing", {"room": room}))["code"] == "room_not_found"
    for sock in (alice_sock, bob_sock, carol_sock):
        await sock.close()


async def test_many_senders_at_once_each_socket_gets_the_room_in_id_order(
    server: Server, people: dict[str, User]
) -> None:
    """Sends from several sockets are committed together (group commit); every member
    socket receives the room's messages in strictly increasing id order, none lost."""
    room = await make_room(server.ctx)
    users = list(people.values())
    for who in users:
        await add_member(server.ctx, room, who.id)
    socks = [await server.connect(who) for who in users]
    listener = await server.connect(users[0])
    await server.wait_for(lambda: len(server.hub.room_members_here(room)) == 3, "index")

    async def blast(index: int) -> list[int]:
        sock = socks[index]
        refs = [
            await sock.send_op(
                "room.send", {"room": room, "client_id": f"b{index}-{n}", "text": "x"}
            )
            for n in range(8)
        ]
        replies = [await sock.reply(ref) for ref in refs]
        assert all(r["op"] == "ok" for r in replies), replies
        return [r["data"]["message"]["id"] for r in replies]

    sent = sorted(i for ids in await asyncio.gather(*(blast(i) for i in range(3))) for i in ids)
    received = [(await room_event(listener))["id"] for _ in sent]
    assert received == sent
    for sock in (*socks, listener):
        await sock.close()


async def test_staff_delete_in_any_room_and_a_deleted_room_is_forgotten(
    server: Server, people: dict[str, User]
) -> None:
    alice, bob = people["alice"], people["bob"]
    room = await make_room(server.ctx)
    await add_member(server.ctx, room, alice.id)
    sock = await server.connect(alice)
    await server.wait_for(lambda: server.hub.room_members_here(room) == {alice.id}, "index")
    message = (await say(sock, room, "reported"))["message"]
    await room_event(sock, message["id"])
    # bob is in no room at all, but holds rooms:manage (a server moderator)
    plain = await accounts.authenticate(server.ctx, bob.token)
    with pytest.raises(Forbidden) as refused:  # a public room: not a member of it
        await room_messages.delete_message(server.ctx, plain, message["id"])
    assert refused.value.code == "not_a_member"
    staff = dataclasses.replace(plain, permissions=plain.permissions | {"rooms:manage"})
    await room_messages.delete_message(
        server.ctx, staff, message["id"], reason="spam", ip="1.2.3.4"
    )
    event = await sock.event("room.message_deleted")
    assert event["data"] == {"room": room, "id": message["id"], "by": "bob"}
    async with server.ctx.db.read() as conn:
        row = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.ip, audit_log.c.details).where(
                    audit_log.c.action == "room.message_delete"
                )
            )
        ).one()
    assert row.actor == "bob" and row.ip == "1.2.3.4"
    assert row.details["reason"] == "spam" and row.details["author"] == "alice"

    # the room is deleted: every process forgets it
    await roomcast.room_deleted(server.ctx, room)
    await server.wait_for(lambda: not server.hub.room_members_here(room), "the room forgotten")
    assert room not in server.hub.rooms_here(alice.id)
    await sock.close()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70001])
def test_a_shared_frame_is_the_frame_websockets_would_write(size: int) -> None:
    """The hub builds a room message's wire bytes once for all sockets
    (``wsserver.text_frame``): they must be what websockets writes for that text."""
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    protocol = ServerProtocol()
    protocol.state = State.OPEN
    protocol.send_text(text.encode())
    assert b"".join(protocol.data_to_send()) == text_frame(text)


async def test_a_leave_while_a_socket_loads_its_rooms_is_not_undone(
    server: Server, people: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub reads a new socket's rooms from the database; a membership order that
    arrives while that read is under way is applied on top of it, so a read that predates a
    kick cannot put the room back."""
    alice, bob = people["alice"], people["bob"]
    room = await make_room(server.ctx)
    for who in (alice, bob):
        await add_member(server.ctx, room, who.id)
    real = roomcast.rooms_of_users
    read_done, release = asyncio.Event(), asyncio.Event()

    async def read_then_wait(ctx: Any, user_ids: list[int]) -> dict[int, set[int]]:
        found = await real(ctx, user_ids)  # the read happens before the kick...
        read_done.set()
        await release.wait()  # ...and is applied after it
        return found

    monkeypatch.setattr(roomcast, "rooms_of_users", read_then_wait)
    connecting = asyncio.create_task(server.connect(alice))
    await read_done.wait()
    await remove_member(server.ctx, room, alice.id)
    await server.wait_for(
        lambda: any(r.get(alice.id) for r in server.hub._recorders), "the order recorded"
    )
    release.set()
    alice_sock = await connecting
    monkeypatch.setattr(roomcast, "rooms_of_users", real)
    assert room not in server.hub.rooms_here(alice.id)
    bob_sock = await server.connect(bob)
    await say(bob_sock, room, "alice is out")
    await alice_sock.assert_quiet(no_room_messages)
    for sock in (alice_sock, bob_sock):
        await sock.close()
