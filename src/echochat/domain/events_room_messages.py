"""Events of room messages (docs/protocol.md, "Room messages"): ``room.message``,
``room.message_deleted``, ``room.typing`` and ``room.read``. Only services create them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "RoomMessage",
    "RoomMessageDeletedData",
    "RoomMessageDeletedEvent",
    "RoomMessageEvent",
    "RoomReadData",
    "RoomReadEvent",
    "RoomTypingData",
    "RoomTypingEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoomMessage(_Model):
    """A stored room message. ``kind`` ``text``: ``text`` holds the plain text (render it as
    text); ``e2ee``: ``envelope`` holds the sender's suite-v1 envelope for conversation
    ``group:<room>``. A deleted message keeps its id and sender, with ``deleted`` true and
    neither ``text`` nor ``envelope``."""

    id: int
    room: int
    sender: str
    sender_device: str
    client_id: str
    created_at: str
    kind: Literal["text", "e2ee"]
    text: str | None = None
    envelope: dict[str, Any] | None = None
    deleted: bool = False


class RoomMessageEvent(_Model):
    """To every socket of every member, live and in a ``hello`` replay."""

    type: Literal["room.message"] = "room.message"
    data: RoomMessage


class RoomMessageDeletedData(_Model):
    room: int
    id: int
    by: str  # who deleted it (the author, a room moderator, or a server moderator)


class RoomMessageDeletedEvent(_Model):
    type: Literal["room.message_deleted"] = "room.message_deleted"
    data: RoomMessageDeletedData


class RoomTypingData(_Model):
    room: int
    username: str
    active: bool


class RoomTypingEvent(_Model):
    """To the other members' sockets (not stored)."""

    type: Literal["room.typing"] = "room.typing"
    data: RoomTypingData


class RoomReadData(_Model):
    room: int
    upto: int


class RoomReadEvent(_Model):
    """To the reader's own sockets when their read watermark in a room moved (other tabs
    clear the room's unread count)."""

    type: Literal["room.read"] = "room.read"
    data: RoomReadData
