"""Public rooms and private groups over HTTP (issue 7 items 1 and 2): browsing with counts,
joining and leaving, capacity, the member list with presence, groups, invites, ownership.

Policy under test: ``domain/rooms.py`` and ``services/rooms.py``, ``services/room_invites.py``.
Every rule is tested as a refusal with its code, and every change by the events it sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select

from echochat.services import presence
from echochat.store.tables import audit_log, room_members, room_messages
from tests.roomsutil import MakeSettings, RoomSite, open_room_site
from tests.wsutil import User, expect_error


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[RoomSite]:
    async with open_room_site(make_settings) as site:
        yield site


@pytest.fixture
async def alice(site: RoomSite) -> User:
    return await site.user("alice")


@pytest.fixture
async def bob(site: RoomSite) -> User:
    return await site.user("bob")


@pytest.fixture
async def carol(site: RoomSite) -> User:
    return await site.user("carol")


async def post_message(site: RoomSite, room_id: int, sender: User, n: int = 1) -> int:
    """Store ``n`` room messages as rooms-messages would; the last id."""
    last = 0
    async with site.ctx.db.transaction() as conn:
        for _ in range(n):
            last = int(
                (
                    await conn.execute(
                        insert(room_messages)
                        .values(
                            room_id=room_id,
                            sender_id=sender.id,
                            client_id=f"c-{room_id}-{sender.id}-{last}-{n}-{_}",
                            kind="text",
                            body="hi",
                            created_at=site.ctx.clock(),
                        )
                        .returning(room_messages.c.id)
                    )
                ).scalar_one()
            )
    return last


async def audit_actions(site: RoomSite) -> list[str]:
    async with site.ctx.db.read() as conn:
        rows = await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))
    return [a for (a,) in rows if a.startswith("room.")]


# --- browsing ---------------------------------------------------------------------------------


async def test_the_seeded_directory_lists_categories_and_public_rooms_by_category(
    site: RoomSite, alice: User
) -> None:
    categories = (await site.ok("GET", "/rooms/categories", alice))["categories"]
    assert [c["slug"] for c in categories] == ["lobby", "music", "tech", "games", "regional"]
    assert [c["room_count"] for c in categories] == [1, 2, 2, 2, 3]

    rooms = (await site.ok("GET", "/rooms", alice))["rooms"]
    assert len(rooms) == 10
    assert rooms[0]["name"] == "Lobby" and rooms[0]["category"] == "lobby"
    assert {r["kind"] for r in rooms} == {"public"}
    assert all(r["member_count"] == 0 and r["online_count"] == 0 for r in rooms)
    assert all(r["capacity"] == 1000 and r["joined"] is False for r in rooms)

    music = (await site.ok("GET", "/rooms", alice, category="music"))["rooms"]
    assert sorted(r["name"] for r in music) == ["Music Lounge", "Rock"]
    by_id = await site.ok("GET", "/rooms", alice, category=str(music[0]["category_id"]))
    assert [r["id"] for r in by_id["rooms"]] == [r["id"] for r in music]
    expect_error(
        await site.call("GET", "/rooms", alice, category="polka"), 404, "category_not_found"
    )


async def test_search_matches_part_of_names_in_any_case_and_wildcards_are_literal(
    site: RoomSite, alice: User
) -> None:
    assert [r["name"] for r in (await site.ok("GET", "/rooms", alice, q="py"))["rooms"]] == [
        "Python"
    ]
    talk = (await site.ok("GET", "/rooms", alice, q="TALK"))["rooms"]
    assert [r["name"] for r in talk] == ["Tech Talk"]
    assert (await site.ok("GET", "/rooms", alice, q="%"))["rooms"] == []
    assert (await site.ok("GET", "/rooms", alice, q="_"))["rooms"] == []
    expect_error(await site.call("GET", "/rooms", None), 401, "not_authenticated")


async def test_counts_show_members_and_those_online_but_not_the_invisible(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    lobby = await site.lobby(alice)
    for user in (alice, bob, carol):
        await site.ok("POST", f"/rooms/{lobby['id']}/join", user)
    await presence.process_heartbeat(site.ctx, "test-proc", 60)
    await presence.device_online(
        site.ctx, process_id="test-proc", conn_id="a1", user_id=alice.id, username="alice"
    )
    await presence.device_online(
        site.ctx,
        process_id="test-proc",
        conn_id="b1",
        user_id=bob.id,
        username="bob",
        state="invisible",
    )
    lobby = await site.lobby(carol)
    assert (lobby["member_count"], lobby["online_count"], lobby["joined"]) == (3, 1, True)
    await presence.device_update(
        site.ctx, conn_id="b1", user_id=bob.id, username="bob", state="busy"
    )
    assert (await site.lobby(carol))["online_count"] == 2


# --- joining and leaving ----------------------------------------------------------------------


async def test_join_and_leave_a_public_room_tell_the_members(
    site: RoomSite, alice: User, bob: User
) -> None:
    lobby = await site.lobby(alice)
    room = await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    assert (room["role"], room["member_count"], room["muted_until"]) == ("member", 1, None)
    assert [e["action"] for e in await site.events(alice)] == ["join"]

    await site.ok("POST", f"/rooms/{lobby['id']}/join", bob)
    for who in (alice, bob):
        (event,) = await site.events(who)
        assert event["type"] == "room.member"
        assert (event["room"], event["user"], event["action"]) == (lobby["id"], "bob", "join")
        assert event["member"]["username"] == "bob" and event["member_count"] == 2

    again = await site.ok("POST", f"/rooms/{lobby['id']}/join", bob)
    assert again["member_count"] == 2 and await site.events(alice) == []

    assert await site.ok("POST", f"/rooms/{lobby['id']}/leave", bob, status=204) is None
    for who in (alice, bob):
        (event,) = await site.events(who)
        assert (event["user"], event["action"], event["member_count"]) == ("bob", "leave", 1)
    async with site.ctx.db.read() as conn:
        rows = (await conn.execute(select(room_members.c.user_id))).all()
    assert [u for (u,) in rows] == [alice.id]
    expect_error(await site.call("POST", f"/rooms/{lobby['id']}/leave", bob), 403, "not_a_member")


async def test_a_new_member_sees_messages_from_their_join_on(
    site: RoomSite, alice: User, bob: User
) -> None:
    lobby = await site.lobby(alice)
    await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    before = await post_message(site, lobby["id"], alice, 3)
    await site.ok("POST", f"/rooms/{lobby['id']}/join", bob)
    after = await post_message(site, lobby["id"], alice, 2)

    mine = {r["id"]: r for r in (await site.ok("GET", "/rooms/mine", bob))["rooms"]}
    entry = mine[lobby["id"]]
    assert (entry["first_message_id"], entry["read_upto"]) == (before, before)
    assert (entry["last_message_id"], entry["unread"], entry["role"]) == (after, 2, "member")
    alice_view = (await site.ok("GET", "/rooms/mine", alice))["rooms"][0]
    assert (alice_view["first_message_id"], alice_view["unread"]) == (0, 0)  # her own


async def test_a_full_room_refuses_the_next_member(make_settings: MakeSettings) -> None:
    async with open_room_site(make_settings, room_capacity=2) as site:
        alice, bob, carol = [await site.user(n) for n in ("alice", "bob", "carol")]
        lobby = await site.lobby(alice)
        assert lobby["capacity"] == 2
        await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
        await site.ok("POST", f"/rooms/{lobby['id']}/join", bob)
        expect_error(await site.call("POST", f"/rooms/{lobby['id']}/join", carol), 409, "room_full")
        await site.ok("POST", f"/rooms/{lobby['id']}/leave", bob, status=204)
        await site.ok("POST", f"/rooms/{lobby['id']}/join", carol)


async def test_member_lists_show_presence_as_each_viewer_may_see_it(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    lobby = await site.lobby(alice)
    for user in (alice, bob, carol):
        await site.ok("POST", f"/rooms/{lobby['id']}/join", user)
    await presence.process_heartbeat(site.ctx, "test-proc", 60)
    await presence.device_online(
        site.ctx, process_id="test-proc", conn_id="a1", user_id=alice.id, username="alice"
    )
    await presence.device_update(
        site.ctx, conn_id="a1", user_id=alice.id, username="alice", state="away", text="lunch"
    )
    members = (await site.ok("GET", f"/rooms/{lobby['id']}/members", bob))["members"]
    seen = {m["username"]: (m["state"], m["status"], m["role"]) for m in members}
    assert seen == {
        "alice": ("away", "lunch", "member"),
        "bob": ("offline", "", "member"),
        "carol": ("offline", "", "member"),
    }
    # alice blocks carol: carol sees her offline (and the other way round)
    await site.ok("POST", "/blocks", alice, {"username": "carol"}, status=204)
    members = (await site.ok("GET", f"/rooms/{lobby['id']}/members", carol))["members"]
    assert {m["username"]: m["state"] for m in members}["alice"] == "offline"
    expect_error(
        await site.call("GET", f"/rooms/{lobby['id']}/members", await site.user("dave")),
        403,
        "not_a_member",
    )


async def test_a_join_shows_the_newcomer_online_only_to_those_who_may_see_it(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    lobby = await site.lobby(alice)
    for user in (bob, carol):
        await site.ok("POST", f"/rooms/{lobby['id']}/join", user)
    await site.ok("POST", "/blocks", carol, {"username": "alice"}, status=204)
    await presence.process_heartbeat(site.ctx, "test-proc", 60)
    await presence.device_online(
        site.ctx, process_id="test-proc", conn_id="a1", user_id=alice.id, username="alice"
    )
    await site.events(bob), await site.events(carol)
    await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    seen: dict[str, str] = {}
    for who in (alice, bob, carol):
        (event,) = await site.events(who)
        seen[who.username] = event["member"]["state"]
    assert seen == {"alice": "online", "bob": "online", "carol": "offline"}


async def test_room_details_and_my_rooms(site: RoomSite, alice: User, bob: User) -> None:
    lobby = await site.lobby(alice)
    outside = await site.ok("GET", f"/rooms/{lobby['id']}", alice)
    assert (outside["role"], outside["name"], outside["topic"]) == (None, "Lobby", lobby["topic"])
    await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    group = await site.group(alice, "Friends", topic="our corner")
    mine = (await site.ok("GET", "/rooms/mine", alice))["rooms"]
    assert [(r["name"], r["kind"], r["role"]) for r in mine] == [
        ("Lobby", "public", "member"),
        ("Friends", "group", "owner"),
    ]
    assert (await site.ok("GET", "/rooms/mine", bob))["rooms"] == []
    expect_error(await site.call("GET", "/rooms/999999", alice), 404, "room_not_found")
    expect_error(await site.call("GET", f"/rooms/{group['id']}", bob), 404, "room_not_found")


# --- private groups ---------------------------------------------------------------------------


async def test_create_a_group_and_its_name_and_topic_rules(site: RoomSite, alice: User) -> None:
    group = await site.group(alice, "  Friends\tforever ", topic="hi", encrypted=True)
    assert (group["name"], group["topic"], group["kind"]) == ("Friends forever", "hi", "group")
    assert (group["owner"], group["role"], group["member_count"]) == ("alice", "owner", 1)
    assert (group["encrypted"], group["capacity"], group["category"]) == (True, 20, None)
    (event,) = await site.events(alice)
    assert (event["action"], event["role"], event["user"]) == ("join", "owner", "alice")
    assert (await site.group(alice, "Plain"))["capacity"] == 200
    bad = await site.call("POST", "/rooms", alice, {"name": " \u202e "})
    expect_error(bad, 422, "invalid_room_name")
    expect_error(
        await site.call("POST", "/rooms", alice, {"name": "x" * 61}), 422, "invalid_room_name"
    )
    long_topic = await site.call("POST", "/rooms", alice, {"name": "ok", "topic": "t" * 251})
    expect_error(long_topic, 422, "topic_too_long")
    expect_error(
        await site.call("POST", "/rooms", alice, {"name": "ok", "owner": "x"}), 422, "invalid_input"
    )


async def test_a_group_does_not_exist_for_outsiders(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    group = await site.group(alice)
    gid = group["id"]
    listed = (await site.ok("GET", "/rooms", carol, q="Friends"))["rooms"]
    assert listed == []
    for method, path, body in [
        ("GET", f"/rooms/{gid}", None),
        ("GET", f"/rooms/{gid}/members", None),
        ("POST", f"/rooms/{gid}/join", None),
        ("POST", f"/rooms/{gid}/leave", None),
        ("PATCH", f"/rooms/{gid}", {"topic": "mine now"}),
        ("DELETE", f"/rooms/{gid}", None),
        ("POST", f"/rooms/{gid}/invites", {"username": "bob"}),
        ("POST", f"/rooms/{gid}/owner", {"username": "carol"}),
        ("PATCH", f"/rooms/{gid}/members/alice", {"role": "member"}),
        ("POST", f"/rooms/{gid}/mutes", {"username": "alice", "minutes": 5}),
        ("POST", f"/rooms/{gid}/kick", {"username": "alice"}),
        ("POST", f"/rooms/{gid}/bans", {"username": "alice"}),
        ("DELETE", f"/rooms/{gid}/bans/alice", None),
    ]:
        expect_error(await site.call(method, path, carol, body), 404, "room_not_found")
    assert await site.events(alice) != []  # her own join only
    assert await site.events(bob) == []


async def test_invite_accept_and_the_events_of_each_step(
    site: RoomSite, alice: User, bob: User
) -> None:
    group = await site.group(alice)
    await site.events(alice)
    sent = await post_message(site, group["id"], alice, 2)
    invite = await site.invite(group["id"], alice, bob)
    assert (invite["from_username"], invite["to_username"], invite["status"]) == (
        "alice",
        "bob",
        "pending",
    )
    assert invite["room"]["name"] == "Friends" and invite["room"]["member_count"] == 1
    (event,) = await site.events(bob)
    assert event["type"] == "room.invite" and event["invite"]["id"] == invite["id"]
    assert await site.events(alice) == []
    pending = (await site.ok("GET", "/invites", bob))["invites"]
    assert [i["id"] for i in pending] == [invite["id"]]
    expect_error(
        await site.call("POST", f"/rooms/{group['id']}/invites", alice, {"username": "bob"}),
        409,
        "already_invited",
    )

    room = await site.ok("POST", f"/invites/{invite['id']}/accept", bob)
    assert (room["role"], room["member_count"]) == ("member", 2)
    for who in (alice, bob):
        events = await site.events(who)
        assert [(e["type"], e.get("action")) for e in events] == [
            ("room.invite", None),
            ("room.member", "join"),
        ]
        assert events[0]["invite"]["status"] == "accepted"
    assert (await site.ok("GET", "/invites", bob))["invites"] == []
    mine = (await site.ok("GET", "/rooms/mine", bob))["rooms"][0]
    assert (mine["first_message_id"], mine["unread"]) == (sent, 0)
    expect_error(
        await site.call("POST", f"/invites/{invite['id']}/accept", bob), 404, "invite_not_found"
    )
    expect_error(
        await site.call("POST", f"/rooms/{group['id']}/invites", alice, {"username": "bob"}),
        409,
        "already_member",
    )
    # a member who is not the owner may invite too
    carol = await site.user("carol")
    await site.invite(group["id"], bob, carol)


async def test_invite_refusals(site: RoomSite, alice: User, bob: User, carol: User) -> None:
    mod = await site.user("mod", "moderator")
    group = await site.group(alice)
    gid = group["id"]
    # a member of the group is the only one who may invite (staff see it, but are no members)
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", carol, {"username": "bob"}),
        404,
        "room_not_found",
    )
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", mod, {"username": "bob"}),
        403,
        "not_a_member",
    )
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", alice, {"username": "nobody"}),
        404,
        "user_not_found",
    )
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", alice, {"username": "alice"}),
        422,
        "cannot_invite_self",
    )
    # someone who blocked the inviter looks like nobody; someone the inviter blocked: unblock first
    await site.ok("POST", "/blocks", bob, {"username": "alice"}, status=204)
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", alice, {"username": "bob"}),
        404,
        "user_not_found",
    )
    await site.ok("POST", "/blocks", alice, {"username": "carol"}, status=204)
    expect_error(
        await site.call("POST", f"/rooms/{gid}/invites", alice, {"username": "carol"}),
        403,
        "blocked",
    )
    lobby = await site.lobby(alice)
    await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    expect_error(
        await site.call("POST", f"/rooms/{lobby['id']}/invites", alice, {"username": "mod"}),
        409,
        "not_a_group",
    )
    assert await site.events(bob) == [] and await site.events(carol) == []


async def test_decline_tells_both_and_invites_are_only_the_invitees(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    group = await site.group(alice)
    invite = await site.invite(group["id"], alice, bob)
    await site.events(alice), await site.events(bob)
    for other in ("accept", "decline"):
        expect_error(
            await site.call("POST", f"/invites/{invite['id']}/{other}", carol),
            404,
            "invite_not_found",
        )
    assert await site.ok("POST", f"/invites/{invite['id']}/decline", bob, status=204) is None
    for who in (alice, bob):
        (event,) = await site.events(who)
        assert event["invite"]["status"] == "declined"
    expect_error(
        await site.call("POST", f"/invites/{invite['id']}/accept", bob), 404, "invite_not_found"
    )
    # declined, bob may be invited again
    await site.invite(group["id"], alice, bob)


async def test_group_capacity_holds_at_invite_and_again_at_acceptance(
    make_settings: MakeSettings,
) -> None:
    async with open_room_site(
        make_settings, group_max_members=2, encrypted_group_max_members=2
    ) as site:
        alice, bob, carol, dave = [await site.user(n) for n in ("alice", "bob", "carol", "dave")]
        group = await site.group(alice)
        to_bob = await site.invite(group["id"], alice, bob)
        to_carol = await site.invite(group["id"], alice, carol)
        await site.ok("POST", f"/invites/{to_bob['id']}/accept", bob)
        expect_error(
            await site.call("POST", f"/invites/{to_carol['id']}/accept", carol), 409, "room_full"
        )
        expect_error(
            await site.call("POST", f"/rooms/{group['id']}/invites", alice, {"username": "dave"}),
            409,
            "room_full",
        )
        secret = await site.group(alice, "Secret", encrypted=True)
        assert secret["capacity"] == 2
        await site.add(secret["id"], alice, dave)
        expect_error(
            await site.call("POST", f"/rooms/{secret['id']}/invites", dave, {"username": "carol"}),
            409,
            "room_full",
        )


async def groups_of(site: RoomSite, who: User) -> list[str]:
    return [r["name"] for r in (await site.ok("GET", "/rooms/mine", who))["rooms"]]


async def test_invites_and_new_groups_share_a_rate_limit_checked_first(
    make_settings: MakeSettings,
) -> None:
    async with open_room_site(make_settings, rate_limit_room_invite="4/hour") as site:
        alice, bob, carol, dave = [await site.user(n) for n in ("alice", "bob", "carol", "dave")]
        group = await site.group(alice)  # 1
        await site.invite(group["id"], alice, bob)  # 2
        # refused attempts count too: the limit comes before the other checks
        expect_error(
            await site.call("POST", "/rooms", alice, {"name": "x" * 61}), 422, "invalid_room_name"
        )  # 3
        expect_error(
            await site.call("POST", f"/rooms/{group['id']}/invites", alice, {"username": "nobody"}),
            404,
            "user_not_found",
        )  # 4
        for method, path, body in [
            ("POST", "/rooms", {"name": "Spam"}),
            ("POST", f"/rooms/{group['id']}/invites", {"username": "carol"}),
            # the limit is checked before anything else: even a refusal-to-be is 429
            ("POST", "/rooms", {"name": "x" * 61}),
            ("POST", "/rooms/999999/invites", {"username": "carol"}),
        ]:
            refused = await site.call(method, path, alice, body)
            expect_error(refused, 429, "rate_limited")
            assert int(refused.headers["retry-after"]) > 0, (path, refused.headers)
        # nothing was created past the limit
        assert await groups_of(site, alice) == ["Friends"]
        assert (await site.ok("GET", "/invites", carol))["invites"] == []
        assert await site.events(carol) == []
        # another user has a count of their own; accepting an invite is not limited
        other = await site.group(dave, "Dave's")
        to_carol = await site.invite(other["id"], dave, carol)
        to_alice = await site.invite(other["id"], dave, alice)
        joined = await site.ok("POST", f"/invites/{to_alice['id']}/accept", alice)
        assert joined["member_count"] == 2
        pending = (await site.ok("GET", "/invites", carol))["invites"]
        assert [i["id"] for i in pending] == [to_carol["id"]]
        assert await groups_of(site, alice) == ["Dave's", "Friends"]


async def test_a_group_is_joined_only_by_invitation(site: RoomSite, alice: User, bob: User) -> None:
    group = await site.group(alice)
    mod = await site.user("mod", "moderator")
    # staff see the group but cannot just walk in
    expect_error(await site.call("POST", f"/rooms/{group['id']}/join", mod), 403, "invite_only")
    expect_error(await site.call("POST", f"/rooms/{group['id']}/join", bob), 404, "room_not_found")


# --- ownership, leaving, deleting -------------------------------------------------------------


async def test_an_owner_hands_over_before_leaving_and_the_last_member_ends_the_group(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    group = await site.group(alice)
    gid = group["id"]
    await site.add(gid, alice, bob, carol)
    await site.events(alice), await site.events(bob), await site.events(carol)
    expect_error(await site.call("POST", f"/rooms/{gid}/leave", alice), 409, "owner_must_transfer")
    expect_error(
        await site.call("POST", f"/rooms/{gid}/owner", bob, {"username": "carol"}), 403, "not_owner"
    )
    expect_error(
        await site.call("POST", f"/rooms/{gid}/owner", alice, {"username": "nobody"}),
        404,
        "user_not_found",
    )
    dave = await site.user("dave")
    assert dave.username == "dave"
    expect_error(
        await site.call("POST", f"/rooms/{gid}/owner", alice, {"username": "dave"}),
        404,
        "member_not_found",
    )

    room = await site.ok("POST", f"/rooms/{gid}/owner", alice, {"username": "bob"})
    assert (room["owner"], room["role"]) == ("bob", "moderator")
    events = await site.events(carol)
    assert [(e["type"], e.get("user"), e.get("role")) for e in events] == [
        ("room.member", "alice", "moderator"),
        ("room.member", "bob", "owner"),
        ("room.update", None, None),
    ]
    assert events[2]["room"]["owner"] == "bob"
    await site.ok("POST", f"/rooms/{gid}/leave", alice, status=204)
    await site.ok("POST", f"/rooms/{gid}/kick", bob, {"username": "carol"}, status=204)
    await site.events(bob)
    await site.ok("POST", f"/rooms/{gid}/leave", bob, status=204)
    (event,) = await site.events(bob)
    assert (event["type"], event["action"], event["room"]["id"]) == ("room.update", "deleted", gid)
    expect_error(await site.call("GET", f"/rooms/{gid}", bob), 404, "room_not_found")
    assert await audit_actions(site) == ["room.owner", "room.kick", "room.delete"]
    lobby = await site.lobby(alice)
    expect_error(
        await site.call("POST", f"/rooms/{lobby['id']}/owner", alice, {"username": "bob"}),
        409,
        "not_a_group",
    )


async def test_delete_a_group_owner_only_and_members_are_told(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    group = await site.group(alice)
    gid = group["id"]
    await site.add(gid, alice, bob)
    await site.ok("PATCH", f"/rooms/{gid}/members/bob", alice, {"role": "moderator"})
    await site.events(alice), await site.events(bob)
    expect_error(await site.call("DELETE", f"/rooms/{gid}", bob), 403, "not_owner")
    assert await site.ok("DELETE", f"/rooms/{gid}", alice, status=204) is None
    for who in (alice, bob):
        (event,) = await site.events(who)
        assert (event["type"], event["action"]) == ("room.update", "deleted")
    assert await site.events(carol) == []
    assert (await site.ok("GET", "/rooms/mine", bob))["rooms"] == []
    lobby = await site.lobby(alice)
    await site.ok("POST", f"/rooms/{lobby['id']}/join", alice)
    expect_error(
        await site.call("DELETE", f"/rooms/{lobby['id']}", alice), 403, "permission_denied"
    )
    assert await audit_actions(site) == ["room.role", "room.delete"]


async def test_rename_and_topic_by_owner_and_moderators_only(
    site: RoomSite, alice: User, bob: User, carol: User
) -> None:
    group = await site.group(alice)
    gid = group["id"]
    await site.add(gid, alice, bob, carol)
    await site.ok("PATCH", f"/rooms/{gid}/members/bob", alice, {"role": "moderator"})
    await site.events(carol)
    room = await site.ok("PATCH", f"/rooms/{gid}", bob, {"topic": "  movie night  "})
    assert (room["topic"], room["name"], room["role"]) == ("movie night", "Friends", "moderator")
    (event,) = await site.events(carol)
    assert (event["type"], event["action"], event["room"]["topic"]) == (
        "room.update",
        "changed",
        "movie night",
    )
    expect_error(
        await site.call("PATCH", f"/rooms/{gid}", carol, {"name": "Mine"}), 403, "not_a_moderator"
    )
    expect_error(await site.call("PATCH", f"/rooms/{gid}", alice, {}), 422, "nothing_to_change")
    expect_error(
        await site.call("PATCH", f"/rooms/{gid}", alice, {"name": ""}), 422, "invalid_input"
    )
    lobby = await site.lobby(alice)
    expect_error(
        await site.call("PATCH", f"/rooms/{lobby['id']}", alice, {"topic": "x"}),
        403,
        "not_a_member",
    )


async def test_every_room_endpoint_needs_a_session_and_sane_ids(
    site: RoomSite, alice: User
) -> None:
    for method, path in [
        ("GET", "/rooms/categories"),
        ("GET", "/rooms"),
        ("GET", "/rooms/mine"),
        ("POST", "/rooms"),
        ("GET", "/rooms/1"),
        ("PATCH", "/rooms/1"),
        ("DELETE", "/rooms/1"),
        ("POST", "/rooms/1/join"),
        ("POST", "/rooms/1/leave"),
        ("GET", "/rooms/1/members"),
        ("POST", "/rooms/1/invites"),
        ("GET", "/invites"),
        ("POST", "/invites/1/accept"),
        ("POST", "/invites/1/decline"),
        ("POST", "/rooms/1/owner"),
        ("PATCH", "/rooms/1/members/bob"),
        ("POST", "/rooms/1/mutes"),
        ("POST", "/rooms/1/kick"),
        ("POST", "/rooms/1/bans"),
        ("DELETE", "/rooms/1/bans/bob"),
    ]:
        expect_error(await site.call(method, path, None), 401, "not_authenticated")
    for path in ("/rooms/0", f"/rooms/{2**63}", "/rooms/abc", "/rooms/-1/members"):
        expect_error(await site.call("GET", path, alice), 422, "invalid_input")
    expect_error(await site.call("POST", f"/invites/{2**63}/accept", alice), 422, "invalid_input")
    expect_error(await site.call("GET", "/rooms", alice, q="x" * 61), 422, "invalid_input")
