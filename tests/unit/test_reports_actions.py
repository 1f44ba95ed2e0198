"""Resolving reports by acting through the services that own the action: deleting a room
message (services.room_messages), muting and banning the reported user (services.admin).
Each action writes its own audit entry besides ``report.resolve``, and the reporter is told.
Setup and helpers: test_reports_api.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from echochat.store.tables import room_messages, users
from tests.unit.test_reports_api import (
    Site,
    join,
    next_event,
    public_room,
    room_post,
    site,
    start,
)
from tests.wsutil import API, expect_error

__all__ = ["site", "start"]  # fixtures used here


async def test_delete_a_room_message_tombstones_it(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    alice = await site.user("alice")
    carol = await site.user("carol")
    room = await public_room(site)
    await join(site, room, alice)
    await join(site, room, carol)
    message_id = await room_post(site, room, alice, "go away all of you")
    report = await site.filed(carol, kind="room_message", message_id=message_id)
    listener = await site.listen(carol.id)

    response = await site.resolve(mod, report["id"], action="delete", resolution="abusive")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "actioned"
    assert response.json()["message"]["found"] is False
    async with site.ctx.db.read() as conn:
        row = (
            await conn.execute(select(room_messages).where(room_messages.c.id == message_id))
        ).one()
    assert row.deleted_at is not None and row.deleted_by == mod.id
    assert "go away" not in row.body  # the text is gone for good
    [deleted] = await site.audit("room.message_delete")
    assert deleted.actor == "mod"
    [resolved] = await site.audit("report.resolve")
    assert resolved.details == {
        "action": "delete",
        "kind": "room_message",
        "message_id": message_id,
    }
    event = await next_event(listener, "report.update")
    assert event["data"]["action"] == "delete" and event["data"]["status"] == "actioned"


async def test_mute_the_reported_user(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    await site.user("carol")
    report = await site.filed(bob, kind="user", username="carol", reason="floods me")
    listener = await site.listen(bob.id)

    response = await site.resolve(mod, report["id"], action="mute", minutes=60, resolution="1h")
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["action"] == "mute" and done["status"] == "actioned"
    until = datetime.fromisoformat(done["muted_until"])
    expected = datetime.now(UTC) + timedelta(minutes=60)
    assert abs(until - expected) < timedelta(minutes=1)
    async with site.ctx.db.read() as conn:
        stored = (
            await conn.execute(select(users.c.muted_until).where(users.c.username == "carol"))
        ).scalar_one()
    assert stored is not None and abs(stored - expected) < timedelta(minutes=1)
    [muted] = await site.audit("user.mute")
    assert muted.target == "carol" and muted.details["minutes"] == 60
    [resolved] = await site.audit("report.resolve")
    assert resolved.details == {"action": "mute", "kind": "user", "minutes": 60}
    event = await next_event(listener, "report.update")
    assert event["data"]["outcome"] == "A moderator reviewed your report and muted the user."


async def test_ban_the_reported_user_ends_their_access(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    carol = await site.user("carol")
    report = await site.filed(bob, kind="user", username="carol", reason="threats")

    response = await site.resolve(mod, report["id"], action="ban", resolution="threats")
    assert response.status_code == 200, response.text
    assert response.json()["banned"] is True
    # her sessions are revoked at once
    refused = await site.http.get(f"{API}/reports/mine", headers=carol.headers)
    expect_error(refused, 401, "session_revoked")
    [banned] = await site.audit("user.ban")
    assert banned.actor == "mod" and banned.target == "carol"
    [mine] = await site.mine(bob)
    assert mine["action"] == "ban"
    assert mine["outcome"] == "A moderator reviewed your report and banned the user."


async def test_a_refused_action_leaves_the_report_open(site: Site) -> None:
    mod = await site.user("mod", "moderator")
    await site.user("mod2", "moderator")
    bob = await site.user("bob")
    report = await site.filed(bob, kind="user", username="mod2", reason="rude moderator")

    # a moderator cannot ban or mute staff; an admin could
    refused = await site.resolve(mod, report["id"], action="ban")
    expect_error(refused, 403, "permission_denied")
    refused = await site.resolve(mod, report["id"], action="mute", minutes=5)
    expect_error(refused, 403, "permission_denied")
    [still] = (await site.queue(mod))["reports"]
    assert still["id"] == report["id"] and still["status"] == "open"
    assert await site.audit("report.resolve") == []
    assert await site.audit("user.ban") == []

    admin = await site.user("root", "admin")
    response = await site.resolve(admin, report["id"], action="mute", minutes=5)
    assert response.status_code == 200, response.text
    assert response.json()["reviewed_by"] == "root"
