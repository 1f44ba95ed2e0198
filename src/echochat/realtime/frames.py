"""Frames a client sends on ``/ws`` and the data of each op (docs/protocol.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuzzIn",
    "ClientFrame",
    "DmAckIn",
    "DmSendIn",
    "HelloIn",
    "PingIn",
    "PresenceSetIn",
    "TypingIn",
]


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
