"""Reports on PostgreSQL: the same queries as on SQLite (the queue's joins, DM deletion in
the closing transaction), and the races SQLite's single writer hides: two identical reports
sent at once give one report and one 409, two moderators resolving at once give one
resolution and one 409."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.unit.test_reports_api import (
    Site,
    Start,
    dm,
    join,
    public_room,
    room_post,
    start,
)
from tests.wsutil import expect_error

__all__ = ["start"]  # fixture used here

pytestmark = pytest.mark.integration


@pytest.fixture
async def pg_site(start: Start, pg_url: str) -> AsyncIterator[Site]:
    async with start(database_url=pg_url, auto_migrate=True) as running:
        assert running.ctx.db.dialect == "postgresql"
        yield running


async def test_file_review_and_delete_on_postgres(pg_site: Site) -> None:
    site = pg_site
    mod = await site.user("mod", "moderator")
    alice = await site.person("alice")
    bob = await site.person("bob")
    carol = await site.user("carol")
    room = await public_room(site)
    await join(site, room, carol)
    await join(site, room, bob.user)
    room_mid = await room_post(site, room, carol, "rude words here")
    dm_mid = await dm(site, alice, "bob", "nasty")

    dm_report = await site.filed(bob, kind="dm", message_id=dm_mid, excerpt="nasty")
    room_report = await site.filed(
        bob, kind="room_message", message_id=room_mid, excerpt="RUDE words"
    )
    queue = await site.queue(mod)
    by_id = {r["id"]: r for r in queue["reports"]}
    assert by_id[dm_report["id"]]["message"]["sender"] == "alice"
    assert by_id[room_report["id"]]["message"]["room_name"] == room.name
    assert by_id[room_report["id"]]["excerpt_matches"] is True

    response = await site.resolve(mod, dm_report["id"], action="delete")
    assert response.status_code == 200, response.text
    assert response.json()["message"]["found"] is False
    response = await site.resolve(mod, room_report["id"], action="delete")
    assert response.status_code == 200, response.text
    assert [r["status"] for r in await site.mine(bob)] == ["actioned", "actioned"]


async def test_identical_reports_at_once_make_one(pg_site: Site) -> None:
    site = pg_site
    bob = await site.user("bob")
    await site.user("carol")
    answers = await asyncio.gather(
        *(site.report(bob, kind="user", username="carol") for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    for answer in answers:
        if answer.status_code == 409:
            expect_error(answer, 409, "already_reported")
    assert len(await site.mine(bob)) == 1


async def test_two_moderators_resolving_at_once(pg_site: Site) -> None:
    site = pg_site
    mods = [await site.user(f"mod{i}", "moderator") for i in range(3)]
    bob = await site.user("bob")
    await site.user("carol")
    report = await site.filed(bob, kind="user", username="carol")
    answers = await asyncio.gather(*(site.resolve(m, report["id"], action="dismiss") for m in mods))
    assert sorted(a.status_code for a in answers) == [200, 409, 409]
    assert len(await site.audit("report.resolve")) == 1


async def test_racing_moderators_with_different_actions_take_one(pg_site: Site) -> None:
    """Dismiss, mute and ban at once: one wins, and only its action happened."""
    site = pg_site
    mods = [await site.user(f"mod{i}", "moderator") for i in range(3)]
    bob = await site.user("bob")
    await site.user("carol")
    for round_ in range(3):
        report = await site.filed(bob, kind="user", username="carol", reason=f"round {round_}")
        bodies = [{"action": "dismiss"}, {"action": "mute", "minutes": 5}, {"action": "ban"}]
        answers = await asyncio.gather(
            *(site.resolve(m, report["id"], **b) for m, b in zip(mods, bodies, strict=True))
        )
        assert sorted(a.status_code for a in answers) == [200, 409, 409]
        [won] = [a.json() for a in answers if a.status_code == 200]
        assert len(await site.audit("user.ban")) == (1 if won["action"] == "ban" else 0)
        if won["action"] == "ban":
            break  # carol is banned: no more rounds about her
        mutes = len(await site.audit("user.mute"))
        assert mutes == sum(
            r["action"] == "mute" for r in await site.mine(bob) if r["status"] != "open"
        )
