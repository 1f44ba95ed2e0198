"""End-to-end encrypted direct messages, the high-level way: :class:`Messenger`.

A messenger is one device of the signed-in user. It owns the user's :class:`Keyring` and
this device's keys, publishes the device, keeps the realtime connection, and

- **sends**: fetches and verifies the peer's key directory (cached, identity key pinned on
  first use), seals the text for every device of both users, sends it with a fresh
  ``client_id`` and returns the stored :class:`DmMessage`. A send cut off by a reconnect is
  repeated with the same envelope, so the server keeps it once;
- **receives**: :meth:`Messenger.messages` yields the incoming messages *decrypted and
  verified* (:class:`DirectMessage`), each id once (the connection resumes from its cursor
  after a drop or a ``resync``; a messenger started without a cursor fetches the messages
  that reached none of the user's devices when ``offline.summary`` announces them), and
  acknowledges them as delivered; :meth:`Messenger.mark_read` says they were read;
- **reads history**, decrypted (:meth:`Messenger.history`).

Key directories are fetched again when the server says a user's keys changed
(``keys.changed``, sent to buddies) and when a message comes from a device not in the cached
directory. A changed identity key is never accepted silently: the message fails with
``identity_changed`` until :meth:`Messenger.trust` is called (after comparing safety
numbers). Everything that cannot be verified or decrypted raises (or carries)
:class:`~echochat.client.e2ee.E2EEError` with a stable code; the connection carries on.

An echo bot::

    async with EchoChatClient(url) as chat:
        await chat.login("echobot", password)
        async with await Messenger.start(chat, keyring_file="echobot.keys") as bot:
            async for message in bot.messages():
                await bot.send(message.sender, f"echo: {message.text}")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from echochat.client._events import (
    DmMessageEvent,
    Event,
    KeysChangedEvent,
    OfflineSummaryEvent,
)
from echochat.client._realtime import RealtimeConnection
from echochat.client.e2ee import (
    DeviceKeys,
    E2EEError,
    KeyDirectory,
    Keyring,
    Opened,
    SafetyNumber,
    dm_conversation,
    encode_payload,
    fetch_keys,
    open_envelope,
    publish_device,
    recipients_for,
    safety_number,
    seal,
)
from echochat.client.errors import DisconnectedError, EchoChatError, NetworkError
from echochat.client.models import DmMessage, HistoryPage

if TYPE_CHECKING:
    from echochat.client.http import EchoChatClient

__all__ = ["DecryptedHistory", "DirectMessage", "Messenger", "UndecryptableMessage"]

log = logging.getLogger("echochat.client")

KEYRING_FILE_VERSION = 1
SEEN_CLIENT_IDS = 8192  # (conv, sender, client_id) remembered against replays


@dataclass(frozen=True)
class DirectMessage:
    """A direct message, verified and decrypted (or, in :meth:`Messenger.events` and
    :meth:`Messenger.history`, one that could not be: ``error`` then says why and
    ``payload`` is empty).

    ``sender``, ``conv`` and ``client_id`` are the signed ones of the envelope; ``id`` and
    ``created_at`` are the server's. ``outgoing`` marks a message this user sent (from any of
    their devices); ``peer`` is the other user of the conversation."""

    id: int
    conv: str
    sender: str
    recipient: str
    peer: str
    outgoing: bool
    sender_device: str
    client_id: str
    created_at: datetime
    payload: Mapping[str, Any]
    raw: DmMessage = field(repr=False, compare=False)
    error: E2EEError | None = None

    @property
    def text(self) -> str | None:
        """The text of a ``{"type": "text"}`` payload, else ``None``."""
        value = self.payload.get("text")
        return value if self.payload.get("type") == "text" and isinstance(value, str) else None

    @property
    def ok(self) -> bool:
        return self.error is None


class UndecryptableMessage(E2EEError):
    """A message arrived that could not be verified or decrypted. ``code`` is the
    :class:`E2EEError` code (``bad_signature``, ``decrypt_failed``, ``identity_changed``,
    ``not_a_recipient``, ...); ``dm`` is the message as the server sent it, and
    ``direct`` its :class:`DirectMessage` with ``error`` set."""

    def __init__(self, direct: DirectMessage) -> None:
        assert direct.error is not None
        super().__init__(
            direct.error.code,
            f"message {direct.id} from {direct.raw.sender} could not be opened: "
            f"{direct.error.message}",
        )
        self.direct = direct
        self.dm = direct.raw


@dataclass(frozen=True)
class DecryptedHistory:
    """A page of history, decrypted: :class:`DirectMessage` in ascending id order (those
    that failed carry ``error``), and the page's ``has_more`` and receipt watermarks."""

    messages: tuple[DirectMessage, ...]
    has_more: bool
    peer_delivered_upto: int
    peer_read_upto: int
    my_read_upto: int


