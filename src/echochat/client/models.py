"""Typed values the SDK returns (frozen dataclasses), and strict parsing of response bodies.

A body that does not have the documented shape raises :class:`EchoChatError` with code
``bad_response`` instead of handing half-parsed data to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from echochat.client.errors import EchoChatError

__all__ = [
    "BlockedUser",
    "Buddy",
    "BuddyList",
    "BuddyRequest",
    "Conversation",
    "DmMessage",
    "DmReceipt",
    "DmSent",
    "HistoryPage",
    "Me",
    "OfflineSender",
    "OfflineSummary",
    "Presence",
    "PresenceState",
    "ReceiptKind",
    "Session",
    "User",
]

PresenceState = Literal["online", "away", "busy", "invisible", "offline"]
"""A presence state. Others never see ``invisible``: it reaches them as ``offline``."""

_STATES: frozenset[str] = frozenset(("online", "away", "busy", "invisible", "offline"))

ReceiptKind = Literal["delivered", "read"]
"""A receipt: the peer's devices have the messages (``delivered``) or the peer saw them."""


@dataclass(frozen=True, slots=True)
class User:
    """A user as others see them."""

    id: int
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Me:
    """The signed-in user: profile, roles, permissions and the current session's id."""

    user: User
    email: str | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    session_id: str

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def display_name(self) -> str:
        return self.user.display_name

    def can(self, permission: str) -> bool:
        """Whether the user holds ``permission`` (e.g. ``"admin:basic"``)."""
        return permission in self.permissions


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in device of the user; ``current`` marks the one making the request."""

    id: str
    device_label: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """A user's presence: ``state`` and the custom status text (``""`` for none)."""

    state: PresenceState
    status: str


@dataclass(frozen=True, slots=True)
class Buddy:
    """A buddy in my list: my group for them, whether I appear offline to them (``stealth``),
    and their presence as they let me see it."""

    username: str
    display_name: str
    group: str
    stealth: bool
    state: PresenceState
    status: str

    @property
    def online(self) -> bool:
        """Whether they are signed in (online, away or busy) as far as I can see."""
        return self.state != "offline"


@dataclass(frozen=True, slots=True)
class BuddyRequest:
    """A pending "add buddy" request, incoming or outgoing."""

    id: int
    from_username: str
    from_display_name: str
    to_username: str
    message: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BuddyList:
    """My buddy list: groups in display order, buddies, and pending requests both ways."""

    groups: tuple[str, ...]
    buddies: tuple[Buddy, ...]
    incoming: tuple[BuddyRequest, ...]
    outgoing: tuple[BuddyRequest, ...]

    def get(self, username: str) -> Buddy | None:
        """The buddy called ``username`` (exact match), or ``None``."""
        return next((b for b in self.buddies if b.username == username), None)

    def in_group(self, group: str) -> tuple[Buddy, ...]:
        return tuple(b for b in self.buddies if b.group == group)


@dataclass(frozen=True, slots=True)
class BlockedUser:
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class DmMessage:
    """A direct message as the server stores and relays it: the end-to-end encrypted
    ``envelope`` (docs/e2ee.md) with the server's ``id`` (unique, increasing in commit order
    for each user) and metadata. :class:`~echochat.client.messenger.Messenger` opens it."""

    id: int
    conv: str
    sender: str
    recipient: str
    sender_device: str
    client_id: str
    created_at: datetime
    envelope: Mapping[str, Any]

    def __repr__(self) -> str:
        return (
            f"DmMessage(id={self.id}, conv={self.conv!r}, sender={self.sender!r}, "
            f"client_id={self.client_id!r})"
        )


@dataclass(frozen=True, slots=True)
class DmSent:
    """The answer to a send: the stored ``message``; ``duplicate`` when this was a retry of
    a send the server already had (the original is returned, nothing was sent again)."""

    message: DmMessage
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DmReceipt:
    """A receipt watermark: ``reader``'s devices have (``delivered``) or ``reader`` has seen
    (``read``) ``peer``'s messages in ``conv`` up to the id ``upto``."""

    conv: str
    reader: str
    peer: str
    kind: ReceiptKind
    upto: int


