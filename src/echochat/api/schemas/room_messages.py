"""Bodies of /rooms/{id}/messages and /rooms/{id}/read (docs/protocol.md, "Room messages")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from echochat.domain.events_room_messages import RoomMessage

__all__ = ["ReadIn", "ReadOut", "RoomHistoryOut", "RoomSendBody"]


class RoomSendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    # checked by the service after the membership, with their own codes
    text: str | None = Field(default=None, max_length=1 << 16)
    envelope: Any = None


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upto: int = Field(ge=0, le=2**62)


class ReadOut(BaseModel):
    upto: int


class RoomHistoryOut(BaseModel):
    messages: list[RoomMessage]
    has_more: bool
    read_upto: int
    first_message_id: int