class Messenger:
    """One device's end-to-end encrypted direct messages. Create it with
    :meth:`Messenger.start`; close it with :meth:`close` or ``async with``."""

    def __init__(
        self,
        client: EchoChatClient,
        keyring: Keyring,
        device: DeviceKeys,
        own: KeyDirectory,
        *,
        pins: Mapping[str, bytes] | None = None,
    ) -> None:
        user = client.user
        if user is None:
            raise E2EEError("not_signed_in", "sign in first")
        self._client = client
        self._me = user.username
        self._keyring = keyring
        self._device = device
        self._own = own
        self._pins: dict[str, bytes] = dict(pins or {})
        self._pins.setdefault(self._me, keyring.identity_key)
        self._directories: dict[str, KeyDirectory] = {self._me: own}
        self._rt: RealtimeConnection | None = None
        self._ack_due: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._ack_task: asyncio.Task[None] | None = None
        self._last_from: dict[str, int] = {}
        self._seen: set[tuple[str, str, str]] = set()
        self._seen_order: deque[tuple[str, str, str]] = deque()
        self._catch_up = False  # fetch offline messages at the first offline.summary

    # --- creation ------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        client: EchoChatClient,
        *,
        keyring: Keyring | None = None,
        device_id: str | None = None,
        keyring_file: str | os.PathLike[str] | None = None,
        label: str = "EchoChat SDK",
        reset_identity: bool = False,
        pins: Mapping[str, bytes] | None = None,
        connect: bool = True,
        cursor: int | None = None,
        **connect_options: Any,
    ) -> Messenger:
        """Set up this device and (unless ``connect=False``) open the realtime connection.

        Keys: ``keyring`` (with ``device_id``, one of its devices) if given; else
        ``keyring_file`` if it exists (written by an earlier run: private keys in clear
        JSON, mode 0600 — protect it like a password); else a new identity and device,
        saved to ``keyring_file`` when one is named. The device is published (again: the
        same keys are accepted as they are). A server that holds another identity key for
        the user answers :class:`~echochat.client.ConflictError` ``identity_mismatch``:
        restore that keyring, or pass ``reset_identity=True`` to start fresh (old messages
        become unreadable, buddies are warned).

        ``pins`` are identity keys trusted earlier (username -> 32 bytes); others are pinned
        on first use. ``cursor`` resumes from a message id kept from an earlier run;
        ``connect_options`` go to :meth:`EchoChatClient.connect`."""
        user = client.user
        if user is None:
            raise E2EEError("not_signed_in", "sign in first")
        path = Path(keyring_file) if keyring_file is not None else None
        if keyring is None and path is not None and path.exists():
            keyring, device_id = _load_keyring_file(path, user.username)
        if keyring is None:
            keyring = Keyring.generate()
        device = keyring.device(device_id) if device_id is not None else keyring.add_device()
        own = await publish_device(
            client, keyring, device.device_id, label=label, reset_identity=reset_identity
        )
        if path is not None:  # only keys the server accepted
            _save_keyring_file(path, user.username, keyring, device.device_id)
        messenger = cls(client, keyring, device, own, pins=pins)
        messenger._catch_up = cursor is None
        if connect:
            messenger._rt = await client.connect(
                device_id=device.device_id, cursor=cursor, **connect_options
            )
        return messenger

    async def close(self) -> None:
        """Send the pending delivery acknowledgements, then close the connection."""
        task = self._ack_task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 5)
        if self._rt is not None:
            await self._rt.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- state ---------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return self._me

    @property
    def device_id(self) -> str:
        return self._device.device_id

    @property
    def keyring(self) -> Keyring:
        """The user's keys (private: save them with :func:`~echochat.client.e2ee.save_backup`
        or ``keyring_file``)."""
        return self._keyring

    @property
    def client(self) -> EchoChatClient:
        return self._client

    @property
    def connection(self) -> RealtimeConnection:
        """The realtime connection (``DisconnectedError`` if started with ``connect=False``)."""
        if self._rt is None:
            raise DisconnectedError("not_connected", "this messenger was started without a socket")
        return self._rt

    @property
    def cursor(self) -> int | None:
        """The resume cursor of the connection (keep it to resume in a later run)."""
        return self._rt.cursor if self._rt is not None else None

    @property
    def pins(self) -> dict[str, bytes]:
        """The identity keys trusted so far (username -> key)."""
        return dict(self._pins)

    def __repr__(self) -> str:
        return f"<Messenger {self._me} device {self._device.device_id}>"

    # --- keys ----------------------------------------------------------------------------

    async def keys(self, username: str, *, refresh: bool = False) -> KeyDirectory:
        """``username``'s verified key directory (cached). Its identity key is pinned the
        first time; a different one later raises ``identity_changed``."""
        cached = self._directories.get(username)
        if cached is not None and not refresh:
            return cached
        directory = await fetch_keys(
            self._client, username, trusted_identity=self._pins.get(username)
        )
        self._pins.setdefault(directory.username, directory.identity_key)
        self._directories[directory.username] = directory
        return directory

    def forget_keys(self, username: str) -> None:
        """Drop the cached directory (the pin stays): the next use fetches it again."""
        self._directories.pop(username, None)

    def trust(self, username: str, identity_key: bytes) -> None:
        """Accept a new identity key for ``username`` (after comparing safety numbers)."""
        self._pins[username] = identity_key
        self.forget_keys(username)

    async def safety_number(self, username: str) -> SafetyNumber:
        """The safety number of this user and ``username`` (compare it out of band)."""
        peer = await self.keys(username)
        return safety_number(self._me, self._keyring.identity_key, username, peer.identity_key)

    # --- sending -------------------------------------------------------------------------

    def new_client_id(self) -> str:
        return "m-" + secrets.token_urlsafe(12)

    async def seal(
        self,
        to: str,
        text: str | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """The envelope :meth:`send` would send (for sending it yourself)."""
        if (text is None) == (payload is None):
            raise ValueError("give either text or payload")
        body = {"type": "text", "text": text} if payload is None else dict(payload)
        peer = await self.keys(to)
        own = await self.keys(self._me)
        if own.device(self._device.device_id) is None:  # e.g. removed elsewhere: publish again
            own = await publish_device(self._client, self._keyring, self._device.device_id)
            self._directories[self._me] = own
        return seal(
            encode_payload(body),
            conv=dm_conversation(self._me, peer.username),
            sender=self._me,
            sender_device_keys=self._device,
            client_id=client_id or self.new_client_id(),
            recipients=recipients_for(self._me, self._device.device_id, peer, own),
        )

    async def send(
        self,
        to: str,
        text: str | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        client_id: str | None = None,
    ) -> DmMessage:
        """Encrypt ``text`` (or a JSON ``payload`` object) for every device of ``to`` and of
        this user, send it, and return the stored message once the server committed it.
        Over the socket when connected (repeated with the same envelope after a reconnect),
        else over HTTP. Raises :class:`E2EEError` (e.g. ``no_keys``: ``to`` has not set up
        encryption; ``identity_changed``), :class:`~echochat.client.OpError` or the HTTP
        errors for refusals (``user_not_found``, ``blocked``, ``rate_limited``, ...)."""
        envelope = await self.seal(to, text, payload=payload, client_id=client_id)
        if self._rt is not None:
            return (await self._rt.send_dm(to, envelope)).message
        try:
            return (await self._client.post_dm(to, envelope)).message
        except NetworkError:  # no answer: the same envelope again is safe (client_id)
            return (await self._client.post_dm(to, envelope)).message

    async def buzz(self, to: str) -> None:
        """BUZZ! ``to`` (rate-limited per pair)."""
        await self.connection.buzz(to)

    async def mark_read(self, peer: str, upto: int | None = None) -> int:
        """Tell ``peer`` (and my other devices) that I read their messages up to ``upto``
        (default: the newest one received here). The watermark now."""
        if upto is None:
            upto = self._last_from.get(peer)
            if upto is None:
                raise ValueError(f"no message from {peer} received here yet: give upto")
        if self._rt is not None:
            return await self._rt.dm_read(peer, upto)
        return await self._client.dm_receipt(peer, "read", upto)

    # --- receiving -----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event | DirectMessage]:
        """Every event of the connection, with each ``dm.message`` replaced by its
        :class:`DirectMessage` (decrypted; or with ``error`` set), in order. Messages from
        others are acknowledged as delivered as they pass. Ends like
        :meth:`RealtimeConnection.events`."""
        async for event in self.connection.events():
            if isinstance(event, DmMessageEvent):
                direct = await self._received(event.message)
                if direct is not None:
                    yield direct
                continue
            if isinstance(event, KeysChangedEvent):
                self.forget_keys(event.username)
            yield event
            if isinstance(event, OfflineSummaryEvent) and self._catch_up:
                self._catch_up = False
                async for direct in self._offline(event):
                    yield direct

    async def _received(self, message: DmMessage) -> DirectMessage | None:
        direct = await self.open(message)
        if direct is not None and not direct.outgoing:
            self._last_from[direct.peer] = max(direct.id, self._last_from.get(direct.peer, 0))
            self._ack(direct.peer, direct.id)
        return direct

    async def _offline(self, summary: OfflineSummaryEvent) -> AsyncIterator[DirectMessage]:
        """Started without a cursor, the connection replays nothing: fetch the messages that
        reached none of my devices from history, oldest first (docs/protocol.md, "Offline
        messages"). Later sockets resume from the cursor instead."""
        senders = {s.username for s in summary.senders if s.count > 0}
        if not senders:
            return
        watermarks = {
            c.username: c.my_delivered_upto
            for c in await self._client.conversations()
            if c.username in senders
        }
        for peer, after in watermarks.items():
            while True:
                page = await self._client.dm_history(peer, after=after, limit=200)
                for message in page.messages:
                    if message.sender == peer:
                        direct = await self._received(message)
                        if direct is not None:
                            yield direct
                if not page.has_more or not page.messages:
                    break
                after = page.messages[-1].id

    async def messages(
        self, *, include_own: bool = False, errors: Literal["raise", "skip"] = "raise"
    ) -> AsyncIterator[DirectMessage]:
        """The direct messages, decrypted, as they arrive (others' only, unless
        ``include_own``: then also those sent from any of my devices). A message that
        cannot be verified or decrypted raises :class:`UndecryptableMessage` (an
        :class:`E2EEError`; iterate again to carry on) or, with ``errors="skip"``, is logged
        and left out."""
        async for item in self.events():
            if not isinstance(item, DirectMessage) or (item.outgoing and not include_own):
                continue
            if item.error is not None:
                if errors == "skip":
                    log.warning("skipping message %d: %s", item.id, item.error)
                    continue
                raise UndecryptableMessage(item)
            yield item

    async def history(
        self,
        peer: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> DecryptedHistory:
        """A page of the conversation with ``peer``, decrypted (see
        :meth:`EchoChatClient.dm_history`). Messages that fail carry ``error``."""
        page: HistoryPage = await self._client.dm_history(
            peer, before=before, after=after, limit=limit
        )
        opened = []
        for message in page.messages:
            direct = await self.open(message, dedupe=False)
            if direct is not None:
                opened.append(direct)
        return DecryptedHistory(
            tuple(opened),
            page.has_more,
            page.peer_delivered_upto,
            page.peer_read_upto,
            page.my_read_upto,
        )

    async def open(self, message: DmMessage, *, dedupe: bool = True) -> DirectMessage | None:
        """Verify and decrypt one message as the server sent it. Returns it with ``error``
        set when that fails, and ``None`` for a replay of an envelope already opened here
        (same conversation, sender and ``client_id`` under another id: docs/e2ee.md 4.3)."""
        outgoing = message.sender == self._me
        peer = message.recipient if outgoing else message.sender
        try:
            conv = dm_conversation(self._me, peer)
            opened = await self._open_verified(message, conv)
        except E2EEError as exc:
            return self._direct(message, peer, outgoing, {}, exc)
        except EchoChatError as exc:  # the sender's keys could not be fetched
            error = E2EEError("keys_unavailable", f"cannot fetch {message.sender}'s keys: {exc}")
            return self._direct(message, peer, outgoing, {}, error)
        key = (opened.conv, opened.sender, opened.client_id)
        if dedupe:
            if key in self._seen:
                log.warning("dropping message %d: a replay of %s", message.id, key)
                return None
            self._seen.add(key)
            self._seen_order.append(key)
            while len(self._seen_order) > SEEN_CLIENT_IDS:
                self._seen.discard(self._seen_order.popleft())
        return DirectMessage(
            id=message.id,
            conv=opened.conv,
            sender=opened.sender,
            recipient=message.recipient,
            peer=peer,
            outgoing=outgoing,
            sender_device=opened.sender_device,
            client_id=opened.client_id,
            created_at=message.created_at,
            payload=opened.payload,
            raw=message,
        )

    async def _open_verified(self, message: DmMessage, conv: str) -> Opened:
        sender = message.sender
        for attempt in (1, 2):
            directory = await self.keys(sender, refresh=attempt == 2)
            try:
                return open_envelope(
                    message.envelope,
                    expected_conv=conv,
                    me_user=self._me,
                    my_device_keys=self._device,
                    sender_keys=directory,
                    trusted_identity=self._pins.get(sender),
                )
            except E2EEError as exc:
                if exc.code != "unknown_sender_device" or attempt == 2:
                    raise
                log.info("message %d: %s has a new device; fetching keys", message.id, sender)
        raise AssertionError("unreachable")

    def _direct(
        self,
        message: DmMessage,
        peer: str,
        outgoing: bool,
        payload: Mapping[str, Any],
        error: E2EEError | None,
    ) -> DirectMessage:
        return DirectMessage(
            id=message.id,
            conv=message.conv,
            sender=message.sender,
            recipient=message.recipient,
            peer=peer,
            outgoing=outgoing,
            sender_device=message.sender_device,
            client_id=message.client_id,
            created_at=message.created_at,
            payload=payload,
            raw=message,
            error=error,
        )

    # --- delivery acknowledgements (coalesced per peer) -------------------------------------

    def _ack(self, peer: str, upto: int) -> None:
        if upto <= max(self._acked.get(peer, 0), self._ack_due.get(peer, 0)):
            return
        self._ack_due[peer] = upto
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._send_acks(), name="echochat-dm-acks")

    async def _send_acks(self) -> None:
        """Send the due watermarks one request at a time: messages that arrive meanwhile are
        covered by the next one (a watermark acknowledges everything below it)."""
        rt = self._rt
        while self._ack_due and rt is not None:
            peer, upto = self._ack_due.popitem()
            try:
                self._acked[peer] = max(await rt.dm_delivered(peer, upto), upto)
            except DisconnectedError:
                return
            except EchoChatError as exc:
                log.warning("could not acknowledge %s's messages up to %d: %s", peer, upto, exc)


# --- the keyring file -------------------------------------------------------------------------


def _load_keyring_file(path: Path, username: str) -> tuple[Keyring, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise E2EEError("malformed", f"cannot read the keyring file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != KEYRING_FILE_VERSION:
        raise E2EEError("unsupported_version", f"{path} is not a keyring file of this SDK")
    if data.get("username") != username:
        raise E2EEError(
            "identity_mismatch",
            f"{path} holds the keys of {data.get('username')!r}, not {username!r}",
        )
    device_id = data.get("device_id")
    if not isinstance(device_id, str):
        raise E2EEError("malformed", f"{path} names no device")
    keyring = Keyring.from_json(data.get("keyring"))
    keyring.device(device_id)  # unknown_device if the file is inconsistent
    return keyring, device_id


def _save_keyring_file(path: Path, username: str, keyring: Keyring, device_id: str) -> None:
    payload = {
        "v": KEYRING_FILE_VERSION,
        "username": username,
        "device_id": device_id,
        "keyring": keyring.to_json(),
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(payload, out)
    tmp.replace(path)
