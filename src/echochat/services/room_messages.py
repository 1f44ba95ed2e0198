"""Room messages: send, history, delete, read watermarks, typing and the replay on reconnect
(docs/protocol.md, "Room messages").

Where the policy lives:
- who may post, in the documented order: :func:`send` (rate limit) then :meth:`_Send.admit`
  (room and membership, mutes) and :meth:`_Send.validate` (the message's shape; for
  encrypted groups the envelope and its wraps against the current members' devices);
- who may read: :func:`_member` (a private group hides itself from non-members: 404
  ``room_not_found``; a public room says 403 ``not_a_member``); a member sees the messages
  above their ``first_message_id`` (from their join on);
- who may delete: :func:`delete_message` (the author, the room's owner or moderators, users
  with ``rooms:manage``; ``as_admin`` for report actions).

Sends go through one group-commit :class:`_Writer` per database, like direct messages
(services/dm.py): one transaction for whatever arrived meanwhile, each ``ok`` only after
the commit, events published in id order per room while the rooms' locks are held
(store/room_messages.py, ``serialized``). Each message is published once, on the room's
channel (services/roomcast.py); every process hands the same frame to its member sockets.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from echochat.domain.e2ee import EnvelopeParts, parse_envelope
from echochat.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from echochat.domain.events_room_messages import (
    RoomMessage,
    RoomMessageDeletedData,
    RoomMessageDeletedEvent,
    RoomMessageEvent,
    RoomReadData,
    RoomReadEvent,
    RoomTypingData,
    RoomTypingEvent,
)
from echochat.services import notify, roomcast
from echochat.services.accounts import Principal, limit
from echochat.services.context import Context
from echochat.store import Database, audit
from echochat.store import messages as runner
from echochat.store import room_messages as store
from echochat.store.room_messages import Access, NewRoomMessage, RoomMessageRow

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

log = logging.getLogger("echochat.rooms")

HISTORY_LIMIT = 50
HISTORY_MAX = 200
TEXT_MAX = 4000
MAX_BATCH = 256


@dataclass(frozen=True)
class Sent:
    message: RoomMessage
    duplicate: bool


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


def group_conv(room_id: int) -> str:
    """The E2EE conversation id of an encrypted group (docs/e2ee.md section 4)."""
    return f"group:{room_id}"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def public(row: RoomMessageRow) -> RoomMessage:
    deleted = row.deleted_at is not None
    return RoomMessage(
        id=row.id,
        room=row.room_id,
        sender=row.sender,
        sender_device=row.sender_device,
        client_id=row.client_id,
        created_at=_iso(row.created_at),
        kind="e2ee" if row.kind == "e2ee" else "text",
        text=row.body if row.kind == "text" and not deleted else None,
        envelope=orjson.loads(row.body) if row.kind == "e2ee" and not deleted else None,
        deleted=deleted,
    )


# --- who may read and post -----------------------------------------------------------------


def _visible(access: Access) -> None:
    """404 for a missing room or a private group one is not in (no leak), 403 for a public
    room one has not joined."""
    if access.room_kind is None or (access.room_kind != "public" and not access.member):
        raise NotFound("no such room", code="room_not_found")
    if not access.member:
        raise Forbidden("join the room first", code="not_a_member")


def _not_muted(access: Access, now: datetime) -> None:
    for until, where in (
        (access.user_muted_until, "on this server"),
        (access.room_muted_until, "in this room"),
    ):
        if until is not None and until > now:
            raise Forbidden(
                f"you are muted {where} until {until.isoformat(timespec='minutes')}",
                code="muted",
                details={"until": until.isoformat()},
            )


async def _member(ctx: Context, principal: Principal, room_id: int) -> Access:
    access = await runner.run_read(
        ctx.db, lambda conn: store.check_sends(conn, [(room_id, principal.user_id)])[0]
    )
    _visible(access)
    return access


# --- the group commit ------------------------------------------------------------------------


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@dataclass(eq=False)
class _Send:
    principal: Principal
    room_id: int
    client_id: str
    text: str | None
    envelope: object
    created_at: datetime
    future: asyncio.Future[Sent] = field(default_factory=lambda: _loop().create_future())
    parts: EnvelopeParts | None = None
    new: NewRoomMessage | None = None

    @property
    def key(self) -> tuple[int, str]:
        return self.principal.user_id, self.client_id

    def admit(self, access: Access, now: datetime) -> None:
        """The room, the membership, the mutes (in this order)."""
        _visible(access)
        _not_muted(access, now)

    def validate(
        self, access: Access, members: tuple[set[str], set[tuple[str, str]]] | None
    ) -> NewRoomMessage:
        """The message's shape; for encrypted groups the envelope and its wraps."""
        if access.encrypted:
            if self.text is not None:
                raise InvalidInput(
                    "this group is end-to-end encrypted: send an envelope",
                    code="encryption_required",
                    details={"field": "text"},
                )
            assert members is not None
            return self._envelope(members)
        if self.text is None:
            raise InvalidInput(
                "this room is not encrypted: send text", code="not_encrypted", details={}
            )
        text = self.text
        if not text.strip() or len(text) > TEXT_MAX or "\x00" in text:
            raise InvalidInput(
                f"a message is 1 to {TEXT_MAX} characters of text",
                code="invalid_text",
                details={"field": "text"},
            )
        return NewRoomMessage(
            room_id=self.room_id,
            sender_id=self.principal.user_id,
            sender_device="",
            client_id=self.client_id,
            kind="text",
            body=text,
            created_at=self.created_at,
        )

    def _envelope(self, members: tuple[set[str], set[tuple[str, str]]]) -> NewRoomMessage:
        parts = parse_envelope(self.envelope)  # the shape: invalid_envelope, too_many_wraps, ...
        me = self.principal.username
        if parts.client_id != self.client_id:
            raise InvalidInput(
                "client_id differs from the envelope's", code="invalid_input", details={}
            )
        if parts.conv != group_conv(self.room_id):
            raise InvalidInput(
                f"the envelope is for {parts.conv}, not {group_conv(self.room_id)}",
                code="wrong_conversation",
                details={"field": "conv"},
            )
        if parts.sender != me:
            raise InvalidInput(
                "the envelope's sender must be you",
                code="wrong_sender",
                details={"field": "sender"},
            )
        names, devices = members
        if (me, parts.sender_device) not in devices:
            raise InvalidInput(
                "the sending device is not one of your published devices",
                code="unknown_sender_device",
                details={"field": "sender_device"},
            )
        wrapped = {(user, device) for user, device, _ in parts.keys}
        if wrapped != devices:
            raise Conflict(
                "the group's members or their devices changed: fetch the members' keys and "
                "seal again",
                code="stale_members",
                details={"members": sorted(names)},
            )
        return NewRoomMessage(
            room_id=self.room_id,
            sender_id=self.principal.user_id,
            sender_device=parts.sender_device,
            client_id=self.client_id,
            kind="e2ee",
            body=orjson.dumps(self.envelope).decode(),
            created_at=self.created_at,
        )


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Writer:
    """Queued sends, a batch per transaction (see services/dm.py for the why). The task
    lives only while there is work."""

    def __init__(self) -> None:
        self.queue: list[_Send] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, ctx: Context, item: _Send) -> Sent:
        self.queue.append(item)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(ctx), name="room-writer")
        return await item.future

    async def _run(self, ctx: Context) -> None:
        batch: list[_Send] = []
        try:
            while self.queue:
                batch = self.queue[:MAX_BATCH]
                del self.queue[:MAX_BATCH]
                await self._batch(ctx, batch)
                batch = []
        except BaseException:
            stopped = Unavailable("the server is stopping; try again", code="unavailable")
            for item in [*batch, *self.queue]:
                _fail(item.future, stopped)
            self.queue.clear()
            raise

    async def _batch(self, ctx: Context, batch: list[_Send]) -> None:
        async with store.serialized(ctx.db, {item.room_id for item in batch}):
            done: list[tuple[_Send, Sent | DomainError]] = []
            try:
                done = await self._commit(ctx, batch)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0].future, exc)
                else:  # one at a time, so that one bad write fails alone
                    for item in batch:
                        try:
                            done += await self._commit(ctx, [item])
                        except Exception as one:
                            _fail(item.future, one)
            fresh: list[RoomMessage] = []
            for item, result in done:
                if isinstance(result, DomainError):
                    _fail(item.future, result)
                else:
                    _resolve(item.future, result)
                    if not result.duplicate:
                        fresh.append(result.message)
            await asyncio.sleep(0)  # the senders' `ok` replies go out before the events
            try:
                await _publish_in_order(ctx, fresh)
            except Exception:
                log.exception("could not publish room messages after a commit; clients resync")

    async def _commit(
        self, ctx: Context, batch: list[_Send]
    ) -> list[tuple[_Send, Sent | DomainError]]:
        now = ctx.clock()

        def step(conn: runner.Conn) -> list[tuple[_Send, RoomMessageRow | int | DomainError]]:
            out: list[tuple[_Send, RoomMessageRow | int | DomainError]] = []
            accesses = store.check_sends(conn, [(i.room_id, i.principal.user_id) for i in batch])
            admitted: list[tuple[_Send, Access]] = []
            for item, access in zip(batch, accesses, strict=True):
                try:
                    item.admit(access, now)
                    admitted.append((item, access))
                except DomainError as exc:
                    out.append((item, exc))
            # a retry gets the original, whatever it carries now (checked before the shape)
            originals = store.by_client_ids(conn, [i.key for i, _ in admitted])
            fresh: list[tuple[_Send, Access]] = []
            for item, access in admitted:
                original = originals.get(item.key)
                if original is None:
                    fresh.append((item, access))
                elif original.room_id != item.room_id:
                    out.append(
                        (
                            item,
                            Conflict(
                                "this client_id was used for a message in another room",
                                code="client_id_reused",
                            ),
                        )
                    )
                else:
                    out.append((item, original))
            encrypted = {item.room_id for item, access in fresh if access.encrypted}
            devices = store.member_devices(conn, encrypted) if encrypted else {}
            accepted: list[_Send] = []
            for item, access in fresh:
                try:
                    item.new = item.validate(access, devices.get(item.room_id))
                    accepted.append(item)
                except DomainError as exc:
                    out.append((item, exc))
            inserted = store.insert_many_txn(conn, [i.new for i in accepted if i.new])
            claimed: set[tuple[int, str]] = set()
            retried: list[_Send] = []
            for item in accepted:
                if item.key in inserted and item.key not in claimed:
                    claimed.add(item.key)
                    out.append((item, inserted[item.key]))
                else:  # the same client_id twice in this batch
                    retried.append(item)
            again = store.by_client_ids(conn, [i.key for i in retried])
            out += [(item, again[item.key]) for item in retried]
            return out

        raw = await runner.run_write(ctx.db, step)
        results: list[tuple[_Send, Sent | DomainError]] = []
        for item, value in raw:
            if isinstance(value, DomainError):
                results.append((item, value))
            elif isinstance(value, int):
                results.append((item, Sent(_fresh(item, value), duplicate=False)))
            else:
                results.append((item, Sent(public(value), duplicate=True)))
        return results


