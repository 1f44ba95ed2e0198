"""Ownership and roles in rooms: handing a group over, appointing and demoting moderators.

Where the policy lives: a group's owner (or staff) hands it over to another member, and the
old owner stays on as a moderator; the owner appoints moderators of a group, staff those of
a public room; the owner's own role changes only by a transfer. Both changes are audited and
announced (``room.member`` with the member as it now is; a transfer also ``room.update``).
"""

from __future__ import annotations

from echochat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from echochat.domain.events_rooms import RoomDetail
from echochat.services import rooms
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import rooms as store

__all__ = ["set_role", "transfer"]


async def transfer(
    ctx: Context, principal: Principal, room_id: int, username: str, *, ip: str = ""
) -> RoomDetail:
    """Hand a group to another member (its owner, or staff); the old owner stays on as a
    moderator."""
    async with ctx.db.transaction() as conn:
        room, mine = await rooms.load(conn, principal, room_id, lock=True)
        if room.kind != "group":
            raise Conflict("public rooms have no owner", code="not_a_group")
        if not rooms.staff(principal) and (mine is None or mine.role != "owner"):
            raise Forbidden("only the group's owner may hand it over", code="not_owner")
        target_id, target_name, theirs = await rooms.member_target(conn, room, username)
        if theirs is None:
            raise NotFound(f"{target_name} is not a member", code="member_not_found")
        if theirs.role == "owner":
            raise Conflict(f"{target_name} owns the group already", code="already_owner")
        old_owner = room.owner_id
        if old_owner is not None:
            await store.set_role_txn(conn, room_id, old_owner, "moderator")
        await store.set_role_txn(conn, room_id, target_id, "owner")
        await store.update_room_txn(conn, room_id, owner_id=target_id)
        await rooms.audit_txn(
            conn,
            principal,
            "room.owner",
            target_type="user",
            target=target_name,
            ip=ip,
            details={"room": room.id, "room_name": room.name, "from": room.owner_username},
        )
        new = await store.get_room(conn, room_id)
        recipients = await store.members_of(conn, room_id)
        mine = await store.membership(conn, room_id, principal.user_id)
    assert new is not None
    count = len(recipients)
    for changed in (old_owner, target_id):
        if changed is not None:
            await rooms.announce_with_member(
                ctx, room_id, changed, recipients, action="role", count=count, by=principal.username
            )
    await rooms.announce_update(ctx, recipients, rooms.room_public(ctx, new, count))
    return rooms.detail(ctx, new, count, mine)


async def set_role(
    ctx: Context, principal: Principal, room_id: int, username: str, role: str, *, ip: str = ""
) -> str:
    """Make a member a moderator or a plain member again: the group's owner, or staff (the
    only way to appoint moderators of a public room). The role given back."""
    if role not in ("moderator", "member"):
        raise InvalidInput("role is moderator or member", code="invalid_role")
    async with ctx.db.transaction() as conn:
        room, mine = await rooms.load(conn, principal, room_id, lock=True)
        if not rooms.staff(principal) and (mine is None or mine.role != "owner"):
            raise Forbidden("only the owner may change roles", code="not_owner")
        target_id, target_name, theirs = await rooms.member_target(conn, room, username)
        if theirs is None:
            raise NotFound(f"{target_name} is not a member", code="member_not_found")
        if theirs.role == "owner":
            raise Conflict(
                "the owner's role changes only by handing the group over", code="owner_role"
            )
        if theirs.role == role:
            return role
        await store.set_role_txn(conn, room_id, target_id, role)
        await rooms.audit_txn(
            conn,
            principal,
            "room.role",
            target_type="user",
            target=target_name,
            ip=ip,
            details={"room": room.id, "room_name": room.name, "role": role, "was": theirs.role},
        )
        recipients = await store.members_of(conn, room_id)
    await rooms.announce_with_member(
        ctx,
        room_id,
        target_id,
        recipients,
        action="role",
        count=len(recipients),
        by=principal.username,
    )
    return role
