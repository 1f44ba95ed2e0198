"""Direct messages over HTTP (``/api/v1/conversations``, ``/api/v1/dm/{username}/...``)
against the real app on SQLite (httpx.ASGITransport), with real E2EE envelopes: history
paging both ways, who may read what, receipts, sign-in and CSRF like the other routers,
and retention (docs/protocol.md, "Direct messages").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.services import dm
from echochat.services.context import Context
from echochat.store.tables import dm_watermarks, messages
from tests.apps import running
from tests.dmutil import Person, get_conversations, get_history, person, post_message
from tests.wsutil import API, PASSWORD, cookieless, expect_error


@dataclass
class Site:
    ctx: Context
    http: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    url: str
    people: list[Person]

    async def person(self, name: str) -> Person:
        found = await person(self.http, self.url, name, transport=self.transport)
        self.people.append(found)
        return found

    def browser(self) -> httpx.AsyncClient:
        """A client with a cookie jar, as a browser page."""
        return httpx.AsyncClient(transport=self.transport, base_url=self.url)

    async def count(self) -> int:
        async with self.ctx.db.read() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
            )


Start = Callable[..., AbstractAsyncContextManager[Site]]


@pytest.fixture
def start(make_settings: Callable[..., ResolvedSettings]) -> Start:
    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Site]:
        overrides.setdefault("rate_limit_register_ip", "1000/hour")
        settings = make_settings(**overrides).settings
        app = create_app(settings)
        async with running(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
                site = Site(app.state.ctx, cookieless(http), transport, settings.public_url, [])
                try:
                    yield site
                finally:
                    for who in site.people:
                        await who.aclose()

    return run


@pytest.fixture
async def site(start: Start) -> AsyncIterator[Site]:
    async with start() as running:
        yield running


async def sent(site: Site, sender: Person, to: str, text: str, **kwargs: Any) -> dict[str, Any]:
    response = await post_message(site.http, sender, to, await sender.seal(to, text, **kwargs))
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def page(site: Site, who: Person, peer: str, **params: Any) -> dict[str, Any]:
    response = await get_history(site.http, who, peer, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {
        "messages",
        "has_more",
        "peer_delivered_upto",
        "peer_read_upto",
        "my_read_upto",
    }
    return body


def ids(body: dict[str, Any]) -> list[int]:
    return [m["id"] for m in body["messages"]]


async def receipt(site: Site, who: Person, peer: str, kind: str, upto: Any) -> httpx.Response:
    return await site.http.post(
        f"{API}/dm/{peer}/receipts", json={"kind": kind, "upto": upto}, headers=who.headers
    )


# --- sign-in and CSRF ---------------------------------------------------------------------------


async def test_every_endpoint_needs_sign_in(site: Site) -> None:
    await site.person("bob")
    calls = [
        site.http.get(f"{API}/conversations"),
        site.http.get(f"{API}/dm/bob/messages"),
        site.http.post(f"{API}/dm/bob/messages", json={"envelope": {}}),
        site.http.post(f"{API}/dm/bob/receipts", json={"kind": "read", "upto": 1}),
    ]
    for call in calls:
        expect_error(await call, 401, "not_authenticated")
    bad = {"Authorization": "Bearer not-a-token"}
    expect_error(await site.http.get(f"{API}/conversations", headers=bad), 401, "token_invalid")


async def test_cookie_requests_need_the_csrf_token_like_every_router(site: Site) -> None:
    alice = await site.person("alice")
    await site.person("bob")
    async with site.browser() as browser:
        login = await browser.post(
            f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        envelope = await alice.seal("bob", "from the page")
        refused = await browser.post(f"{API}/dm/bob/messages", json={"envelope": envelope})
        expect_error(refused, 403, "csrf_missing")
        refused = await browser.post(f"{API}/dm/bob/receipts", json={"kind": "read", "upto": 1})
        expect_error(refused, 403, "csrf_missing")
        forged = await browser.post(
            f"{API}/dm/bob/messages",
            json={"envelope": envelope},
            headers={"X-CSRF-Token": "forged.token"},
        )
        expect_error(forged, 403, "csrf_invalid")
        assert await site.count() == 0
        token = {"X-CSRF-Token": browser.cookies["echochat_csrf"]}
        accepted = await browser.post(
            f"{API}/dm/bob/messages", json={"envelope": envelope}, headers=token
        )
        assert accepted.status_code == 201, accepted.text
        # reads need no token
        assert (await browser.get(f"{API}/dm/bob/messages")).status_code == 200
        assert (await browser.get(f"{API}/conversations")).status_code == 200
        assert accepted.headers["cache-control"] == "no-store"


# --- sending over HTTP --------------------------------------------------------------------------


async def test_send_over_http_created_then_retry_ok_and_refusals(site: Site) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    envelope = await alice.seal("bob", "hello over http", client_id="h-1")
    first = await post_message(site.http, alice, "bob", envelope)
    assert first.status_code == 201, first.text
    message = first.json()
    assert message["envelope"] == envelope and message["client_id"] == "h-1"
    again = await post_message(site.http, alice, "bob", envelope)
    assert again.status_code == 200, again.text
    assert again.json() == message
    assert await bob.open(message) == "hello over http"

    expect_error(await post_message(site.http, alice, "nobody", envelope), 404, "user_not_found")
    expect_error(await post_message(site.http, alice, "alice", envelope), 422, "invalid_input")
    error = expect_error(
        await post_message(site.http, alice, "bob", {"v": 1}), 422, "invalid_envelope"
    )
    assert error["details"] == {"field": "envelope"}
    expect_error(
        await post_message(site.http, alice, "bob", {**envelope, "v": 2}),
        422,
        "unsupported_version",
    )
    expect_error(
        await post_message(site.http, bob, "alice", envelope), 422, "wrong_sender"
    )  # alice's envelope, sent by bob: dm:alice:bob fits, the sender does not
    missing = await site.http.post(f"{API}/dm/bob/messages", json={}, headers=alice.headers)
    expect_error(missing, 422, "invalid_input")
    not_json = await site.http.post(
        f"{API}/dm/bob/messages",
        content=b"{nope",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code in (400, 422), not_json.text
    too_long = await post_message(site.http, alice, "b" * 65, envelope)
    expect_error(too_long, 422, "invalid_input")
    await site.http.post(f"{API}/blocks", json={"username": "alice"}, headers=bob.headers)
    blocked = await post_message(site.http, alice, "bob", await alice.seal("bob", "x"))
    expect_error(blocked, 404, "user_not_found")
    assert await site.count() == 1


# --- history ------------------------------------------------------------------------------------


async def test_history_pages_both_ways_in_ascending_order(site: Site) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    carol = await site.person("carol")
    all_ids = []
    for index in range(7):
        sender, to = (alice, "bob") if index % 3 else (bob, "alice")
        all_ids.append((await sent(site, sender, to, f"m{index}"))["id"])
    await sent(site, alice, "carol", "elsewhere")  # another conversation, never mixed in

    newest = await page(site, alice, "bob", limit=3)
    assert ids(newest) == all_ids[4:] and newest["has_more"] is True
    older = await page(site, alice, "bob", limit=3, before=all_ids[4])
    assert ids(older) == all_ids[1:4] and older["has_more"] is True
    oldest = await page(site, alice, "bob", limit=3, before=all_ids[1])
    assert ids(oldest) == all_ids[:1] and oldest["has_more"] is False
    # upwards from a known id
    up = await page(site, bob, "alice", after=all_ids[0], limit=4)
    assert ids(up) == all_ids[1:5] and up["has_more"] is True
    rest = await page(site, bob, "alice", after=all_ids[4], limit=4)
    assert ids(rest) == all_ids[5:] and rest["has_more"] is False
    assert ids(await page(site, bob, "alice", after=0)) == all_ids  # default limit 50
    between = await page(site, bob, "alice", after=all_ids[1], before=all_ids[5])
    assert ids(between) == all_ids[2:5]
    assert (await page(site, bob, "ALICE"))["messages"] == (await page(site, alice, "bob"))[
        "messages"
    ]
    texts = [await bob.open(m) for m in (await page(site, bob, "alice"))["messages"]]
    assert texts == [f"m{i}" for i in range(7)]

    # carol has her own conversation with bob (empty) and never sees alice's
    assert (await page(site, carol, "bob"))["messages"] == []
    assert ids(await page(site, carol, "alice")) != []
    assert all(
        m["conv"] == "dm:alice:carol" for m in (await page(site, carol, "alice"))["messages"]
    )

    for params in ({"limit": 0}, {"limit": 201}, {"before": -1}, {"after": "x"}):
        expect_error(await get_history(site.http, alice, "bob", **params), 422, "invalid_input")
    expect_error(await get_history(site.http, alice, "nobody"), 404, "user_not_found")
    expect_error(await get_history(site.http, alice, "alice"), 422, "invalid_input")
    # blocks: a user who blocked you is missing; one you blocked is "blocked"
    await site.http.post(f"{API}/blocks", json={"username": "alice"}, headers=bob.headers)
    expect_error(await get_history(site.http, alice, "bob"), 404, "user_not_found")
    expect_error(await get_history(site.http, bob, "alice"), 403, "blocked")


async def test_history_reports_both_sides_watermarks(site: Site) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    a1 = (await sent(site, alice, "bob", "a1"))["id"]
    a2 = (await sent(site, alice, "bob", "a2"))["id"]
    b1 = (await sent(site, bob, "alice", "b1"))["id"]
    response = await receipt(site, bob, "alice", "delivered", a2)
    assert response.status_code == 200 and response.json() == {"upto": a2}, response.text
    response = await receipt(site, bob, "alice", "read", a1)
    assert response.json() == {"upto": a1}
    response = await receipt(site, alice, "bob", "read", b1)
    assert response.json() == {"upto": b1}
    mine = await page(site, alice, "bob")
    assert (mine["peer_delivered_upto"], mine["peer_read_upto"], mine["my_read_upto"]) == (
        a2,
        a1,
        b1,
    )
    theirs = await page(site, bob, "alice")
    assert (theirs["peer_delivered_upto"], theirs["peer_read_upto"], theirs["my_read_upto"]) == (
        b1,
        b1,
        a1,
    )
    # forward only, clamped, and bad bodies
    assert (await receipt(site, bob, "alice", "read", 0)).json() == {"upto": a1}
    assert (await receipt(site, bob, "alice", "read", 10**15)).json() == {"upto": a2}
    expect_error(await receipt(site, bob, "alice", "seen", 1), 422, "invalid_input")
    expect_error(await receipt(site, bob, "alice", "read", -1), 422, "invalid_input")
    expect_error(await receipt(site, bob, "alice", "read", "x"), 422, "invalid_input")
    expect_error(await receipt(site, bob, "nobody", "read", 1), 404, "user_not_found")
    async with site.ctx.db.read() as conn:
        rows = (await conn.execute(select(dm_watermarks))).all()
    assert len(rows) == 2  # one per direction of the one conversation


async def test_conversations_are_empty_for_a_new_user(site: Site) -> None:
    alice = await site.person("alice")
    assert await get_conversations(site.http, alice) == []


# --- retention ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_retention_deletes_messages_older_than_the_setting(start: Start) -> None:
    async with start(message_retention_days=30) as site:
        alice = await site.person("alice")
        bob = await site.person("bob")
        now = datetime.now(UTC)
        clock = Clock(now - timedelta(days=40))
        site.ctx.clock = clock
        old = [(await sent(site, alice, "bob", f"old {i}"))["id"] for i in range(3)]
        clock.now = now - timedelta(days=29)
        recent = (await sent(site, bob, "alice", "recent"))["id"]
        clock.now = now
        fresh = (await sent(site, alice, "bob", "fresh"))["id"]

        assert await dm.purge_expired(site.ctx, now=now) == 3
        assert ids(await page(site, alice, "bob")) == [recent, fresh]
        assert await dm.purge_expired(site.ctx, now=now) == 0
        # undelivered messages go too
        assert await dm.purge_expired(site.ctx, now=now + timedelta(days=31)) == 2
        assert await site.count() == 0
        assert old  # three were written
        # with nothing left, the conversation drops out of the list
        assert await get_conversations(site.http, alice) == []


async def test_retention_zero_keeps_everything(site: Site) -> None:
    alice = await site.person("alice")
    await site.person("bob")
    await sent(site, alice, "bob", "keep me")
    far = datetime.now(UTC) + timedelta(days=365 * 50)
    assert await dm.purge_expired(site.ctx, now=far) == 0
    assert await site.count() == 1


async def test_retention_purges_in_batches(start: Start) -> None:
    async with start(message_retention_days=1) as site:
        alice = await site.person("alice")
        await site.person("bob")
        for index in range(5):
            await sent(site, alice, "bob", f"m{index}")
        later = datetime.now(UTC) + timedelta(days=2)
        original = dm.PURGE_BATCH
        dm.PURGE_BATCH = 2  # a loop of small transactions, not one huge delete
        try:
            assert await dm.purge_expired(site.ctx, now=later) == 5
        finally:
            dm.PURGE_BATCH = original
        assert await site.count() == 0


async def test_retention_runs_when_the_app_starts(start: Start) -> None:
    """The hourly purge also runs at start: old messages are gone after a restart."""
    async with start(message_retention_days=1) as site:
        alice = await site.person("alice")
        await site.person("bob")
        site.ctx.clock = Clock(datetime.now(UTC) - timedelta(days=3))
        await sent(site, alice, "bob", "old")
        site.ctx.clock = Clock(datetime.now(UTC))
        await sent(site, alice, "bob", "new")
        assert await site.count() == 2
    async with start(message_retention_days=1) as again:
        for _ in range(500):  # poll the database for up to 10 s
            if await again.count() == 1:
                break
            await asyncio.sleep(0.02)
        assert await again.count() == 1
