"""Rooms and private groups: browsing, creating, joining and leaving, members and roles.

Where the policy lives: the rules are pure functions in :mod:`echochat.domain.rooms`; this
module applies them. Visibility: a public room is seen by everyone; a private group only by
its members and staff (``rooms:manage``): to anyone else it does not exist (404
``room_not_found``). Member-only reads of a public room answer 403 ``not_a_member``.
Every change is one transaction; events (``room.member``, ``room.update``) go out after the
commit, after :mod:`echochat.services.roomcast` was told of the membership change (so every
process's hub routes room messages to exactly the members' sockets).

Invites are in :mod:`echochat.services.room_invites`, moderation in
:mod:`echochat.services.room_moderation`, ownership and roles in
:mod:`echochat.services.room_roles`, staff management in
:mod:`echochat.services.rooms_admin`.
"""

from __future__ import annotations

from datetime import datetime

from echochat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from echochat.domain.events_rooms import (
    CategoryPublic,
    MemberAction,
    MyRoom,
    RoomDetail,
    RoomListing,
    RoomMemberData,
    RoomMemberEvent,
    RoomMemberPublic,
    RoomPublic,
    RoomUpdateData,
    RoomUpdateEvent,
)
from echochat.domain.presence import OFFLINE, Presence, seen_by
from echochat.domain.rooms import ROOMS_MANAGE, Role, capacity_of, check_name, check_topic
from echochat.services import notify, presence, roomcast
from echochat.services.accounts import Principal, limit
from echochat.services.context import Context
from echochat.store import audit
from echochat.store import room_categories as category_store
from echochat.store import rooms as store
from echochat.store import users as user_store
from echochat.store.rooms import MemberRow, RoomRow

__all__ = [
    "SNAPSHOT_ABOVE",
    "announce_joined",
    "announce_member",
    "announce_removed",
    "announce_update",
    "announce_with_member",
    "audit_txn",
    "browse",
    "capacity",
    "categories",
    "check_not_banned",
    "create_group",
    "delete",
    "detail",
    "get",
    "iso",
    "join",
    "leave",
    "limit_invites",
    "load",
    "member_target",
    "members",
    "my_rooms",
    "need_member",
    "room_label",
    "room_public",
    "staff",
    "update",
]

# Member lists longer than this read everyone's presence in one snapshot of all devices.
SNAPSHOT_ABOVE = 50


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def staff(principal: Principal) -> bool:
    return principal.can(ROOMS_MANAGE)


def capacity(ctx: Context, room: RoomRow) -> int:
    s = ctx.settings
    return capacity_of(
        room.kind,
        encrypted=room.encrypted,
        capacity=room.capacity,
        room_capacity=s.room_capacity,
        group_max=s.group_max_members,
        encrypted_group_max=s.encrypted_group_max_members,
    )


def room_label(room: RoomRow) -> str:
    """How the audit log names a room."""
    return f"#{room.id} {room.name}"


async def audit_txn(
    conn: store.Conn,
    principal: Principal,
    action: str,
    *,
    target_type: str,
    target: str,
    ip: str,
    details: dict[str, object],
) -> None:
    """One audit row for a room action of ``principal``, in the action's transaction."""
    await audit.append_txn(
        conn,
        actor=principal.username,
        actor_id=principal.user_id,
        action=action,
        target_type=target_type,
        target=target,
        ip=ip,
        details=details,
    )


def room_public(ctx: Context, room: RoomRow, member_count: int) -> RoomPublic:
    return RoomPublic(
        id=room.id,
        kind="public" if room.kind == "public" else "group",
        name=room.name,
        topic=room.topic,
        category_id=room.category_id,
        category=room.category_slug,
        encrypted=room.encrypted,
        owner=room.owner_username,
        capacity=capacity(ctx, room),
        capacity_own=room.capacity if room.kind == "public" else None,
        member_count=member_count,
        created_at=room.created_at.isoformat(),
    )


