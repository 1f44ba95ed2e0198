"""The typed catalogue of events the server sends on ``/ws`` (``{"op": "ev", "type", "data"}``).

The browser client and the SDK handle exactly these; ``docs/protocol.md`` documents them.
Only services create events.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuddyGroupsEvent",
    "BuddyPublic",
    "BuddyRequestEvent",
    "BuddyRequestPublic",
    "BuddyUpdateEvent",
    "Event",
    "HelloEvent",
    "KeysChangedEvent",
    "KickReason",
    "KickedEvent",
    "PresenceEvent",
    "PresenceSelfEvent",
    "TypingEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PresenceData(_Model):
    username: str
    state: Literal["online", "away", "busy", "offline"]
    status: str = ""


class PresenceSelfData(_Model):
    state: Literal["online", "away", "busy", "invisible"]
    status: str = ""


class PresenceSelfEvent(_Model):
    """To the user's own sockets: the state and text they chose (on any of their devices)."""

    type: Literal["presence.self"] = "presence.self"
    data: PresenceSelfData


class BuddyPublic(_Model):
    username: str
    display_name: str
    group: str
    stealth: bool
    state: Literal["online", "away", "busy", "offline"] = "offline"
    status: str = ""


class BuddyRequestPublic(_Model):
    id: int
    from_username: str
    from_display_name: str
    to_username: str
    message: str
    created_at: str


class HelloData(_Model):
    session_id: str
    username: str
    server_time: float
    heartbeat: float


class HelloEvent(_Model):
    type: Literal["hello"] = "hello"
    data: HelloData


class PresenceEvent(_Model):
    type: Literal["presence"] = "presence"
    data: PresenceData


class BuddyRequestData(_Model):
    request: BuddyRequestPublic


class BuddyRequestEvent(_Model):
    type: Literal["buddy.request"] = "buddy.request"
    data: BuddyRequestData


class BuddyUpdateData(_Model):
    action: Literal["added", "removed", "changed", "request_declined", "request_cancelled"]
    username: str
    buddy: BuddyPublic | None = None
    request_id: int | None = None


class BuddyUpdateEvent(_Model):
    type: Literal["buddy.update"] = "buddy.update"
    data: BuddyUpdateData


class BuddyGroupsData(_Model):
    groups: list[str]


class BuddyGroupsEvent(_Model):
    """To the user's own sockets: their groups changed (created, renamed, deleted)."""

    type: Literal["buddy.groups"] = "buddy.groups"
    data: BuddyGroupsData


class TypingData(_Model):
    username: str
    active: bool


class TypingEvent(_Model):
    type: Literal["typing"] = "typing"
    data: TypingData


class KeysChangedData(_Model):
    username: str
    reason: Literal["device_added", "device_removed", "identity_reset"]
    device_id: str | None = None


class KeysChangedEvent(_Model):
    type: Literal["keys.changed"] = "keys.changed"
    data: KeysChangedData


KickReason = Literal["session_revoked", "banned", "logged_out", "password_reset"]


class KickedData(_Model):
    reason: KickReason
    message: str


class KickedEvent(_Model):
    type: Literal["kicked"] = "kicked"
    data: KickedData


Event = Annotated[
    HelloEvent
    | PresenceEvent
    | PresenceSelfEvent
    | BuddyRequestEvent
    | BuddyUpdateEvent
    | BuddyGroupsEvent
    | TypingEvent
    | KickedEvent
    | KeysChangedEvent,
    Field(discriminator="type"),
]
