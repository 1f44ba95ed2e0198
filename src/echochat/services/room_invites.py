"""Invitations to private groups.

Where the policy lives:
- first the rate limit ``rate_limit_room_invite`` (429 ``rate_limited``; one count per user
  with the private groups they create, refused attempts too), before any query;
- only a member of a group may invite (403 ``not_a_member``; a group the caller cannot see
  is 404 ``room_not_found``); public rooms need no invitation (409 ``not_a_group``);
- the invitee is an existing user who has not blocked the inviter (404 ``user_not_found``:
  a block looks like a missing user) and whom the inviter has not blocked (403 ``blocked``);
  not already a member (409 ``already_member``) or invited (409 ``already_invited``), not
  banned from the group (403 ``banned_from_room``), and the group has room (409
  ``room_full``);
- accepting re-checks the ban and the capacity (they may have changed since); declining
  just ends the invite.
Events after the commit: ``room.invite`` to the invitee (and, once decided, to the inviter);
``room.member`` (join) to the group's members on acceptance.
"""

from __future__ import annotations

from echochat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from echochat.domain.events_rooms import (
    RoomDetail,
    RoomInviteData,
    RoomInviteEvent,
    RoomInvitePublic,
)
from echochat.services import notify
from echochat.services import rooms as rooms_service
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import buddies as buddy_store
from echochat.store import room_invites as invite_store
from echochat.store import rooms as store
from echochat.store import users as user_store
from echochat.store.room_invites import InviteRow
from echochat.store.rooms import RoomRow

__all__ = ["accept", "cancel_txn", "decline", "invite", "pending", "tell"]


async def _public(
    conn: store.Conn, ctx: Context, room: RoomRow, row: InviteRow
) -> RoomInvitePublic:
    count = await store.member_count(conn, room.id)
    status = row.status if row.status in ("pending", "accepted", "declined") else "cancelled"
    return RoomInvitePublic(
        id=row.id,
        room=rooms_service.room_public(ctx, room, count),
        from_username=row.from_username,
        from_display_name=row.from_display_name,
        to_username=row.to_username,
        status=status,
        created_at=row.created_at.isoformat(),
    )


async def invite(
    ctx: Context, principal: Principal, room_id: int, username: str
) -> RoomInvitePublic:
    """Invite ``username`` to the group; the refusals, in order, are the module's."""
    await rooms_service.limit_invites(ctx, principal)
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        room, mine = await rooms_service.load(conn, principal, room_id, lock=True)
        if room.kind != "group":
            raise Conflict(
                "anyone may join a public room; no invitation needed", code="not_a_group"
            )
        if mine is None:
            raise Forbidden("only members may invite to a group", code="not_a_member")
        target = await user_store.by_username(conn, username.strip())
        blocked_by_me, blocked_me = (
            await buddy_store.blocked_between(conn, principal.user_id, target.id)
            if target is not None
            else (False, False)
        )
        if target is None or blocked_me:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        if target.id == principal.user_id:
            raise InvalidInput("you are in the group already", code="cannot_invite_self")
        if blocked_by_me:
            raise Forbidden(f"you blocked {target.username}; unblock them first", code="blocked")
        if await store.membership(conn, room_id, target.id) is not None:
            raise Conflict(f"{target.username} is a member already", code="already_member")
        if await invite_store.pending_invite(conn, room_id, target.id) is not None:
            raise Conflict(f"{target.username} is invited already", code="already_invited")
        ban = await store.ban_of(conn, room_id, target.id)
        if ban is not None and (ban.until is None or ban.until > now):
            raise Forbidden(f"{target.username} is banned from this group", code="banned_from_room")
        if await store.member_count(conn, room_id) >= rooms_service.capacity(ctx, room):
            raise Conflict(f"{room.name} is full", code="room_full")
        invite_id = await invite_store.insert_invite_txn(
            conn, room_id, from_user=principal.user_id, to_user=target.id, now=now
        )
        row = await invite_store.get_invite(conn, invite_id)
        assert row is not None
        public = await _public(conn, ctx, room, row)
    await notify.to_user(ctx, target.id, RoomInviteEvent(data=RoomInviteData(invite=public)))
    return public


