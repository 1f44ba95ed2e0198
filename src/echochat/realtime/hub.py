"""The hub of this process's sockets, and its link to the bus.

One bus subscription per process carries the channels ``user:<id>`` of the users connected
here; each message is routed to their sockets. Every socket has a bounded outgoing queue: a
client too slow to keep up is closed (code 1013) and resumes, so one slow reader never grows
memory or delays anyone else (see docs/protocol.md, "Backpressure").

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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.websockets import WebSocket

from echochat.bus import BusOverflow, BusUnavailable, Subscription
from echochat.services import accounts, notify, presence
from echochat.services.accounts import Principal
from echochat.services.context import Context

__all__ = ["CLOSE_KICKED", "CLOSE_SLOW", "Connection", "Hub"]

log = logging.getLogger("echochat.realtime")

CLOSE_SLOW = 1013  # try again later: the client resumes
CLOSE_KICKED = 1008  # policy: session revoked or banned (a `kicked` event came first)
CLOSE_GOING_AWAY = 1001


@dataclass(eq=False)
class Connection:
    """One authenticated socket. Frames wait in ``queue`` for the writer task; more than
    ``limit`` waiting frames means the client cannot keep up, and it is dropped."""

    id: str
    principal: Principal
    websocket: WebSocket
    limit: int
    queue: asyncio.Queue[str | int] = field(default_factory=asyncio.Queue)
    closing: bool = False
    dropped: bool = False
    writer: asyncio.Task[None] | None = field(default=None, repr=False)
    reader: asyncio.Task[Any] | None = field(default=None, repr=False)

    def send(self, frame: str) -> None:
        """Queue a frame without waiting; past ``limit`` the socket is dropped (1013)."""
        if self.closing:
            return
        if self.queue.qsize() >= self.limit:
            log.info("dropping slow socket user=%s", self.principal.username)
            self.drop()
            return
        self.queue.put_nowait(frame)

    def send_final(self, frame: str, code: int) -> None:
        """One last frame (e.g. ``kicked``), then close; there is always room for it."""
        if self.closing:
            return
        self.queue.put_nowait(frame)
        self.close(code)

    def close(self, code: int) -> None:
        """Close after the frames already queued."""
        if self.closing:
            return
        self.closing = True
        self.queue.put_nowait(code)

    def drop(self) -> None:
        """Give up on a client that does not read: forget its queue and stop both loops at
        once. Its writer may be stuck on a full TCP buffer, where a polite close frame would
        never leave; the transport is closed instead and the client resumes (1013 when it
        can still be told)."""
        if self.closing:
            return
        self.closing = True
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        if self.writer is not None:
            self.writer.cancel()
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()

    async def run_writer(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, int):
                    with contextlib.suppress(Exception):
                        await self.websocket.close(code=item)
                    return
                await self.websocket.send_text(item)
        except asyncio.CancelledError:
            return
        except Exception:  # the peer went away; the reader notices and cleans up
            return


class Hub:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.process_id = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._by_user: dict[int, set[Connection]] = defaultdict(set)
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
            first = not self._by_user.get(user_id)
            self._by_user[user_id].add(conn)
            if first and self._sub is not None:
                await self._sub.add(notify.user_channel(user_id))
        conn.writer = asyncio.create_task(conn.run_writer(), name=f"ws-writer-{conn.id}")

    async def remove(self, conn: Connection) -> None:
        user_id = conn.principal.user_id
        async with self._lock:
            conns = self._by_user.get(user_id)
            if conns is None:
                return
            conns.discard(conn)
            if not conns:
                del self._by_user[user_id]
                if self._sub is not None:
                    await self._sub.remove(notify.user_channel(user_id))
        conn.close(CLOSE_GOING_AWAY)
        if conn.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.writer, 2)

    def route(self, channel: str, payload: bytes) -> None:
        if not channel.startswith("user:"):
            return
        conns = self._by_user.get(int(channel[5:]))
        if not conns:
            return
        kind, body = payload[:1], payload[1:]
        if kind == b"E":
            frame = body.decode()
            for conn in list(conns):
                conn.send(frame)
        elif kind == b"K":
            order = orjson.loads(body)
            sessions = order.get("sessions")
            for conn in list(conns):
                if sessions is None or conn.principal.session_id in sessions:
                    conn.send_final(order["frame"], CLOSE_KICKED)

    async def _reader(self) -> None:
        assert self._sub is not None
        while True:
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
