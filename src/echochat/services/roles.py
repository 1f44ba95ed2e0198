"""Who holds which role, read from and written to the one source of truth: the database.

Grant and revoke are audited. The last active admin can never lose the role, so a server
always has someone who can open the admin panel.
"""

from __future__ import annotations

from dataclasses import dataclass

from echochat.domain.errors import Conflict, InvalidInput, NotFound
from echochat.store import Database, audit
from echochat.store import users as user_store
from echochat.store.users import Conn, UserRow

__all__ = [
    "RoleStatus",
    "grant_role",
    "list_admins",
    "revoke_role",
    "role_status",
    "set_roles",
]


@dataclass(frozen=True)
class RoleStatus:
    username: str
    user_id: int
    display_name: str
    banned: bool
    roles: list[str]
    permissions: list[str]
    database: str
    database_name: str


async def role_status(db: Database, username: str) -> RoleStatus:
    async with db.read() as conn:
        user = await user_store.by_username(conn, username)
        if user is None:
            raise NotFound(
                f"no user named {username!r} in database {db.masked_url}",
                code="user_not_found",
            )
        roles = await user_store.roles_of(conn, user.id)
        perms = await user_store.permissions_of(conn, user.id)
    return RoleStatus(
        username=user.username,
        user_id=user.id,
        display_name=user.display_name,
        banned=user.banned_at is not None,
        roles=sorted(roles | {"user"}),
        permissions=sorted(perms),
        database=db.masked_url,
        database_name=db.name,
    )


async def _user_txn(conn: Conn, db: Database, username: str) -> UserRow:
    user = await user_store.by_username(conn, username)
    if user is None:
        raise NotFound(
            f"no user named {username!r} in database {db.masked_url}", code="user_not_found"
        )
    return user


async def _check_roles_txn(conn: Conn, wanted: set[str]) -> None:
    known = await user_store.known_roles(conn)
    for role in sorted(wanted):
        if role not in known:
            raise InvalidInput(
                f"unknown role {role!r}; roles: {', '.join(sorted(known))}", code="unknown_role"
            )


async def _grant_txn(
    conn: Conn, user: UserRow, role: str, *, actor: str, actor_id: int | None, ip: str
) -> bool:
    changed = await user_store.assign_role_txn(conn, user.id, role, actor)
    if changed:
        await audit.append_txn(
            conn,
            actor=actor,
            actor_id=actor_id,
            action="role.grant",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"role": role},
        )
    return changed


async def _revoke_txn(
    conn: Conn, user: UserRow, role: str, *, actor: str, actor_id: int | None, ip: str
) -> bool:
    """Refuses (409 ``last_admin``) to take admin from the last active admin."""
    if (
        role == "admin"
        and user.banned_at is None
        and "admin" in await user_store.roles_of(conn, user.id)
        and await user_store.count_with_role(conn, "admin") <= 1
    ):
        raise Conflict(
            f"{user.username} is the last admin; grant admin to someone else first",
            code="last_admin",
        )
    changed = await user_store.unassign_role_txn(conn, user.id, role)
    if changed:
        await audit.append_txn(
            conn,
            actor=actor,
            actor_id=actor_id,
            action="role.revoke",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"role": role},
        )
    return changed


async def grant_role(
    db: Database,
    username: str,
    role: str,
    *,
    actor: str,
    actor_id: int | None = None,
    ip: str = "",
) -> bool:
    """Give ``role`` to ``username``; False if they already had it. Audited."""
    async with db.transaction() as conn:
        await _check_roles_txn(conn, {role})
        user = await _user_txn(conn, db, username)
        return await _grant_txn(conn, user, role, actor=actor, actor_id=actor_id, ip=ip)


async def revoke_role(
    db: Database,
    username: str,
    role: str,
    *,
    actor: str,
    actor_id: int | None = None,
    ip: str = "",
) -> bool:
    """Take ``role`` from ``username``; False if they did not have it. Audited.

    Refuses to remove the last active admin.
    """
    async with db.transaction() as conn:
        await _check_roles_txn(conn, {role})
        await user_store.lock_role_txn(conn, "admin")
        user = await _user_txn(conn, db, username)
        return await _revoke_txn(conn, user, role, actor=actor, actor_id=actor_id, ip=ip)


async def set_roles(
    db: Database,
    username: str,
    wanted: set[str] | frozenset[str],
    *,
    actor: str,
    actor_id: int | None = None,
    ip: str = "",
) -> tuple[list[str], list[str]]:
    """Make ``username``'s roles exactly ``wanted`` (``user`` is implied and ignored), in one
    transaction, each grant and revoke audited; (granted, revoked). Refuses to remove the
    last active admin (409 ``last_admin``), then nothing changes."""
    roles = set(wanted) - {"user"}
    async with db.transaction() as conn:
        await _check_roles_txn(conn, roles)
        await user_store.lock_role_txn(conn, "admin")
        user = await _user_txn(conn, db, username)
        held = await user_store.roles_of(conn, user.id)
        granted = sorted(roles - held)
        revoked = sorted(held - roles)
        for role in granted:
            await _grant_txn(conn, user, role, actor=actor, actor_id=actor_id, ip=ip)
        for role in revoked:
            await _revoke_txn(conn, user, role, actor=actor, actor_id=actor_id, ip=ip)
    return granted, revoked


async def list_admins(db: Database) -> list[str]:
    async with db.read() as conn:
        return [u.username for u in await user_store.admins(conn)]
