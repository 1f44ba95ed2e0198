"""Room categories: the sections of the public room directory, kept by staff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import room_categories, rooms

__all__ = [
    "CategoryRow",
    "categories",
    "category_by_slug",
    "delete_category_txn",
    "get_category",
    "insert_category_txn",
    "next_category_position",
    "update_category_txn",
]


@dataclass(frozen=True)
class CategoryRow:
    id: int
    slug: str
    name: str
    position: int
    room_count: int


def _category_query() -> Select[Any]:
    count = (
        select(func.count())
        .select_from(rooms)
        .where(rooms.c.category_id == room_categories.c.id, rooms.c.kind == "public")
        .correlate(room_categories)
        .scalar_subquery()
    )
    return select(
        room_categories.c.id,
        room_categories.c.slug,
        room_categories.c.name,
        room_categories.c.position,
        count.label("room_count"),
    )


async def categories(conn: AsyncConnection) -> list[CategoryRow]:
    rows = await conn.execute(
        _category_query().order_by(room_categories.c.position, room_categories.c.id)
    )
    return [CategoryRow(**row._mapping) for row in rows]


async def get_category(
    conn: AsyncConnection, category_id: int, *, lock: bool = False
) -> CategoryRow | None:
    """The category; ``lock`` (in a transaction) holds its row until the commit on
    PostgreSQL, so it cannot be deleted under a room being moved into it."""
    if lock:
        await conn.execute(
            select(room_categories.c.id)
            .where(room_categories.c.id == category_id)
            .with_for_update(key_share=True)
        )
    row = (await conn.execute(_category_query().where(room_categories.c.id == category_id))).first()
    return None if row is None else CategoryRow(**row._mapping)


async def category_by_slug(conn: AsyncConnection, slug: str) -> CategoryRow | None:
    row = (await conn.execute(_category_query().where(room_categories.c.slug == slug))).first()
    return None if row is None else CategoryRow(**row._mapping)


async def insert_category_txn(conn: AsyncConnection, *, slug: str, name: str, position: int) -> int:
    result = await conn.execute(
        insert(room_categories)
        .values(slug=slug, name=name, position=position)
        .returning(room_categories.c.id)
    )
    return int(result.scalar_one())


async def next_category_position(conn: AsyncConnection) -> int:
    value = (
        await conn.execute(select(func.coalesce(func.max(room_categories.c.position), -1)))
    ).scalar_one()
    return int(value) + 1


async def update_category_txn(conn: AsyncConnection, category_id: int, **values: object) -> None:
    if values:
        await conn.execute(
            update(room_categories).where(room_categories.c.id == category_id).values(**values)
        )


async def delete_category_txn(conn: AsyncConnection, category_id: int) -> bool:
    result = await conn.execute(delete(room_categories).where(room_categories.c.id == category_id))
    return bool(result.rowcount)
