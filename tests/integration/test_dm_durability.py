"""``ok`` means committed (ARCHITECTURE section 6): a server process killed with SIGKILL right
after answering ``ok`` still has every acknowledged message when it starts again on the same
data, on SQLite (WAL, ``synchronous=FULL``, group commit) and on PostgreSQL.

Each test pipelines a burst of ``dm.send`` frames, kills the process the moment the
``ok`` it waits for arrives (others may still be in flight), restarts it, and reads the
history: every message that got an ``ok`` is there, with its id and envelope, exactly once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.dmutil import Person, get_history, person
from tests.wsutil import Frame, cookieless, open_socket

pytestmark = pytest.mark.integration

PUBLIC_URL = "http://chat.durable.test"  # the same issuer before and after the restart
BURST = 30
KILL_AFTER = 12  # the ok that triggers the kill


def base_env() -> dict[str, str]:
    return {
        "ECHOCHAT_PUBLIC_URL": PUBLIC_URL,
        "ECHOCHAT_SECRET_KEY": secrets.token_urlsafe(36),
        "ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
    }


async def kill_after_ok(server: LiveServer) -> tuple[list[Frame], int, Person, Person]:
    """Alice sends a burst to bob and the server is SIGKILLed right after the
    ``KILL_AFTER``-th ``ok``: the acknowledged messages, the last id seen, alice, bob."""
    async with cookieless(httpx.AsyncClient(base_url=server.url, timeout=10)) as http:
        alice = await person(http, server.url, "alice")
        bob = await person(http, server.url, "bob")
    sock = await open_socket(server.url, alice.user)
    envelopes = [await alice.seal("bob", f"durable {i}", client_id=f"d-{i}") for i in range(BURST)]
    refs = [await sock.send_op("dm.send", {"to": "bob", "envelope": e}) for e in envelopes]
    acknowledged: list[Frame] = []
    for ref in refs[:KILL_AFTER]:
        reply = await sock.reply(ref)
        assert reply["op"] == "ok", reply
        acknowledged.append(reply["data"]["message"])
    server.kill()  # at once: no shutdown, no flush beyond what the commit did
    # whatever else was already answered before the kill counts as acknowledged too
    for frame in sock.pending:
        if frame.get("op") == "ok" and frame.get("ref") in refs[KILL_AFTER:]:
            acknowledged.append(frame["data"]["message"])
    closed = await sock.closed()
    assert closed.rcvd is None  # the process died; no close frame
    for frame in sock.pending:  # frames read while waiting for the close
        late = frame.get("op") == "ok" and frame.get("ref") in refs[KILL_AFTER:]
        if late and frame["data"]["message"] not in acknowledged:
            acknowledged.append(frame["data"]["message"])
    return acknowledged, max(m["id"] for m in acknowledged), alice, bob


async def history_after_restart(server: LiveServer, who: Person, peer: str) -> list[Frame]:
    async with cookieless(httpx.AsyncClient(base_url=server.url, timeout=10)) as http:
        response = await get_history(http, who, peer, limit=200)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    messages: list[Frame] = body["messages"]
    return messages


async def check_survivors(acknowledged: list[Frame], history: list[Frame], bob: Person) -> None:
    by_id = {m["id"]: m for m in history}
    assert len(by_id) == len(history)  # none twice
    for message in acknowledged:
        assert by_id.get(message["id"]) == message, message["client_id"]
    assert [m["id"] for m in history] == sorted(by_id)
    # nothing but the burst, in order of client ids
    numbers = [int(m["client_id"].removeprefix("d-")) for m in history]
    assert numbers == list(range(len(numbers)))
    assert KILL_AFTER <= len(history) < BURST  # killed mid-burst, nothing acknowledged lost
    assert await bob.open(history[KILL_AFTER - 1]) == f"durable {KILL_AFTER - 1}"


async def test_sqlite_keeps_every_acknowledged_message_after_sigkill(
    tmp_path: Path, live_server_factory: Callable[..., LiveServer]
) -> None:
    env = base_env()
    data = tmp_path / "data"
    first = live_server_factory(env=env, data_dir=data)
    acknowledged, _, alice, bob = await kill_after_ok(first)
    second = live_server_factory(env=env, data_dir=data)  # same SQLite file, WAL replayed
    for who in (alice, bob):
        await who.reconnect(second.url)
    history = await history_after_restart(second, bob, "alice")
    await check_survivors(acknowledged, history, bob)
    # and the restarted server goes on where it stopped: ids keep increasing
    sock = await open_socket(second.url, alice.user)
    reply = await sock.call(
        "dm.send", {"to": "bob", "envelope": await alice.seal("bob", "after the crash")}
    )
    assert reply["message"]["id"] > max(m["id"] for m in history)
    await sock.close()
    for who in (alice, bob):
        await who.aclose()


async def test_postgres_keeps_every_acknowledged_message_after_sigkill(
    pg_url: str, live_server_factory: Callable[..., LiveServer]
) -> None:
    env = {**base_env(), "ECHOCHAT_DATABASE_URL": pg_url, "ECHOCHAT_AUTO_MIGRATE": "1"}
    first = live_server_factory(env=env)
    acknowledged, _, alice, bob = await kill_after_ok(first)
    second = live_server_factory(env=env)
    for who in (alice, bob):
        await who.reconnect(second.url)
    history = await history_after_restart(second, bob, "alice")
    await check_survivors(acknowledged, history, bob)
    for who in (alice, bob):
        await who.aclose()
