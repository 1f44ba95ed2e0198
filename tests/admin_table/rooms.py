"""Admin endpoint rows of the rooms area: the room directory (categories and public rooms)."""

from __future__ import annotations

import itertools
from typing import Any

from echochat.services.context import Context
from echochat.store import room_categories as category_store
from echochat.store import rooms as room_store
from tests.admin_table import Row

_serial = itertools.count(1)


async def new_category(ctx: Any) -> dict[str, str]:
    """A fresh, empty category (each request edits or deletes its own)."""
    assert isinstance(ctx, Context)
    slug = f"table-{next(_serial)}"
    async with ctx.db.transaction() as conn:
        category_id = await category_store.insert_category_txn(
            conn, slug=slug, name=f"Table {slug}", position=50
        )
    return {"category_id": str(category_id), "slug": slug}


async def fresh_slug(_: Any) -> dict[str, str]:
    return {"slug": f"made-{next(_serial)}"}


async def new_room(ctx: Any) -> dict[str, str]:
    """A fresh public room in a fresh category."""
    assert isinstance(ctx, Context)
    made = await new_category(ctx)
    async with ctx.db.transaction() as conn:
        room_id = await room_store.insert_room_txn(
            conn,
            kind="public",
            name="Table room",
            topic="",
            category_id=int(made["category_id"]),
            owner_id=None,
            encrypted=False,
            capacity=None,
            created_by=None,
            now=ctx.clock(),
        )
    return {**made, "room_id": str(room_id)}


ROWS: list[Row] = [
    Row("GET", "/api/v1/admin/categories", "rooms:manage"),
    Row(
        "POST",
        "/api/v1/admin/categories",
        "rooms:manage",
        json={"name": "Polka {slug}", "slug": "{slug}"},
        ok=201,
        setup=fresh_slug,
    ),
    Row(
        "PATCH",
        "/api/v1/admin/categories/{category_id}",
        "rooms:manage",
        json={"name": "Renamed", "position": 7},
        route="/api/v1/admin/categories/{category_id}",
        setup=new_category,
    ),
    Row(
        "DELETE",
        "/api/v1/admin/categories/{category_id}",
        "rooms:manage",
        ok=204,
        route="/api/v1/admin/categories/{category_id}",
        setup=new_category,
    ),
    Row(
        "POST",
        "/api/v1/admin/rooms",
        "rooms:manage",
        json={"name": "Polka hall", "topic": "oom-pah", "capacity": 50},
        ok=201,
    ),
    Row(
        "PATCH",
        "/api/v1/admin/rooms/{room_id}",
        "rooms:manage",
        json={"topic": "edited by staff", "capacity": None},
        route="/api/v1/admin/rooms/{room_id}",
        setup=new_room,
    ),
    Row(
        "DELETE",
        "/api/v1/admin/rooms/{room_id}",
        "rooms:manage",
        ok=204,
        route="/api/v1/admin/rooms/{room_id}",
        setup=new_room,
    ),
]
