"""Moderation in rooms over HTTP (issue 7 item 4): roles, mute, kick, ban and unban, who may
act on whom, the audit log, the events, and the hubs' membership orders (roomcast).

Policy under test: ``domain/rooms.py`` (check_moderation) and ``services/room_moderation.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from echochat.services import roomcast
from echochat.store import rooms as room_store
from echochat.store.tables import audit_log
from tests.roomsutil import MakeSettings, RoomSite, open_room_site
from tests.wsutil import User, expect_error


@dataclass
class Cast:
    """alice owns the group "Friends" (bob moderator, carol and dave members); mod is site
    staff (the moderator role: rooms:manage); eve is a stranger."""

    site: RoomSite
    alice: User
    bob: User
    carol: User
    dave: User
    mod: User
    eve: User
    gid: int
    audit_from: int = 0  # audit rows up to this id were written by the fixture

    async def drain(self) -> None:
        for who in (self.alice, self.bob, self.carol, self.dave, self.mod, self.eve):
            await self.site.events(who)
        self.site.orders.clear()

    async def refused(
        self, method: str, path: str, who: User, body: Any, status: int, code: str
    ) -> dict[str, Any]:
        return expect_error(await self.site.call(method, path, who, body), status, code)


@pytest.fixture
async def cast(make_settings: MakeSettings) -> AsyncIterator[Cast]:
    async with open_room_site(make_settings) as site:
        alice, bob, carol, dave, eve = [
            await site.user(n) for n in ("alice", "bob", "carol", "dave", "eve")
        ]
        mod = await site.user("mod", "moderator")
        group = await site.group(alice)
        await site.add(group["id"], alice, bob, carol, dave)
        await site.ok("PATCH", f"/rooms/{group['id']}/members/bob", alice, {"role": "moderator"})
        result = Cast(site, alice, bob, carol, dave, mod, eve, group["id"])
        async with site.ctx.db.read() as conn:
            last = (await conn.execute(select(func.max(audit_log.c.id)))).scalar_one()
        result.audit_from = int(last or 0)
        await result.drain()
        yield result


async def audit_rows(cast: Cast) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The room audit rows written by the test (after the fixture's)."""
    async with cast.site.ctx.db.read() as conn:
        rows = await conn.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.target, audit_log.c.details)
            .where(audit_log.c.action.like("room.%"), audit_log.c.id > cast.audit_from)
            .order_by(audit_log.c.id)
        )
    return [(a, b, c, dict(d)) for a, b, c, d in rows]


async def member_of(site: RoomSite, room_id: int, user: User) -> room_store.MemberRow | None:
    async with site.ctx.db.read() as conn:
        return await room_store.membership(conn, room_id, user.id)


# --- roles ------------------------------------------------------------------------------------


