"""Room messages: send, history, delete, read watermarks, typing and the replay on reconnect
(docs/protocol.md, "Room messages").

Where the policy lives:
- who may post, in the documented order: :func:`send` (the rate limit), then the checks of
  services/room_writer.py inside the group commit (room and membership, mutes, shape);
- who may read: :func:`~echochat.services.room_writer.member` (404 ``room_not_found`` for a
  private group, 403 ``not_a_member`` for a public room); a member sees the messages above
  their ``first_message_id`` (from their join on);
- who may delete: :func:`delete_message` (the author, the room's owner or moderators, users
  with ``rooms:manage``; ``as_admin`` for report actions).

Sends go through the group commit of services/room_writer.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from echochat.domain.errors import Forbidden, InvalidInput, NotFound
from echochat.domain.events_room_messages import (
    RoomMessage,
    RoomMessageDeletedData,
    RoomMessageDeletedEvent,
    RoomReadData,
    RoomReadEvent,
    RoomTypingData,
    RoomTypingEvent,
)
from echochat.services import notify, roomcast
from echochat.services.accounts import Principal, limit
from echochat.services.context import Context
from echochat.services.room_writer import (
    TEXT_MAX,
    Send,
    Sent,
    group_conv,
    member,
    public,
    visible,
    writer,
)
from echochat.store import audit
from echochat.store import messages as runner
from echochat.store import room_messages as store
from echochat.store.room_messages import RoomMessageRow

__all__ = [
    "HISTORY_LIMIT",
    "HISTORY_MAX",
    "TEXT_MAX",
    "History",
    "Replay",
    "Sent",
    "delete_message",
    "group_conv",
    "history",
    "mark_read",
    "public",
    "replay",
    "send",
    "typing",
    "unread",
]


HISTORY_LIMIT = 50
HISTORY_MAX = 200


@dataclass(frozen=True)
class History:
    messages: list[RoomMessage]
    has_more: bool
    read_upto: int
    first_message_id: int


@dataclass(frozen=True)
class Replay:
    messages: list[RoomMessage]
    cursors: dict[int, int]  # per room of the user: where the client stands after this page
    more: bool


# --- the verbs -------------------------------------------------------------------------------


async def send(
    ctx: Context,
    principal: Principal,
    room_id: int,
    *,
    client_id: str | None,
    text: str | None = None,
    envelope: object = None,
) -> Sent:
    """Store a room message and tell every member's sockets; a retry of (sender,
    client_id) returns the original. Give ``text`` (plain rooms) or ``envelope``
    (encrypted groups; ``client_id`` then defaults to the envelope's).

    Checks, in the order of docs/protocol.md: the rate limit; the room and membership (404
    ``room_not_found`` / 403 ``not_a_member``); the mutes (403 ``muted``); the shape. All
    but the first run inside the group commit."""
    await limit(ctx, ctx.settings.rate_limit_room_account, "room", str(principal.user_id))
    if (text is None) == (envelope is None):
        raise InvalidInput("give either text or envelope", code="invalid_input")
    if client_id is None and isinstance(envelope, dict):
        found = envelope.get("client_id")
        client_id = found if isinstance(found, str) else None
    if client_id is None or not 1 <= len(client_id) <= 64:
        raise InvalidInput(
            "client_id: 1 to 64 characters", code="invalid_input", details={"field": "client_id"}
        )
    item = Send(
        principal=principal,
        room_id=room_id,
        client_id=client_id,
        text=text,
        envelope=envelope,
        created_at=ctx.clock(),
    )
    return await writer(ctx.db).submit(ctx, item)


async def history(
    ctx: Context,
    principal: Principal,
    room_id: int,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = HISTORY_LIMIT,
) -> History:
    """A page of the room's messages the member may see (from their join on)."""
    access = await member(ctx, principal, room_id)
    limit = max(1, min(limit, HISTORY_MAX))

    def step(conn: runner.Conn) -> tuple[list[RoomMessageRow], bool]:
        return store.history(
            conn,
            room_id,
            floor=access.first_message_id,
            before=before,
            after=after,
            limit=limit,
        )

    rows, has_more = await runner.run_read(ctx.db, step)
    return History(
        messages=[public(r) for r in rows],
        has_more=has_more,
        read_upto=access.read_upto,
        first_message_id=access.first_message_id,
    )


async def delete_message(
    ctx: Context,
    actor: Principal,
    message_id: int,
    *,
    reason: str = "",
    ip: str = "",
    as_admin: bool = False,
    room_id: int | None = None,
) -> None:
    """Tombstone a room message (its text or envelope is gone for good), write the audit
    log (``room.message_delete``) and tell the room (``room.message_deleted``). Allowed to
    its author, the room's owner and moderators, and users with ``rooms:manage``;
    ``as_admin`` (a report being actioned by someone the caller already checked) skips the
    room-role check. Deleting a deleted message changes nothing. ``room_id``, when given
    (the HTTP path names it), must be the message's room."""
    row = await runner.run_read(ctx.db, lambda conn: store.message(conn, message_id))
    if row is None or (room_id is not None and row.room_id != room_id):
        raise NotFound("no such message", code="message_not_found")
    if not as_admin and not actor.can("rooms:manage"):
        access = await runner.run_read(
            ctx.db, lambda conn: store.check_sends(conn, [(row.room_id, actor.user_id)])[0]
        )
        try:
            visible(access)
        except NotFound:
            raise NotFound("no such message", code="message_not_found") from None
        if row.sender_id != actor.user_id and access.role not in ("owner", "moderator"):
            raise Forbidden(
                "only the author or the room's moderators may delete a message",
                code="not_a_moderator",
            )
    if row.deleted_at is not None:
        return
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        changed = await conn.run_sync(
            lambda sync: store.tombstone_txn(sync, message_id, actor.user_id, now)
        )
        if not changed:
            return
        await audit.append_txn(
            conn,
            actor=actor.username,
            actor_id=actor.user_id,
            action="room.message_delete",
            target_type="room_message",
            target=str(message_id),
            ip=ip,
            details={
                "room": row.room_id,
                "author": row.sender,
                "reason": reason[:500],
                "as_admin": as_admin,
            },
        )
    event = RoomMessageDeletedEvent(
        data=RoomMessageDeletedData(room=row.room_id, id=message_id, by=actor.username)
    )
    await roomcast.publish(ctx, row.room_id, event)


async def mark_read(ctx: Context, principal: Principal, room_id: int, upto: int) -> int:
    """Move the member's read watermark forward to ``upto`` (clamped to the room's newest
    message); the watermark now. When it moved, the user's sockets get ``room.read``."""
    await member(ctx, principal, room_id)
    moved, value = await runner.run_write(
        ctx.db, lambda conn: store.mark_read_txn(conn, room_id, principal.user_id, upto)
    )
    if moved:
        event = RoomReadEvent(data=RoomReadData(room=room_id, upto=value))
        await notify.to_user(ctx, principal.user_id, event)
    return max(value, 0)


async def typing(ctx: Context, principal: Principal, room_id: int, active: bool) -> None:
    """Tell the other members that the user is (not) typing in the room. Not stored."""
    await member(ctx, principal, room_id)
    event = RoomTypingEvent(
        data=RoomTypingData(room=room_id, username=principal.username, active=active)
    )
    await roomcast.publish(ctx, room_id, event, skip=principal.user_id)


async def replay(ctx: Context, principal: Principal, cursors: dict[int, int], page: int) -> Replay:
    """A reconnecting client's room messages: for each of the user's rooms named in
    ``cursors``, those with ``id`` above the cursor (and above the member's first visible
    id), at most ``page`` in all, in id order. ``cursors`` of the answer covers every room
    of the user: where a replayed room now stands (the last id sent, or the cursor given),
    and for rooms not named, their newest id. Rooms named that the user is not in are left
    out (the client learns it is no longer a member)."""

    def step(conn: runner.Conn) -> tuple[dict[int, int], list[RoomMessageRow], dict[int, int]]:
        mine = store.rooms_of(conn, principal.user_id)
        after = {r: max(c, mine[r]) for r, c in cursors.items() if r in mine}
        rows = store.replay(conn, after, page + 1) if after else []
        newest = store.newest_ids(conn, [r for r in mine if r not in cursors])
        return after, rows, newest

    after, rows, newest = await runner.run_read(ctx.db, step)
    more = len(rows) > page
    rows = rows[:page]
    out = {r: cursors[r] for r in after}
    for row in rows:
        out[row.room_id] = row.id
    out.update(newest)
    return Replay([public(r) for r in rows], out, more)


async def unread(ctx: Context, principal: Principal) -> dict[int, tuple[int, int]]:
    """Per room of the user: (unread count, newest visible message id), for room lists."""
    return await runner.run_read(ctx.db, lambda conn: store.unread_counts(conn, principal.user_id))
