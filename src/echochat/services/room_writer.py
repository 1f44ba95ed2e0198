"""Room messages, the write path: who may post (in the documented order), and the group
commit that stores sends and publishes them (docs/protocol.md, "Room messages").

Where the policy lives:
- the room and the membership: :func:`visible` (a private group hides itself from
  non-members: 404 ``room_not_found``; a public room says 403 ``not_a_member``);
- the mutes (in the room, or server-wide): :func:`not_muted` (403 ``muted``);
- the message's shape, and for encrypted groups the envelope and its wraps against the
  current members' devices: :meth:`Send.validate` (409 ``stale_members``).

One group-commit :class:`Writer` per database, like direct messages (services/dm.py): one
transaction for whatever arrived meanwhile, each ``ok`` only after the commit, events
published in id order per room while the rooms' locks are held (store/room_messages.py,
``serialized``). Each message is published once, on the room's channel
(services/roomcast.py); every process hands the same frame to its member sockets.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import orjson

from echochat.domain.e2ee import EnvelopeParts, parse_envelope
from echochat.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    server_stopping,
)
from echochat.domain.events_room_messages import RoomMessage, RoomMessageEvent
from echochat.services import roomcast
from echochat.services.accounts import Principal
from echochat.services.batching import commit_each, fail, fail_all, resolve
from echochat.services.context import Context
from echochat.store import Database
from echochat.store import messages as runner
from echochat.store import room_messages as store
from echochat.store.room_messages import Access, NewRoomMessage, RoomMessageRow

__all__ = [
    "TEXT_MAX",
    "Send",
    "Sent",
    "group_conv",
    "member",
    "not_muted",
    "public",
    "visible",
    "writer",
]

log = logging.getLogger("echochat.rooms")

TEXT_MAX = 4000
MAX_BATCH = 256


@dataclass(frozen=True)
class Sent:
    message: RoomMessage
    duplicate: bool


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


def visible(access: Access) -> None:
    """404 for a missing room or a private group one is not in (no leak), 403 for a public
    room one has not joined."""
    if access.room_kind is None or (access.room_kind != "public" and not access.member):
        raise NotFound("no such room", code="room_not_found")
    if not access.member:
        raise Forbidden("join the room first", code="not_a_member")


def not_muted(access: Access, now: datetime) -> None:
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


async def member(ctx: Context, principal: Principal, room_id: int) -> Access:
    access = await runner.run_read(
        ctx.db, lambda conn: store.check_sends(conn, [(room_id, principal.user_id)])[0]
    )
    visible(access)
    return access


# --- the group commit ------------------------------------------------------------------------


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@dataclass(eq=False)
class Send:
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
        visible(access)
        not_muted(access, now)

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


class Writer:
    """Queued sends, a batch per transaction (see services/dm.py for the why). The task
    lives only while there is work."""

    def __init__(self) -> None:
        self.queue: list[Send] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, ctx: Context, item: Send) -> Sent:
        self.queue.append(item)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(ctx), name="room-writer")
        return await item.future

    async def _run(self, ctx: Context) -> None:
        batch: list[Send] = []
        try:
            while self.queue:
                batch = self.queue[:MAX_BATCH]
                del self.queue[:MAX_BATCH]
                await self._batch(ctx, batch)
                batch = []
        except BaseException:
            fail_all([*batch, *self.queue], server_stopping())
            self.queue.clear()
            raise

    async def _batch(self, ctx: Context, batch: list[Send]) -> None:
        async with store.serialized(ctx.db, {item.room_id for item in batch}):
            done = await commit_each(partial(self._commit, ctx), batch)
            fresh: list[RoomMessage] = []
            for item, result in done:
                if isinstance(result, DomainError):
                    fail(item.future, result)
                else:
                    resolve(item.future, result)
                    if not result.duplicate:
                        fresh.append(result.message)
            await asyncio.sleep(0)  # the senders' `ok` replies go out before the events
            try:
                await _publish_in_order(ctx, fresh)  # a failed publish is handled per room
            except Exception:  # a bug: the writer must go on for the sends queued behind
                log.exception("could not publish room messages after a commit")

    async def _commit(
        self, ctx: Context, batch: list[Send]
    ) -> list[tuple[Send, Sent | DomainError]]:
        now = ctx.clock()

        def step(conn: runner.Conn) -> list[tuple[Send, RoomMessageRow | int | DomainError]]:
            out: list[tuple[Send, RoomMessageRow | int | DomainError]] = []
            accesses = store.check_sends(conn, [(i.room_id, i.principal.user_id) for i in batch])
            admitted: list[tuple[Send, Access]] = []
            for item, access in zip(batch, accesses, strict=True):
                try:
                    item.admit(access, now)
                    admitted.append((item, access))
                except DomainError as exc:
                    out.append((item, exc))
            # a retry gets the original, whatever it carries now (checked before the shape)
            originals = store.by_client_ids(conn, [i.key for i, _ in admitted])
            fresh: list[tuple[Send, Access]] = []
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
            accepted: list[Send] = []
            for item, access in fresh:
                try:
                    item.new = item.validate(access, devices.get(item.room_id))
                    accepted.append(item)
                except DomainError as exc:
                    out.append((item, exc))
            inserted = store.insert_many_txn(conn, [i.new for i in accepted if i.new])
            claimed: set[tuple[int, str]] = set()
            retried: list[Send] = []
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
        results: list[tuple[Send, Sent | DomainError]] = []
        for item, value in raw:
            if isinstance(value, DomainError):
                results.append((item, value))
            elif isinstance(value, int):
                results.append((item, Sent(_fresh(item, value), duplicate=False)))
            else:
                results.append((item, Sent(public(value), duplicate=True)))
        return results


def _fresh(item: Send, message_id: int) -> RoomMessage:
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
    concurrently (on Redis the round trips overlap). A room whose publish fails publishes
    nothing more of this batch; its members are told to resync from just below the first
    message not published (services/resync.py)."""
    by_room: dict[int, list[RoomMessage]] = {}
    for message in sorted(fresh, key=lambda m: m.id):
        by_room.setdefault(message.room, []).append(message)

    async def one(room_id: int, messages: list[RoomMessage]) -> None:
        for message in messages:
            try:
                await roomcast.publish(ctx, room_id, RoomMessageEvent(data=message))
            except Exception:
                log.exception(
                    "could not publish room %s messages after a commit; members told to resync",
                    room_id,
                )
                channel = roomcast.room_channel(room_id)
                ctx.lost.note(ctx.bus, channel, rooms={room_id: message.id - 1})
                return

    await asyncio.gather(*(one(r, ms) for r, ms in by_room.items()))


_writers: weakref.WeakKeyDictionary[Database, Writer] = weakref.WeakKeyDictionary()


def writer(db: Database) -> Writer:
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = Writer()
    return writer
