"""Staff management of the room directory: categories and public rooms (``rooms:manage``).

The routes check the permission (``api/deps.require``); these verbs check the input, write
in one transaction with an audit row, and tell members of an edited or deleted room
(``room.update``) after the commit. A category with rooms in it cannot be deleted (409
``category_not_empty``): move or delete its rooms first, so no room silently drops out of
the browser.
"""

from __future__ import annotations

from typing import Any

from echochat.domain.errors import Conflict, InvalidInput, NotFound
from echochat.domain.events_rooms import CategoryPublic, RoomDetail
from echochat.domain.rooms import (
    check_category_name,
    check_name,
    check_slug,
    check_topic,
    slug_from,
)
from echochat.services import rooms as rooms_service
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import room_categories as category_store
from echochat.store import rooms as store
from echochat.store.room_categories import CategoryRow

__all__ = [
    "CAPACITY_MAX",
    "create_category",
    "create_room",
    "delete_category",
    "delete_room",
    "update_category",
    "update_room",
]

CAPACITY_MAX = 100_000
UNSET: Any = object()


def _category(row: CategoryRow) -> CategoryPublic:
    return CategoryPublic(
        id=row.id, slug=row.slug, name=row.name, position=row.position, room_count=row.room_count
    )


async def _audit(
    conn: store.Conn,
    principal: Principal,
    action: str,
    target_type: str,
    target: str,
    ip: str,
    details: dict[str, Any],
) -> None:
    await rooms_service.audit_txn(
        conn, principal, action, target_type=target_type, target=target, ip=ip, details=details
    )


def _position(position: int | None) -> int | None:
    if position is not None and not 0 <= position <= 10_000:
        raise InvalidInput("position is 0-10000", code="invalid_position")
    return position


async def create_category(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    slug: str | None = None,
    position: int | None = None,
    ip: str = "",
) -> CategoryPublic:
    clean = check_category_name(name)
    clean_slug = check_slug(slug) if slug else slug_from(clean)
    _position(position)
    async with ctx.db.transaction() as conn:
        if await category_store.category_by_slug(conn, clean_slug) is not None:
            raise Conflict(f"a category {clean_slug!r} exists", code="category_exists")
        where = (
            position if position is not None else await category_store.next_category_position(conn)
        )
        category_id = await category_store.insert_category_txn(
            conn, slug=clean_slug, name=clean, position=where
        )
        await _audit(
            conn,
            principal,
            "room.category_create",
            "category",
            clean_slug,
            ip,
            {"name": clean, "position": where},
        )
        row = await category_store.get_category(conn, category_id)
    assert row is not None
    return _category(row)


async def update_category(
    ctx: Context,
    principal: Principal,
    category_id: int,
    *,
    name: str | None = None,
    slug: str | None = None,
    position: int | None = None,
    ip: str = "",
) -> CategoryPublic:
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = check_category_name(name)
    if slug is not None:
        values["slug"] = check_slug(slug)
    if _position(position) is not None:
        values["position"] = position
    async with ctx.db.transaction() as conn:
        old = await category_store.get_category(conn, category_id)
        if old is None:
            raise NotFound("no such category", code="category_not_found")
        new_slug = str(values.get("slug", old.slug))
        if (
            new_slug != old.slug
            and await category_store.category_by_slug(conn, new_slug) is not None
        ):
            raise Conflict(f"a category {values['slug']!r} exists", code="category_exists")
        await category_store.update_category_txn(conn, category_id, **values)
        await _audit(
            conn,
            principal,
            "room.category_update",
            "category",
            old.slug,
            ip,
            {k: str(v) for k, v in values.items()},
        )
        row = await category_store.get_category(conn, category_id)
    assert row is not None
    return _category(row)


async def delete_category(
    ctx: Context, principal: Principal, category_id: int, *, ip: str = ""
) -> None:
    async with ctx.db.transaction() as conn:
        old = await category_store.get_category(conn, category_id)
        if old is None:
            raise NotFound("no such category", code="category_not_found")
        if old.room_count:
            raise Conflict(
                f"{old.name} still has {old.room_count} room(s): move or delete them first",
                code="category_not_empty",
            )
        await category_store.delete_category_txn(conn, category_id)
        await _audit(
            conn, principal, "room.category_delete", "category", old.slug, ip, {"name": old.name}
        )


async def _check_category(conn: store.Conn, category_id: int | None) -> None:
    if (
        category_id is not None
        and await category_store.get_category(conn, category_id, lock=True) is None
    ):
        raise NotFound("no such category", code="category_not_found")


def _capacity(capacity: int | None) -> int | None:
    if capacity is not None and not 2 <= capacity <= CAPACITY_MAX:
        raise InvalidInput(f"capacity is 2-{CAPACITY_MAX}", code="invalid_capacity")
    return capacity


async def create_room(
    ctx: Context,
    principal: Principal,
    *,
    name: str,
    topic: str = "",
    category_id: int | None,
    capacity: int | None = None,
    ip: str = "",
) -> RoomDetail:
    """A public room (staff make public rooms; users make groups)."""
    clean_name, clean_topic = check_name(name), check_topic(topic)
    _capacity(capacity)
    async with ctx.db.transaction() as conn:
        await _check_category(conn, category_id)
        room_id = await store.insert_room_txn(
            conn,
            kind="public",
            name=clean_name,
            topic=clean_topic,
            category_id=category_id,
            owner_id=None,
            encrypted=False,
            capacity=capacity,
            created_by=principal.user_id,
            now=ctx.clock(),
        )
        await _audit(
            conn,
            principal,
            "room.create",
            "room",
            f"#{room_id} {clean_name}",
            ip,
            {"category_id": category_id, "capacity": capacity},
        )
    return await rooms_service.get(ctx, principal, room_id)


async def update_room(
    ctx: Context,
    principal: Principal,
    room_id: int,
    *,
    name: str | None = None,
    topic: str | None = None,
    category_id: int | None = UNSET,
    capacity: int | None = UNSET,
    ip: str = "",
) -> RoomDetail:
    """Edit any room's name or topic; a public room's category and capacity too (None for
    capacity: back to the server's ``room_capacity``)."""
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = check_name(name)
    if topic is not None:
        values["topic"] = check_topic(topic)
    if capacity is not UNSET:
        values["capacity"] = _capacity(capacity)
    if category_id is not UNSET:
        values["category_id"] = category_id
    if not values:
        raise InvalidInput("nothing to change", code="nothing_to_change")
    async with ctx.db.transaction() as conn:
        room, _ = await rooms_service.load(conn, principal, room_id, lock=True)
        if room.kind != "public" and ("category_id" in values or "capacity" in values):
            raise Conflict(
                "a group has no category and its size is set by the server",
                code="not_a_public_room",
            )
        if category_id is not UNSET:
            await _check_category(conn, category_id)
        await store.update_room_txn(conn, room_id, **values)
        await _audit(
            conn,
            principal,
            "room.update",
            "room",
            rooms_service.room_label(room),
            ip,
            {k: None if v is None else str(v) for k, v in values.items()},
        )
        new = await store.get_room(conn, room_id)
        recipients = await store.members_of(conn, room_id)
    assert new is not None
    public = rooms_service.room_public(ctx, new, len(recipients))
    await rooms_service.announce_update(ctx, recipients, public)
    return await rooms_service.get(ctx, principal, room_id)


async def delete_room(ctx: Context, principal: Principal, room_id: int, *, ip: str = "") -> None:
    """Delete any room or group (the principal holds ``rooms:manage``)."""
    await rooms_service.delete(ctx, principal, room_id, ip=ip)
