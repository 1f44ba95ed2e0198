"""The hub of this process's sockets, and its link to the bus.

One bus subscription per process carries the channels ``user:<id>`` of the users connected
here; each message is routed to their sockets. Every socket has a bounded outgoing queue: a
client too slow to keep up is closed (code 1013) and resumes, so one slow reader never grows
memory or delays anyone else (see docs/protocol.md, "Backpressure").

Sockets whose client stopped pinging are closed by one sweep, :meth:`Hub._sweeper`.
Background duties, in :meth:`Hub._keeper`: the process heartbeat that keeps its users'
presence alive, sweeping the devices of processes that died, and re-checking every local
session against the database (revocation also arrives as a bus "kick"; this is the safety
net when such a poke is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import defaultdict, deque
from typing import Any

import orjson
from starlette.websockets import WebSocket

from echochat.bus import BusOverflow, BusUnavailable, Subscription
from echochat.realtime.wsserver import LeanWebSocketProtocol
from echochat.services import accounts, notify, presence
from echochat.services.accounts import Principal
from echochat.services.context import Context

__all__ = ["CLOSE_KICKED", "CLOSE_SLOW", "Connection", "Hub"]

log = logging.getLogger("echochat.realtime")

CLOSE_SLOW = 1013  # try again later: the client resumes
CLOSE_KICKED = 1008  # policy: session revoked or banned (a `kicked` event came first)
CLOSE_GOING_AWAY = 1001
ROUTE_BATCH = 64  # bus messages routed per turn of the event loop


class Connection:
    """One authenticated socket.

    An idle socket costs no task and no queue (memory per socket is the bar of
    docs/performance.md): a frame goes into a backlog deque, made on demand, and a writer task
    exists only while that backlog is being written, one frame in flight at a time. More than
    ``limit`` frames waiting means the client cannot keep up, and it is dropped."""

    __slots__ = (
        "_backlog",
        "_close_code",
        "_direct",
        "_writer",
        "closing",
        "dropped",
        "id",
        "last_seen",
        "limit",
        "principal",
        "reader",
        "websocket",
    )

    def __init__(self, id: str, principal: Principal, websocket: WebSocket, limit: int) -> None:
        self.id = id
        self.principal = principal
        self.websocket = websocket
        self.limit = limit
        self.closing = False
        self.dropped = False
        self.reader: asyncio.Task[Any] | None = None
        # monotonic time of the last frame the client sent (the hub closes silent sockets)
        self.last_seen = time.monotonic()
        self._backlog: deque[str] | None = None
        self._close_code: int | None = None
        self._writer: asyncio.Task[None] | None = None
        # Our own server's protocol, when the socket runs over it: with nothing queued, a
        # frame is written at once (no task, no ASGI message; docs/performance.md, "dm").
        owner = getattr(getattr(websocket, "_send", None), "__self__", None)
        self._direct = owner if isinstance(owner, LeanWebSocketProtocol) else None

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, user={self.principal.username!r})"

    @property
    def writer(self) -> asyncio.Task[None] | None:
        """The task writing the backlog, while there is one."""
        return self._writer

    @property
    def pending(self) -> int:
        """Frames waiting to be written (the one in flight excluded)."""
        return len(self._backlog) if self._backlog is not None else 0

    def send(self, frame: str) -> None:
        """Queue a frame without waiting; past ``limit`` the socket is dropped (1013)."""
        if self.closing:
            return
        backlog = self._backlog
        if backlog is None:
            direct = self._direct
            if self._writer is None and direct is not None and direct.send_text_now(frame):
                return
            backlog = self._backlog = deque()
        elif len(backlog) >= self.limit:
            log.info("dropping slow socket user=%s", self.principal.username)
            self.drop()
            return
        backlog.append(frame)
        self._start_writer()

    def send_final(self, frame: str, code: int) -> None:
        """One last frame (e.g. ``kicked``), then close; there is always room for it."""
        if self.closing:
            return
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append(frame)
        self.close(code)

    def close(self, code: int) -> None:
        """Close after the frames already queued."""
        if self.closing:
            return
        self.closing = True
        self._close_code = code
        self._start_writer()

    def drop(self) -> None:
        """Give up on a client that does not read: forget its backlog and stop both loops at
        once. Its writer may be stuck on a full TCP buffer, where a polite close frame would
        never leave; the transport is closed instead and the client resumes (1013 when it
        can still be told)."""
        if self.closing:
            return
        self.closing = True
        self.dropped = True
        self._backlog = None
        self._close_code = None
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()

    async def flushed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the backlog and a pending close are
        written."""
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            await asyncio.wait((writer,), timeout=timeout)  # neither raises nor cancels it

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Write the backlog in order, then the close if one was asked for; the task ends as
        soon as nothing is left (an idle socket has no writer)."""
        websocket = self.websocket
        try:
            while True:
                backlog = self._backlog
                if backlog:
                    await websocket.send_text(backlog.popleft())
                    continue
                self._backlog = None
                code = self._close_code
                if code is None:
                    return
                self._close_code = None
                with contextlib.suppress(Exception):
                    await websocket.close(code=code)
                return
        except asyncio.CancelledError:  # dropped
            return
        except Exception:  # the peer went away; the reader notices and cleans up
            self._backlog = None
            return
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None


class Hub:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.process_id = secrets.token_hex(6)
        self._ids = itertools.count(1)
        # a tuple per user (48 bytes for one socket; a set would be 216): most have one
        self._by_user: dict[int, tuple[Connection, ...]] = {}
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    @property
    def count(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    def new_id(self) -> str:
        return f"{self.process_id}.{next(self._ids)}"

    def connections_of(self, user_id: int) -> set[Connection]:
        return set(self._by_user.get(user_id, ()))

    async def start(self) -> None:
        self._sub = await self.ctx.bus.subscribe(maxsize=10_000)
        await presence.process_heartbeat(self.ctx, self.process_id, self.ctx.settings.presence_ttl)
        self._tasks = [
            asyncio.create_task(self._reader(), name="hub-reader"),
            asyncio.create_task(self._keeper(), name="hub-keeper"),
            asyncio.create_task(self._sweeper(), name="hub-sweeper"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                conn.close(CLOSE_GOING_AWAY)
        with contextlib.suppress(BusUnavailable):
            await presence.process_gone(self.ctx, self.process_id)
            await self.ctx.bus.set_remove(presence.PROCS, self.process_id)
        if self._sub is not None:
            await self._sub.close()

    async def add(self, conn: Connection) -> None:
        user_id = conn.principal.user_id
        async with self._lock:
            conns = self._by_user.get(user_id, ())
            first = not conns
            if conn not in conns:
                self._by_user[user_id] = (*conns, conn)
            if first and self._sub is not None:
                await self._sub.add(notify.user_channel(user_id))

    async def remove(self, conn: Connection) -> None:
        user_id = conn.principal.user_id
        async with self._lock:
            conns = self._by_user.get(user_id)
            if conns is None:
                return
            conns = tuple(other for other in conns if other is not conn)
            if conns:
                self._by_user[user_id] = conns
            else:
                del self._by_user[user_id]
                if self._sub is not None:
                    await self._sub.remove(notify.user_channel(user_id))
        conn.close(CLOSE_GOING_AWAY)
        await conn.flushed(2)

    def route(self, channel: str, payload: bytes) -> None:
        if not channel.startswith("user:"):
            return
        conns = self._by_user.get(int(channel[5:]))
        if not conns:
            return
        kind, body = payload[:1], payload[1:]
        if kind == b"E":
            frame = body.decode()
            for conn in conns:
                conn.send(frame)
        elif kind == b"K":
            order = orjson.loads(body)
            sessions = order.get("sessions")
            for conn in conns:
                if sessions is None or conn.principal.session_id in sessions:
                    conn.send_final(order["frame"], CLOSE_KICKED)

    async def _reader(self) -> None:
        assert self._sub is not None
        routed = 0
        while True:
            routed += 1
            if routed % ROUTE_BATCH == 0:
                # get() does not suspend while the queue has items: let the sockets' reads
                # and the writer in between batches, or a burst stalls the loop
                await asyncio.sleep(0)
            try:
                channel, payload = await self._sub.get()
            except BusOverflow:
                log.warning("bus subscriber overflowed; events may have been dropped")
                continue
            except StopAsyncIteration:
                return
            try:
                self.route(channel, payload)
            except Exception:
                log.exception("could not route a bus message on %s", channel)

    def close_silent(self, before: float) -> int:
        """Close every socket whose client sent nothing since ``before`` (monotonic time);
        how many."""
        closed = 0
        for conns in self._by_user.values():
            for conn in conns:
                if conn.last_seen < before and not conn.closing:
                    log.info("closing silent socket user=%s", conn.principal.username)
                    conn.close(CLOSE_GOING_AWAY)
                    closed += 1
        return closed

    async def _sweeper(self) -> None:
        """Clients ping every heartbeat; a socket silent for three is closed (1001). One
        sweep for all sockets rather than a timer per socket (docs/performance.md)."""
        heartbeat = self.ctx.settings.ws_heartbeat
        while True:
            await asyncio.sleep(heartbeat / 4)
            try:
                self.close_silent(time.monotonic() - 3 * heartbeat)
            except Exception:
                log.exception("silent-socket sweep failed; retrying")

    async def _keeper(self) -> None:
        ttl = self.ctx.settings.presence_ttl
        interval = max(0.2, ttl / 3)
        checks = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await presence.process_heartbeat(self.ctx, self.process_id, ttl)
                await presence.sweep_dead_processes(self.ctx)
                checks += 1
                if checks * interval >= 30:
                    checks = 0
                    await self._recheck_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence keeper failed; retrying")

    async def _recheck_sessions(self) -> None:
        by_session: dict[str, list[Connection]] = defaultdict(list)
        for conns in list(self._by_user.values()):
            for conn in conns:
                by_session[conn.principal.session_id].append(conn)
        dead = await accounts.inactive_sessions(self.ctx, list(by_session))
        for session_id in dead:
            frame = notify.event_frame(
                notify.kicked_event("session_revoked", "this session has ended")
            ).decode()
            for conn in by_session[session_id]:
                conn.send_final(frame, CLOSE_KICKED)