async def load(
    conn: store.Conn, principal: Principal, room_id: int, *, lock: bool = False
) -> tuple[RoomRow, MemberRow | None]:
    """The room and the caller's membership; a group the caller may not see is 404."""
    room = await store.get_room(conn, room_id, lock=lock)
    mine = await store.membership(conn, room_id, principal.user_id) if room else None
    if room is None or (room.kind == "group" and mine is None and not staff(principal)):
        raise NotFound("no such room", code="room_not_found")
    return room, mine


async def limit_invites(ctx: Context, principal: Principal) -> None:
    """Count one invite or new group against the caller's ``rate_limit_room_invite``
    (429 ``rate_limited`` past it): what invite spam needs, groups to invite into and
    invites, is limited together."""
    await limit(ctx, ctx.settings.rate_limit_room_invite, "room_invite", str(principal.user_id))


def need_member(principal: Principal, mine: MemberRow | None) -> None:
    if mine is None and not staff(principal):
        raise Forbidden("join the room first", code="not_a_member")


async def member_target(
    conn: store.Conn, room: RoomRow, username: str
) -> tuple[int, str, MemberRow | None]:
    """The user named ``username`` (404 ``user_not_found``) and their membership."""
    user = await user_store.by_username(conn, username.strip())
    if user is None:
        raise NotFound(f"no user named {username!r}", code="user_not_found")
    return user.id, user.username, await store.membership(conn, room.id, user.id)


async def announce_member(
    ctx: Context,
    recipients: list[int],
    data: RoomMemberData,
    *,
    hidden: set[int] | None = None,
    hidden_data: RoomMemberData | None = None,
) -> None:
    """``room.member`` to ``recipients``; those in ``hidden`` get ``hidden_data`` instead
    (the same change with the member shown offline: stealth and blocks hold in rooms)."""
    hidden = hidden if hidden and hidden_data is not None else set()
    seen = [u for u in recipients if u not in hidden]
    others = [u for u in recipients if u in hidden]
    also = [(others, RoomMemberEvent(data=hidden_data))] if others and hidden_data else []
    # one publish per member, several channels at once (their round trips overlap on Redis)
    await notify.to_users_in_order(ctx, [(seen, RoomMemberEvent(data=data)), *also])


async def announce_removed(
    ctx: Context, recipients: list[int], removed_id: int, data: RoomMemberData
) -> None:
    """``removed_id`` left or was removed: every process stops routing the room to their
    sockets (before anything else is sent), then the members and they are told."""
    await roomcast.membership_changed(ctx, data.room, removed_id, False)
    await announce_member(ctx, [*recipients, removed_id], data)


async def announce_update(
    ctx: Context, recipients: list[int], room: RoomPublic, *, deleted: bool = False
) -> None:
    action = "deleted" if deleted else "changed"
    if deleted:
        await roomcast.room_deleted(ctx, room.id)
    event = RoomUpdateEvent(data=RoomUpdateData(action=action, room=room))
    await notify.to_users_in_order(ctx, [(recipients, event)])


# browsing ---------------------------------------------------------------------------------


async def categories(ctx: Context) -> list[CategoryPublic]:
    async with ctx.db.read() as conn:
        rows = await category_store.categories(conn)
    return [
        CategoryPublic(
            id=c.id, slug=c.slug, name=c.name, position=c.position, room_count=c.room_count
        )
        for c in rows
    ]


async def browse(
    ctx: Context, principal: Principal, *, category: str | None = None, q: str | None = None
) -> list[RoomListing]:
    """Public rooms (of a category, by id or slug; names containing ``q``) with their
    member and online counts: one query for each count, one presence snapshot."""
    async with ctx.db.read() as conn:
        category_id: int | None = None
        if category:
            found = (
                await category_store.get_category(conn, int(category))
                if category.isdigit() and len(category) <= 18
                else await category_store.category_by_slug(conn, category.strip().lower())
            )
            if found is None:
                raise NotFound(f"no category {category!r}", code="category_not_found")
            category_id = found.id
        rows = await store.public_rooms(conn, category_id=category_id, q=(q or "").strip())
        ids = [r.id for r in rows]
        counts = await store.member_counts(conn, ids)
        mine = set(await store.room_ids_of(conn, principal.user_id))
        online = await _online_ids(ctx) if any(counts.values()) else set()
        online_counts = await store.online_counts(conn, ids, online)
    return [
        RoomListing(
            **room_public(ctx, r, counts.get(r.id, 0)).model_dump(),
            online_count=online_counts.get(r.id, 0),
            joined=r.id in mine,
        )
        for r in rows
    ]


