"""The typed catalogue of events the server sends on ``/ws`` (``{"op": "ev", "type", "data"}``).

The browser client and the SDK handle exactly these; ``docs/protocol.md`` documents them.
Only services create events.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BuddyGroupsEvent",
    "BuddyPublic",
    "BuddyRequestEvent",
    "BuddyRequestPublic",
    "BuddyUpdateEvent",
    "BuzzData",
    "BuzzEvent",
    "DmMessage",
    "DmMessageEvent",
    "DmReceiptData",
    "DmReceiptEvent",
    "Event",
    "HelloEvent",
    "KeysChangedEvent",
    "KickReason",
    "KickedEvent",
    "OfflineSender",
    "OfflineSummaryData",
    "OfflineSummaryEvent",
    "PresenceEvent",
    "PresenceSelfEvent",
    "ReceiptKind",
    "ReportNewData",
    "ReportNewEvent",
    "ReportResolvedData",
    "ReportResolvedEvent",
    "ResyncData",
    "ResyncEvent",
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


class DmMessage(_Model):
    """A stored direct message (docs/protocol.md, "A Message"): the server's id and the
    sender's envelope, which the server relays but cannot read."""

    id: int
    conv: str
    sender: str
    recipient: str
    sender_device: str
    client_id: str
    created_at: str
    envelope: dict[str, Any]


class DmMessageEvent(_Model):
    """To every socket of both users, live and in a ``hello`` replay."""

    type: Literal["dm.message"] = "dm.message"
    data: DmMessage


ReceiptKind = Literal["delivered", "read"]


class DmReceiptData(_Model):
    conv: str
    reader: str
    peer: str
    kind: ReceiptKind
    upto: int


class DmReceiptEvent(_Model):
    """``reader``'s devices have (``delivered``) or ``reader`` has seen (``read``) ``peer``'s
    messages up to ``upto``; to every socket of both users."""

    type: Literal["dm.receipt"] = "dm.receipt"
    data: DmReceiptData


class OfflineSender(_Model):
    username: str
    display_name: str
    count: int


class OfflineSummaryData(_Model):
    senders: list[OfflineSender]
    total: int


class OfflineSummaryEvent(_Model):
    """To a new socket right after ``hello``: DMs no device of the user acknowledged yet."""

    type: Literal["offline.summary"] = "offline.summary"
    data: OfflineSummaryData


class BuzzData(_Model):
    username: str


class BuzzEvent(_Model):
    """BUZZ! from ``username``; to every socket of the buzzed user (not stored)."""

    type: Literal["buzz"] = "buzz"
    data: BuzzData


KickReason = Literal["session_revoked", "banned", "logged_out", "password_reset"]


class KickedData(_Model):
    reason: KickReason
    message: str


class KickedEvent(_Model):
    type: Literal["kicked"] = "kicked"
    data: KickedData


class ResyncData(_Model):
    reason: Literal["bus", "publish"]
    # resume from at most these (the lowest missed id - 1); None / absent room: your own
    cursor: int | None = None
    rooms: dict[str, int] = Field(default_factory=dict)


class ResyncEvent(_Model):
    """Events meant for this socket may have been lost: the process's bus subscription
    overflowed or reconnected (``bus``), or a commit's wake-up could not be published
    (``publish``). The client resumes with ``hello`` as after a reconnect, from at most
    ``cursor`` and ``rooms``, and refreshes what is not replayed (docs/protocol.md,
    "Lost wake-ups")."""

    type: Literal["resync"] = "resync"
    data: ResyncData


class ReportNewData(_Model):
    id: int
    kind: Literal["user", "dm", "room_message"]
    open: int  # how many reports are open, this one included


class ReportNewEvent(_Model):
    """To every socket of every user holding ``reports:review``, after a report was filed.
    Deliberately thin: never the reporter, the reported user, the reason or the excerpt (a
    moderator fetches the queue, which checks the permission). The reporter's own outcome
    event, ``report.update``, is in ``events_admin.py``."""

    type: Literal["report.new"] = "report.new"
    data: ReportNewData


class ReportResolvedData(_Model):
    id: int
    open: int  # how many reports are still open


class ReportResolvedEvent(_Model):
    """To every socket of every user holding ``reports:review``, after a report was closed
    (by any moderator), so that every panel's open count and queue follow."""

    type: Literal["report.resolved"] = "report.resolved"
    data: ReportResolvedData


Event = Annotated[
    HelloEvent
    | PresenceEvent
    | PresenceSelfEvent
    | BuddyRequestEvent
    | BuddyUpdateEvent
    | BuddyGroupsEvent
    | TypingEvent
    | KickedEvent
    | KeysChangedEvent
    | DmMessageEvent
    | DmReceiptEvent
    | OfflineSummaryEvent
    | BuzzEvent
    | ResyncEvent
    | ReportNewEvent
    | ReportResolvedEvent,
    Field(discriminator="type"),
]