async def test_the_owner_appoints_and_demotes_moderators(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    assert await site.ok(
        "PATCH", f"/rooms/{gid}/members/carol", cast.alice, {"role": "moderator"}
    ) == {
        "username": "carol",
        "role": "moderator",
    }
    for who in (cast.alice, cast.carol, cast.dave):
        (event,) = await site.events(who)
        assert (event["action"], event["user"], event["role"], event["by"]) == (
            "role",
            "carol",
            "moderator",
            "alice",
        )
        assert (event["member"]["username"], event["member"]["role"]) == ("carol", "moderator")
    await site.ok("PATCH", f"/rooms/{gid}/members/carol", cast.alice, {"role": "member"})
    members = (await site.ok("GET", f"/rooms/{gid}/members", cast.dave))["members"]
    assert [(m["username"], m["role"]) for m in members] == [
        ("alice", "owner"),
        ("bob", "moderator"),
        ("carol", "member"),
        ("dave", "member"),
    ]
    path = f"/rooms/{gid}/members/dave"
    await cast.refused("PATCH", path, cast.bob, {"role": "moderator"}, 403, "not_owner")
    await cast.refused("PATCH", path, cast.carol, {"role": "moderator"}, 403, "not_owner")
    await cast.refused("PATCH", path, cast.alice, {"role": "owner"}, 422, "invalid_input")
    await cast.refused(
        "PATCH", f"/rooms/{gid}/members/alice", cast.alice, {"role": "member"}, 409, "owner_role"
    )
    await cast.refused(
        "PATCH",
        f"/rooms/{gid}/members/eve",
        cast.alice,
        {"role": "member"},
        404,
        "member_not_found",
    )
    assert [r[0] for r in await audit_rows(cast)] == ["room.role", "room.role"]


async def test_staff_appoint_the_moderators_of_a_public_room(cast: Cast) -> None:
    site = cast.site
    lobby = await site.lobby(cast.bob)
    for who in (cast.bob, cast.carol):
        await site.ok("POST", f"/rooms/{lobby['id']}/join", who)
    path = f"/rooms/{lobby['id']}/members/bob"
    await cast.refused("PATCH", path, cast.carol, {"role": "moderator"}, 403, "not_owner")
    await site.ok("PATCH", path, cast.mod, {"role": "moderator"})
    mine = {r["id"]: r for r in (await site.ok("GET", "/rooms/mine", cast.bob))["rooms"]}
    assert mine[lobby["id"]]["role"] == "moderator"
    # the new moderator moderates; a plain member cannot
    await site.ok(
        "POST", f"/rooms/{lobby['id']}/mutes", cast.bob, {"username": "carol", "minutes": 1}
    )
    await cast.refused(
        "POST",
        f"/rooms/{lobby['id']}/kick",
        cast.carol,
        {"username": "bob"},
        403,
        "not_a_moderator",
    )
    await cast.refused(
        "POST", f"/rooms/{lobby['id']}/kick", cast.eve, {"username": "bob"}, 403, "not_a_member"
    )


# --- mute -------------------------------------------------------------------------------------


async def test_mute_for_a_time_and_lift_it(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    now = site.ctx.clock()
    answer = await site.ok(
        "POST", f"/rooms/{gid}/mutes", cast.bob, {"username": "carol", "minutes": 10}
    )
    until = datetime.fromisoformat(answer["muted_until"])
    assert timedelta(minutes=9) < until - now <= timedelta(minutes=10, seconds=5)
    row = await member_of(site, gid, cast.carol)
    assert row is not None and row.muted_until == until
    for who in (cast.alice, cast.carol):
        (event,) = await site.events(who)
        assert (event["action"], event["user"], event["by"]) == ("mute", "carol", "bob")
        assert event["muted_until"] == answer["muted_until"]
        assert event["member"]["muted_until"] == answer["muted_until"]
    members = {
        m["username"]: m
        for m in (await site.ok("GET", f"/rooms/{gid}/members", cast.dave))["members"]
    }
    assert members["carol"]["muted_until"] == answer["muted_until"]
    assert (await site.ok("GET", f"/rooms/{gid}", cast.carol))["muted_until"] == answer[
        "muted_until"
    ]

    # the mute holds where messages are sent (services/room_messages.py reads it)
    muted = await site.call(
        "POST", f"/rooms/{gid}/messages", cast.carol, {"client_id": "c-1", "text": "hi"}
    )
    assert expect_error(muted, 403, "muted")
    await site.ok(
        "POST", f"/rooms/{gid}/messages", cast.dave, {"client_id": "d-1", "text": "hi"}, status=201
    )

    lifted = await site.ok(
        "POST", f"/rooms/{gid}/mutes", cast.bob, {"username": "carol", "minutes": 0}
    )
    assert lifted == {"username": "carol", "muted_until": None}
    row = await member_of(site, gid, cast.carol)
    assert row is not None and row.muted_until is None
    (event,) = await site.events(cast.carol)
    assert (event["action"], event["muted_until"]) == ("mute", None)
    await site.ok(
        "POST",
        f"/rooms/{gid}/messages",
        cast.carol,
        {"client_id": "c-2", "text": "back"},
        status=201,
    )
    path = f"/rooms/{gid}/mutes"
    await cast.refused(
        "POST", path, cast.bob, {"username": "carol", "minutes": 43201}, 422, "invalid_minutes"
    )
    await cast.refused(
        "POST", path, cast.bob, {"username": "carol", "minutes": -1}, 422, "invalid_input"
    )
    assert [(a, actor, target, d["minutes"]) for a, actor, target, d in await audit_rows(cast)] == [
        ("room.mute", "bob", "carol", 10),
        ("room.unmute", "bob", "carol", 0),
    ]


# --- who may act on whom ----------------------------------------------------------------------


async def test_who_may_moderate_whom(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    await site.ok("PATCH", f"/rooms/{gid}/members/dave", cast.alice, {"role": "moderator"})
    for action, extra in (("mutes", {"minutes": 5}), ("kick", {}), ("bans", {})):
        path = f"/rooms/{gid}/{action}"
        # a moderator never on the owner or another moderator
        await cast.refused("POST", path, cast.bob, {"username": "alice", **extra}, 403, "outranked")
        await cast.refused("POST", path, cast.bob, {"username": "dave", **extra}, 403, "outranked")
        # a member on nobody; nobody on themselves
        await cast.refused(
            "POST", path, cast.carol, {"username": "dave", **extra}, 403, "not_a_moderator"
        )
        await cast.refused(
            "POST", path, cast.carol, {"username": "nobody", **extra}, 403, "not_a_moderator"
        )
        await cast.refused(
            "POST", path, cast.bob, {"username": "bob", **extra}, 403, "cannot_moderate_self"
        )
        await cast.refused(
            "POST", path, cast.alice, {"username": "alice", **extra}, 403, "cannot_moderate_self"
        )
        await cast.refused(
            "POST", path, cast.alice, {"username": "nobody", **extra}, 404, "user_not_found"
        )
    await cast.refused(
        "POST",
        f"/rooms/{gid}/mutes",
        cast.alice,
        {"username": "eve", "minutes": 5},
        404,
        "member_not_found",
    )
    await cast.refused(
        "POST", f"/rooms/{gid}/kick", cast.alice, {"username": "eve"}, 404, "member_not_found"
    )
    # staff moderate any room, even the owner, but never remove the owner of a group
    await site.ok("POST", f"/rooms/{gid}/mutes", cast.mod, {"username": "alice", "minutes": 5})
    await cast.refused(
        "POST", f"/rooms/{gid}/kick", cast.mod, {"username": "alice"}, 403, "outranked"
    )
    await cast.refused(
        "POST", f"/rooms/{gid}/bans", cast.mod, {"username": "alice"}, 403, "outranked"
    )
    # the owner acts on moderators
    await site.ok("POST", f"/rooms/{gid}/kick", cast.alice, {"username": "dave"}, status=204)
    assert [a for a, *_ in await audit_rows(cast)] == ["room.role", "room.mute", "room.kick"]


# --- kick -------------------------------------------------------------------------------------


async def test_kick_removes_the_member_who_is_told_and_leaves_the_hubs_index(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    assert (
        await site.ok("POST", f"/rooms/{gid}/kick", cast.bob, {"username": "carol"}, status=204)
        is None
    )
    assert await member_of(site, gid, cast.carol) is None
    for who in (cast.alice, cast.carol):
        (event,) = await site.events(who)
        assert (event["action"], event["user"], event["by"], event["member_count"]) == (
            "kick",
            "carol",
            "bob",
            3,
        )
    assert site.orders[cast.carol.id] == [{"room": gid, "joined": False}]
    await cast.refused("GET", f"/rooms/{gid}", cast.carol, None, 404, "room_not_found")
    # kicked, not banned: a new invite brings carol back
    invite = await site.invite(gid, cast.dave, cast.carol)
    await site.ok("POST", f"/invites/{invite['id']}/accept", cast.carol)
    await site.events(cast.carol)
    assert site.orders[cast.carol.id][-1] == {"room": gid, "joined": True}
    assert [(a, actor, target) for a, actor, target, _ in await audit_rows(cast)] == [
        ("room.kick", "bob", "carol")
    ]


# --- ban --------------------------------------------------------------------------------------


async def test_ban_for_a_time_refuses_joining_until_it_ends(cast: Cast) -> None:
    site = cast.site
    lobby = (await site.lobby(cast.carol))["id"]
    await site.ok("POST", f"/rooms/{lobby}/join", cast.carol)
    await site.ok("POST", f"/rooms/{lobby}/join", cast.dave)
    await cast.drain()
    answer = await site.ok(
        "POST",
        f"/rooms/{lobby}/bans",
        cast.mod,
        {"username": "carol", "reason": "spam\nspam", "minutes": 30},
        status=201,
    )
    assert answer["username"] == "carol" and answer["until"] is not None
    assert await member_of(site, lobby, cast.carol) is None
    for who in (cast.carol, cast.dave):
        (event,) = await site.events(who)
        assert (event["action"], event["user"], event["by"]) == ("ban", "carol", "mod")
    assert site.orders[cast.carol.id] == [{"room": lobby, "joined": False}]
    error = await cast.refused(
        "POST", f"/rooms/{lobby}/join", cast.carol, None, 403, "banned_from_room"
    )
    assert error["details"]["until"] == answer["until"]

    later = datetime.fromisoformat(answer["until"]) + timedelta(seconds=1)
    site.ctx.clock = lambda: later
    await site.ok("POST", f"/rooms/{lobby}/join", cast.carol)
    async with site.ctx.db.read() as conn:
        assert await room_store.ban_of(conn, lobby, cast.carol.id) is None  # expired: removed
    ((action, actor, target, details),) = await audit_rows(cast)
    assert (action, actor, target) == ("room.ban", "mod", "carol")
    assert details["reason"] == "spam spam" and details["until"] == answer["until"]
    assert details["room"] == lobby and details["room_name"] == "Lobby"


async def test_ban_until_lifted_also_before_joining_and_unban(cast: Cast) -> None:
    site = cast.site
    lobby = (await site.lobby(cast.bob))["id"]
    await site.ok("POST", f"/rooms/{lobby}/join", cast.bob)
    await site.ok("PATCH", f"/rooms/{lobby}/members/bob", cast.mod, {"role": "moderator"})
    # eve never joined: banned ahead
    answer = await site.ok(
        "POST", f"/rooms/{lobby}/bans", cast.bob, {"username": "eve"}, status=201
    )
    assert answer == {"username": "eve", "until": None}
    await cast.refused("POST", f"/rooms/{lobby}/join", cast.eve, None, 403, "banned_from_room")
    assert await site.events(cast.eve) == []  # not a member: nothing to tell
    assert await site.ok("DELETE", f"/rooms/{lobby}/bans/eve", cast.bob, status=204) is None
    await cast.refused("DELETE", f"/rooms/{lobby}/bans/eve", cast.bob, None, 404, "not_banned")
    await site.ok("POST", f"/rooms/{lobby}/join", cast.eve)
    await cast.refused("DELETE", f"/rooms/{lobby}/bans/bob", cast.eve, None, 403, "not_a_moderator")
    assert [a for a, *_ in await audit_rows(cast)] == ["room.role", "room.ban", "room.unban"]


async def test_moderators_list_the_bans_in_force(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    await site.ok(
        "POST", f"/rooms/{gid}/bans", cast.bob, {"username": "eve", "reason": "spam"}, status=201
    )
    await site.ok(
        "POST", f"/rooms/{gid}/bans", cast.alice, {"username": "mod", "minutes": 5}, status=201
    )
    bans = (await site.ok("GET", f"/rooms/{gid}/bans", cast.bob))["bans"]
    assert [(b["username"], b["by"], b["reason"], b["until"] is None) for b in bans] == [
        ("mod", "alice", "", False),
        ("eve", "bob", "spam", True),
    ]
    later = site.ctx.clock() + timedelta(minutes=6)
    site.ctx.clock = lambda: later
    assert [
        b["username"] for b in (await site.ok("GET", f"/rooms/{gid}/bans", cast.mod))["bans"]
    ] == ["eve"]
    await cast.refused("GET", f"/rooms/{gid}/bans", cast.carol, None, 403, "not_a_moderator")
    await cast.refused("GET", f"/rooms/{gid}/bans", cast.eve, None, 404, "room_not_found")


async def test_a_ban_from_a_group_cancels_the_invite_and_refuses_new_ones(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    invite = await site.invite(gid, cast.carol, cast.eve)
    await site.events(cast.eve)
    await site.ok(
        "POST", f"/rooms/{gid}/bans", cast.bob, {"username": "eve", "reason": "no"}, status=201
    )
    await cast.refused(
        "POST", f"/invites/{invite['id']}/accept", cast.eve, None, 404, "invite_not_found"
    )
    assert (await site.ok("GET", "/invites", cast.eve))["invites"] == []
    (event,) = await site.events(cast.eve)  # the open invitation goes away on eve's screens
    assert (event["type"], event["invite"]["id"], event["invite"]["status"]) == (
        "room.invite",
        invite["id"],
        "cancelled",
    )
    await cast.refused(
        "POST", f"/rooms/{gid}/invites", cast.alice, {"username": "eve"}, 403, "banned_from_room"
    )
    await site.ok("DELETE", f"/rooms/{gid}/bans/eve", cast.alice, status=204)
    await site.invite(gid, cast.alice, cast.eve)
    path = f"/rooms/{gid}/bans"
    await cast.refused(
        "POST", path, cast.bob, {"username": "eve", "minutes": 525601}, 422, "invalid_minutes"
    )


async def test_deleting_a_group_tells_every_hub_to_forget_it(cast: Cast) -> None:
    site, gid = cast.site, cast.gid
    channel = await site.ctx.bus.subscribe(roomcast.room_channel(gid))
    try:
        await site.ok("DELETE", f"/rooms/{gid}", cast.alice, status=204)
        assert await channel.get() == (roomcast.room_channel(gid), b"D")
    finally:
        await channel.close()
    for who in (cast.alice, cast.bob, cast.carol, cast.dave):
        (event,) = await site.events(who)
        assert (event["type"], event["action"], event["room"]["id"]) == (
            "room.update",
            "deleted",
            gid,
        )
    assert await site.events(cast.eve) == []