def _fresh(item: _Send, message_id: int) -> RoomMessage:
    new = item.new
    assert new is not None
    encrypted = new.kind == "e2ee"
    envelope = item.envelope if encrypted and isinstance(item.envelope, dict) else None
    return RoomMessage(
        id=message_id,
        room=new.room_id,
        sender=item.principal.username,
        sender_device=new.sender_device,
        client_id=new.client_id,
        created_at=_iso(new.created_at),
        kind="e2ee" if encrypted else "text",
        text=None if encrypted else new.body,
        envelope=envelope,
    )


async def _publish_in_order(ctx: Context, fresh: list[RoomMessage]) -> None:
    """One publish per message on its room's channel; each room's in id order, rooms
    concurrently (on Redis the round trips overlap)."""
    by_room: dict[int, list[RoomMessage]] = {}
    for message in sorted(fresh, key=lambda m: m.id):
        by_room.setdefault(message.room, []).append(message)

    async def one(room_id: int, messages: list[RoomMessage]) -> None:
        for message in messages:
            await roomcast.publish(ctx, room_id, RoomMessageEvent(data=message))

    results = await asyncio.gather(
        *(one(r, ms) for r, ms in by_room.items()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


_writers: weakref.WeakKeyDictionary[Database, _Writer] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> _Writer:
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = _Writer()
    return writer


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
    item = _Send(
        principal=principal,
        room_id=room_id,
        client_id=client_id,
        text=text,
        envelope=envelope,
        created_at=ctx.clock(),
    )
    return await _writer(ctx.db).submit(ctx, item)


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
    access = await _member(ctx, principal, room_id)
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
            _visible(access)
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
    await _member(ctx, principal, room_id)
    moved, value = await runner.run_write(
        ctx.db, lambda conn: store.mark_read_txn(conn, room_id, principal.user_id, upto)
    )
    if moved:
        event = RoomReadEvent(data=RoomReadData(room=room_id, upto=value))
        await notify.to_user(ctx, principal.user_id, event)
    return max(value, 0)


async def typing(ctx: Context, principal: Principal, room_id: int, active: bool) -> None:
    """Tell the other members that the user is (not) typing in the room. Not stored."""
    await _member(ctx, principal, room_id)
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