async def _online_ids(ctx: Context) -> set[int]:
    """Users who count as online in a room: any state but offline and invisible."""
    snapshot = await presence.online_snapshot(ctx)
    return {u for u, p in snapshot.items() if seen_by(p, stealth=False) != OFFLINE}


async def my_rooms(ctx: Context, principal: Principal) -> list[MyRoom]:
    async with ctx.db.read() as conn:
        rows = await store.my_rooms(conn, principal.user_id)
        counts = await store.member_counts(conn, [r.room.id for r in rows])
    return [
        MyRoom(
            **room_public(ctx, r.room, counts.get(r.room.id, 0)).model_dump(),
            role=_role(r.role),
            muted_until=iso(r.muted_until),
            first_message_id=r.first_message_id,
            read_upto=r.read_upto,
            last_message_id=r.last_message_id,
            unread=r.unread,
        )
        for r in rows
    ]


def _role(raw: str) -> Role:
    return "owner" if raw == "owner" else "moderator" if raw == "moderator" else "member"


def detail(ctx: Context, room: RoomRow, count: int, mine: MemberRow | None) -> RoomDetail:
    return RoomDetail(
        **room_public(ctx, room, count).model_dump(),
        role=_role(mine.role) if mine else None,
        muted_until=iso(mine.muted_until) if mine else None,
    )


async def get(ctx: Context, principal: Principal, room_id: int) -> RoomDetail:
    async with ctx.db.read() as conn:
        room, mine = await load(conn, principal, room_id)
        count = await store.member_count(conn, room_id)
    return detail(ctx, room, count, mine)


async def members(ctx: Context, principal: Principal, room_id: int) -> list[RoomMemberPublic]:
    """The member list with the presence the caller may see of each member."""
    async with ctx.db.read() as conn:
        _, mine = await load(conn, principal, room_id)
        need_member(principal, mine)
        rows = await store.member_rows(conn, room_id)
        hidden = await store.presence_hidden_from(conn, principal.user_id) - {principal.user_id}
    ids = [r.user_id for r in rows]
    if len(ids) > SNAPSHOT_ABOVE:
        snapshot = await presence.online_snapshot(ctx)
        found = {u: snapshot.get(u, OFFLINE) for u in ids}
    else:
        found = await presence.current_many(ctx, ids)
    return [
        _member_public(
            r, found[r.user_id], hidden=r.user_id in hidden and r.user_id != principal.user_id
        )
        for r in rows
    ]


def _member_public(
    row: store.MemberInfo, shown: Presence, *, hidden: bool = False
) -> RoomMemberPublic:
    view = seen_by(shown, stealth=hidden)
    return RoomMemberPublic(
        username=row.username,
        display_name=row.display_name,
        role=_role(row.role),
        state=view.state,
        status=view.text,
        muted_until=iso(row.muted_until),
        joined_at=row.joined_at.isoformat(),
    )


# creating, joining, leaving ---------------------------------------------------------------