@dataclass(frozen=True, slots=True)
class OfflineSender:
    """Who sent messages while I was away, and how many are still undelivered."""

    username: str
    display_name: str
    count: int


@dataclass(frozen=True, slots=True)
class OfflineSummary:
    """The messages not yet delivered to any of my devices, per sender."""

    senders: tuple[OfflineSender, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation of ``GET /conversations``: the other user, the newest message, my
    ``unread`` count (above my read watermark), the ``offline`` count (not yet delivered to
    any of my devices), and the four receipt watermarks (mine on their messages, theirs on
    mine)."""

    username: str
    display_name: str
    conv: str
    last_message_id: int
    last_message_at: datetime
    unread: int
    offline: int
    my_delivered_upto: int
    my_read_upto: int
    peer_delivered_upto: int
    peer_read_upto: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of a conversation's history, in ascending id order, with the receipt
    watermarks: how far the peer's devices have (``peer_delivered_upto``) and the peer has
    read (``peer_read_upto``) my messages, and how far I have read theirs."""

    messages: tuple[DmMessage, ...]
    has_more: bool
    peer_delivered_upto: int
    peer_read_upto: int
    my_read_upto: int


class _Body:
    """Typed access to one JSON object of a response, failing loudly on a wrong shape."""

    def __init__(self, data: Any, status: int, where: str = "body") -> None:
        if not isinstance(data, Mapping):
            raise _bad(status, f"{where} is not a JSON object")
        self._data: Mapping[str, Any] = data
        self._status = status
        self._where = where

    def _get(self, key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
        value = self._data.get(key)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise _bad(self._status, f"{self._where}.{key} is missing or has the wrong type")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str)
        return value

    def opt_text(self, key: str) -> str | None:
        if self._data.get(key) is None:
            return None
        return self.text(key)

    def integer(self, key: str) -> int:
        value: int = self._get(key, int)
        return value

    def opt_integer(self, key: str) -> int | None:
        if self._data.get(key) is None:
            return None
        return self.integer(key)

    def number(self, key: str) -> float:
        value = self._data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(self._status, f"{self._where}.{key} is missing or is not a number")
        return float(value)

    def state(self, key: str) -> PresenceState:
        value = self.text(key)
        if value not in _STATES:
            raise _bad(self._status, f"{self._where}.{key} is not a presence state")
        return value  # type: ignore[return-value]

    def flag(self, key: str) -> bool:
        value: bool = self._get(key, bool)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        items: list[Any] = self._get(key, list)
        if not all(isinstance(item, str) for item in items):
            raise _bad(self._status, f"{self._where}.{key} must be a list of strings")
        return tuple(items)

    def when(self, key: str) -> datetime:
        try:
            return datetime.fromisoformat(self.text(key))
        except ValueError as exc:
            raise _bad(self._status, f"{self._where}.{key} is not an ISO 8601 time") from exc

    def raw_obj(self, key: str) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self._get(key, Mapping)
        return value

    def obj(self, key: str) -> _Body:
        return _Body(self._data.get(key), self._status, f"{self._where}.{key}")

    def opt_obj(self, key: str) -> _Body | None:
        if self._data.get(key) is None:
            return None
        return self.obj(key)

    def raw(self) -> Mapping[str, Any]:
        return self._data

    def items(self, key: str) -> list[_Body]:
        values: list[Any] = self._get(key, list)
        return [_Body(v, self._status, f"{self._where}.{key}[{i}]") for i, v in enumerate(values)]


def _bad(status: int, what: str) -> EchoChatError:
    return EchoChatError(status, "bad_response", f"unexpected response from the server: {what}")


def body(data: Any, status: int) -> _Body:
    return _Body(data, status)


def parse_user(data: _Body) -> User:
    return User(
        id=data.integer("id"),
        username=data.text("username"),
        display_name=data.text("display_name"),
    )


def parse_me(data: _Body) -> Me:
    return Me(
        user=parse_user(data.obj("user")),
        email=data.opt_text("email"),
        roles=data.texts("roles"),
        permissions=data.texts("permissions"),
        session_id=data.text("session_id"),
    )


def parse_sessions(data: Any, status: int) -> list[Session]:
    sessions = []
    for row in _list_of(data, status):
        sessions.append(
            Session(
                id=row.text("id"),
                device_label=row.text("device_label"),
                ip=row.text("ip"),
                created_at=row.when("created_at"),
                last_seen_at=row.when("last_seen_at"),
                current=row.flag("current"),
            )
        )
    return sessions


def _list_of(data: Any, status: int) -> list[_Body]:
    if not isinstance(data, list):
        raise _bad(status, "body is not a JSON list")
    return [_Body(item, status, f"body[{index}]") for index, item in enumerate(data)]


def parse_presence(data: _Body) -> Presence:
    return Presence(state=data.state("state"), status=data.text("status"))


def parse_buddy(data: _Body) -> Buddy:
    return Buddy(
        username=data.text("username"),
        display_name=data.text("display_name"),
        group=data.text("group"),
        stealth=data.flag("stealth"),
        state=data.state("state"),
        status=data.text("status"),
    )


def parse_request(data: _Body) -> BuddyRequest:
    return BuddyRequest(
        id=data.integer("id"),
        from_username=data.text("from_username"),
        from_display_name=data.text("from_display_name"),
        to_username=data.text("to_username"),
        message=data.text("message"),
        created_at=data.when("created_at"),
    )


def parse_buddy_list(data: _Body) -> BuddyList:
    return BuddyList(
        groups=data.texts("groups"),
        buddies=tuple(parse_buddy(b) for b in data.items("buddies")),
        incoming=tuple(parse_request(r) for r in data.items("incoming")),
        outgoing=tuple(parse_request(r) for r in data.items("outgoing")),
    )


def parse_groups(data: _Body) -> tuple[str, ...]:
    return data.texts("groups")


def parse_blocks(data: Any, status: int) -> list[BlockedUser]:
    return [
        BlockedUser(username=row.text("username"), display_name=row.text("display_name"))
        for row in _list_of(data, status)
    ]


def parse_dm_message(data: _Body) -> DmMessage:
    return DmMessage(
        id=data.integer("id"),
        conv=data.text("conv"),
        sender=data.text("sender"),
        recipient=data.text("recipient"),
        sender_device=data.text("sender_device"),
        client_id=data.text("client_id"),
        created_at=data.when("created_at"),
        envelope=data.raw_obj("envelope"),
    )


def parse_receipt(data: _Body) -> DmReceipt:
    kind = data.text("kind")
    if kind not in ("delivered", "read"):
        raise _bad(0, f"unknown receipt kind {kind!r}")
    return DmReceipt(
        conv=data.text("conv"),
        reader=data.text("reader"),
        peer=data.text("peer"),
        kind=kind,  # type: ignore[arg-type]
        upto=data.integer("upto"),
    )


def parse_offline_summary(data: _Body) -> OfflineSummary:
    return OfflineSummary(
        senders=tuple(
            OfflineSender(
                username=row.text("username"),
                display_name=row.text("display_name"),
                count=row.integer("count"),
            )
            for row in data.items("senders")
        ),
        total=data.integer("total"),
    )


def parse_history(data: _Body) -> HistoryPage:
    return HistoryPage(
        messages=tuple(parse_dm_message(m) for m in data.items("messages")),
        has_more=data.flag("has_more"),
        peer_delivered_upto=data.integer("peer_delivered_upto"),
        peer_read_upto=data.integer("peer_read_upto"),
        my_read_upto=data.integer("my_read_upto"),
    )


def parse_conversation(data: _Body) -> Conversation:
    return Conversation(
        username=data.text("username"),
        display_name=data.text("display_name"),
        conv=data.text("conv"),
        last_message_id=data.integer("last_message_id"),
        last_message_at=data.when("last_message_at"),
        unread=data.integer("unread"),
        offline=data.integer("offline"),
        my_delivered_upto=data.integer("my_delivered_upto"),
        my_read_upto=data.integer("my_read_upto"),
        peer_delivered_upto=data.integer("peer_delivered_upto"),
        peer_read_upto=data.integer("peer_read_upto"),
    )


def parse_conversations(data: _Body) -> list[Conversation]:
    return [parse_conversation(row) for row in data.items("conversations")]
