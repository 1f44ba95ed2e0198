"""Receipts of one group commit are written together (``store.advance_many_txn``: one
SELECT and one executemany for the whole batch), whatever mix of readers, peers and kinds
it holds: each conversation's watermarks move to the highest ``upto`` of each kind, clamped
to the peer's newest message, ``read`` carrying ``delivered`` along; every ack gets the
watermark after the batch; one ``dm.receipt`` per kind and conversation that moved; a
refusal or a conversation with nothing to acknowledge leaves the others alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from echochat.services import accounts, dm
from tests.dmutil import Person, dm_event, get_history, person, send
from tests.wsutil import MakeSettings, Server, Socket, serve


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings) as started:
        yield started


@pytest.fixture
async def people(server: Server) -> AsyncIterator[dict[str, Person]]:
    found = {
        name: await person(server.http, server.url, name) for name in ("alice", "bob", "carol")
    }
    yield found
    for who in found.values():
        await who.aclose()


async def sent(sock: Socket, who: Person, to: str, text: str) -> int:
    message_id: int = (await send(sock, to, await who.seal(to, text)))["message"]["id"]
    return message_id


async def receipts(sock: Socket, count: int) -> set[tuple[Any, ...]]:
    out = set()
    for _ in range(count):
        data = (await sock.event("dm.receipt"))["data"]
        out.add((data["conv"], data["reader"], data["peer"], data["kind"], data["upto"]))
    await sock.assert_quiet()
    return out


async def test_one_batch_of_receipts_for_several_readers_peers_and_kinds(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    socks = {who.name: await server.connect(who.user) for who in (alice, bob, carol)}
    from_alice = [await sent(socks["alice"], alice, "bob", f"a{i}") for i in range(3)]
    from_carol = [await sent(socks["carol"], carol, "bob", f"c{i}") for i in range(2)]
    to_carol = await sent(socks["bob"], bob, "carol", "b0")
    for name, ids in (
        ("alice", from_alice),
        ("bob", [*from_alice, *from_carol, to_carol]),
        ("carol", [*from_carol, to_carol]),
    ):
        for message_id in ids:
            await dm_event(socks[name], message_id)
    ctx = server.ctx
    me = {who.name: await accounts.authenticate(ctx, who.user.token) for who in people.values()}

    # all queued before the writer runs: one batch
    answers = await asyncio.gather(
        dm.acknowledge(ctx, me["bob"], "alice", "delivered", from_alice[0]),
        dm.acknowledge(ctx, me["bob"], "alice", "read", from_alice[1]),  # carries delivered
        dm.acknowledge(ctx, me["bob"], "carol", "delivered", 10**12),  # clamped
        dm.acknowledge(ctx, me["carol"], "bob", "read", to_carol),
        dm.acknowledge(ctx, me["alice"], "bob", "read", 10**12),  # bob sent alice nothing
        dm.acknowledge(ctx, me["alice"], "carol", "delivered", 3),  # no conversation
        dm.acknowledge(ctx, me["bob"], "nobody", "delivered", 1),
        dm.acknowledge(ctx, me["bob"], "alice", "delivered", from_alice[0]),  # below: no event
        return_exceptions=True,
    )
    assert answers[:6] == [from_alice[1], from_alice[1], from_carol[1], to_carol, 0, 0]
    assert getattr(answers[6], "code", None) == "user_not_found"
    assert answers[7] == from_alice[1]

    ab, bc = "dm:alice:bob", "dm:bob:carol"
    bob_alice = {
        (ab, "bob", "alice", "delivered", from_alice[1]),
        (ab, "bob", "alice", "read", from_alice[1]),
    }
    bob_carol = {(bc, "bob", "carol", "delivered", from_carol[1])}
    carol_bob = {(bc, "carol", "bob", "read", to_carol)}
    assert await receipts(socks["alice"], 2) == bob_alice
    assert await receipts(socks["bob"], 4) == bob_alice | bob_carol | carol_bob
    assert await receipts(socks["carol"], 2) == bob_carol | carol_bob

    marks = (await get_history(server.http, alice, "bob")).json()
    assert (marks["peer_delivered_upto"], marks["peer_read_upto"]) == (from_alice[1],) * 2
    assert marks["my_read_upto"] == 0
    marks = (await get_history(server.http, carol, "bob")).json()
    assert (marks["peer_delivered_upto"], marks["peer_read_upto"]) == (from_carol[1], 0)
    assert marks["my_read_upto"] == to_carol

    # the next batch starts from there: forward only
    assert await dm.acknowledge(ctx, me["bob"], "alice", "read", from_alice[0]) == from_alice[1]
    assert await dm.acknowledge(ctx, me["bob"], "alice", "read", from_alice[2]) == from_alice[2]
    assert await receipts(socks["alice"], 1) == {(ab, "bob", "alice", "read", from_alice[2])}
    for sock in socks.values():
        await sock.close()