async def pending(ctx: Context, principal: Principal) -> list[RoomInvitePublic]:
    """The invites waiting for the caller's answer, oldest first."""
    out: list[RoomInvitePublic] = []
    async with ctx.db.read() as conn:
        for row in await invite_store.invites_to(conn, principal.user_id):
            room = await store.get_room(conn, row.room_id)
            if room is not None:
                out.append(await _public(conn, ctx, room, row))
    return out


async def _mine(
    conn: store.Conn, principal: Principal, invite_id: int
) -> tuple[InviteRow, RoomRow]:
    row = await invite_store.get_invite(conn, invite_id)
    room = await store.get_room(conn, row.room_id, lock=True) if row is not None else None
    if row is None or room is None or row.to_user != principal.user_id or row.status != "pending":
        raise NotFound("no such pending invite", code="invite_not_found")
    return row, room


async def accept(ctx: Context, principal: Principal, invite_id: int) -> RoomDetail:
    """Join the group of a pending invite."""
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        row, room = await _mine(conn, principal, invite_id)
        already = await store.membership(conn, room.id, principal.user_id)
        if already is None:
            await rooms_service.check_not_banned(conn, room, principal.user_id, now)
            if await store.member_count(conn, room.id) >= rooms_service.capacity(ctx, room):
                raise Conflict(f"{room.name} is full", code="room_full")
            await store.add_member_txn(
                conn,
                room.id,
                principal.user_id,
                role="member",
                first_message_id=await store.max_message_id(conn, room.id),
                now=now,
            )
        if not await invite_store.set_invite_status_txn(conn, invite_id, "accepted", now):
            raise NotFound("no such pending invite", code="invite_not_found")
        mine = await store.membership(conn, room.id, principal.user_id)
        recipients = await store.members_of(conn, room.id)
        decided = await invite_store.get_invite(conn, invite_id)
        assert decided is not None and mine is not None
        public = await _public(conn, ctx, room, decided)
    event = RoomInviteEvent(data=RoomInviteData(invite=public))
    await notify.to_users(ctx, sorted({row.to_user, row.from_user}), event)
    if already is None:
        await rooms_service.announce_joined(
            ctx, room, principal.user_id, recipients, count=len(recipients)
        )
    return await rooms_service.get(ctx, principal, room.id)


async def decline(ctx: Context, principal: Principal, invite_id: int) -> None:
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        row, room = await _mine(conn, principal, invite_id)
        if not await invite_store.set_invite_status_txn(conn, invite_id, "declined", now):
            raise NotFound("no such pending invite", code="invite_not_found")
        decided = await invite_store.get_invite(conn, invite_id)
        assert decided is not None
        public = await _public(conn, ctx, room, decided)
    event = RoomInviteEvent(data=RoomInviteData(invite=public))
    await notify.to_users(ctx, sorted({row.to_user, row.from_user}), event)


async def cancel_txn(
    ctx: Context, conn: store.Conn, room: RoomRow, to_user: int
) -> list[RoomInvitePublic]:
    """Cancel ``to_user``'s pending invites to ``room`` (they were banned from it): the
    invites as they now are, for :func:`tell` after the commit."""
    out: list[RoomInvitePublic] = []
    for invite_id in await invite_store.cancel_invites_txn(conn, room.id, to_user, ctx.clock()):
        row = await invite_store.get_invite(conn, invite_id)
        if row is not None:
            out.append(await _public(conn, ctx, room, row))
    return out


async def tell(ctx: Context, user_id: int, invites: list[RoomInvitePublic]) -> None:
    """``room.invite`` for each invite to ``user_id`` (their open invitations list drops a
    cancelled one)."""
    for public in invites:
        await notify.to_user(ctx, user_id, RoomInviteEvent(data=RoomInviteData(invite=public)))
