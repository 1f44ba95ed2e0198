"""Queries about users and their roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.domain.errors import Conflict
from echochat.store.tables import role_assignments, role_permissions, roles, users

__all__ = [
    "Conn",
    "UserRow",
    "admins",
    "assign_role_txn",
    "by_id",
    "by_login_with_hash",
    "by_username",
    "count_users",
    "count_with_role",
    "holders_of",
    "insert_user_txn",
    "known_roles",
    "lock_role_txn",
    "permissions_of",
    "role_permission_table",
    "roles_of",
    "set_ban_txn",
    "set_mute_txn",
    "set_password_txn",
    "unassign_role_txn",
    "update_profile_txn",
]


Conn = AsyncConnection
"""An open connection in a transaction, for services that compose ``_txn`` functions."""


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    display_name: str
    email: str | None
    created_at: datetime
    banned_at: datetime | None
    ban_reason: str | None
    muted_until: datetime | None = None


_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.display_name,
    users.c.email,
    users.c.created_at,
    users.c.banned_at,
    users.c.ban_reason,
    users.c.muted_until,
)


async def by_username(conn: AsyncConnection, username: str) -> UserRow | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(func.lower(users.c.username) == username.lower())
        )
    ).first()
    return None if row is None else UserRow(**row._mapping)


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


async def holders_of(conn: AsyncConnection, permission: str) -> list[int]:
    """The ids of the users not banned who hold ``permission`` through one of their roles,
    ascending (e.g. who is told of a new report, ``reports:review``)."""
    rows = await conn.execute(
        select(role_assignments.c.user_id)
        .join(role_permissions, role_permissions.c.role == role_assignments.c.role)
        .join(users, users.c.id == role_assignments.c.user_id)
        .where(role_permissions.c.permission == permission, users.c.banned_at.is_(None))
        .distinct()
        .order_by(role_assignments.c.user_id)
    )
    return [user_id for (user_id,) in rows]


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
    return [UserRow(**row._mapping) for row in rows]


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


async def by_id(conn: AsyncConnection, user_id: int) -> UserRow | None:
    row = (await conn.execute(select(*_COLUMNS).where(users.c.id == user_id))).first()
    return None if row is None else UserRow(**row._mapping)


async def by_login_with_hash(
    conn: AsyncConnection, login: str
) -> tuple[UserRow, str | None] | None:
    """The user whose username or email is ``login`` (case-insensitively), with the hash."""
    key = login.strip().lower()
    row = (
        await conn.execute(
            select(*_COLUMNS, users.c.password_hash)
            .where(or_(func.lower(users.c.username) == key, func.lower(users.c.email) == key))
            .order_by(users.c.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    fields = dict(row._mapping)
    password_hash = fields.pop("password_hash")
    return UserRow(**fields), password_hash


async def count_users(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def insert_user_txn(
    conn: AsyncConnection,
    *,
    username: str,
    display_name: str,
    email: str | None,
    password_hash: str | None,
) -> int:
    """Insert a user; :class:`Conflict` (``username_taken``/``email_taken``) when taken."""
    taken = await conn.execute(
        select(func.lower(users.c.username), func.lower(users.c.email)).where(
            or_(
                func.lower(users.c.username) == username.lower(),
                func.lower(users.c.email) == (email or "").lower(),
            )
        )
    )
    for name, mail in taken:
        if name == username.lower():
            raise Conflict("that username is taken", code="username_taken")
        if email and mail == email.lower():
            raise Conflict("that email address is already registered", code="email_taken")
    try:
        result = await conn.execute(
            insert(users)
            .values(
                username=username,
                display_name=display_name,
                email=email,
                password_hash=password_hash,
            )
            .returning(users.c.id)
        )
    except IntegrityError as exc:  # a concurrent registration won the race; caller rolls back
        raise Conflict("that username or email is taken", code="username_taken") from exc
    return int(result.scalar_one())


async def set_password_txn(conn: AsyncConnection, user_id: int, password_hash: str) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, updated_at=func.now())
    )


async def update_profile_txn(conn: AsyncConnection, user_id: int, *, display_name: str) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(display_name=display_name, updated_at=func.now())
    )


async def set_ban_txn(
    conn: AsyncConnection, user_id: int, *, banned_at: datetime | None, reason: str | None
) -> None:
    """Ban (``banned_at`` set) or unban (None) a user; the reason is kept only while banned."""
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            banned_at=banned_at,
            ban_reason=(reason or None) if banned_at is not None else None,
            updated_at=func.now(),
        )
    )


async def set_mute_txn(conn: AsyncConnection, user_id: int, *, until: datetime | None) -> None:
    """A server-wide mute until ``until`` (None lifts it)."""
    await conn.execute(
        update(users).where(users.c.id == user_id).values(muted_until=until, updated_at=func.now())
    )
