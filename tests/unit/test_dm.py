"""Direct messages over ``/ws`` against a real uvicorn server in this process, with real E2EE
envelopes (``echochat.client.e2ee``): sending and receiving on every socket of both users,
idempotent retries (also racing), every refusal of ``dm.send`` in the documented order,
receipts, the offline summary, BUZZ! and a database that never holds plaintext
(docs/protocol.md, "Direct messages"; issue 6).

Policy under test (``services/dm.py``): anyone may message anyone who has not blocked them
(a block looks like a missing user; one you blocked is ``blocked``); the envelope must be a
v1 envelope of this conversation, from this sender's published device, wrapped only for
the two users; ``ok`` comes after the commit, then ``dm.message`` to both users' sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, String, Text, func, select

from echochat.domain.e2ee import b64e
from echochat.domain.errors import Unavailable
from echochat.services import accounts, dm
from echochat.store.tables import messages, metadata
from tests.dmutil import (
    Person,
    dm_event,
    get_conversations,
    get_history,
    person,
    post_message,
    send,
    send_refused,
)
from tests.wsutil import API, Frame, MakeSettings, Server, Socket, serve

# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings) as started:
        yield started


@pytest.fixture
async def people(server: Server) -> AsyncIterator[dict[str, Person]]:
    found = {
        name: await person(server.http, server.url, name, display_name=name.title())
        for name in ("alice", "bob", "carol")
    }
    yield found
    for who in found.values():
        await who.aclose()


async def stored(server: Server) -> list[dict[str, Any]]:
    async with server.ctx.db.read() as conn:
        rows = await conn.execute(select(messages).order_by(messages.c.id))
        return [dict(row._mapping) for row in rows]


async def block(server: Server, who: Person, username: str) -> None:
    response = await server.http.post(
        f"{API}/blocks", json={"username": username}, headers=who.headers
    )
    assert response.status_code == 204, response.text


async def close_all(*socks: Socket) -> None:
    for sock in socks:
        await sock.close()


def is_dm(frame: Frame) -> bool:
    return frame.get("op") == "ev" and frame.get("type") == "dm.message"


# --- sending and receiving --------------------------------------------------------------------


async def test_a_dm_reaches_every_socket_of_both_users(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    alice_1 = await server.connect(alice.user)
    alice_2 = await server.connect(alice.user)
    bob_1 = await server.connect(bob.user)
    bob_2 = await server.connect(bob.user)
    carol_1 = await server.connect(carol.user)

    envelope = await alice.seal("bob", "Hi Bob \U0001f44b <b>not html</b>", client_id="c-1")
    ref = await alice_1.send_op("dm.send", {"to": "bob", "envelope": envelope})
    reply = await alice_1.reply(ref)
    assert reply["op"] == "ok", reply
    # `ok` is answered before the event reaches the sending socket
    assert not any(is_dm(f) for f in alice_1.pending)
    assert reply["data"]["duplicate"] is False
    message = reply["data"]["message"]
    assert set(message) == {
        "id",
        "conv",
        "sender",
        "recipient",
        "sender_device",
        "client_id",
        "created_at",
        "envelope",
    }
    assert (message["conv"], message["sender"], message["recipient"]) == (
        "dm:alice:bob",
        "alice",
        "bob",
    )
    assert (message["sender_device"], message["client_id"]) == (alice.device.device_id, "c-1")
    assert message["envelope"] == envelope  # relayed exactly as sent
    assert isinstance(message["id"], int) and message["id"] > 0

    for sock in (alice_1, alice_2, bob_1, bob_2):
        assert await dm_event(sock) == message
    assert await bob.open(message) == "Hi Bob \U0001f44b <b>not html</b>"
    assert await alice.open(message) == "Hi Bob \U0001f44b <b>not html</b>"  # own wrap
    await carol_1.assert_quiet()  # nobody else hears of it
    for sock in (alice_1, alice_2, bob_1, bob_2):
        await sock.assert_quiet()

    (row,) = await stored(server)
    assert row["id"] == message["id"] and row["conv"] == "dm:alice:bob"
    assert json.loads(row["envelope"]) == envelope

    # and back: bob answers; ids keep increasing
    answer = await send(bob_2, "alice", await bob.seal("alice", "hello Alice"))
    assert answer["message"]["id"] > message["id"]
    for sock in (alice_1, alice_2, bob_1, bob_2):
        assert (await dm_event(sock))["id"] == answer["message"]["id"]
    assert await alice.open(answer["message"]) == "hello Alice"
    await close_all(alice_1, alice_2, bob_1, bob_2, carol_1)


async def test_dms_need_no_buddy_relation_and_usernames_are_case_insensitive(
    server: Server, people: dict[str, Person]
) -> None:
    alice = people["alice"]
    sock = await server.connect(alice.user)
    sent = await send(sock, "CaRoL", await alice.seal("carol", "we are not buddies"))
    assert sent["message"]["recipient"] == "carol"
    await close_all(sock)


async def test_a_retry_returns_the_original_and_emits_nothing(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    alice_1 = await server.connect(alice.user)
    alice_2 = await server.connect(alice.user)
    bob_1 = await server.connect(bob.user)
    envelope = await alice.seal("bob", "once", client_id="retry-1")
    first = await send(alice_1, "bob", envelope)
    for sock in (alice_1, alice_2, bob_1):
        await dm_event(sock, first["message"]["id"])

    again = await send(alice_2, "bob", envelope)
    assert again == {"message": first["message"], "duplicate": True}
    # whatever the new envelope says: the original comes back, nothing is stored or sent
    other = await alice.seal("bob", "twice?", client_id="retry-1")
    changed = await send(alice_1, "bob", other)
    assert changed == {"message": first["message"], "duplicate": True}
    over_http = await post_message(server.http, alice, "bob", other)
    assert over_http.status_code == 200, over_http.text
    assert over_http.json() == first["message"]
    for sock in (alice_1, alice_2, bob_1):
        await sock.assert_quiet()
    assert [r["client_id"] for r in await stored(server)] == ["retry-1"]
    await close_all(alice_1, alice_2, bob_1)


async def test_concurrent_duplicate_sends_store_one_message(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    socks = [await server.connect(alice.user) for _ in range(3)]
    bob_1 = await server.connect(bob.user)
    envelope = await alice.seal("bob", "racing", client_id="race-1")
    refs = [
        await sock.send_op("dm.send", {"to": "bob", "envelope": envelope})
        for sock in socks
        for _ in range(2)  # two frames per socket, back to back
    ]
    http_send = asyncio.create_task(post_message(server.http, alice, "bob", envelope))
    replies = [await socks[i // 2].reply(ref) for i, ref in enumerate(refs)]
    response = await http_send
    assert response.status_code in (200, 201), response.text
    assert all(r["op"] == "ok" for r in replies), replies
    ids = {r["data"]["message"]["id"] for r in replies} | {response.json()["id"]}
    assert len(ids) == 1
    firsts = [r for r in replies if not r["data"]["duplicate"]]
    assert len(firsts) + (response.status_code == 201) == 1
    (row,) = await stored(server)
    assert row["id"] in ids
    assert (await dm_event(bob_1))["id"] == row["id"]
    await bob_1.assert_quiet()  # exactly one dm.message
    await close_all(*socks, bob_1)


# --- refusals -----------------------------------------------------------------------------------


def with_changes(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**envelope, **changes}


async def test_every_refusal_of_dm_send_has_its_code_and_the_socket_stays_open(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    mallory = await person(server.http, server.url, "mallory")
    sock = await server.connect(alice.user)
    bob_sock = await server.connect(bob.user)
    good = await alice.seal("bob", "fine", client_id="good-1")
    to_carol = await alice.seal("carol", "for carol")
    bobs = await bob.seal("alice", "bob's own")
    from_mallory = await mallory.seal("bob", "let me in")  # sealed before the blocks below
    to_alice = await carol.seal("alice", "hello?")
    wrap = b64e(bytes(80))
    extra_wrap = sorted(
        [*good["keys"], {"user": "carol", "device": "carol-dev-9999", "wrap": wrap}],
        key=lambda k: (k["user"], k["device"]),
    )
    too_many = [{"user": "bob", "device": f"bob-dev-{i:04d}", "wrap": wrap} for i in range(41)]
    cases: list[tuple[str, Any, str]] = [
        ("nobody", good, "user_not_found"),
        # no account can have this name: refused before any database work
        ("bo\x00b", good, "user_not_found"),
        ("alice", good, "invalid_input"),  # yourself
        ("bob", {"v": 1}, "invalid_envelope"),
        ("bob", "not an object", "invalid_envelope"),
        ("bob", with_changes(good, v=2), "unsupported_version"),
        ("bob", with_changes(good, v=True), "unsupported_version"),
        ("bob", with_changes(good, extra="x"), "invalid_envelope"),
        ("bob", with_changes(good, ct="A" * (61 * 1024)), "envelope_too_large"),
        ("bob", with_changes(good, keys=too_many), "too_many_wraps"),
        ("bob", with_changes(good, nonce="!!"), "invalid_envelope"),
        ("bob", to_carol, "wrong_conversation"),  # sealed for dm:alice:carol
        ("bob", with_changes(good, conv="dm:alice:carol"), "wrong_conversation"),
        ("bob", bobs, "wrong_sender"),  # dm:alice:bob, but bob's
        ("bob", with_changes(good, sender_device="alice-unpublished"), "unknown_sender_device"),
        ("bob", with_changes(good, sender_device=bob.device.device_id), "unknown_sender_device"),
        ("bob", with_changes(good, keys=extra_wrap), "bad_recipient"),
    ]
    for to, envelope, code in cases:
        error = await send_refused(sock, to, envelope)
        assert error["code"] == code, (to, code, error)
        assert error["message"]
        assert "time" in await sock.call("ping", {})  # still usable
    # a missing field of the op itself
    assert (await sock.error("dm.send", {"to": "bob"}))["code"] == "invalid_input"
    assert (await sock.error("dm.send", {"envelope": good}))["code"] == "invalid_input"

    # blocks: bob blocks mallory (she sees a missing user), alice blocks carol ("blocked")
    await block(server, bob, "mallory")
    mallory_sock = await server.connect(mallory.user)
    assert (await send_refused(mallory_sock, "bob", from_mallory))["code"] == "user_not_found"
    await block(server, alice, "carol")
    assert (await send_refused(sock, "carol", to_carol))["code"] == "blocked"
    # carol, blocked by alice, cannot tell alice from a missing user
    carol_sock = await server.connect(carol.user)
    assert (await send_refused(carol_sock, "alice", to_alice))["code"] == "user_not_found"

    # the order of the checks: a missing user before a bad envelope, a block before a
    # bad envelope, yourself before a bad envelope
    assert (await send_refused(sock, "nobody", {"v": 9}))["code"] == "user_not_found"
    assert (await send_refused(sock, "carol", {"v": 9}))["code"] == "blocked"
    assert (await send_refused(sock, "alice", {"v": 9}))["code"] == "invalid_input"

    assert await stored(server) == []
    await bob_sock.assert_quiet()
    # and after all that, the good one goes through
    assert (await send(sock, "bob", good))["duplicate"] is False
    await close_all(sock, bob_sock, mallory_sock, carol_sock)
    await mallory.aclose()


async def test_the_dm_rate_limit_is_per_sender(make_settings: MakeSettings) -> None:
    async with serve(make_settings, rate_limit_dm_account="3/minute") as server:
        alice = await person(server.http, server.url, "alice")
        bob = await person(server.http, server.url, "bob")
        carol = await person(server.http, server.url, "carol")
        sock = await server.connect(alice.user)
        for index in range(2):
            await send(
                sock,
                "bob" if index % 2 else "carol",
                await alice.seal("bob" if index % 2 else "carol", f"m{index}"),
            )
        # the limit is checked first: a refused attempt counts too ...
        assert (await send_refused(sock, "nobody", {"v": 1}))["code"] == "user_not_found"
        refused = await send_refused(sock, "bob", await alice.seal("bob", "one too many"))
        assert refused["code"] == "rate_limited"
        # ... and past it nothing else is looked at (no hint whether "nobody" exists)
        assert (await send_refused(sock, "nobody", {"v": 1}))["code"] == "rate_limited"
        assert "time" in await sock.call("ping", {})
        over_http = await post_message(server.http, alice, "bob", await alice.seal("bob", "x"))
        assert over_http.status_code == 429, over_http.text
        assert over_http.json()["error"]["code"] == "rate_limited"
        # another sender is not affected
        bob_sock = await server.connect(bob.user)
        await send(bob_sock, "alice", await bob.seal("alice", "my own budget"))
        assert len(await stored(server)) == 3
        await close_all(sock, bob_sock)
        for who in (alice, bob, carol):
            await who.aclose()


# --- receipts -----------------------------------------------------------------------------------


async def test_receipts_move_forward_only_are_clamped_and_reach_both_users(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    alice_sock = await server.connect(alice.user)
    bob_1 = await server.connect(bob.user)
    bob_2 = await server.connect(bob.user)
    carol_sock = await server.connect(carol.user)
    ids = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"m{i}")))["message"]["id"]
        for i in range(3)
    ]
    mine = (await send(bob_1, "alice", await bob.seal("alice", "bob's")))["message"]["id"]
    for sock in (alice_sock, bob_1, bob_2):
        for message_id in [*ids, mine]:
            await dm_event(sock, message_id)

    assert await bob_1.call("dm.delivered", {"peer": "alice", "upto": ids[1]}) == {"upto": ids[1]}
    expected = {
        "conv": "dm:alice:bob",
        "reader": "bob",
        "peer": "alice",
        "kind": "delivered",
        "upto": ids[1],
    }
    for sock in (alice_sock, bob_1, bob_2):
        assert (await sock.event("dm.receipt"))["data"] == expected
    # lower or equal: nothing changes, nothing is sent
    assert await bob_2.call("dm.delivered", {"peer": "alice", "upto": ids[0]}) == {"upto": ids[1]}
    assert await bob_2.call("dm.delivered", {"peer": "alice", "upto": ids[1]}) == {"upto": ids[1]}
    for sock in (alice_sock, bob_1, bob_2):
        await sock.assert_quiet()
    # read far ahead: clamped to alice's newest message to bob (not bob's own, later one)
    assert await bob_2.call("dm.read", {"peer": "alice", "upto": 10**12}) == {"upto": ids[2]}
    for sock in (alice_sock, bob_1, bob_2):
        data = (await sock.event("dm.receipt"))["data"]
        assert data == {**expected, "kind": "read", "upto": ids[2]}
    await carol_sock.assert_quiet()
    # read implied delivered
    history = (await get_history(server.http, alice, "bob")).json()
    assert (history["peer_delivered_upto"], history["peer_read_upto"]) == (ids[2], ids[2])
    assert await bob_1.call("dm.delivered", {"peer": "alice", "upto": ids[2]}) == {"upto": ids[2]}
    await alice_sock.assert_quiet()

    # alice acknowledging bob's message moves her own watermark, not bob's
    assert await alice_sock.call("dm.read", {"peer": "bob", "upto": mine}) == {"upto": mine}
    data = (await bob_1.event("dm.receipt"))["data"]
    assert (data["reader"], data["peer"], data["kind"], data["upto"]) == (
        "alice",
        "bob",
        "read",
        mine,
    )
    # with no messages from the peer, nothing moves
    assert await carol_sock.call("dm.read", {"peer": "alice", "upto": 5}) == {"upto": 0}

    # refusals: missing user, blocked either way, yourself, bad fields
    for op in ("dm.delivered", "dm.read"):
        assert (await bob_1.error(op, {"peer": "nobody", "upto": 1}))["code"] == "user_not_found"
        assert (await bob_1.error(op, {"peer": "al\x00ice", "upto": 1}))["code"] == (
            "user_not_found"
        )
        assert (await bob_1.error(op, {"peer": "bob", "upto": 1}))["code"] == "invalid_input"
        assert (await bob_1.error(op, {"peer": "alice", "upto": -1}))["code"] == "invalid_input"
        assert (await bob_1.error(op, {"peer": "alice"}))["code"] == "invalid_input"
    await block(server, alice, "bob")
    assert (await bob_1.error("dm.read", {"peer": "alice", "upto": 1}))["code"] == (
        "user_not_found"
    )
    assert (await alice_sock.error("dm.read", {"peer": "bob", "upto": 1}))["code"] == "blocked"
    await close_all(alice_sock, bob_1, bob_2, carol_sock)


async def test_receipts_of_one_batch_coalesce_each_ack_gets_its_answer(
    server: Server, people: dict[str, Person]
) -> None:
    """Acks queued together for the same (reader, peer, kind) are one write: the highest
    ``upto`` wins, every ack is answered with the watermark after the batch, and the users
    get one ``dm.receipt``; a refusal answers every ack of its group."""
    alice, bob = people["alice"], people["bob"]
    alice_sock = await server.connect(alice.user)
    bob_sock = await server.connect(bob.user)
    ids = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"m{i}")))["message"]["id"]
        for i in range(3)
    ]
    for message_id in ids:
        await dm_event(bob_sock, message_id)
        await dm_event(alice_sock, message_id)
    ctx = server.ctx
    me = await accounts.authenticate(ctx, bob.user.token)
    # queued before the writer runs: one batch
    answers = await asyncio.gather(
        dm.acknowledge(ctx, me, "alice", "delivered", ids[0]),
        dm.acknowledge(ctx, me, "Alice", "delivered", ids[2]),
        dm.acknowledge(ctx, me, "alice", "delivered", ids[1]),
        dm.acknowledge(ctx, me, "alice", "read", ids[0]),
    )
    assert list(answers) == [ids[2], ids[2], ids[2], ids[0]]
    for sock in (alice_sock, bob_sock):
        kinds: dict[str, int] = {}
        for _ in range(2):
            data = (await sock.event("dm.receipt"))["data"]
            kinds[data["kind"]] = data["upto"]
        assert kinds == {"delivered": ids[2], "read": ids[0]}
        await sock.assert_quiet()
    history = (await get_history(server.http, alice, "bob")).json()
    assert (history["peer_delivered_upto"], history["peer_read_upto"]) == (ids[2], ids[0])

    refused = await asyncio.gather(
        dm.acknowledge(ctx, me, "nobody", "read", 1),
        dm.acknowledge(ctx, me, "nobody", "read", 2),
        return_exceptions=True,
    )
    assert [getattr(exc, "code", None) for exc in refused] == ["user_not_found"] * 2
    await close_all(alice_sock, bob_sock)


# --- offline messages ---------------------------------------------------------------------------


async def test_offline_summary_at_connect_counts_undelivered_per_sender(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    fresh = await server.connect(bob.user)
    assert fresh.summary == {"senders": [], "total": 0}
    await fresh.close()

    alice_sock = await server.connect(alice.user)
    carol_sock = await server.connect(carol.user)
    from_alice = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"a{i}")))["message"]["id"]
        for i in range(3)
    ]
    await send(carol_sock, "bob", await carol.seal("bob", "c0"))
    await send(alice_sock, "carol", await alice.seal("carol", "not for bob"))

    bob_sock = await server.connect(bob.user)
    assert bob_sock.summary == {
        "senders": [
            {"username": "alice", "display_name": "Alice", "count": 3},
            {"username": "carol", "display_name": "Carol", "count": 1},
        ],
        "total": 4,
    }
    # fetching history is not an acknowledgement
    assert (await get_history(server.http, bob, "alice")).status_code == 200
    again = await server.connect(bob.user)
    assert again.summary is not None and again.summary["total"] == 4
    await again.close()

    await bob_sock.call("dm.delivered", {"peer": "alice", "upto": from_alice[1]})
    partly = await server.connect(bob.user)
    assert partly.summary == {
        "senders": [
            {"username": "alice", "display_name": "Alice", "count": 1},
            {"username": "carol", "display_name": "Carol", "count": 1},
        ],
        "total": 2,
    }
    await bob_sock.call("dm.read", {"peer": "alice", "upto": from_alice[2]})  # implies delivered
    await block(server, bob, "carol")  # blocked senders are left out
    after = await server.connect(bob.user)
    assert after.summary == {"senders": [], "total": 0}
    await close_all(alice_sock, carol_sock, bob_sock, partly, after)


# --- BUZZ! --------------------------------------------------------------------------------------


async def test_buzz_reaches_the_buzzed_user_is_rate_limited_and_refused_when_blocked(
    make_settings: MakeSettings,
) -> None:
    async with serve(make_settings, rate_limit_buzz="2/minute") as server:
        alice = await person(server.http, server.url, "alice")
        bob = await person(server.http, server.url, "bob")
        carol = await person(server.http, server.url, "carol")
        alice_1 = await server.connect(alice.user)
        alice_2 = await server.connect(alice.user)
        bob_1 = await server.connect(bob.user)
        bob_2 = await server.connect(bob.user)

        assert await alice_1.call("buzz", {"to": "bob"}) == {}
        for sock in (bob_1, bob_2):
            assert (await sock.event("buzz"))["data"] == {"username": "alice"}
        await alice_2.assert_quiet()
        await alice_1.assert_quiet()
        assert await alice_2.call("buzz", {"to": "BOB"}) == {}
        await bob_1.event("buzz")
        # the limit is per (sender, recipient): a third buzz to bob is refused ...
        assert (await alice_1.error("buzz", {"to": "bob"}))["code"] == "rate_limited"
        await bob_1.assert_quiet()
        # ... while buzzing carol, and bob buzzing alice, still work
        carol_sock = await server.connect(carol.user)
        assert await alice_1.call("buzz", {"to": "carol"}) == {}
        await carol_sock.event("buzz", username="alice")
        assert await bob_1.call("buzz", {"to": "alice"}) == {}
        await alice_1.event("buzz", username="bob")

        assert (await alice_1.error("buzz", {"to": "nobody"}))["code"] == "user_not_found"
        assert (await alice_1.error("buzz", {"to": "alice"}))["code"] == "invalid_input"
        assert (await alice_1.error("buzz", {}))["code"] == "invalid_input"
        await block(server, carol, "alice")
        assert (await alice_1.error("buzz", {"to": "carol"}))["code"] == "user_not_found"
        assert (await carol_sock.error("buzz", {"to": "alice"}))["code"] == "blocked"
        await carol_sock.assert_quiet()
        assert "time" in await alice_1.call("ping", {})
        await close_all(alice_1, alice_2, bob_1, bob_2, carol_sock)
        for who in (alice, bob, carol):
            await who.aclose()


# --- what the server keeps ----------------------------------------------------------------------


def scan_files(folder: Path, needles: list[str]) -> list[str]:
    """Every file under ``folder`` is free of ``needles`` (UTF-8 and UTF-16); their names."""
    names = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                for encoded in (needle.encode(), needle.encode("utf-16-le")):
                    assert encoded not in data, (path, needle)
            names.append(path.name)
    return names


CANARY = "canary-plaintext-7f3a \u00e9t\u00e9 \U0001f6a8 \u0645\u0631\u062d\u0628\u0627"


async def test_the_database_holds_no_plaintext(server: Server, people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    alice_sock = await server.connect(alice.user)
    bob_sock = await server.connect(bob.user)
    sent = await send(alice_sock, "bob", await alice.seal("bob", CANARY))
    by_http = await post_message(server.http, bob, "alice", await bob.seal("alice", CANARY))
    assert by_http.status_code == 201, by_http.text
    # the envelopes really carry the text: both ends read it
    assert await bob.open(await dm_event(bob_sock, sent["message"]["id"])) == CANARY
    assert await alice.open(await dm_event(alice_sock, by_http.json()["id"])) == CANARY
    await bob_sock.call("dm.read", {"peer": "alice", "upto": sent["message"]["id"]})

    needles = [CANARY, *CANARY.split(" ")]
    checked = 0
    async with server.ctx.db.read() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not columns:
                continue
            for row in await conn.execute(select(*columns)):
                for value in row:
                    text = json.dumps(value, ensure_ascii=False) if value is not None else ""
                    for needle in needles:
                        assert needle not in text, (table.name, needle)
                    checked += 1
        assert (await conn.execute(select(func.count()).select_from(messages))).scalar() == 2
    assert checked > 0
    # nor anywhere in the database files (WAL included), in any encoding we know
    scanned = await asyncio.to_thread(scan_files, Path(server.settings.data_dir), needles)
    assert any(name.endswith(".sqlite3") for name in scanned), scanned
    await close_all(alice_sock, bob_sock)


async def test_conversations_list_counts_and_orders_by_activity(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    alice_sock = await server.connect(alice.user)
    bob_sock = await server.connect(bob.user)
    carol_sock = await server.connect(carol.user)
    assert await get_conversations(server.http, alice) == []
    b1 = (await send(bob_sock, "alice", await bob.seal("alice", "b1")))["message"]
    b2 = (await send(bob_sock, "alice", await bob.seal("alice", "b2")))["message"]
    c1 = (await send(carol_sock, "alice", await carol.seal("alice", "c1")))["message"]
    listing = await get_conversations(server.http, alice)
    assert [c["username"] for c in listing] == ["carol", "bob"]
    carol_row, bob_row = listing
    assert bob_row == {
        "username": "bob",
        "display_name": "Bob",
        "conv": "dm:alice:bob",
        "last_message_id": b2["id"],
        "last_message_at": b2["created_at"],
        "unread": 2,
        "offline": 2,
        "my_delivered_upto": 0,
        "my_read_upto": 0,
        "peer_delivered_upto": 0,
        "peer_read_upto": 0,
    }
    assert (carol_row["last_message_id"], carol_row["unread"]) == (c1["id"], 1)
    await alice_sock.call("dm.delivered", {"peer": "bob", "upto": b2["id"]})
    await alice_sock.call("dm.read", {"peer": "bob", "upto": b1["id"]})
    # alice answers bob: bob's conversation is the newest again
    a1 = (await send(alice_sock, "bob", await alice.seal("bob", "a1")))["message"]
    listing = await get_conversations(server.http, alice)
    assert [c["username"] for c in listing] == ["bob", "carol"]
    assert {k: listing[0][k] for k in ("last_message_id", "unread", "offline")} == {
        "last_message_id": a1["id"],
        "unread": 1,
        "offline": 0,
    }
    assert (listing[0]["my_delivered_upto"], listing[0]["my_read_upto"]) == (b2["id"], b1["id"])
    bobs_view = await get_conversations(server.http, bob)
    assert [
        (c["username"], c["unread"], c["peer_read_upto"], c["peer_delivered_upto"])
        for c in bobs_view
    ] == [("alice", 1, b1["id"], b2["id"])]
    # a user who blocked you, or whom you blocked, is not listed
    await block(server, carol, "alice")
    assert [c["username"] for c in await get_conversations(server.http, alice)] == ["bob"]
    assert await get_conversations(server.http, carol) == []
    await close_all(alice_sock, bob_sock, carol_sock)


async def test_http_send_reaches_sockets(server: Server, people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    bob_sock = await server.connect(bob.user)
    alice_sock = await server.connect(alice.user)
    envelope = await alice.seal("bob", "from a script")
    response = await post_message(server.http, alice, "bob", envelope)
    assert response.status_code == 201, response.text
    message = response.json()
    assert message["envelope"] == envelope
    assert await dm_event(bob_sock) == message
    assert await dm_event(alice_sock) == message
    assert await bob.open(message) == "from a script"
    await close_all(alice_sock, bob_sock)


async def test_stopping_the_writer_refuses_what_is_queued(
    server: Server, people: dict[str, Person]
) -> None:
    """The app's shutdown stops the DM writer before the database closes: a send still
    waiting for its commit is answered ``unavailable``, not left hanging."""
    alice = people["alice"]
    me = accounts.Principal(
        user_id=alice.user.id,
        username="alice",
        display_name="Alice",
        session_id="s",
        roles=frozenset({"user"}),
        permissions=frozenset(),
    )
    envelope = await alice.seal("bob", "never committed")
    queue = server.ctx.db.write_queue
    assert queue is not None
    async with queue:  # SQLite's writer queue held: the batch cannot begin
        sending = asyncio.create_task(dm.send(server.ctx, me, "bob", envelope))
        await asyncio.sleep(0)
        while not getattr(queue, "_waiters", None):  # noqa: ASYNC110 - the writer waits
            await asyncio.sleep(0.01)
        await dm.stop_writer(server.ctx.db)
    with pytest.raises(Unavailable) as refused:
        await asyncio.wait_for(sending, 10)
    assert refused.value.code == "unavailable"
    assert await stored(server) == []
