"""A real lost wake-up on Redis (docs/protocol.md, "Lost wake-ups"): the server's pub/sub
connection is killed; DMs committed while it is down are never published to it. Once the
bus has reconnected, every socket of the process gets ``resync`` and its ``hello`` replays
what the socket missed, so the client ends with every message exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.dmutil import person, send
from tests.wsutil import Frame, MakeSettings, Server, Socket, open_socket, serve

pytestmark = pytest.mark.integration


@pytest.fixture
async def server(
    make_settings: MakeSettings, redis_server: str, redis_prefix: str
) -> AsyncIterator[Server]:
    async with serve(make_settings, redis_url=redis_server, redis_prefix=redis_prefix) as started:
        yield started


async def kill_pubsub(redis_server: str, prefix: str) -> None:
    admin = aioredis.from_url(redis_server)
    try:
        name = "echochat-pubsub:" + prefix
        ids = [c["id"] for c in await admin.client_list(_type="pubsub") if c["name"] == name]
        assert len(ids) == 1, "one pub/sub connection per process"
        assert await admin.client_kill_filter(_id=ids[0]) == 1
    finally:
        await admin.aclose()


async def messages_until_resync(sock: Socket) -> list[int]:
    """The ``dm.message`` ids that arrive before ``resync``."""
    ids: list[int] = []
    while True:
        frame = await sock.recv(timeout=15)
        if frame.get("type") == "resync":
            assert frame["data"] == {"reason": "bus", "cursor": None, "rooms": {}}
            return ids
        if frame.get("type") == "dm.message":
            ids.append(frame["data"]["id"])


async def test_a_killed_pubsub_connection_ends_with_every_message_once(
    server: Server, redis_server: str, redis_prefix: str
) -> None:
    alice = await person(server.http, server.url, "alice")
    bob = await person(server.http, server.url, "bob")
    alice_sock = await open_socket(server.url, alice.user)
    bob_sock = await open_socket(server.url, bob.user)
    before = (await send(alice_sock, "bob", await alice.seal("bob", "before")))["message"]

    await kill_pubsub(redis_server, redis_prefix)
    # sent while the subscription is down or coming back: some may never be published to it
    sent = [
        (await send(alice_sock, "bob", await alice.seal("bob", f"during {n}")))["message"]["id"]
        for n in range(5)
    ]
    live = await messages_until_resync(bob_sock)
    assert live[0] == before["id"] and live == sorted(live)

    seen = set(live)
    cursor = max(live)  # the client's cursor when it read resync: all it had, in order
    ref = await bob_sock.send_op("hello", {"cursor": cursor})
    replayed: list[Frame] = []
    while (frame := await bob_sock.recv()).get("ref") != ref:
        if frame.get("type") == "dm.message":
            replayed.append(frame["data"])
    assert frame["op"] == "ok" and frame["data"]["more"] is False
    # live copies may come first; the replay is queued in one go right before the ok
    count = frame["data"]["replayed"]
    assert [m["id"] for m in replayed[len(replayed) - count :]] == [i for i in sent if i > cursor]
    seen |= {message["id"] for message in replayed}
    assert sorted(seen) == [before["id"], *sent]  # nothing missing
    await alice_sock.close()
    await bob_sock.close()
    await alice.aclose()
    await bob.aclose()