async def create_group(
    ctx: Context, principal: Principal, *, name: str, topic: str = "", encrypted: bool = False
) -> RoomDetail:
    """A private group; its creator is the owner and its only member.

    Checks, in order: the rate limit ``rate_limit_room_invite`` (429; one count with the
    invites the user sends, refused attempts too); the name and topic (422)."""
    await limit_invites(ctx, principal)
    clean_name, clean_topic = check_name(name), check_topic(topic)
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        room_id = await store.insert_room_txn(
            conn,
            kind="group",
            name=clean_name,
            topic=clean_topic,
            category_id=None,
            owner_id=principal.user_id,
            encrypted=encrypted,
            capacity=None,
            created_by=principal.user_id,
            now=now,
        )
        await store.add_member_txn(
            conn, room_id, principal.user_id, role="owner", first_message_id=0, now=now
        )
        room = await store.get_room(conn, room_id)
        mine = await store.membership(conn, room_id, principal.user_id)
    assert room is not None and mine is not None
    await announce_joined(ctx, room, principal.user_id, [principal.user_id], count=1)
    return detail(ctx, room, 1, mine)


async def announce_joined(
    ctx: Context, room: RoomRow, user_id: int, recipients: list[int], *, count: int
) -> None:
    """The newcomer's sockets start getting the room on every process, then the members
    (the newcomer too) are told who joined."""
    async with ctx.db.read() as conn:
        still = await store.membership(conn, room.id, user_id)
    if still is None:
        return  # left again meanwhile (and that leave's hook ran)
    await roomcast.membership_changed(ctx, room.id, user_id, True)
    await announce_with_member(ctx, room.id, user_id, recipients, action="join", count=count)


async def announce_with_member(
    ctx: Context,
    room_id: int,
    user_id: int,
    recipients: list[int],
    *,
    action: MemberAction,
    count: int,
    by: str | None = None,
) -> None:
    """``room.member`` about ``user_id`` carrying their Member as it is now (role, mute and
    presence): those who may not see the member's presence (stealth, blocks) get the same
    event with the member offline."""
    async with ctx.db.read() as conn:
        row = await store.member_info(conn, room_id, user_id)
        hidden = await store.presence_hidden_to(conn, user_id)
    if row is None:
        return
    shown = await presence.current(ctx, user_id)

    def data(view: Presence) -> RoomMemberData:
        member = _member_public(row, view)
        return RoomMemberData(
            room=room_id,
            user=row.username,
            action=action,
            by=by,
            role=member.role,
            muted_until=member.muted_until,
            member=member,
            member_count=count,
        )

    await announce_member(
        ctx, recipients, data(shown), hidden=hidden - {user_id}, hidden_data=data(OFFLINE)
    )


async def join(ctx: Context, principal: Principal, room_id: int) -> RoomDetail:
    """Join a public room (a member already is one: no change). A group is joined by
    accepting an invite (403 ``invite_only``)."""
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        room, mine = await load(conn, principal, room_id, lock=True)
        if mine is not None:
            return detail(ctx, room, await store.member_count(conn, room_id), mine)
        if room.kind != "public":
            raise Forbidden("this group is invite-only", code="invite_only")
        await check_not_banned(conn, room, principal.user_id, now)
        count = await store.member_count(conn, room_id)
        if count >= capacity(ctx, room):
            raise Conflict(f"{room.name} is full", code="room_full")
        await store.add_member_txn(
            conn,
            room_id,
            principal.user_id,
            role="member",
            first_message_id=await store.max_message_id(conn, room_id),
            now=now,
        )
        mine = await store.membership(conn, room_id, principal.user_id)
        recipients = await store.members_of(conn, room_id)
    assert mine is not None
    await announce_joined(ctx, room, principal.user_id, recipients, count=len(recipients))
    return detail(ctx, room, len(recipients), mine)


async def check_not_banned(conn: store.Conn, room: RoomRow, user_id: int, now: datetime) -> None:
    """403 ``banned_from_room`` while a ban holds; an expired ban is removed."""
    ban = await store.ban_of(conn, room.id, user_id)
    if ban is None:
        return
    if ban.until is not None and ban.until <= now:
        await store.unban_txn(conn, room.id, user_id)
        return
    until = f" until {ban.until.isoformat(timespec='minutes')}" if ban.until else ""
    raise Forbidden(
        f"you are banned from {room.name}{until}",
        code="banned_from_room",
        details={"until": iso(ban.until)} if ban.until else None,
    )


