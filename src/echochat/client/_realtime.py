"""The realtime half of the SDK: one WebSocket to ``/ws`` that stays up.

:class:`RealtimeConnection` (from :meth:`EchoChatClient.connect`) authenticates the upgrade
with ``Authorization: Bearer`` (a fresh token from the client each time it connects), sends
``hello``, then

- yields the server's events, typed (:mod:`echochat.client._events`), from :meth:`events`;
- matches each request to its ``ok``/``err`` reply by a unique ``ref`` (:meth:`request`);
- pings every ``heartbeat`` seconds (the period the server announces in its ``hello``
  event), and drops a socket whose ping goes unanswered for a whole period;
- keeps the resume cursor (the highest direct-message id it handed on) and sends it in
  ``hello`` on every reconnect; the server then replays the messages missed meanwhile, in
  pages (``more``), and the connection hands each message id on exactly once
  (docs/protocol.md, "Resuming");
- resumes the same way, on the open socket, after a ``resync`` event (the server lost
  events meant for it): recording at once where to resume from (the cursors the event
  names, or for ``bus`` the cursors held), waiting a random 0 .. ``RESYNC_JITTER`` seconds
  for ``bus`` (every socket of the process got it), then one replay round at a time, those
  that arrive during a round coalescing into one more (docs/protocol.md, "Lost wake-ups");
- reconnects when the socket drops, after an exponential backoff with jitter, sends
  ``hello`` again and restores the presence set through :meth:`set_presence`. It does not
  reconnect after a ``kicked`` event, a close with code 1008 (policy), or a refused upgrade
  with 401/403: then :meth:`events` ends by raising an error that says why.

The wire protocol is ARCHITECTURE section 5 and ``docs/sdk.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from echochat.client._events import (
    DmMessageEvent,
    Event,
    HelloEvent,
    KickedEvent,
    ResyncEvent,
    parse_event,
    room_cursors,
)
from echochat.client.errors import (
    AuthError,
    ConnectionLostError,
    DisconnectedError,
    EchoChatError,
    ForbiddenError,
    KickedError,
    NetworkError,
    OpError,
    error_from_response,
)
from echochat.client.models import (
    DmSent,
    Presence,
    PresenceState,
    body,
    parse_dm_message,
    parse_presence,
)

__all__ = [
    "RESYNC_JITTER",
    "RealtimeConnection",
    "backoff_delay",
    "lowered",
    "resync_delay",
    "websocket_url",
]

log = logging.getLogger("echochat.client")

CLOSE_POLICY: Final = 1008
# err codes that say "not now" rather than "never": a refused hello with one is retried
TRANSIENT_REFUSALS: Final = frozenset({"rate_limited", "unavailable", "internal"})
SEEN_IDS: Final = 8192  # message ids remembered for de-duplication beyond the cursor
SEND_ATTEMPTS: Final = 5  # dm.send tries across reconnects (idempotent by client_id)
_END: Final = object()  # the end-of-stream marker in the event queue
# A ``bus`` resync reaches every socket of a process at once (when it is overloaded): each
# connection waits a uniform 0 .. RESYNC_JITTER seconds before its replay round, so that they
# do not all come back in step. A ``publish`` resync (a few users) does not wait.
RESYNC_JITTER: Final = 3.0


class TokenSource(Protocol):
    """What the connection needs from :class:`EchoChatClient`."""

    async def valid_access_token(self) -> str: ...

    async def refresh(self) -> None: ...


def websocket_url(base_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` -> ``ws(s)://host[:port][/prefix]/ws``."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def backoff_delay(
    attempt: int, initial: float, maximum: float, rand: random.Random | None = None
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1, 2, ...): ``initial`` doubled
    per attempt, capped at ``maximum``, then "equal jitter" (a uniform draw from the upper
    half) so that many clients dropped at once do not come back in step."""
    ceiling = min(maximum, initial * 2 ** min(attempt - 1, 30))
    return (rand or random).uniform(ceiling / 2, ceiling)


def lowered(own: int | None, given: int | None, origin: int | None) -> int | None:
    """A cursor after a ``resync`` naming ``given``: ``min(own, given)``, but never below
    ``origin``, where the connection started (the ids up to it were the caller's before it
    opened, so they are not handed on again). No cursor stays none, and so does no
    ``given``."""
    if own is None or given is None:
        return own
    return min(own, given if origin is None else max(given, origin))


