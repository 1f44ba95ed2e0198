"""Bodies of /conversations and /dm (docs/protocol.md, "Direct messages")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from echochat.domain.events import DmMessage

__all__ = [
    "ConversationOut",
    "ConversationsOut",
    "DmSendBody",
    "HistoryOut",
    "ReceiptIn",
    "ReceiptOut",
]


class DmSendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the envelope's shape is checked by the service (docs/e2ee.md 4.2), with its own codes
    envelope: Any


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["delivered", "read"]
    upto: int = Field(ge=0, le=2**62)


class ReceiptOut(BaseModel):
    upto: int


class HistoryOut(BaseModel):
    messages: list[DmMessage]
    has_more: bool
    peer_delivered_upto: int
    peer_read_upto: int
    my_read_upto: int


class ConversationOut(BaseModel):
    username: str
    display_name: str
    conv: str
    last_message_id: int
    last_message_at: str
    unread: int
    offline: int
    my_delivered_upto: int
    my_read_upto: int
    peer_delivered_upto: int
    peer_read_upto: int


class ConversationsOut(BaseModel):
    conversations: list[ConversationOut]
