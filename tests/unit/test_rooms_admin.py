"""Staff manage the room directory (issue 8): categories and public rooms, with
``rooms:manage``; every change audited; members of an edited or deleted room told.

Policy under test: ``services/rooms_admin.py``. Who may call each endpoint (401/403/2xx) is
the admin endpoint table's job (tests/admin_table/rooms.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from echochat.store.tables import audit_log
from tests.roomsutil import MakeSettings, RoomSite, open_room_site
from tests.wsutil import User, expect_error


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[RoomSite]:
    async with open_room_site(make_settings) as site:
        yield site


@pytest.fixture
async def staff(site: RoomSite) -> User:
    return await site.user("mod", "moderator")


async def audit(site: RoomSite) -> list[tuple[str, str, str, dict[str, Any]]]:
    async with site.ctx.db.read() as conn:
        rows = await conn.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.target, audit_log.c.details)
            .where(audit_log.c.action.like("room.%"))
            .order_by(audit_log.c.id)
        )
    return [(a, b, c, dict(d)) for a, b, c, d in rows]


async def test_categories_created_edited_and_deleted_when_empty(
    site: RoomSite, staff: User
) -> None:
    made = await site.ok("POST", "/admin/categories", staff, {"name": "Hip Hop & Rap"}, status=201)
    assert (made["slug"], made["name"], made["position"], made["room_count"]) == (
        "hip-hop-rap",
        "Hip Hop & Rap",
        5,
        0,
    )
    dup = await site.call(
        "POST", "/admin/categories", staff, {"name": "Rap", "slug": "hip-hop-rap"}
    )
    expect_error(dup, 409, "category_exists")
    bad = await site.call("POST", "/admin/categories", staff, {"name": "x", "slug": "No Way"})
    expect_error(bad, 422, "invalid_slug")
    blank = await site.call("POST", "/admin/categories", staff, {"name": " \t "})
    expect_error(blank, 422, "invalid_category_name")

    path = f"/admin/categories/{made['id']}"
    edited = await site.ok(
        "PATCH", path, staff, {"name": "Hip Hop", "slug": "hiphop", "position": 0}
    )
    assert (edited["slug"], edited["name"], edited["position"]) == ("hiphop", "Hip Hop", 0)
    taken = await site.call("PATCH", path, staff, {"slug": "music"})
    expect_error(taken, 409, "category_exists")
    listed = (await site.ok("GET", "/rooms/categories", staff))["categories"]
    assert [c["slug"] for c in listed[:2]] == ["lobby", "hiphop"]  # by position, then age
    assert (await site.ok("GET", "/admin/categories", staff))["categories"] == listed

    music = next(c for c in listed if c["slug"] == "music")
    not_empty = await site.call("DELETE", f"/admin/categories/{music['id']}", staff)
    expect_error(not_empty, 409, "category_not_empty")
    assert await site.ok("DELETE", path, staff, status=204) is None
    for method in ("PATCH", "DELETE"):
        gone = await site.call(method, path, staff, {"name": "x"} if method == "PATCH" else None)
        expect_error(gone, 404, "category_not_found")
    assert [(a, actor, target) for a, actor, target, _ in await audit(site)] == [
        ("room.category_create", "mod", "hip-hop-rap"),
        ("room.category_update", "mod", "hip-hop-rap"),
        ("room.category_delete", "mod", "hiphop"),
    ]


async def test_public_rooms_created_edited_and_deleted(site: RoomSite, staff: User) -> None:
    alice = await site.user("alice")
    tech = next(
        c
        for c in (await site.ok("GET", "/rooms/categories", alice))["categories"]
        if c["slug"] == "tech"
    )
    room = await site.ok(
        "POST",
        "/admin/rooms",
        staff,
        {"name": "Rust", "topic": "fearless", "category_id": tech["id"], "capacity": 3},
        status=201,
    )
    assert (room["kind"], room["name"], room["topic"], room["capacity"]) == (
        "public",
        "Rust",
        "fearless",
        3,
    )
    assert (room["category"], room["owner"], room["role"]) == ("tech", None, None)
    assert room["capacity_own"] == 3  # what the admin panel's form shows and saves back
    listed = (await site.ok("GET", "/rooms", alice, category="tech"))["rooms"]
    assert "Rust" in [r["name"] for r in listed]
    missing = await site.call("POST", "/admin/rooms", staff, {"name": "x", "category_id": 999})
    expect_error(missing, 404, "category_not_found")
    tiny = await site.call("POST", "/admin/rooms", staff, {"name": "x", "capacity": 1})
    expect_error(tiny, 422, "invalid_input")

    await site.ok("POST", f"/rooms/{room['id']}/join", alice)
    await site.events(alice)
    path = f"/admin/rooms/{room['id']}"
    edited = await site.ok(
        "PATCH", path, staff, {"capacity": None, "category_id": None, "name": "Rustaceans"}
    )
    assert (edited["capacity"], edited["category"], edited["name"]) == (1000, None, "Rustaceans")
    assert edited["capacity_own"] is None  # the setting applies, and stays unpinned
    (event,) = await site.events(alice)
    assert (event["type"], event["action"], event["room"]["name"]) == (
        "room.update",
        "changed",
        "Rustaceans",
    )
    expect_error(await site.call("PATCH", path, staff, {}), 422, "nothing_to_change")
    expect_error(
        await site.call("PATCH", path, staff, {"category_id": 999}), 404, "category_not_found"
    )

    assert await site.ok("DELETE", path, staff, status=204) is None
    (event,) = await site.events(alice)
    assert (event["type"], event["action"]) == ("room.update", "deleted")
    expect_error(await site.call("DELETE", path, staff), 404, "room_not_found")
    expect_error(await site.call("PATCH", path, staff, {"topic": "x"}), 404, "room_not_found")
    assert [a for a, *_ in await audit(site)] == ["room.create", "room.update", "room.delete"]


async def test_staff_rename_a_group_but_not_its_category_or_size(
    site: RoomSite, staff: User
) -> None:
    alice = await site.user("alice")
    group = await site.group(alice, "Rude name")
    await site.events(alice)
    path = f"/admin/rooms/{group['id']}"
    expect_error(await site.call("PATCH", path, staff, {"capacity": 5}), 409, "not_a_public_room")
    edited = await site.ok("PATCH", path, staff, {"name": "Polite name"})
    assert (edited["name"], edited["role"], edited["capacity"]) == ("Polite name", None, 200)
    (event,) = await site.events(alice)
    assert event["room"]["name"] == "Polite name"
    assert await site.ok("DELETE", path, staff, status=204) is None
    (event,) = await site.events(alice)
    assert event["action"] == "deleted"
    forbidden = await site.call("POST", "/admin/rooms", alice, {"name": "mine"})
    expect_error(forbidden, 403, "permission_denied")
