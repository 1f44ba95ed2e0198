"""Reports over HTTP (``/api/v1/reports``, ``/api/v1/admin/reports``) against the real app
on SQLite (httpx.ASGITransport): filing with every refusal, the reviewer's queue, resolving
(dismiss, delete a DM, refusals), what the reporter is told and what they are not
(docs/security.md, "Reports"). Mute, ban and room-message deletion: test_reports_actions.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select

from echochat.app import create_app
from echochat.bus import Subscription
from echochat.config import ResolvedSettings
from echochat.services import notify
from echochat.services.context import Context
from echochat.services.roles import grant_role
from echochat.store.tables import audit_log, messages, room_members, room_messages, rooms
from tests.apps import running
from tests.dmutil import Person, person, post_message
from tests.wsutil import API, PASSWORD, User, cookieless, expect_error, register


@dataclass
class Site:
    ctx: Context
    http: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    url: str
    people: list[Person]

    async def person(self, name: str) -> Person:
        """A user with published E2EE keys (for DMs)."""
        found = await person(self.http, self.url, name, transport=self.transport)
        self.people.append(found)
        return found

    async def user(self, name: str, role: str | None = None) -> User:
        user = await register(self.http, name)
        if role is not None:
            await grant_role(self.ctx.db, name, role, actor="test")
        return user

    async def report(self, who: User | Person, **body: Any) -> httpx.Response:
        body.setdefault("reason", "spam")
        return await self.http.post(f"{API}/reports", json=body, headers=who.headers)

    async def filed(self, who: User | Person, **body: Any) -> dict[str, Any]:
        response = await self.report(who, **body)
        assert response.status_code == 201, response.text
        report: dict[str, Any] = response.json()
        return report

    async def mine(self, who: User | Person) -> list[dict[str, Any]]:
        response = await self.http.get(f"{API}/reports/mine", headers=who.headers)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["reports"]
        return found

    async def queue(self, who: User, **params: Any) -> dict[str, Any]:
        response = await self.http.get(f"{API}/admin/reports", params=params, headers=who.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def resolve(self, who: User, report_id: int, **body: Any) -> httpx.Response:
        body.setdefault("resolution", "")
        return await self.http.post(
            f"{API}/admin/reports/{report_id}/resolve", json=body, headers=who.headers
        )

    async def audit(self, action: str) -> list[Any]:
        async with self.ctx.db.read() as conn:
            rows = await conn.execute(
                select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
            return list(rows)

    async def listen(self, user_id: int) -> Subscription:
        return await self.ctx.bus.subscribe(notify.user_channel(user_id))


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


async def next_event(sub: Subscription, kind: str) -> dict[str, Any]:
    """The next event frame of type ``kind`` on the subscription (others are skipped)."""
    async with asyncio.timeout(5):
        while True:
            _, payload = await sub.get()
            if payload[:1] != b"E":
                continue
            frame: dict[str, Any] = orjson.loads(payload[1:])
            if frame["type"] == kind:
                return frame


async def dm(site: Site, sender: Person, to: str, text: str) -> int:
    response = await post_message(site.http, sender, to, await sender.seal(to, text))
    assert response.status_code == 201, response.text
    message_id: int = response.json()["id"]
    return message_id


# --- sign-in and permissions --------------------------------------------------------------------


async def test_every_endpoint_needs_sign_in_and_admin_ones_the_permission(site: Site) -> None:
    calls = [
        site.http.post(f"{API}/reports", json={"kind": "user", "username": "x", "reason": "r"}),
        site.http.get(f"{API}/reports/mine"),
        site.http.get(f"{API}/admin/reports"),
        site.http.post(f"{API}/admin/reports/1/resolve", json={"action": "dismiss"}),
    ]
    for call in calls:
        expect_error(await call, 401, "not_authenticated")
    bob = await site.user("bob")
    expect_error(
        await site.http.get(f"{API}/admin/reports", headers=bob.headers), 403, "permission_denied"
    )
    expect_error(await site.resolve(bob, 1, action="dismiss"), 403, "permission_denied")


# --- filing -------------------------------------------------------------------------------------


async def test_report_a_user_then_mine_and_duplicates(site: Site) -> None:
    bob = await site.user("bob")
    await site.user("carol")
    report = await site.filed(bob, kind="user", username="Carol", reason="  rude\tto me  ")
    assert report["kind"] == "user" and report["username"] == "carol"
    assert report["reason"] == "rude to me"  # one clean line
    assert report["status"] == "open" and report["action"] is None
    assert report["outcome"] == "Waiting for a moderator."
    assert report["resolved_at"] is None and report["excerpt"] is None
    assert await site.mine(bob) == [report]

    again = await site.report(bob, kind="user", username="carol", reason="still rude")
    expect_error(again, 409, "already_reported")
    # somebody else may report the same user; bob's list stays his own
    dave = await site.user("dave")
    other = await site.filed(dave, kind="user", username="carol")
    assert [r["id"] for r in await site.mine(dave)] == [other["id"]]
    assert [r["id"] for r in await site.mine(bob)] == [report["id"]]


async def test_filing_refusals(site: Site) -> None:
    bob = await site.user("bob")
    await site.user("carol")
    expect_error(await site.report(bob, kind="user", username="nobody"), 404, "user_not_found")
    expect_error(await site.report(bob, kind="user", username="BOB"), 422, "cannot_report_self")
    bad_bodies: list[dict[str, Any]] = [
        {"kind": "user", "username": "carol"},  # no reason
        {"kind": "user", "username": "carol", "reason": ""},
        {"kind": "user", "username": "carol", "reason": "x" * 501},
        {"kind": "user", "username": "carol", "reason": "r", "excerpt": "x" * 2001},
        {"kind": "user", "reason": "r"},  # no username
        {"kind": "user", "username": "carol", "message_id": 1, "reason": "r"},
        {"kind": "dm", "reason": "r"},  # no message id
        {"kind": "dm", "message_id": 1, "username": "carol", "reason": "r"},
        {"kind": "room_message", "message_id": 0, "reason": "r"},
        {"kind": "buddy", "username": "carol", "reason": "r"},
        {"kind": "user", "username": "carol", "reason": "r", "extra": 1},
    ]
    for body in bad_bodies:
        response = await site.http.post(f"{API}/reports", json=body, headers=bob.headers)
        expect_error(response, 422, "invalid_input")
    blank = await site.report(bob, kind="user", username="carol", reason=" \u202e\t ")
    expect_error(blank, 422, "invalid_reason")
    assert await site.mine(bob) == []
    # the largest allowed sizes pass, the excerpt keeping its lines
    excerpt = "line one\nline two\r\n" + "y" * 1900
    report = await site.filed(bob, kind="user", username="carol", reason="r" * 500, excerpt=excerpt)
    assert report["excerpt"] == "line one\nline two\n" + "y" * 1900


async def test_dm_reports_only_by_the_two_users_and_no_leak(site: Site) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    carol = await site.user("carol")
    message_id = await dm(site, alice, "bob", "buy my pills")
    report = await site.filed(
        bob, kind="dm", message_id=message_id, reason="spam", excerpt="buy my pills"
    )
    assert report["kind"] == "dm" and report["username"] == "alice"
    assert report["message_id"] == message_id and report["room_id"] is None
    assert report["excerpt"] == "buy my pills"

    # a stranger and a missing id get the very same answer
    stranger = expect_error(
        await site.report(carol, kind="dm", message_id=message_id), 404, "message_not_found"
    )
    missing = expect_error(
        await site.report(carol, kind="dm", message_id=message_id + 1000), 404, "message_not_found"
    )
    assert stranger == missing
    # a room message id is not a DM id (and the other way round)
    expect_error(
        await site.report(bob, kind="room_message", message_id=message_id),
        404,
        "message_not_found",
    )
    # the sender reporting their own message is reporting themselves
    expect_error(
        await site.report(alice, kind="dm", message_id=message_id), 422, "cannot_report_self"
    )
    expect_error(await site.report(bob, kind="dm", message_id=message_id), 409, "already_reported")
    # a report of the user is another target than a report of their message
    await site.filed(bob, kind="user", username="alice")


# --- rooms (rows written directly: the rooms API is another area's) ------------------------------


@dataclass
class Room:
    id: int
    name: str


async def public_room(site: Site) -> Room:
    async with site.ctx.db.read() as conn:
        row = (
            await conn.execute(
                select(rooms.c.id, rooms.c.name).where(rooms.c.kind == "public").limit(1)
            )
        ).one()
    return Room(row.id, row.name)


async def join(site: Site, room: Room, user: User, first_message_id: int = 0) -> None:
    async with site.ctx.db.transaction() as conn:
        await conn.execute(
            insert(room_members).values(
                room_id=room.id, user_id=user.id, first_message_id=first_message_id
            )
        )


async def room_post(
    site: Site, room: Room, sender: User, text: str, *, deleted: bool = False
) -> int:
    now = datetime.now(UTC)
    async with site.ctx.db.transaction() as conn:
        result = await conn.execute(
            insert(room_messages)
            .values(
                room_id=room.id,
                sender_id=sender.id,
                client_id=f"c-{text}",
                kind="text",
                body=text,
                created_at=now,
                deleted_at=now if deleted else None,
            )
            .returning(room_messages.c.id)
        )
        return int(result.scalar_one())


async def test_room_message_reports_only_by_members_who_see_it(site: Site) -> None:
    alice = await site.user("alice")
    carol = await site.user("carol")
    dave = await site.user("dave")
    erin = await site.user("erin")
    room = await public_room(site)
    await join(site, room, alice)
    await join(site, room, carol)
    old = await room_post(site, room, alice, "before erin came")
    await join(site, room, erin, first_message_id=old)
    message_id = await room_post(site, room, alice, "you all stink")
    gone = await room_post(site, room, alice, "deleted already", deleted=True)

    report = await site.filed(carol, kind="room_message", message_id=message_id)
    assert report["username"] == "alice" and report["room_id"] == room.id
    await site.filed(erin, kind="room_message", message_id=message_id)

    not_found = [
        (dave, message_id),  # not a member
        (erin, old),  # sent before erin joined: not hers to see
        (carol, gone),  # deleted
        (carol, message_id + 1000),  # missing
    ]
    for who, mid in not_found:
        expect_error(
            await site.report(who, kind="room_message", message_id=mid), 404, "message_not_found"
        )
    expect_error(
        await site.report(alice, kind="room_message", message_id=message_id),
        422,
        "cannot_report_self",
    )


async def test_rate_limit_counts_every_attempt(start: Start) -> None:
    async with start(rate_limit_report_account="3/hour") as site:
        bob = await site.user("bob")
        await site.user("carol")
        await site.user("dave")
        await site.filed(bob, kind="user", username="carol")
        expect_error(await site.report(bob, kind="user", username="nobody"), 404, "user_not_found")
        await site.filed(bob, kind="user", username="dave")
        limited = await site.report(bob, kind="user", username="erin")
        expect_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) > 0
        # per reporter: carol is not limited by bob's reports
        carol = await site.user("carol2")
        await site.filed(carol, kind="user", username="dave")


# --- the queue ----------------------------------------------------------------------------------


async def test_queue_shows_what_a_reviewer_needs_and_no_envelope(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    alice = await site.person("alice")
    bob = await site.person("bob")
    carol = await site.user("carol")
    room = await public_room(site)
    await join(site, room, carol)
    frank = await site.user("frank")
    await join(site, room, frank)
    room_mid = await room_post(site, room, carol, "Carol says: nasty words")
    dm_mid = await dm(site, alice, "bob", "secret plaintext")

    user_report = await site.filed(bob, kind="user", username="carol", reason="rude")
    dm_report = await site.filed(
        bob, kind="dm", message_id=dm_mid, reason="threat", excerpt="secret plaintext"
    )
    true_room = await site.filed(
        frank, kind="room_message", message_id=room_mid, excerpt="nasty   WORDS"
    )
    async with site.ctx.db.read() as conn:
        stored = (
            await conn.execute(select(messages.c.envelope).where(messages.c.id == dm_mid))
        ).scalar_one()

    response = await site.http.get(f"{API}/admin/reports", headers=mod.headers)
    assert response.status_code == 200, response.text
    assert stored not in response.text and "envelope" not in response.text
    assert "ciphertext" not in response.text
    body = response.json()
    assert body["next_before"] is None
    by_id = {r["id"]: r for r in body["reports"]}
    assert list(by_id) == [true_room["id"], dm_report["id"], user_report["id"]]  # newest first

    seen = by_id[dm_report["id"]]
    assert seen["kind"] == "dm" and seen["status"] == "open"
    assert seen["reporter"] == "bob" and seen["username"] == "alice"
    assert seen["display_name"] == "alice" and seen["banned"] is False
    assert seen["muted_until"] is None
    assert seen["reason"] == "threat" and seen["excerpt"] == "secret plaintext"
    assert seen["excerpt_matches"] is None  # a DM cannot be checked: the server cannot read it
    message = seen["message"]
    assert message["id"] == dm_mid and message["found"] is True
    assert message["sender"] == "alice" and message["room_id"] is None
    sent_at = datetime.fromisoformat(message["created_at"])
    assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=1)

    seen = by_id[true_room["id"]]
    assert seen["message"]["room_id"] == room.id and seen["message"]["room_name"] == room.name
    assert seen["message"]["sender"] == "carol"
    assert seen["excerpt_matches"] is True
    assert by_id[user_report["id"]]["message"] is None

    # an excerpt that is not in the stored room text is flagged, not trusted
    gina = await site.user("gina")
    await join(site, room, gina)
    forged = await site.filed(
        gina, kind="room_message", message_id=room_mid, excerpt="carol wants to hurt me"
    )
    first = (await site.queue(mod, limit=1))["reports"][0]
    assert first["id"] == forged["id"] and first["excerpt_matches"] is False

    # paging and the status filter
    page = await site.queue(mod, limit=2)
    assert [r["id"] for r in page["reports"]] == [forged["id"], true_room["id"]]
    assert page["next_before"] == true_room["id"]
    assert page["open"] == 4  # all of them, not only this page
    page = await site.queue(mod, limit=2, before=page["next_before"])
    assert [r["id"] for r in page["reports"]] == [dm_report["id"], user_report["id"]]
    page = await site.queue(mod, limit=2, before=page["next_before"])
    assert page == {"reports": [], "next_before": None, "open": 4}
    assert (await site.queue(mod, status="dismissed"))["reports"] == []
    assert (await site.queue(mod, status="actioned"))["reports"] == []
    for params in ({"status": "closed"}, {"limit": 0}, {"limit": 201}, {"before": 0}):
        response = await site.http.get(f"{API}/admin/reports", params=params, headers=mod.headers)
        expect_error(response, 422, "invalid_input")


# --- resolving ----------------------------------------------------------------------------------


async def test_dismiss_tells_the_reporter_but_not_who_or_what_was_written(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    await site.user("carol")
    report = await site.filed(bob, kind="user", username="carol", reason="rude")
    listener = await site.listen(bob.id)

    response = await site.resolve(
        mod, report["id"], action="dismiss", resolution="Bob reports everyone; ignore"
    )
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["status"] == "dismissed" and done["action"] == "dismiss"
    assert done["reviewed_by"] == "mod" and done["resolution"] == "Bob reports everyone; ignore"

    event = await next_event(listener, "report.update")
    assert event["data"] == {
        "id": report["id"],
        "status": "dismissed",
        "action": "dismiss",
        "outcome": "A moderator reviewed your report and took no action.",
        "resolved_at": done["reviewed_at"],
    }
    [mine] = await site.mine(bob)
    assert mine["status"] == "dismissed" and mine["action"] == "dismiss"
    assert mine["outcome"] == event["data"]["outcome"]
    assert mine["resolved_at"] == done["reviewed_at"]
    text = orjson.dumps([event, mine]).decode()
    assert "mod" not in text.replace("moderator", "")  # nobody's name but the target's
    assert "ignore" not in text  # the moderator's note stays with the moderators

    [row] = await site.audit("report.resolve")
    assert row.actor == "mod" and row.target_type == "report" and row.target == str(report["id"])
    assert row.details["action"] == "dismiss" and row.ip

    expect_error(await site.resolve(mod, report["id"], action="ban"), 409, "already_resolved")
    expect_error(await site.resolve(mod, 999_999, action="dismiss"), 404, "report_not_found")
    assert len(await site.audit("report.resolve")) == 1
    # a new report of the same user is allowed once the old one is closed
    await site.filed(bob, kind="user", username="carol", reason="again")
    assert [r["status"] for r in (await site.queue(mod, status="dismissed"))["reports"]] == [
        "dismissed"
    ]


async def test_delete_removes_the_stored_dm(site: Site) -> None:
    admin = await site.user("root", "admin")
    alice = await site.person("alice")
    bob = await site.person("bob")
    keep = await dm(site, alice, "bob", "hello")
    bad = await dm(site, alice, "bob", "nasty")
    report = await site.filed(bob, kind="dm", message_id=bad, excerpt="nasty")
    listener = await site.listen(bob.user.id)

    response = await site.resolve(admin, report["id"], action="delete", resolution="removed")
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["status"] == "actioned" and done["action"] == "delete"
    assert done["message"] == {
        "id": bad,
        "found": False,
        "sender": None,
        "created_at": None,
        "room_id": None,
        "room_name": None,
    }
    async with site.ctx.db.read() as conn:
        left = list((await conn.execute(select(messages.c.id).order_by(messages.c.id))).scalars())
    assert left == [keep]
    history = await site.http.get(f"{API}/dm/alice/messages", headers=bob.headers)
    assert [m["id"] for m in history.json()["messages"]] == [keep]
    event = await next_event(listener, "report.update")
    assert event["data"]["action"] == "delete"
    assert event["data"]["outcome"] == "A moderator reviewed your report and removed the message."
    [row] = await site.audit("report.resolve")
    assert row.details == {"action": "delete", "kind": "dm", "message_id": bad, "dm_deleted": True}


async def test_resolve_refusals_leave_the_report_open(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    report = await site.filed(bob, kind="user", username="mod", reason="abuses power")
    other = await site.filed(mod, kind="user", username="bob", reason="spam")

    # the moderator a report is about cannot resolve it
    expect_error(await site.resolve(mod, report["id"], action="dismiss"), 403, "own_report")
    # nothing to delete in a user report; a mute needs minutes
    expect_error(await site.resolve(mod, other["id"], action="delete"), 422, "invalid_action")
    expect_error(await site.resolve(mod, other["id"], action="mute"), 422, "invalid_minutes")
    for body in (
        {"action": "explode"},
        {"action": "mute", "minutes": 0},
        {"action": "mute", "minutes": 366 * 24 * 60 + 1},
        {"action": "dismiss", "resolution": "x" * 501},
        {"action": "dismiss", "extra": True},
        {},
    ):
        response = await site.http.post(
            f"{API}/admin/reports/{other['id']}/resolve", json=body, headers=mod.headers
        )
        expect_error(response, 422, "invalid_input")
    expect_error(
        await site.http.post(
            f"{API}/admin/reports/0/resolve", json={"action": "dismiss"}, headers=mod.headers
        ),
        422,
        "invalid_input",
    )
    assert {r["id"] for r in (await site.queue(mod))["reports"]} == {report["id"], other["id"]}
    assert await site.audit("report.resolve") == []


async def test_only_the_reporter_is_told(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    carol = await site.user("carol")
    report = await site.filed(bob, kind="user", username="carol")
    reported = await site.listen(carol.id)
    reviewer = await site.listen(mod.id)
    response = await site.resolve(mod, report["id"], action="dismiss")
    assert response.status_code == 200, response.text
    # anything sent to them after the commit is on their channel before this marker: the
    # reviewers' queue count (test_reports_live.py), never the reporter's report.update
    resolved = b'E{"op":"ev","type":"report.resolved","data":{"id":%d,"open":0}}' % report["id"]
    for who, sub, expected in ((carol, reported, []), (mod, reviewer, [resolved])):
        await site.ctx.bus.publish(notify.user_channel(who.id), b"Emarker")
        got = []
        async with asyncio.timeout(5):
            while (payload := (await sub.get())[1]) != b"Emarker":
                got.append(payload)
        assert got == expected, (who.username, got)


async def test_a_browser_page_needs_the_csrf_token(site: Site) -> None:
    await site.user("carol")
    await site.user("bob")
    async with httpx.AsyncClient(transport=site.transport, base_url=site.url) as browser:
        login = await browser.post(
            f"{API}/auth/login", json={"username": "bob", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        body = {"kind": "user", "username": "carol", "reason": "rude"}
        expect_error(await browser.post(f"{API}/reports", json=body), 403, "csrf_missing")
        token = {"X-CSRF-Token": browser.cookies["echochat_csrf"]}
        filed = await browser.post(f"{API}/reports", json=body, headers=token)
        assert filed.status_code == 201, filed.text
        assert (await browser.get(f"{API}/reports/mine")).json()["reports"][0]["id"] == (
            filed.json()["id"]
        )
