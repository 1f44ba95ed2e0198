"""Typed events the server sends on ``/ws`` (``{"op": "ev", "type": ..., "data": ...}``).

Every event is an :class:`Event` with its ``type`` and the raw ``data`` mapping; the types
this SDK version knows are subclasses with typed fields. A type it does not know (a newer
server) arrives as a plain :class:`Event`, and so does a known type whose data does not have
the documented shape (logged as a warning), so an old SDK never stops on a new server.

Match on the class::

    async for event in rt.events():
        match event:
            case PresenceEvent(username=who, state=state, status=text):
                ...
            case BuddyRequestEvent(request=request):
                ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from echochat.client.errors import EchoChatError
from echochat.client.models import (
    Buddy,
    BuddyRequest,
    DmMessage,
    OfflineSender,
    PresenceState,
    ReceiptKind,
    _Body,
    parse_buddy,
    parse_dm_message,
    parse_offline_summary,
    parse_receipt,
    parse_request,
)

__all__ = [
    "BuddyRequestEvent",
    "BuddyUpdateAction",
    "BuddyUpdateEvent",
    "BuzzEvent",
    "DmMessageEvent",
    "DmReceiptEvent",
    "Event",
    "HelloEvent",
    "KeysChangedEvent",
    "KickedEvent",
    "OfflineSummaryEvent",
    "PresenceEvent",
    "ResyncEvent",
    "TypingEvent",
    "parse_event",
    "room_cursors",
]

log = logging.getLogger("echochat.client")

BuddyUpdateAction = Literal["added", "removed", "changed", "request_declined", "request_cancelled"]
_ACTIONS: frozenset[str] = frozenset(
    ("added", "removed", "changed", "request_declined", "request_cancelled")
)


@dataclass(frozen=True)
class Event:
    """An event: its ``type`` and raw ``data`` (always present, also on the subclasses)."""

    type: str
    data: Mapping[str, Any] = field(repr=False, compare=False)

    def __repr__(self) -> str:  # subclasses get the dataclass repr (typed fields, no data)
        return f"Event(type={self.type!r}, data={dict(self.data)!r})"


@dataclass(frozen=True)
class HelloEvent(Event):
    """The first event on every (re)connection: the session, the server's clock and the
    heartbeat period (seconds) the client pings at. After a reconnect a new one arrives:
    fetch what may have changed meanwhile (e.g. :meth:`EchoChatClient.buddies`)."""

    session_id: str
    username: str
    server_time: float
    heartbeat: float


@dataclass(frozen=True)
class PresenceEvent(Event):
    """A buddy's presence as they let me see it (``invisible`` and stealth show as
    ``offline``)."""

    username: str
    state: PresenceState
    status: str

    @property
    def online(self) -> bool:
        return self.state != "offline"


@dataclass(frozen=True)
class BuddyRequestEvent(Event):
    """A buddy request: someone asked me (``request.to_username`` is me) or I asked someone
    (from another device, or through the REST call)."""

    request: BuddyRequest


@dataclass(frozen=True)
class BuddyUpdateEvent(Event):
    """My buddy list changed: ``username`` was added (``buddy`` holds the new entry), removed,
    changed (group, stealth), or a request with them was declined or cancelled
    (``request_id``)."""

    action: BuddyUpdateAction
    username: str
    buddy: Buddy | None
    request_id: int | None


@dataclass(frozen=True)
class TypingEvent(Event):
    """A buddy started (``active``) or stopped typing to me."""

    username: str
    active: bool


@dataclass(frozen=True)
class KickedEvent(Event):
    """The session was revoked, signed out, or the user banned; the server closes the socket
    after this event and the connection does not come back."""

    reason: str
    message: str


@dataclass(frozen=True)
class DmMessageEvent(Event):
    """A direct message to or from me (sent from any of my devices, this one included),
    live or replayed after a reconnect. The connection hands each ``id`` on once. The body
    is the encrypted ``message.envelope``: :class:`~echochat.client.messenger.Messenger`
    decrypts it."""

    message: DmMessage


@dataclass(frozen=True)
class DmReceiptEvent(Event):
    """``reader`` acknowledged ``peer``'s messages in ``conv`` up to ``upto``: their devices
    have them (``delivered``) or they saw them (``read``). Sent to both users."""

    conv: str
    reader: str
    peer: str
    kind: ReceiptKind
    upto: int


@dataclass(frozen=True)
class OfflineSummaryEvent(Event):
    """Right after ``hello``: the messages that reached none of my devices yet, per sender."""

    senders: tuple[OfflineSender, ...]
    total: int


@dataclass(frozen=True)
class BuzzEvent(Event):
    """``username`` sent me a BUZZ!"""

    username: str


@dataclass(frozen=True)
class KeysChangedEvent(Event):
    """A buddy's (or my own) E2EE key directory changed: ``reason`` is ``device_added``,
    ``device_removed`` or ``identity_reset`` (a new identity key: warn, never trust it
    silently). Fetch their keys again before the next message."""

    username: str
    reason: str
    device_id: str | None


@dataclass(frozen=True)
class ResyncEvent(Event):
    """The server may have lost events meant for this socket: its bus lost some (``reason``
    ``bus``) or a commit's wake-up could not be published (``publish``; ``cursor`` and
    ``rooms``, room id -> cursor, say where the loss began). The connection handles it by
    itself: it lowers the cursors it holds to these and resumes with ``hello`` as after a
    reconnect, each message id still handed on once (after a random wait of up to
    ``RESYNC_JITTER`` seconds for ``bus``; the event is handed on when that wait is over).
    Refresh then what is never replayed (presence, the buddy list, receipts, offline
    counts), as after a :class:`HelloEvent`."""

    reason: str
    cursor: int | None
    rooms: Mapping[int, int]


def room_cursors(raw: Mapping[Any, Any]) -> dict[int, int]:
    """``{"<room id>": cursor}`` from the wire as ``{room id: cursor}``; malformed entries
    are left out."""
    return {
        int(key): value
        for key, value in raw.items()
        if str(key).isdigit() and isinstance(value, int) and not isinstance(value, bool)
    }


def _hello(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return HelloEvent(
        t,
        raw,
        session_id=d.text("session_id"),
        username=d.text("username"),
        server_time=d.number("server_time"),
        heartbeat=d.number("heartbeat"),
    )


def _presence(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return PresenceEvent(
        t, raw, username=d.text("username"), state=d.state("state"), status=d.text("status")
    )


def _buddy_request(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return BuddyRequestEvent(t, raw, request=parse_request(d.obj("request")))


def _buddy_update(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    action = d.text("action")
    if action not in _ACTIONS:
        raise EchoChatError(0, "bad_response", f"unknown buddy.update action {action!r}")
    buddy = d.opt_obj("buddy")
    return BuddyUpdateEvent(
        t,
        raw,
        action=action,  # type: ignore[arg-type]
        username=d.text("username"),
        buddy=parse_buddy(buddy) if buddy is not None else None,
        request_id=d.opt_integer("request_id"),
    )


def _typing(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return TypingEvent(t, raw, username=d.text("username"), active=d.flag("active"))


def _kicked(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return KickedEvent(t, raw, reason=d.text("reason"), message=d.text("message"))


def _dm_message(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return DmMessageEvent(t, raw, message=parse_dm_message(d))


def _dm_receipt(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    r = parse_receipt(d)
    return DmReceiptEvent(
        t, raw, conv=r.conv, reader=r.reader, peer=r.peer, kind=r.kind, upto=r.upto
    )


def _offline_summary(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    summary = parse_offline_summary(d)
    return OfflineSummaryEvent(t, raw, senders=summary.senders, total=summary.total)


def _buzz(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return BuzzEvent(t, raw, username=d.text("username"))


def _keys_changed(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    return KeysChangedEvent(
        t,
        raw,
        username=d.text("username"),
        reason=d.text("reason"),
        device_id=d.opt_text("device_id"),
    )


def _resync(t: str, raw: Mapping[str, Any], d: _Body) -> Event:
    rooms = d.opt_obj("rooms")
    return ResyncEvent(
        t,
        raw,
        reason=d.text("reason"),
        cursor=d.opt_integer("cursor"),
        rooms=room_cursors(rooms.raw()) if rooms is not None else {},
    )


_PARSERS: dict[str, Callable[[str, Mapping[str, Any], _Body], Event]] = {
    "hello": _hello,
    "presence": _presence,
    "buddy.request": _buddy_request,
    "buddy.update": _buddy_update,
    "typing": _typing,
    "kicked": _kicked,
    "dm.message": _dm_message,
    "dm.receipt": _dm_receipt,
    "offline.summary": _offline_summary,
    "buzz": _buzz,
    "keys.changed": _keys_changed,
    "resync": _resync,
}


def parse_event(type_: str, data: Any) -> Event:
    """The typed event for ``type_`` and ``data``; a plain :class:`Event` for unknown types
    and for data that does not have the documented shape."""
    raw: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    parser = _PARSERS.get(type_)
    if parser is None:
        return Event(type_, raw)
    try:
        return parser(type_, raw, _Body(data, 0, f"{type_}.data"))
    except EchoChatError as exc:
        log.warning("event %r has an unexpected shape (%s); passing it on untyped", type_, exc)
        return Event(type_, raw)
