"""Moderation in rooms: mute for a time, kick, ban (for a time or until lifted), unban.

Where the policy lives: :func:`echochat.domain.rooms.check_moderation` (who may act on
whom: the owner, moderators and staff; a moderator never on the owner or another
moderator; nobody on themselves). A muted member stays in the room but ``room.send`` is
refused (services/room_messages.py reads ``room_members.muted_until``); a kicked member
may come back (a public room: by joining; a group: by a new invite); a banned user is
removed and refused at join and invite acceptance (403 ``banned_from_room``) until the
ban ends or is lifted. Every action writes the audit log in its transaction; ``room.member``
goes to the members (and to the user concerned) after the commit.
"""

from __future__ import annotations

from datetime import datetime

from echochat.domain.errors import Forbidden, NotFound
from echochat.domain.events_rooms import RoomBanPublic, RoomMemberData
from echochat.domain.rooms import (
    BAN_MINUTES_MAX,
    MUTE_MINUTES_MAX,
    can_moderate,
    check_minutes,
    check_moderation,
    until_from,
)
from echochat.domain.text import clean_line
from echochat.services import room_invites
from echochat.services import rooms as rooms_service
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import rooms as store
from echochat.store.rooms import MemberRow, RoomRow

__all__ = ["REASON_MAX", "ban", "bans", "kick", "mute", "unban"]

REASON_MAX = 500


async def _target(
    conn: store.Conn,
    principal: Principal,
    room_id: int,
    username: str,
    *,
    member: bool,
    removes: bool = False,
) -> tuple[RoomRow, int, str, MemberRow | None]:
    """The room, and the target the caller may act on (``member``: who must be a member;
    ``removes``: the action ends their membership, which an owner's never is, even by staff:
    a group always keeps its owner)."""
    room, mine = await rooms_service.load(conn, principal, room_id, lock=True)
    rooms_service.need_member(principal, mine)
    if not can_moderate(mine.role if mine else None, staff=rooms_service.staff(principal)):
        # before looking the target up: a member cannot probe who exists this way
        raise Forbidden("only the room's owner and moderators may do that", code="not_a_moderator")
    target_id, target_name, theirs = await rooms_service.member_target(conn, room, username)
    check_moderation(
        mine.role if mine else None,
        staff=rooms_service.staff(principal),
        target_role=theirs.role if theirs else None,
        on_self=target_id == principal.user_id,
    )
    if removes and theirs is not None and theirs.role == "owner":
        raise Forbidden(
            "the group's owner cannot be removed: delete the group instead", code="outranked"
        )
    if member and theirs is None:
        raise NotFound(f"{target_name} is not a member", code="member_not_found")
    return room, target_id, target_name, theirs


async def _audit(
    conn: store.Conn,
    principal: Principal,
    action: str,
    room: RoomRow,
    target: str,
    ip: str,
    **details: object,
) -> None:
    await rooms_service.audit_txn(
        conn,
        principal,
        action,
        target_type="user",
        target=target,
        ip=ip,
        details={"room": room.id, "room_name": room.name, **details},
    )


async def mute(
    ctx: Context,
    principal: Principal,
    room_id: int,
    username: str,
    *,
    minutes: int,
    ip: str = "",
) -> datetime | None:
    """Mute a member for ``minutes`` (0 lifts the mute); the end of the mute."""
    check_minutes(minutes, most=MUTE_MINUTES_MAX, field="minutes")
    until = until_from(ctx.clock(), minutes)
    async with ctx.db.transaction() as conn:
        room, target_id, target_name, _ = await _target(
            conn, principal, room_id, username, member=True
        )
        await store.set_muted_txn(conn, room_id, target_id, until)
        action = "room.mute" if until else "room.unmute"
        await _audit(conn, principal, action, room, target_name, ip, minutes=minutes)
        recipients = await store.members_of(conn, room_id)
    await rooms_service.announce_with_member(
        ctx,
        room_id,
        target_id,
        recipients,
        action="mute",
        count=len(recipients),
        by=principal.username,
    )
    return until


async def kick(
    ctx: Context, principal: Principal, room_id: int, username: str, *, ip: str = ""
) -> None:
    """Remove a member (they may come back: join again, or a new invite to a group)."""
    async with ctx.db.transaction() as conn:
        room, target_id, target_name, _ = await _target(
            conn, principal, room_id, username, member=True, removes=True
        )
        await store.remove_member_txn(conn, room_id, target_id)
        await _audit(conn, principal, "room.kick", room, target_name, ip)
        recipients = await store.members_of(conn, room_id)
    data = RoomMemberData(
        room=room_id,
        user=target_name,
        action="kick",
        by=principal.username,
        member_count=len(recipients),
    )
    await rooms_service.announce_removed(ctx, recipients, target_id, data)


async def ban(
    ctx: Context,
    principal: Principal,
    room_id: int,
    username: str,
    *,
    reason: str = "",
    minutes: int | None = None,
    ip: str = "",
) -> datetime | None:
    """Ban a user from the room (for ``minutes``, or until lifted when None or 0): a member
    is removed, and their pending invites to it are cancelled. The end of the ban."""
    text = clean_line(reason)[:REASON_MAX]
    if minutes is not None:
        check_minutes(minutes, most=BAN_MINUTES_MAX, field="minutes")
    now = ctx.clock()
    until = until_from(now, minutes)
    async with ctx.db.transaction() as conn:
        room, target_id, target_name, theirs = await _target(
            conn, principal, room_id, username, member=False, removes=True
        )
        await store.ban_txn(
            conn, room_id, target_id, by_id=principal.user_id, reason=text, until=until, now=now
        )
        if theirs is not None:
            await store.remove_member_txn(conn, room_id, target_id)
        cancelled = await room_invites.cancel_txn(ctx, conn, room, target_id)
        await _audit(
            conn,
            principal,
            "room.ban",
            room,
            target_name,
            ip,
            reason=text,
            until=rooms_service.iso(until),
        )
        recipients = await store.members_of(conn, room_id)
    if theirs is not None:
        data = RoomMemberData(
            room=room_id,
            user=target_name,
            action="ban",
            by=principal.username,
            member_count=len(recipients),
        )
        await rooms_service.announce_removed(ctx, recipients, target_id, data)
    await room_invites.tell(ctx, target_id, cancelled)
    return until


async def unban(
    ctx: Context, principal: Principal, room_id: int, username: str, *, ip: str = ""
) -> None:
    async with ctx.db.transaction() as conn:
        room, target_id, target_name, _ = await _target(
            conn, principal, room_id, username, member=False
        )
        if not await store.unban_txn(conn, room_id, target_id):
            raise NotFound(f"{target_name} is not banned here", code="not_banned")
        await _audit(conn, principal, "room.unban", room, target_name, ip)


async def bans(ctx: Context, principal: Principal, room_id: int) -> list[RoomBanPublic]:
    """The bans in force in the room, for its owner, moderators and staff (to lift them)."""
    async with ctx.db.read() as conn:
        _, mine = await rooms_service.load(conn, principal, room_id)
        rooms_service.need_member(principal, mine)
        if not can_moderate(mine.role if mine else None, staff=rooms_service.staff(principal)):
            raise Forbidden(
                "only the room's owner and moderators may do that", code="not_a_moderator"
            )
        rows = await store.bans_of(conn, room_id, ctx.clock())
    return [
        RoomBanPublic(
            username=r.username,
            display_name=r.display_name,
            by=r.by,
            reason=r.reason,
            created_at=r.created_at.isoformat(),
            until=rooms_service.iso(r.until),
        )
        for r in rows
    ]
