"""Chat rooms and private groups in the SDK: room messages, plain and end-to-end encrypted.

:class:`Rooms` works over a signed-in :class:`EchoChatClient` and its realtime connection:

- **plain rooms**: :meth:`Rooms.send` posts text (``room.send`` on the socket, repeated
  with the same ``client_id`` after a reconnect, or ``POST /rooms/{id}/messages``);
  :meth:`Rooms.history`, :meth:`Rooms.delete`, :meth:`Rooms.mark_read`, :meth:`Rooms.typing`;
- **encrypted groups** (with a :class:`~echochat.client.messenger.Messenger` for the keys):
  :meth:`Rooms.send` seals the text once for conversation ``group:<id>`` and wraps it for
  every published device of every current member (this user's other devices and the
  sending one included). When the server answers ``stale_members`` (someone joined, left
  or changed devices since the member list was fetched) it fetches the members and their
  keys again and seals anew, with the same ``client_id``. Incoming envelopes are verified
  and decrypted by :meth:`Rooms.open`. Who is a member is the server's word (it refuses
  posts from non-members and envelopes not wrapped for exactly the members: docs/e2ee.md,
  "Groups"); a message of someone who left later stays readable;
- **resume**: :meth:`Rooms.start` asks the connection to track a cursor per room
  (:meth:`RealtimeConnection.track_rooms`): after a reconnect the server replays what each
  room missed and every message id is handed on once, in order per room.

Events: feed :meth:`Rooms.events` the stream you consume (``messenger.events()`` or
``connection.events()``); each ``room.message`` comes out as a :class:`RoomMessage` (plain)
or a :class:`GroupMessage` (decrypted, or with ``error`` set), everything else unchanged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from echochat.client._events import Event
from echochat.client._realtime import RealtimeConnection
from echochat.client.e2ee import E2EEError, encode_payload, open_envelope, seal
from echochat.client.errors import ConflictError, ConnectionLostError, OpError
from echochat.client.models import _Body, body

if TYPE_CHECKING:
    from echochat.client.http import EchoChatClient
    from echochat.client.messenger import Messenger

__all__ = [
    "GroupMessage",
    "RoomHistory",
    "RoomMessage",
    "Rooms",
    "group_conversation",
    "parse_room_message",
]

log = logging.getLogger("echochat.client")

SEND_ATTEMPTS = 5  # room.send tries across reconnects (idempotent by client_id)


def group_conversation(room_id: int) -> str:
    """The E2EE conversation id of an encrypted group."""
    return f"group:{int(room_id)}"


@dataclass(frozen=True)
class RoomMessage:
    """A room message as the server sends it: ``text`` for plain rooms, ``envelope`` for
    encrypted groups, neither once ``deleted``. Render ``text`` as text, never as markup."""

    id: int
    room: int
    sender: str
    sender_device: str
    client_id: str
    created_at: datetime
    kind: str  # text | e2ee
    text: str | None
    envelope: Mapping[str, Any] | None = field(repr=False)
    deleted: bool


@dataclass(frozen=True)
class GroupMessage:
    """A message of an encrypted group, verified and decrypted (or, when that failed,
    ``error`` says why and ``payload`` is empty)."""

    id: int
    room: int
    sender: str
    sender_device: str
    client_id: str
    created_at: datetime
    payload: Mapping[str, Any]
    raw: RoomMessage = field(repr=False, compare=False)
    error: E2EEError | None = None

    @property
    def text(self) -> str | None:
        value = self.payload.get("text")
        return value if self.payload.get("type") == "text" and isinstance(value, str) else None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RoomHistory:
    messages: tuple[RoomMessage, ...]
    has_more: bool
    read_upto: int
    first_message_id: int


def parse_room_message(d: _Body) -> RoomMessage:
    envelope = d.raw().get("envelope")
    return RoomMessage(
        id=d.integer("id"),
        room=d.integer("room"),
        sender=d.text("sender"),
        sender_device=d.text("sender_device"),
        client_id=d.text("client_id"),
        created_at=d.when("created_at"),
        kind=d.text("kind"),
        text=d.opt_text("text"),
        envelope=envelope if isinstance(envelope, Mapping) else None,
        deleted=d.flag("deleted"),
    )


class Rooms:
    """Room messages of one signed-in user (one device). Create with :meth:`Rooms.start`."""

    def __init__(
        self,
        client: EchoChatClient,
        connection: RealtimeConnection | None = None,
        messenger: Messenger | None = None,
    ) -> None:
        self._client = client
        self._rt = connection
        self._messenger = messenger
        self._members: dict[int, tuple[str, ...]] = {}  # cached member lists (groups)

    @classmethod
    async def start(
        cls,
        client: EchoChatClient,
        *,
        messenger: Messenger | None = None,
        connection: RealtimeConnection | None = None,
        cursors: Mapping[int, int] | None = None,
    ) -> Rooms:
        """Room messages over ``connection`` (default: the messenger's), resuming from
        ``cursors`` (room id -> last id processed; default: each room's newest)."""
        rt = connection or (messenger.connection if messenger is not None else None)
        rooms = cls(client, rt, messenger)
        if rt is not None:
            await rt.track_rooms(cursors)
        return rooms

    @property
    def cursors(self) -> dict[int, int]:
        """Per room, the highest message id handed on (keep them to resume later)."""
        return (self._rt.room_cursors if self._rt is not None else None) or {}

    # --- sending ---------------------------------------------------------------------------

    def new_client_id(self) -> str:
        return "r-" + secrets.token_urlsafe(12)

    async def send(
        self, room: int, text: str, *, client_id: str | None = None, encrypted: bool = False
    ) -> tuple[RoomMessage, bool]:
        """Post ``text`` to ``room`` (``encrypted=True`` for an end-to-end encrypted group:
        needs a messenger); returns the stored message and whether it was a retry of a
        message already stored. Refusals raise :class:`OpError` or the HTTP errors:
        ``room_not_found``, ``not_a_member``, ``muted``, ``rate_limited``, ..."""
        client_id = client_id or self.new_client_id()
        if not encrypted:
            return await self._post(room, {"client_id": client_id, "text": text})
        for attempt in (1, 2, 3):
            envelope = await self.seal(room, text, client_id=client_id, fresh=attempt > 1)
            try:
                return await self._post(room, {"client_id": client_id, "envelope": envelope})
            except (OpError, ConflictError) as exc:
                if exc.code != "stale_members" or attempt == 3:
                    raise
                log.info("room %d: members changed; fetching their keys again", room)
        raise AssertionError("unreachable")

    async def _post(self, room: int, data: dict[str, Any]) -> tuple[RoomMessage, bool]:
        if self._rt is None:
            response = await self._client._request(
                "POST", f"/rooms/{int(room)}/messages", json=data
            )
            return parse_room_message(body(response.json(), response.status_code)), (
                response.status_code == 200
            )
        frame = {"room": int(room), **data}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                reply = await self._rt.request("room.send", frame)
            except ConnectionLostError:
                if attempt == SEND_ATTEMPTS:
                    raise
                continue  # the same client_id again is safe
            answer = body(reply, 0)
            return parse_room_message(answer.obj("message")), answer.flag("duplicate")
        raise AssertionError("unreachable")

    async def members(self, room: int, *, refresh: bool = False) -> tuple[str, ...]:
        """The usernames of the room's members (cached; ``refresh`` fetches again)."""
        cached = self._members.get(room)
        if cached is not None and not refresh:
            return cached
        response = await self._client._request("GET", f"/rooms/{int(room)}/members")
        names = tuple(
            sorted(m.text("username") for m in body(response.json(), 200).items("members"))
        )
        self._members[room] = names
        return names

    def _keys_of(self) -> Messenger:
        if self._messenger is None:
            raise E2EEError("no_keys", "encrypted groups need a Messenger (for this device's keys)")
        return self._messenger

    async def seal(
        self, room: int, text: str, *, client_id: str | None = None, fresh: bool = False
    ) -> dict[str, Any]:
        """The envelope :meth:`send` sends to an encrypted group: wrapped for every device
        of every current member (``fresh`` fetches the members and their keys again)."""
        messenger = self._keys_of()
        me = messenger.username
        names = await self.members(room, refresh=fresh)
        recipients: list[tuple[str, str, bytes]] = []
        for name in names:
            directory = await messenger.keys(name, refresh=fresh)
            recipients += [(r.user, r.device, r.x25519) for r in directory.recipients()]
        device = messenger.keyring.device(messenger.device_id)
        if not any(user == me and dev == device.device_id for user, dev, _ in recipients):
            raise E2EEError(
                "unknown_sender_device",
                "this device is not in the group's directory: are you a member?",
            )
        return seal(
            encode_payload({"type": "text", "text": text}),
            conv=group_conversation(room),
            sender=me,
            sender_device_keys=device,
            client_id=client_id or self.new_client_id(),
            recipients=recipients,
        )

    # --- reading ---------------------------------------------------------------------------

    async def history(
        self,
        room: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> RoomHistory:
        """A page of the room (ascending ids; only from this user's join on)."""
        params: dict[str, str | int] = {}
        for key, value in (("before", before), ("after", after), ("limit", limit)):
            if value is not None:
                params[key] = int(value)
        response = await self._client._request("GET", f"/rooms/{int(room)}/messages", params=params)
        page = body(response.json(), response.status_code)
        return RoomHistory(
            messages=tuple(parse_room_message(m) for m in page.items("messages")),
            has_more=page.flag("has_more"),
            read_upto=page.integer("read_upto"),
            first_message_id=page.integer("first_message_id"),
        )

    async def open(self, message: RoomMessage) -> GroupMessage:
        """Verify and decrypt a message of an encrypted group (``error`` set on failure)."""
        messenger = self._keys_of()
        try:
            if message.envelope is None:
                raise E2EEError("malformed", "the message has no envelope (deleted?)")
            sender = str(message.envelope.get("sender"))
            opened = None
            for attempt in (1, 2):
                directory = await messenger.keys(sender, refresh=attempt == 2)
                try:
                    opened = open_envelope(
                        message.envelope,
                        expected_conv=group_conversation(message.room),
                        me_user=messenger.username,
                        my_device_keys=messenger.keyring.device(messenger.device_id),
                        sender_keys=directory,
                        trusted_identity=messenger.pins.get(sender),
                    )
                    break
                except E2EEError as exc:
                    if exc.code != "unknown_sender_device" or attempt == 2:
                        raise
            assert opened is not None
        except E2EEError as exc:
            return GroupMessage(
                message.id,
                message.room,
                message.sender,
                message.sender_device,
                message.client_id,
                message.created_at,
                {},
                message,
                exc,
            )
        return GroupMessage(
            message.id,
            message.room,
            opened.sender,
            opened.sender_device,
            opened.client_id,
            message.created_at,
            opened.payload,
            message,
        )

    async def events(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``source``'s items with each ``room.message`` event replaced by a
        :class:`RoomMessage` (plain) or a :class:`GroupMessage` (encrypted, opened)."""
        async for item in source:
            if isinstance(item, Event) and item.type == "room.message":
                message = parse_room_message(_Body(item.data, 0, "room.message.data"))
                if message.kind == "e2ee" and not message.deleted and self._messenger:
                    yield await self.open(message)
                else:
                    yield message
                continue
            yield item

    # --- the rest --------------------------------------------------------------------------

    async def delete(self, room: int, message_id: int) -> None:
        """Delete a message (mine, or any as the room's owner or moderator)."""
        await self._client._request("DELETE", f"/rooms/{int(room)}/messages/{int(message_id)}")

    async def mark_read(self, room: int, upto: int) -> int:
        """I have seen the room up to ``upto``; the watermark now (forward only)."""
        if self._rt is not None:
            return body(
                await self._rt.request("room.read", {"room": room, "upto": upto}), 0
            ).integer("upto")
        response = await self._client._request(
            "POST", f"/rooms/{int(room)}/read", json={"upto": int(upto)}
        )
        return body(response.json(), response.status_code).integer("upto")

    async def typing(self, room: int, active: bool = True) -> None:
        if self._rt is None:
            raise ConnectionLostError(0, "not_connected", "typing needs the realtime connection")
        await self._rt.request("room.typing", {"room": room, "active": active})
