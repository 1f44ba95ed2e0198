"""Queries about users and their roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import role_assignments, role_permissions, roles, users

__all__ = [
    "UserRow",
    "admins",
    "assign_role_txn",
    "by_username",
    "count_with_role",
    "known_roles",
    "lock_role_txn",
    "permissions_of",
    "role_permission_table",
    "roles_of",
    "unassign_role_txn",
]


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    display_name: str
    email: str | None
    created_at: datetime
    banned_at: datetime | None
    ban_reason: str | None


_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.display_name,
    users.c.email,
    users.c.created_at,
    users.c.banned_at,
    users.c.ban_reason,
)


async def by_username(conn: AsyncConnection, username: str) -> UserRow | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(func.lower(users.c.username) == username.lower())
        )
    ).first()
    return None if row is None else UserRow(*row)


async def roles_of(conn: AsyncConnection, user_id: int) -> set[str]:
    rows = await conn.execute(
        select(role_assignments.c.role).where(role_assignments.c.user_id == user_id)
    )
    return {r for (r,) in rows}


async def permissions_of(conn: AsyncConnection, user_id: int) -> set[str]:
    rows = await conn.execute(
        select(role_permissions.c.permission)
        .join(role_assignments, role_assignments.c.role == role_permissions.c.role)
        .where(role_assignments.c.user_id == user_id)
        .distinct()
    )
    return {p for (p,) in rows}


async def known_roles(conn: AsyncConnection) -> set[str]:
    return {r for (r,) in await conn.execute(select(roles.c.name))}


async def role_permission_table(conn: AsyncConnection) -> dict[str, set[str]]:
    table: dict[str, set[str]] = {r: set() for r in await known_roles(conn)}
    for role, perm in await conn.execute(
        select(role_permissions.c.role, role_permissions.c.permission)
    ):
        table[role].add(perm)
    return table


async def admins(conn: AsyncConnection) -> list[UserRow]:
    rows = await conn.execute(
        select(*_COLUMNS)
        .join(role_assignments, role_assignments.c.user_id == users.c.id)
        .where(role_assignments.c.role == "admin")
        .order_by(users.c.username)
    )
    return [UserRow(*row) for row in rows]


async def count_with_role(conn: AsyncConnection, role: str, *, active_only: bool = True) -> int:
    query = (
        select(func.count())
        .select_from(role_assignments.join(users, users.c.id == role_assignments.c.user_id))
        .where(role_assignments.c.role == role)
    )
    if active_only:
        query = query.where(users.c.banned_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def lock_role_txn(conn: AsyncConnection, role: str) -> None:
    """Serialise changes to one role's holders (a row lock on PostgreSQL; SQLite already
    serialises writers)."""
    await conn.execute(select(roles.c.name).where(roles.c.name == role).with_for_update())


async def assign_role_txn(conn: AsyncConnection, user_id: int, role: str, granted_by: str) -> bool:
    """Give ``role``; False if the user already held it."""
    if role in await roles_of(conn, user_id):
        return False
    await conn.execute(
        insert(role_assignments).values(user_id=user_id, role=role, granted_by=granted_by)
    )
    return True


async def unassign_role_txn(conn: AsyncConnection, user_id: int, role: str) -> bool:
    """Take ``role`` away; False if the user did not hold it."""
    result = await conn.execute(
        delete(role_assignments).where(
            role_assignments.c.user_id == user_id, role_assignments.c.role == role
        )
    )
    return bool(result.rowcount)
