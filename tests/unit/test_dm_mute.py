"""A server-wide mute (``users.muted_until``, set by a moderator) refuses ``dm.send`` over
the socket and HTTP, and ``buzz``, with 403 ``muted`` naming the time it ends; a mute that
has ended refuses nothing; in one group commit a muted sender is refused alone. And
``dm.delete_for_report`` removes one stored DM (docs/protocol.md, "Sending: dm.send").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from echochat.domain.errors import NotFound
from echochat.services import accounts, dm
from echochat.store import messages as store
from tests.dmutil import Person, dm_event, get_history, person, post_message, send, send_refused
from tests.wsutil import MakeSettings, Server, serve


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


async def mute(server: Server, who: Person, minutes: float | None) -> str:
    """Mute ``who`` for ``minutes`` from now (negative: a mute that ended; None lifts it);
    the end as the refusal spells it (ISO, to the minute)."""
    until = None if minutes is None else server.ctx.clock() + timedelta(minutes=minutes)
    async with server.ctx.db.transaction() as conn:
        await store.set_muted_until_txn(conn, who.user.id, until)
    return "" if until is None else until.isoformat(timespec="minutes")


async def test_a_muted_user_cannot_send_nor_buzz_until_the_mute_ends(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    alice_sock = await server.connect(alice.user)
    bob_sock = await server.connect(bob.user)
    until = await mute(server, alice, 30)

    refused = await send_refused(alice_sock, "bob", await alice.seal("bob", "hello?"))
    assert refused["code"] == "muted"
    assert until in refused["message"], refused
    # the mute is checked before the recipient: no lookup answer leaks to a muted user
    assert (await send_refused(alice_sock, "nobody", {"v": 1}))["code"] == "muted"
    response = await post_message(server.http, alice, "bob", await alice.seal("bob", "http"))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "muted"
    assert until in response.json()["error"]["message"]
    buzzed = await alice_sock.error("buzz", {"to": "bob"})
    assert buzzed["code"] == "muted" and until in buzzed["message"]
    await bob_sock.assert_quiet()
    assert (await get_history(server.http, bob, "alice")).json()["messages"] == []

    # others are not affected: bob still reaches alice (a mute is not a block)
    sent = await send(bob_sock, "alice", await bob.seal("alice", "you there?"))
    assert (await dm_event(alice_sock))["id"] == sent["message"]["id"]
    assert (await dm_event(bob_sock))["id"] == sent["message"]["id"]

    # a mute that ended refuses nothing; nor does a lifted one
    await mute(server, alice, -1)
    sent = await send(alice_sock, "bob", await alice.seal("bob", "back"))
    assert (await dm_event(bob_sock))["id"] == sent["message"]["id"]
    await mute(server, alice, 5)
    assert (await alice_sock.error("buzz", {"to": "bob"}))["code"] == "muted"
    await mute(server, alice, None)
    assert await alice_sock.call("buzz", {"to": "bob"}) == {}
    await bob_sock.event("buzz", username="alice")
    await alice_sock.close()
    await bob_sock.close()


async def test_in_one_group_commit_only_the_muted_sender_is_refused(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    await mute(server, alice, 10)
    carol_sock = await server.connect(carol.user)
    envelopes = [(alice, "carol", await alice.seal("carol", f"a{i}")) for i in range(3)] + [
        (bob, "carol", await bob.seal("carol", f"b{i}")) for i in range(3)
    ]
    me = {who.name: await accounts.authenticate(server.ctx, who.user.token) for who in (alice, bob)}
    # all queued before the writer runs: one batch
    results = await asyncio.gather(
        *(dm.send(server.ctx, me[who.name], to, env) for who, to, env in envelopes),
        return_exceptions=True,
    )
    codes = [getattr(r, "code", "ok") for r in results]
    assert codes == ["muted"] * 3 + ["ok"] * 3, results
    for _ in range(3):
        assert (await dm_event(carol_sock))["sender"] == "bob"
    await carol_sock.assert_quiet()
    await carol_sock.close()


async def test_delete_for_report_removes_one_stored_dm(
    server: Server, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    alice_sock = await server.connect(alice.user)
    first = (await send(alice_sock, "bob", await alice.seal("bob", "fine")))["message"]
    second = (await send(alice_sock, "bob", await alice.seal("bob", "abusive")))["message"]

    await dm.delete_for_report(server.ctx, second["id"])
    history = (await get_history(server.http, bob, "alice")).json()["messages"]
    assert [m["id"] for m in history] == [first["id"]]
    with pytest.raises(NotFound) as refused:
        await dm.delete_for_report(server.ctx, second["id"])
    assert refused.value.code == "message_not_found"
    await alice_sock.close()
