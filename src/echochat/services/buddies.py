"""Buddy lists: requests with authorization, groups, stealth, blocks.

Where the policy lives:
- a request needs the other side's acceptance; then both users appear in each other's list
  (one row each, with their own group and stealth setting), and removing ends both;
- a blocked user cannot request, message, buzz, call or see the blocker's presence, and is
  not told: their request looks sent but never reaches the blocker (``hidden``);
- blocking ends the buddy relationship and any pending requests between the two.
Events (``buddy.request``, ``buddy.update``, ``presence``) go out after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echochat.domain.errors import Conflict, InvalidInput, NotFound
from echochat.domain.events import (
    BuddyGroupsData,
    BuddyGroupsEvent,
    BuddyPublic,
    BuddyRequestData,
    BuddyRequestEvent,
    BuddyRequestPublic,
    BuddyUpdateData,
    BuddyUpdateEvent,
)
from echochat.domain.presence import Presence, seen_by
from echochat.domain.text import clean_line
from echochat.services import notify, presence
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import buddies as store
from echochat.store import users as user_store
from echochat.store.buddies import BuddyRow, RequestRow

__all__ = [
    "DEFAULT_GROUP",
    "BuddyList",
    "accept",
    "block",
    "blocks",
    "cancel",
    "create_group",
    "decline",
    "delete_group",
    "list_buddies",
    "remove",
    "rename_group",
    "send_request",
    "unblock",
    "update",
]

DEFAULT_GROUP = "Buddies"
MESSAGE_MAX = 200


@dataclass(frozen=True)
class BuddyList:
    groups: list[str]
    buddies: list[BuddyPublic]
    incoming: list[BuddyRequestPublic]
    outgoing: list[BuddyRequestPublic]


def check_group(raw: str | None) -> str:
    name = clean_line(raw) or DEFAULT_GROUP
    if len(name) > 40 or "/" in name:
        raise InvalidInput(
            "group names are 1-40 printable characters, without '/'",
            code="invalid_group",
            details={"field": "group"},
        )
    return name


def _public_request(row: RequestRow) -> BuddyRequestPublic:
    return BuddyRequestPublic(
        id=row.id,
        from_username=row.from_username,
        from_display_name=row.from_display_name,
        to_username=row.to_username,
        message=row.message,
        created_at=row.created_at.isoformat(),
    )


def _public_buddy(row: BuddyRow, shown: Presence) -> BuddyPublic:
    return BuddyPublic(
        username=row.username,
        display_name=row.display_name,
        group=row.group_name,
        stealth=row.stealth,
        state=shown.state,
        status=shown.text,
    )


async def _view_of(ctx: Context, viewer_id: int, row: BuddyRow) -> Presence:
    """What ``viewer_id`` sees of buddy ``row`` (the buddy's stealth towards the viewer)."""
    async with ctx.db.read() as conn:
        back = await store.buddy_of(conn, row.user_id, viewer_id)
    stealth = back.stealth if back is not None else True
    return seen_by(await presence.current(ctx, row.user_id), stealth=stealth)


async def list_buddies(ctx: Context, principal: Principal) -> BuddyList:
    async with ctx.db.read() as conn:
        groups = await store.group_names(conn, principal.user_id)
        rows = await store.buddy_rows(conn, principal.user_id)
        requests = await store.requests_for(conn, principal.user_id)
        stealth_back = dict(await store.watchers_back(conn, principal.user_id))
    presences = await presence.current_many(ctx, [r.user_id for r in rows])
    buddies = [
        _public_buddy(r, seen_by(presences[r.user_id], stealth=stealth_back.get(r.user_id, True)))
        for r in rows
    ]
    for r in rows:
        if r.group_name not in groups:
            groups.append(r.group_name)
    if not groups:
        groups = [DEFAULT_GROUP]
    return BuddyList(
        groups=groups,
        buddies=buddies,
        incoming=[_public_request(r) for r in requests if r.to_user == principal.user_id],
        outgoing=[_public_request(r) for r in requests if r.from_user == principal.user_id],
    )


async def _target(ctx: Context, username: str) -> tuple[int, str, str]:
    async with ctx.db.read() as conn:
        user = await user_store.by_username(conn, username.strip())
    if user is None:
        raise NotFound(f"no user named {username!r}", code="user_not_found")
    return user.id, user.username, user.display_name


async def send_request(
    ctx: Context, principal: Principal, username: str, *, message: str = "", group: str | None
) -> BuddyRequestPublic:
    """Ask ``username`` to be buddies. If they already asked us, this accepts instead."""
    group_name = check_group(group)
    text = clean_line(message)
    if len(text) > MESSAGE_MAX:
        raise InvalidInput(
            f"the message may be at most {MESSAGE_MAX} characters",
            code="message_too_long",
            details={"field": "message"},
        )
    target_id, target_name, _ = await _target(ctx, username)
    if target_id == principal.user_id:
        raise InvalidInput("you cannot add yourself", code="cannot_add_self")
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        blocked_by_me, blocked_me = await store.blocked_between(conn, principal.user_id, target_id)
        if blocked_by_me:
            raise Conflict(f"you blocked {target_name}; unblock them first", code="blocked")
        if await store.buddy_of(conn, principal.user_id, target_id) is not None:
            raise Conflict(f"{target_name} is already your buddy", code="already_buddies")
        mine = await store.pending_between(conn, principal.user_id, target_id)
        if mine is not None:
            return _public_request(mine)
        theirs = await store.pending_between(conn, target_id, principal.user_id)
        if theirs is not None and not theirs.hidden and not blocked_me:
            reverse_id = theirs.id
        else:
            reverse_id = None
            request_id = await store.insert_request_txn(
                conn,
                from_user=principal.user_id,
                to_user=target_id,
                message=text,
                group_name=group_name,
                hidden=blocked_me,  # looks sent; never reaches someone who blocked us
                now=now,
            )
    if reverse_id is not None:
        await accept(ctx, principal, reverse_id, group=group_name)
        async with ctx.db.read() as conn:
            row = await store.get_request(conn, reverse_id)
        assert row is not None
        return _public_request(row)
    async with ctx.db.read() as conn:
        row = await store.get_request(conn, request_id)
    assert row is not None
    public = _public_request(row)
    event = BuddyRequestEvent(data=BuddyRequestData(request=public))
    await notify.to_user(ctx, principal.user_id, event)
    if not row.hidden:
        await notify.to_user(ctx, target_id, event)
    return public


async def _own_request(
    ctx: Context, principal: Principal, request_id: int, *, incoming: bool
) -> RequestRow:
    async with ctx.db.read() as conn:
        row = await store.get_request(conn, request_id)
    owner = row.to_user if row is not None and incoming else row.from_user if row else None
    if (
        row is None
        or owner != principal.user_id
        or row.status != "pending"
        or (incoming and row.hidden)
    ):
        raise NotFound("no such pending request", code="request_not_found")
    return row


async def accept(
    ctx: Context, principal: Principal, request_id: int, *, group: str | None = None
) -> BuddyPublic:
    row = await _own_request(ctx, principal, request_id, incoming=True)
    group_name = check_group(group)
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        if not await store.set_request_status_txn(conn, request_id, "accepted", now):
            raise NotFound("no such pending request", code="request_not_found")
        await store.add_pair_txn(conn, principal.user_id, group_name, row.from_user, row.group_name)
        await store.cancel_pending_between_txn(conn, principal.user_id, row.from_user, now)
        mine = await store.buddy_of(conn, principal.user_id, row.from_user)
        theirs = await store.buddy_of(conn, row.from_user, principal.user_id)
    assert mine is not None and theirs is not None
    mine_public = _public_buddy(mine, await _view_of(ctx, principal.user_id, mine))
    theirs_public = _public_buddy(theirs, await _view_of(ctx, row.from_user, theirs))
    await notify.to_user(
        ctx,
        principal.user_id,
        BuddyUpdateEvent(
            data=BuddyUpdateData(
                action="added", username=mine.username, buddy=mine_public, request_id=request_id
            )
        ),
    )
    await notify.to_user(
        ctx,
        row.from_user,
        BuddyUpdateEvent(
            data=BuddyUpdateData(
                action="added", username=theirs.username, buddy=theirs_public, request_id=request_id
            )
        ),
    )
    return mine_public


async def decline(ctx: Context, principal: Principal, request_id: int) -> None:
    row = await _own_request(ctx, principal, request_id, incoming=True)
    async with ctx.db.transaction() as conn:
        if not await store.set_request_status_txn(conn, request_id, "declined", ctx.clock()):
            raise NotFound("no such pending request", code="request_not_found")
    await _request_ended(ctx, row, "request_declined", tell_recipient=True)


async def cancel(ctx: Context, principal: Principal, request_id: int) -> None:
    row = await _own_request(ctx, principal, request_id, incoming=False)
    async with ctx.db.transaction() as conn:
        if not await store.set_request_status_txn(conn, request_id, "cancelled", ctx.clock()):
            raise NotFound("no such pending request", code="request_not_found")
    await _request_ended(ctx, row, "request_cancelled", tell_recipient=not row.hidden)


async def _request_ended(
    ctx: Context,
    row: RequestRow,
    action: Literal["request_declined", "request_cancelled"],
    *,
    tell_recipient: bool,
) -> None:
    """Both sides learn a request ended, each told the *other* party's name (the recipient
    of a hidden request never knew of it, so is not told)."""
    to_sender = BuddyUpdateData(action=action, username=row.to_username, request_id=row.id)
    await notify.to_user(ctx, row.from_user, BuddyUpdateEvent(data=to_sender))
    if tell_recipient:
        to_recipient = BuddyUpdateData(action=action, username=row.from_username, request_id=row.id)
        await notify.to_user(ctx, row.to_user, BuddyUpdateEvent(data=to_recipient))


async def _buddy(ctx: Context, principal: Principal, username: str) -> BuddyRow:
    target_id, _, _ = await _target(ctx, username)
    async with ctx.db.read() as conn:
        row = await store.buddy_of(conn, principal.user_id, target_id)
    if row is None:
        raise NotFound(f"{username} is not your buddy", code="not_a_buddy")
    return row


async def update(
    ctx: Context,
    principal: Principal,
    username: str,
    *,
    group: str | None = None,
    stealth: bool | None = None,
) -> BuddyPublic:
    """Move a buddy to another group and/or appear offline to them (stealth)."""
    row = await _buddy(ctx, principal, username)
    group_name = check_group(group) if group is not None else None
    async with ctx.db.transaction() as conn:
        if group_name is not None:
            await store.ensure_group_txn(conn, principal.user_id, group_name)
        await store.update_buddy_txn(
            conn, principal.user_id, row.user_id, group_name=group_name, stealth=stealth
        )
        new = await store.buddy_of(conn, principal.user_id, row.user_id)
    assert new is not None
    public = _public_buddy(new, await _view_of(ctx, principal.user_id, new))
    await notify.to_user(
        ctx,
        principal.user_id,
        BuddyUpdateEvent(
            data=BuddyUpdateData(action="changed", username=new.username, buddy=public)
        ),
    )
    if stealth is not None and stealth != row.stealth:
        # The buddy sees us change at once: offline under stealth, our presence without.
        mine = seen_by(await presence.current(ctx, principal.user_id), stealth=stealth)
        await notify.to_user(ctx, row.user_id, presence.presence_event(principal.username, mine))
    return public


async def remove(ctx: Context, principal: Principal, username: str) -> None:
    row = await _buddy(ctx, principal, username)
    async with ctx.db.transaction() as conn:
        await store.remove_pair_txn(conn, principal.user_id, row.user_id)
    await _announce_removal(ctx, principal, row.user_id, row.username)


async def _announce_removal(
    ctx: Context, principal: Principal, other_id: int, other_name: str
) -> None:
    await notify.to_user(
        ctx,
        principal.user_id,
        BuddyUpdateEvent(data=BuddyUpdateData(action="removed", username=other_name)),
    )
    await notify.to_user(
        ctx,
        other_id,
        BuddyUpdateEvent(data=BuddyUpdateData(action="removed", username=principal.username)),
    )


async def _groups_changed(ctx: Context, principal: Principal, groups: list[str]) -> list[str]:
    event = BuddyGroupsEvent(data=BuddyGroupsData(groups=groups))
    await notify.to_user(ctx, principal.user_id, event)
    return groups


async def create_group(ctx: Context, principal: Principal, name: str) -> list[str]:
    group_name = check_group(name)
    async with ctx.db.transaction() as conn:
        await store.ensure_group_txn(conn, principal.user_id, group_name)
        groups = await store.group_names(conn, principal.user_id)
    return await _groups_changed(ctx, principal, groups)


async def rename_group(ctx: Context, principal: Principal, old: str, new: str) -> list[str]:
    new_name = check_group(new)
    async with ctx.db.transaction() as conn:
        names = await store.group_names(conn, principal.user_id)
        if old not in names:
            raise NotFound(f"no group named {old!r}", code="group_not_found")
        if new_name != old and new_name in names:
            raise Conflict(f"a group named {new_name!r} exists", code="group_exists")
        await store.rename_group_txn(conn, principal.user_id, old, new_name)
        groups = await store.group_names(conn, principal.user_id)
    return await _groups_changed(ctx, principal, groups)


async def delete_group(ctx: Context, principal: Principal, name: str) -> list[str]:
    """Delete a group; its buddies move to the first remaining group (or the default)."""
    async with ctx.db.transaction() as conn:
        names = await store.group_names(conn, principal.user_id)
        if name not in names:
            raise NotFound(f"no group named {name!r}", code="group_not_found")
        rest = [n for n in names if n != name]
        move_to = rest[0] if rest else DEFAULT_GROUP
        if not rest:
            await store.ensure_group_txn(conn, principal.user_id, DEFAULT_GROUP)
        await store.delete_group_txn(conn, principal.user_id, name, move_to)
        groups = await store.group_names(conn, principal.user_id)
    return await _groups_changed(ctx, principal, groups)


async def blocks(ctx: Context, principal: Principal) -> list[tuple[str, str]]:
    async with ctx.db.read() as conn:
        return [(u, d) for _, u, d in await store.blocked_ids(conn, principal.user_id)]


async def block(ctx: Context, principal: Principal, username: str) -> None:
    """Block ``username``: they stop seeing our presence and reaching us, silently."""
    target_id, target_name, _ = await _target(ctx, username)
    if target_id == principal.user_id:
        raise InvalidInput("you cannot block yourself", code="cannot_block_self")
    async with ctx.db.transaction() as conn:
        await store.block_txn(conn, principal.user_id, target_id)
        were_buddies = await store.remove_pair_txn(conn, principal.user_id, target_id)
        await store.cancel_pending_between_txn(conn, principal.user_id, target_id, ctx.clock())
    if were_buddies:
        await _announce_removal(ctx, principal, target_id, target_name)


async def unblock(ctx: Context, principal: Principal, username: str) -> None:
    target_id, _, _ = await _target(ctx, username)
    async with ctx.db.transaction() as conn:
        if not await store.unblock_txn(conn, principal.user_id, target_id):
            raise NotFound(f"{username} is not blocked", code="not_blocked")
        # Requests they sent while blocked were never shown; drop them rather than surface
        # them now (they can ask again).
        await store.cancel_pending_between_txn(conn, principal.user_id, target_id, ctx.clock())