def resync_delay(reason: str | None, jitter: float, rand: random.Random | None = None) -> float:
    """Seconds to wait before the replay round a ``resync`` asks for: none for ``publish``
    (it names a few users), a uniform draw from 0 .. ``jitter`` otherwise (``bus``, or a
    reason this SDK does not know: every socket of a process may have got it at once)."""
    if reason == "publish" or jitter <= 0:
        return 0.0
    return (rand or random).uniform(0.0, jitter)


def _least(own: int | None, given: int) -> int:
    return given if own is None else min(own, given)


Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # sends one hello, its reply


class _NotSent(ConnectionLostError):
    """The socket was already closed: the request did not leave (safe to send again)."""


class _Fatal(Exception):
    """Connecting failed in a way that retrying cannot fix (wraps the error to raise)."""

    def __init__(self, error: EchoChatError) -> None:
        super().__init__(error)
        self.error = error


class RealtimeConnection:
    """A live ``/ws`` connection. Obtain it with ``await client.connect()`` and close it
    with :meth:`close` or ``async with``. See the module docstring for what it does.

    One task should consume :meth:`events` (or iterate the connection itself); events wait
    in memory until consumed.
    """

    def __init__(
        self,
        tokens: TokenSource,
        url: str,
        *,
        device_id: str | None = None,
        heartbeat: float | None = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        max_reconnect_attempts: int | None = None,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        user_agent: str | None = None,
        compression: bool = True,
        cursor: int | None = None,
        resync_jitter: float | None = None,
    ) -> None:
        self._tokens = tokens
        self._url = url
        self._device_id = device_id
        self._heartbeat_override = heartbeat
        self._reconnect = reconnect
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._max_attempts = max_reconnect_attempts
        self._open_timeout = open_timeout
        self._request_timeout = request_timeout
        self._user_agent = user_agent
        self._compression = compression
        self._refs = itertools.count(1)
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while a socket is open and said hello
        self._ended = asyncio.Event()
        self._error: EchoChatError | None = None  # why the connection ended (None: by us)
        self._closing = False
        self._kicked: KickedEvent | None = None
        self._greet_error: OpError | None = None
        self._last_error: tuple[str, str] | None = None  # the last err frame without a ref
        self._presence: dict[str, Any] = {}  # what set_presence() chose, restored on reconnect
        self._hello: HelloEvent | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnects = 0
        # Resuming (docs/protocol.md): the highest message id handed on, the cursor sent in
        # the last hello (ids at or below it are old news), whether a replay is under way
        # (live messages then do not move the cursor), and the ids seen above the floor.
        self._cursor = cursor
        self._floor: int | None = None
        self._replaying = False
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._replayed_total = 0
        # Messages read while a replay is under way wait here, so that each conversation is
        # handed on in id order: live ones may overtake the replayed pages on the wire.
        self._held: dict[int, DmMessageEvent] = {}
        # Room messages (docs/protocol.md, "Room messages"), once track_rooms() was called:
        # a cursor per room, the cursors sent in the last hello, the ids seen, and what
        # arrived during a replay (handed on in id order per room when its page ends).
        self._rooms: dict[int, int] | None = None
        self._room_floor: dict[int, int] = {}
        self._room_seen: set[int] = set()
        self._room_seen_order: deque[int] = deque()
        self._room_held: dict[int, Event] = {}
        # Lost wake-ups (a ``resync`` event): where the cursors started (never lowered below
        # that), the lowering still to apply when the next replay round starts (a page that
        # ends meanwhile moves the cursors up again), whether a round is wanted, and the
        # lock that keeps replay rounds one at a time (track_rooms and resync rounds); the
        # wait before a wanted round (drawn by the resync that asked for it) and whether the
        # resync task is past its wait (resyncs then ask for one more round, at once).
        self._origin = cursor
        self._room_origin: dict[int, int] = {}
        self._lower_to: int | None = None
        self._lower_rooms: dict[int, int] = {}
        self._resync_wanted = asyncio.Event()
        self._replay_lock = asyncio.Lock()
        self._resync_jitter = resync_jitter  # None: RESYNC_JITTER
        self._resync_delay = 0.0
        self._resyncing = False
        self._resync_events: list[Event] = []  # handed on when their round's wait is over

    # --- public state -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def connected(self) -> bool:
        """Whether a socket is open and greeted right now (False while reconnecting)."""
        return self._ready.is_set()

    @property
    def closed(self) -> bool:
        """Whether the connection ended for good (closed by you or by the server)."""
        return self._ended.is_set()

    @property
    def hello(self) -> HelloEvent:
        """The ``hello`` event of the current (or last) socket."""
        if self._hello is None:
            raise DisconnectedError("not_connected", "the connection has not opened yet")
        return self._hello

    @property
    def reconnects(self) -> int:
        """How many times the connection came back after a drop."""
        return self._reconnects

    @property
    def cursor(self) -> int | None:
        """The resume cursor: the highest direct-message id this connection handed on (or
        the server's newest id at the first ``hello``; a ``resync`` lowers it until its replay
        catches up). Keep it to resume in a later process: ``client.connect(cursor=...)``."""
        return self._cursor

    @property
    def room_cursors(self) -> dict[int, int] | None:
        """Per room of the user, the highest room message id handed on (None until
        :meth:`track_rooms`). Keep them to resume in a later process."""
        return None if self._rooms is None else dict(self._rooms)

    @property
    def replayed(self) -> int:
        """How many messages the server replayed after ``hello`` cursors, in total."""
        return self._replayed_total

    def __repr__(self) -> str:
        state = "closed" if self.closed else "connected" if self.connected else "reconnecting"
        who = f" as {self._hello.username!r}" if self._hello is not None else ""
        return f"<RealtimeConnection {self._url}{who} {state}>"

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the first socket and say hello. Raises what went wrong (no retry): e.g.
        :class:`NetworkError` (server unreachable), :class:`AuthError` (signed out)."""
        if self._task is not None:
            raise RuntimeError("this connection was already opened")
        try:
            ws = await self._open_socket()
        except _Fatal as exc:
            raise exc.error from exc.__cause__
        self._task = asyncio.create_task(self._supervise(ws), name="echochat-realtime")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._open_timeout):
                await self._wait_ready()
        if not self._ready.is_set():
            error = self._error or NetworkError(
                0, "timeout", f"the server did not answer hello within {self._open_timeout:g} s"
            )
            await self.close()
            raise error

    async def close(self) -> None:
        """Close the socket (code 1000) and stop reconnecting. :meth:`events` then ends
        without an error; pending requests raise :class:`DisconnectedError`."""
        self._closing = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._finish(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- events -----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The server's events, in order, for as long as the connection lives (reconnects
        included: each new socket starts with a :class:`HelloEvent`). When the connection
        ends the iterator stops: quietly if you closed it, else by raising why
        (:class:`KickedError`, :class:`DisconnectedError`, :class:`AuthError`, ...)."""
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # every later reader ends too
                if self._error is not None:
                    raise self._error
                return
            assert isinstance(item, Event)
            yield item

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    # --- requests ---------------------------------------------------------------------------

    async def request(
        self, op: str, data: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send ``op`` with ``data`` and return the ``data`` of its ``ok`` reply.

        Waits for the connection if it is reconnecting. Raises :class:`OpError` for an
        ``err`` reply (``code`` is the server's), :class:`ConnectionLostError` when the socket
        drops before the reply, :class:`NetworkError` code ``timeout`` after ``timeout``
        seconds (default ``request_timeout``), :class:`DisconnectedError` once closed."""
        limit = self._request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    if self._ended.is_set():
                        raise self._error or DisconnectedError("closed", "the connection is closed")
                    await self._wait_ready()
                    ws = self._ws
                    if ws is None or not self._ready.is_set():
                        continue
                    try:
                        return await self._exchange(ws, op, data or {})
                    except _NotSent:
                        # The socket had closed and the reader has not noticed yet: the
                        # request never left, so wait for the next socket and send it there.
                        if self._ws is ws:
                            self._ready.clear()
        except TimeoutError as exc:
            raise NetworkError(0, "timeout", f"no answer to {op!r} within {limit:g} s") from exc

    async def set_presence(
        self,
        state: PresenceState | None = None,
        status: str | None = None,
        idle: bool | None = None,
    ) -> Presence:
        """Set this device's presence (only the parts given): ``state`` (online, away, busy,
        invisible), custom ``status`` text (at most 140 characters; ``""`` clears it),
        ``idle`` (an idle online device counts as away). Returns the user's presence over
        all their devices. Restored automatically after a reconnect."""
        data: dict[str, Any] = {}
        if state is not None:
            data["state"] = state
        if status is not None:
            data["status"] = status
        if idle is not None:
            data["idle"] = idle
        reply = await self.request("presence.set", data)
        self._presence.update(data)
        return parse_presence(body(reply, 0))

    async def typing(self, to: str, active: bool = True) -> None:
        """Tell buddy ``to`` that I am (``active``) or stopped typing to them."""
        await self.request("typing", {"to": to, "active": active})

    async def ping(self) -> float:
        """Round-trip time to the server and back, in seconds."""
        started = time.perf_counter()
        await self.request("ping")
        return time.perf_counter() - started

    # --- direct messages --------------------------------------------------------------------

    async def send_dm(
        self, to: str, envelope: Mapping[str, Any], *, timeout: float | None = None
    ) -> DmSent:
        """Send a sealed envelope to ``to`` (``dm.send``) and return the stored message once
        the server committed it. A send cut off by a dropped socket is repeated on the next
        one: the envelope's ``client_id`` makes that safe (the server answers the original,
        ``duplicate=True``). Refusals raise :class:`OpError` (``user_not_found``,
        ``blocked``, ``invalid_envelope``, ``wrong_conversation``, ``rate_limited``, ...)."""
        data = {"to": to, "envelope": dict(envelope)}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                reply = await self.request("dm.send", data, timeout=timeout)
            except ConnectionLostError:
                if attempt == SEND_ATTEMPTS:
                    raise
                log.info("dm.send to %s cut off (attempt %d); sending it again", to, attempt)
                continue
            answer = body(reply, 0)
            return DmSent(parse_dm_message(answer.obj("message")), answer.flag("duplicate"))
        raise AssertionError("unreachable")

    async def dm_delivered(self, peer: str, upto: int) -> int:
        """Acknowledge that this device has ``peer``'s messages up to id ``upto``; the
        watermark now (it only moves forward)."""
        reply = await self.request("dm.delivered", {"peer": peer, "upto": upto})
        return body(reply, 0).integer("upto")

    async def dm_read(self, peer: str, upto: int) -> int:
        """Acknowledge that the user has seen ``peer``'s messages up to ``upto`` (implies
        delivered); the watermark now."""
        reply = await self.request("dm.read", {"peer": peer, "upto": upto})
        return body(reply, 0).integer("upto")

    async def buzz(self, to: str) -> None:
        """BUZZ! ``to`` (rate-limited per pair: :class:`OpError` ``rate_limited``)."""
        await self.request("buzz", {"to": to})

    # --- room messages ------------------------------------------------------------------------

    async def track_rooms(
        self, cursors: Mapping[int, int] | None = None, *, timeout: float | None = None
    ) -> dict[int, int]:
        """Resume room messages from ``cursors`` (room id -> the highest id processed; rooms
        left out start at their newest message) and keep doing so on every reconnect: the
        server replays what each room missed, in pages, and this connection hands each
        ``room.message`` id on once, in order per room. Returns the cursors of all the
        user's rooms."""
        self._rooms = dict(self._rooms or {}) | dict(cursors or {})
        for room, cursor in (cursors or {}).items():
            self._room_origin.setdefault(room, cursor)
        async with self._replay_lock:
            try:
                await self._replay(lambda data: self.request("hello", data, timeout=timeout))
            except BaseException:
                self._replaying = False  # hold nothing for a reply that will not come
                for mid in sorted(self._room_held):
                    self._queue.put_nowait(self._room_held.pop(mid))
                raise
        return dict(self._rooms or {})

    def _room_resumed(self, reply: Mapping[str, Any]) -> None:
        """The room part of a ``hello`` reply: where each room stands (a room left out is
        one the user is no longer in); then hand on what this page covered."""
        rooms = reply.get("rooms")
        if self._rooms is None or not isinstance(rooms, Mapping):
            return
        now = {r: max(c, self._rooms.get(r, 0)) for r, c in room_cursors(rooms).items()}
        for known, cursor in now.items():
            self._room_origin.setdefault(known, cursor)
        self._rooms = now
        for mid in sorted(self._room_held):
            room = self._room_held[mid].data.get("room")
            limit = now.get(room) if isinstance(room, int) else None
            if self._replaying and (limit is None or mid > limit):
                continue
            self._queue.put_nowait(self._room_held.pop(mid))
            if not self._replaying and isinstance(room, int) and mid > now.get(room, 0):
                now[room] = mid

    def _room_first_time(self, event: Event) -> bool:
        """Whether this room message is new here; holds it during a replay; moves the
        room's cursor for live messages."""
        mid, room = event.data.get("id"), event.data.get("room")
        if not isinstance(mid, int) or not isinstance(room, int):
            return True  # not ours to judge: pass it on
        if mid in self._room_seen or mid <= self._room_floor.get(room, -1):
            log.debug("dropping room message %d: already handed on", mid)
            return False
        self._room_seen.add(mid)
        self._room_seen_order.append(mid)
        while len(self._room_seen_order) > SEEN_IDS:
            self._room_seen.discard(self._room_seen_order.popleft())
        if self._replaying:
            self._room_held[mid] = event
            return False
        if self._rooms is not None:
            self._rooms[room] = max(self._rooms.get(room, 0), mid)
        return True

    # --- internals: one socket --------------------------------------------------------------

    async def _wait_ready(self) -> None:
        if self._ready.is_set():
            return
        ready = asyncio.create_task(self._ready.wait())
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait({ready, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            ended.cancel()

    async def _exchange(
        self,
        ws: ClientConnection,
        op: str,
        data: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request on ``ws`` and wait for its reply."""
        ref = f"c{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (op, future)
        try:
            try:
                await ws.send(
                    json.dumps({"op": op, "ref": ref, "data": dict(data)}, separators=(",", ":"))
                )
            except ConnectionClosed as exc:
                raise _NotSent(
                    0, "connection_lost", f"the socket closed before {op!r} was sent"
                ) from exc
            if timeout is None:
                return await future
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(ref, None)

    async def _open_socket(self) -> ClientConnection:
        """Authenticate and open one socket; wait for the server's ``hello`` event.
        Raises :class:`_Fatal` when retrying cannot help, other exceptions when it may."""
        for attempt in (1, 2):
            try:
                token = await self._tokens.valid_access_token()
            except (AuthError, ForbiddenError) as exc:
                raise _Fatal(exc) from exc
            headers = {"Authorization": f"Bearer {token}"}
            try:
                ws = await ws_connect(
                    self._url,
                    additional_headers=headers,
                    user_agent_header=self._user_agent,
                    open_timeout=self._open_timeout,
                    ping_interval=None,  # the app-level heartbeat does this job
                    close_timeout=5,
                    compression="deflate" if self._compression else None,
                    max_queue=64,
                )
            except InvalidStatus as exc:
                error = _refusal(exc)
                if error.code == "token_expired" and attempt == 1:
                    try:
                        await self._tokens.refresh()
                    except (AuthError, ForbiddenError) as refused:
                        raise _Fatal(refused) from refused
                    continue  # once more with the new token
                if error.status in (401, 403):
                    raise _Fatal(error) from exc
                raise error from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                raise NetworkError(
                    0, "network_error", f"cannot open {self._url}: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                async with asyncio.timeout(self._open_timeout):
                    first = await ws.recv()
                hello = self._parse(first)
            except (ConnectionClosed, TimeoutError) as exc:
                await ws.close()
                raise NetworkError(0, "network_error", "no hello from the server") from exc
            if not isinstance(hello, HelloEvent):
                await ws.close()
                raise _Fatal(
                    EchoChatError(0, "bad_response", "the server did not start with hello")
                )
            self._hello = hello
            self._queue.put_nowait(hello)
            return ws
        raise AssertionError("unreachable")

    def _parse(self, raw: str | bytes) -> Event | None:
        """Dispatch one frame: replies resolve their request; events are returned."""
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON")
            return None
        if not isinstance(frame, dict):
            log.warning("ignoring a frame that is not a JSON object")
            return None
        kind = frame.get("op")
        if kind == "ev":
            return parse_event(str(frame.get("type", "")), frame.get("data"))
        if kind in ("ok", "err"):
            ref = frame.get("ref")
            entry = self._pending.get(ref) if isinstance(ref, str) else None
            if kind == "err":
                raw_error = frame.get("error")
                error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
                code = str(error.get("code") or "error")
                message = str(error.get("message") or "the server refused the request")
                if entry is None:
                    self._last_error = (code, message)
                    log.warning("server error without a request: %s: %s", code, message)
                elif not entry[1].done():
                    entry[1].set_exception(OpError(entry[0], code, message))
            elif entry is not None and not entry[1].done():
                data = frame.get("data")
                reply = data if isinstance(data, dict) else {}
                if entry[0] == "hello":
                    self._resumed(reply)
                entry[1].set_result(reply)
            return None
        log.warning("ignoring a frame with op %r", kind)
        return None

    def _resumed(self, reply: Mapping[str, Any]) -> None:
        """The ``ok`` of a ``hello`` (handled in frame order, before any later frame): the
        replayed page ended at ``cursor``; while ``more`` is true another page follows."""
        cursor = reply.get("cursor")
        if isinstance(cursor, int) and not isinstance(cursor, bool):
            self._cursor = cursor if self._cursor is None else max(self._cursor, cursor)
            if self._origin is None:
                self._origin = self._cursor
        replayed = reply.get("replayed")
        if isinstance(replayed, int) and not isinstance(replayed, bool):
            self._replayed_total += replayed
        self._replaying = reply.get("more") is True
        self._room_resumed(reply)
        # Hand on, in id order, what this page covered; once the replay is over, everything
        # held (live messages that came early), and the cursor follows them.
        limit = self._cursor or 0
        for mid in sorted(self._held):
            if self._replaying and mid > limit:
                break
            self._queue.put_nowait(self._held.pop(mid))
            if not self._replaying and mid > limit:
                self._cursor = limit = mid

    def _first_time(self, event: DmMessageEvent) -> bool:
        """Whether this message id is new here (replay and live events may overlap); moves
        the cursor for live messages once no replay is under way."""
        mid = event.message.id
        if mid in self._seen or (self._floor is not None and mid <= self._floor):
            log.debug("dropping message %d: already handed on", mid)
            return False
        self._seen.add(mid)
        self._seen_order.append(mid)
        while len(self._seen_order) > SEEN_IDS:
            self._seen.discard(self._seen_order.popleft())
        if not self._replaying and (self._cursor is None or mid > self._cursor):
            self._cursor = mid
        return True

    async def _read(self, ws: ClientConnection) -> None:
        """Read frames until the socket closes; events go to the queue."""
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._accept(raw)

    def _accept(self, raw: str | bytes) -> None:
        """One frame from the server, in order: replies resolve their request (a ``hello``
        reply ends a replay page); events are queued, each message id once, and messages
        read during a replay are held until their page ends."""
        event = self._parse(raw)
        if event is None:
            return
        if isinstance(event, DmMessageEvent):
            if not self._first_time(event):
                return
            if self._replaying:  # handed on in order when its page (or the replay) ends
                self._held[event.message.id] = event
                return
        if event.type == "room.message" and not self._room_first_time(event):
            return
        if isinstance(event, HelloEvent):
            self._hello = event
        if isinstance(event, KickedEvent):
            self._kicked = event
        if event.type == "resync":  # a malformed one still resumes, from our own cursors
            self._resync(event if isinstance(event, ResyncEvent) else None)
            self._resync_events.append(event)  # handed on as its round starts
            return
        self._queue.put_nowait(event)

    def _resync(self, event: ResyncEvent | None) -> None:
        """A ``resync`` event, read in frame order (so the cursors are where the loss
        began): record the lowering at once, resolved against the cursors held now, and ask
        for a replay round; the socket's resync task runs it without blocking this reader.

        ``publish`` names the cursors: the DM cursor goes to at most ``cursor`` if there is
        one now, and each room whose cursor is held now to at most its given one (no cursor
        held: nothing to lower; a cursor got later starts after the loss). Anything else
        (``bus``, or malformed) resumes from the cursors held now: that is the lowering,
        since live events during the wait before the round (:func:`resync_delay`) move them
        up. The lowering is applied again when the round starts; lowest wins."""
        rooms = self._rooms or {}
        if event is not None and event.reason == "publish":
            dm: int | None = event.cursor
            named: Mapping[int, int] = event.rooms
        else:
            dm, named = self._cursor, rooms
        if dm is not None and self._cursor is not None:
            self._lower_to = _least(self._lower_to, min(dm, self._cursor))
        for room, cursor in named.items():
            own = rooms.get(room)
            if own is not None:
                self._lower_rooms[room] = _least(self._lower_rooms.get(room), min(cursor, own))
        self._lower()
        if not self._resync_wanted.is_set() and not self._resyncing:
            jitter = RESYNC_JITTER if self._resync_jitter is None else self._resync_jitter
            self._resync_delay = resync_delay(event.reason if event else None, jitter)
        self._resync_wanted.set()

    def _lower(self) -> None:
        """Apply the lowering the ``resync`` events asked for (it stays due until a round
        starts: a replay page ending meanwhile moves the cursors up again)."""
        self._cursor = lowered(self._cursor, self._lower_to, self._origin)
        if self._rooms is not None:
            for room, cursor in self._lower_rooms.items():
                lowest = lowered(self._rooms.get(room), cursor, self._room_origin.get(room))
                if lowest is not None:
                    self._rooms[room] = lowest

    async def _resyncs(self, ws: ClientConnection) -> None:
        """The socket's resync task (from the end of its greeting): one replay round per
        wish, after the wait the first resync of the wish drew, never two at once (resyncs
        during the wait merge into it; those during a round ask for one more, at once). If a
        round fails, for whatever reason, the socket is dropped: the reconnect resumes from
        the same cursors (and hands on what the round held)."""
        try:
            while True:
                await self._resync_wanted.wait()
                delay, self._resync_delay = self._resync_delay, 0.0
                self._resyncing = True
                if delay > 0:
                    await self._resync_pause(delay)
                self._hand_on_resyncs()  # the caller refetches now, not all at once
                async with self._replay_lock:
                    if not self._resync_wanted.is_set():  # a track_rooms round covered it
                        self._resyncing = False
                        continue
                    await self._replay(
                        lambda data: self._exchange(ws, "hello", data, timeout=self._open_timeout)
                    )
                    self._resyncing = self._resync_wanted.is_set()
        except ConnectionLostError:
            return  # the socket closed: the reconnect resumes
        except Exception as exc:  # TimeoutError, a refusal, or a bug: never hold on
            if isinstance(exc, TimeoutError | EchoChatError):
                log.warning("resuming after resync failed (%s); reconnecting", exc)
            else:
                log.exception("resuming after resync failed; reconnecting")
            ws.transport.abort()
        finally:
            self._resyncing = False
            self._hand_on_resyncs()

    def _hand_on_resyncs(self) -> None:
        """Queue the ``resync`` events read so far (when the wait before their round is
        over, or the socket is gone: the reconnect resumes instead)."""
        events, self._resync_events = self._resync_events, []
        for event in events:
            self._queue.put_nowait(event)

    async def _resync_pause(self, delay: float) -> None:
        """The wait before a ``bus`` resync's round (its own method for tests to hold)."""
        await asyncio.sleep(delay)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Ping every heartbeat period; a ping unanswered for a whole period kills the
        socket (the reader then sees it closed and the supervisor reconnects)."""
        while True:
            hello = self._hello
            period = self._heartbeat_override or (hello.heartbeat if hello else 25.0)
            await asyncio.sleep(period)
            try:
                await self._exchange(ws, "ping", {}, timeout=period)
            except OpError as exc:  # e.g. rate_limited: the socket is alive, so fine
                log.debug("ping refused: %s", exc)
            except (TimeoutError, EchoChatError):
                log.warning("no answer to ping within %.1f s; dropping the socket", period)
                ws.transport.abort()
                return

    async def _replay(self, ask: Ask) -> None:
        """One resume round: ``hello`` with the cursors (lowered first, if a ``resync``
        asked), page after page while the server says ``more``. It covers every resync
        read before it starts."""
        self._lower()
        self._lower_to, self._lower_rooms = None, {}
        self._resync_wanted.clear()
        while True:
            data: dict[str, Any] = {}
            if self._device_id is not None:
                data["device_id"] = self._device_id
            if self._cursor is not None:
                data["cursor"] = self._cursor
                self._floor = self._cursor
                self._replaying = True  # until the reply says no more pages follow
            if self._rooms is not None:
                data["rooms"] = {str(r): c for r, c in self._rooms.items()}
                self._room_floor = dict(self._rooms)
                self._replaying = True
            reply = await ask(data)
            if reply.get("more") is not True:
                return

    async def _greet(self, ws: ClientConnection, *, restore: bool) -> None:
        """Resume (:meth:`_replay`) on a new socket, then restore the presence chosen."""
        await self._replay(
            lambda data: self._exchange(ws, "hello", data, timeout=self._open_timeout)
        )
        if restore and self._presence:
            await self._exchange(ws, "presence.set", self._presence, timeout=self._open_timeout)

    async def _session(self, ws: ClientConnection, *, restore: bool) -> None:
        """Serve one socket until it closes."""
        self._ws = ws
        reader = asyncio.create_task(self._read(ws), name="echochat-realtime-reader")
        heartbeat: asyncio.Task[None] | None = None
        resyncs: asyncio.Task[None] | None = None
        try:
            try:
                await self._greet(ws, restore=restore)
            except (TimeoutError, ConnectionLostError) as exc:
                log.warning("greeting the server failed (%s); reconnecting", exc)
                ws.transport.abort()
            except OpError as exc:
                if exc.code in TRANSIENT_REFUSALS:  # the server is busy or its bus is down
                    log.warning("the server could not answer hello (%s); reconnecting", exc)
                    ws.transport.abort()
                else:  # a refused hello will be refused again: give up
                    log.warning("the server refused hello (%s)", exc)
                    self._greet_error = exc
                    ws.transport.abort()
            else:
                self._ready.set()
                heartbeat = asyncio.create_task(self._heartbeat(ws), name="echochat-heartbeat")
                resyncs = asyncio.create_task(self._resyncs(ws), name="echochat-resync")
            await reader
        finally:
            self._ready.clear()
            for task in (reader, heartbeat, resyncs):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            self._hand_on_resyncs()
            self._ws = None
            lost = ConnectionLostError(0, "connection_lost", "the socket closed before the reply")
            for _, future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()

    def _ending(self, ws: ClientConnection) -> EchoChatError | None:
        """After a socket closed: the error that ends the connection, or None to reconnect."""
        if self._greet_error is not None:
            return self._greet_error
        if self._kicked is not None:
            return KickedError(self._kicked.reason, self._kicked.message, close_code=ws.close_code)
        code = ws.close_code
        if code == CLOSE_POLICY:
            why = ws.close_reason or (
                f"{self._last_error[0]}: {self._last_error[1]}" if self._last_error else "policy"
            )
            return DisconnectedError(
                "policy_violation", f"the server closed the socket (1008): {why}", close_code=code
            )
        if not self._reconnect:
            return DisconnectedError(
                "connection_closed", f"the socket closed (code {code})", close_code=code
            )
        return None

    async def _supervise(self, ws: ClientConnection) -> None:
        """Serve sockets one after another: reconnect with backoff until told to stop."""
        restore = False
        try:
            while True:
                await self._session(ws, restore=restore)
                if self._closing:
                    return
                error = self._ending(ws)
                if error is not None:
                    self._finish(error)
                    return
                log.info("socket closed (code %s); reconnecting", ws.close_code)
                attempt = 0
                while True:
                    attempt += 1
                    if self._max_attempts is not None and attempt > self._max_attempts:
                        self._finish(
                            DisconnectedError(
                                "reconnect_failed",
                                f"could not reconnect after {self._max_attempts} attempt(s)",
                            )
                        )
                        return
                    await asyncio.sleep(
                        backoff_delay(attempt, self._reconnect_delay, self._reconnect_max_delay)
                    )
                    try:
                        ws = await self._open_socket()
                    except _Fatal as exc:
                        self._finish(exc.error)
                        return
                    except EchoChatError as exc:
                        log.info("reconnect attempt %d failed: %s", attempt, exc)
                        continue
                    break
                self._reconnects += 1
                restore = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end visibly rather than hang
            log.exception("the realtime connection failed")
            self._finish(EchoChatError(0, "internal", f"{type(exc).__name__}: {exc}"))

    def _finish(self, error: EchoChatError | None) -> None:
        if self._ended.is_set():
            return
        self._error = error
        self._ended.set()
        self._ready.clear()
        closed = error or DisconnectedError("closed", "the connection is closed")
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(closed)
        self._queue.put_nowait(_END)


def _refusal(exc: InvalidStatus) -> EchoChatError:
    """The error of a refused upgrade, parsed from the server's JSON body like REST errors."""
    response = exc.response
    http = httpx.Response(
        response.status_code,
        headers=list(response.headers.raw_items()),
        content=bytes(response.body or b""),
    )
    return error_from_response(http)