async def leave(ctx: Context, principal: Principal, room_id: int, *, ip: str = "") -> None:
    """Leave a room. An owner hands the group over first (409 ``owner_must_transfer``)
    unless they are its last member: then the group is deleted."""
    async with ctx.db.transaction() as conn:
        room, mine = await load(conn, principal, room_id, lock=True)
        if mine is None:
            raise Forbidden("you are not a member of this room", code="not_a_member")
        others = [u for u in await store.members_of(conn, room_id) if u != principal.user_id]
        if mine.role == "owner" and others:
            raise Conflict(
                "transfer the ownership to another member before leaving",
                code="owner_must_transfer",
            )
        if room.kind == "group" and not others:
            public = await _delete_txn(ctx, conn, principal, room, [], ip, "last member left")
        else:
            public = None
            await store.remove_member_txn(conn, room_id, principal.user_id)
    if public is not None:
        await announce_update(ctx, [principal.user_id], public, deleted=True)
        return
    data = RoomMemberData(
        room=room_id, user=principal.username, action="leave", member_count=len(others)
    )
    await announce_removed(ctx, others, principal.user_id, data)


# editing and deleting ---------------------------------------------------------------------


async def update(
    ctx: Context,
    principal: Principal,
    room_id: int,
    *,
    name: str | None = None,
    topic: str | None = None,
    ip: str = "",
) -> RoomDetail:
    """Rename a room or change its topic: its owner or moderators, or staff."""
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = check_name(name)
    if topic is not None:
        values["topic"] = check_topic(topic)
    if not values:
        raise InvalidInput("give a name or a topic", code="nothing_to_change")
    async with ctx.db.transaction() as conn:
        room, mine = await load(conn, principal, room_id, lock=True)
        need_member(principal, mine)
        if not staff(principal) and (mine is None or mine.role not in ("owner", "moderator")):
            raise Forbidden(
                "only the room's owner and moderators may do that", code="not_a_moderator"
            )
        await store.update_room_txn(conn, room_id, **values)
        if room.kind == "public" or mine is None:
            await audit_txn(
                conn,
                principal,
                "room.update",
                target_type="room",
                target=room_label(room),
                ip=ip,
                details={k: str(v) for k, v in values.items()},
            )
        new = await store.get_room(conn, room_id)
        recipients = await store.members_of(conn, room_id)
    assert new is not None
    await announce_update(ctx, recipients, room_public(ctx, new, len(recipients)))
    return detail(ctx, new, len(recipients), mine)


async def _delete_txn(
    ctx: Context,
    conn: store.Conn,
    principal: Principal,
    room: RoomRow,
    members: list[int],
    ip: str,
    reason: str,
) -> RoomPublic:
    """Delete the room (members, bans, invites and messages go with it) and audit it; the
    room as it was, for the ``room.update`` that follows the commit."""
    public = room_public(ctx, room, len(members))
    await store.delete_room_txn(conn, room.id)
    details: dict[str, object] = {"kind": room.kind, "members": len(members), "reason": reason}
    await audit_txn(
        conn,
        principal,
        "room.delete",
        target_type="room",
        target=room_label(room),
        ip=ip,
        details=details,
    )
    return public


async def delete(ctx: Context, principal: Principal, room_id: int, *, ip: str = "") -> None:
    """Delete a group (its owner, or staff) or a public room (staff): the members are told
    (``room.update`` deleted); its messages, invites and bans go with it."""
    async with ctx.db.transaction() as conn:
        room, mine = await load(conn, principal, room_id, lock=True)
        if not staff(principal) and room.kind == "public":
            raise Forbidden("only staff may delete a public room", code="permission_denied")
        if not staff(principal) and (mine is None or mine.role != "owner"):
            raise Forbidden("only the group's owner may delete it", code="not_owner")
        recipients = await store.members_of(conn, room_id)
        public = await _delete_txn(ctx, conn, principal, room, recipients, ip, "deleted")
    await announce_update(ctx, recipients, public, deleted=True)
