"""Frames a client sends on ``/ws`` and the data of each op (docs/protocol.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuzzIn",
    "ClientFrame",
    "DmAckIn",
    "DmSendIn",
    "HelloIn",
    "PingIn",
    "PresenceSetIn",
    "RoomReadIn",
    "RoomSendIn",
    "RoomTypingIn",
    "TypingIn",
]

MAX_ROOM_CURSORS = 2000  # rooms a hello may name
RoomKey = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$")]  # a room id, as a JSON key
Cursor = Annotated[int, Field(ge=0, le=2**62, strict=True)]
RoomId = Annotated[int, Field(ge=1, le=2**62, strict=True)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str = Field(min_length=1, max_length=32)
    ref: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class HelloIn(_Data):
    cursor: int | None = Field(default=None, ge=0, strict=True)
    device_id: str | None = Field(default=None, max_length=64)
    # per room: the highest room message id the client processed (docs/protocol.md,
    # "Room messages", "Resuming")
    rooms: dict[RoomKey, Cursor] | None = Field(default=None, max_length=MAX_ROOM_CURSORS)


class PresenceSetIn(_Data):
    state: Literal["online", "away", "busy", "invisible"] | None = None
    status: str | None = Field(default=None, max_length=1024)
    idle: bool | None = None


class TypingIn(_Data):
    to: str = Field(min_length=1, max_length=64)
    active: bool = True


class PingIn(_Data):
    pass


class DmSendIn(_Data):
    to: str = Field(min_length=1, max_length=64)
    # the envelope's shape is checked by the service (docs/e2ee.md 4.2), with its own codes
    envelope: Any


class DmAckIn(_Data):
    peer: str = Field(min_length=1, max_length=64)
    upto: int = Field(ge=0, le=2**62, strict=True)


class BuzzIn(_Data):
    to: str = Field(min_length=1, max_length=64)


class RoomSendIn(_Data):
    room: RoomId
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    # the text's length and the envelope's shape are checked by the service, after the
    # membership (docs/protocol.md, "Room messages"), so no limit of their own here
    text: str | None = Field(default=None, max_length=1 << 16)
    envelope: Any = None


class RoomTypingIn(_Data):
    room: RoomId
    active: bool = True


class RoomReadIn(_Data):
    room: RoomId
    upto: Cursor
