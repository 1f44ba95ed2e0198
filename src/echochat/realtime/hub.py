"""The hub of this process's sockets, and its link to the bus.

One bus subscription per process carries the channels ``user:<id>`` of the users connected
here, and ``room:<id>`` of the rooms they are members of; each message is routed to their
sockets. The room index (room -> local users who are members) is loaded from the database
when a user's first socket connects, kept right by the membership orders that arrive on the
user's channel (services/roomcast.py), and re-checked against the database with the
sessions (every 30 s) in case an order was lost. Every socket has a bounded outgoing queue: a
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
from echochat.domain.events import ResyncData, ResyncEvent
from echochat.realtime.wsserver import LeanWebSocketProtocol, text_frame
from echochat.services import accounts, notify, presence, roomcast
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
        "_held",
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
        self._held = False
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

    def send_shared(self, frame: str, wire: bytes) -> None:
        """:meth:`send` of a frame that many sockets get, with its wire bytes built once
        (``wsserver.text_frame``): written as they are when nothing is queued here."""
        direct = self._direct
        if (
            direct is not None
            and self._backlog is None
            and self._writer is None
            and not self.closing
            and direct.send_frame_now(wire)
        ):
            return
        self.send(frame)

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

    def hold(self) -> None:
        """Queue what is sent and write nothing until :meth:`release` (while the socket
        joins the hub: hello goes first, and nothing published meanwhile is lost)."""
        self._held = True
        if self._backlog is None:
            self._backlog = deque()

    def release(self) -> None:
        self._held = False
        if self._backlog:
            self._start_writer()
        elif self._writer is None:
            self._backlog = None

    def _start_writer(self) -> None:
        if self._writer is None and not self._held:
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
        self._recheck: asyncio.Task[None] | None = None
        self._recheck_again = False
        self.losses = 0  # times the bus subscription lost events (for /metrics)
        # users whose rooms to read again (a ``Q`` order), and the task doing it
        self._reread_rooms: set[int] = set()
        self._rereading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # rooms: local members per room, rooms per local user (only users in some room),
        # and the membership orders seen while a load from the database is under way
        self._room_users: dict[int, set[int]] = {}
        self._user_rooms: dict[int, set[int]] = {}
        self._recorders: list[dict[int, list[tuple[int, bool]]]] = []
        # room channel (un)subscriptions: queued, and running (a change made while one runs
        # queues another, which runs after it under the lock)
        self._syncing: dict[int, asyncio.Task[None]] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}

    @property
    def count(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    def new_id(self) -> str:
        return f"{self.process_id}.{next(self._ids)}"

    def connections_of(self, user_id: int) -> set[Connection]:
        return set(self._by_user.get(user_id, ()))

    def room_members_here(self, room_id: int) -> set[int]:
        """The users with a socket on this process who are members of ``room_id``."""
        return set(self._room_users.get(room_id, ()))

    def rooms_here(self, user_id: int) -> set[int]:
        """The rooms whose events this process routes to ``user_id``'s sockets."""
        return set(self._user_rooms.get(user_id, ()))

    async def start(self) -> None:
        self._sub = await self.ctx.bus.subscribe(maxsize=10_000)
        await presence.process_heartbeat(self.ctx, self.process_id, self.ctx.settings.presence_ttl)
        self._tasks = [
            asyncio.create_task(self._reader(), name="hub-reader"),
            asyncio.create_task(self._keeper(), name="hub-keeper"),
            asyncio.create_task(self._sweeper(), name="hub-sweeper"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *(t for t in (self._recheck, self._rereading) if t is not None)]
        for task in [*tasks, *self._syncing.values()]:
            task.cancel()
        for task in tasks:
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
        if first:
            await self.load_rooms([user_id])

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
        if not conns:
            self._set_rooms(user_id, set())
        conn.close(CLOSE_GOING_AWAY)
        await conn.flushed(2)

    # --- the room index ----------------------------------------------------------------------

    async def load_rooms(self, user_ids: list[int]) -> set[int]:
        """Set the rooms of these local users from the database. Membership orders that
        arrive during the read are applied again on top of it (the read may predate them).
        Returns the users who gained a room this process did not route to them."""
        recorder: dict[int, list[tuple[int, bool]]] = {u: [] for u in user_ids}
        self._recorders.append(recorder)
        try:
            found = await roomcast.rooms_of_users(self.ctx, user_ids)
        except Exception:
            log.exception("could not load the rooms of %d user(s); retrying later", len(user_ids))
            return set()
        finally:
            self._recorders.remove(recorder)
        wanted: set[int] = set()
        gained: set[int] = set()
        for user_id in user_ids:
            if user_id not in self._by_user:
                continue  # gone meanwhile
            rooms = found.get(user_id, set())
            for room_id, joined in recorder[user_id]:
                if joined:
                    rooms.add(room_id)
                else:
                    rooms.discard(room_id)
            if self._set_rooms(user_id, rooms):
                gained.add(user_id)
            wanted |= rooms
        # a new socket says hello only once its rooms' channels are subscribed (not
        # cancelled with the caller: other sockets may need them)
        pending = [
            task
            for room_id in wanted
            for task in (self._syncing.get(room_id), self._inflight.get(room_id))
            if task is not None
        ]
        if pending:
            await asyncio.wait(pending, timeout=10)
        return gained

    def _set_rooms(self, user_id: int, rooms: set[int]) -> bool:
        """Whether the user gained a room."""
        before = self._user_rooms.get(user_id, set())
        if rooms == before:
            return False
        for room_id in before - rooms:
            members = self._room_users.get(room_id)
            if members is not None:
                members.discard(user_id)
                if not members:
                    del self._room_users[room_id]
                    self._sync_channel(room_id)
        for room_id in rooms - before:
            members = self._room_users.get(room_id)
            if members is None:
                self._room_users[room_id] = {user_id}
                self._sync_channel(room_id)
            else:
                members.add(user_id)
        if rooms:
            self._user_rooms[user_id] = set(rooms)
        else:
            self._user_rooms.pop(user_id, None)
        return bool(rooms - before)

    def _membership(self, user_id: int, room_id: int, joined: bool) -> None:
        """A membership order from the bus (services/roomcast.py)."""
        for recorder in self._recorders:
            if user_id in recorder:
                recorder[user_id].append((room_id, joined))
        if user_id not in self._by_user:
            return
        rooms = set(self._user_rooms.get(user_id, ()))
        if joined:
            rooms.add(room_id)
        else:
            rooms.discard(room_id)
        self._set_rooms(user_id, rooms)

    def _room_gone(self, room_id: int) -> None:
        for recorder in self._recorders:
            for orders in recorder.values():
                orders.append((room_id, False))
        for user_id in list(self._room_users.get(room_id, ())):
            self._membership(user_id, room_id, False)

    def _sync_channel(self, room_id: int) -> None:
        """Subscribe to (or leave) the room's channel to match the index, soon."""
        if room_id in self._syncing or self._sub is None:
            return
        task = asyncio.get_running_loop().create_task(self._sync(room_id), name="hub-room")
        self._syncing[room_id] = task

    async def _sync(self, room_id: int) -> None:
        sub = self._sub
        assert sub is not None
        channel = roomcast.room_channel(room_id)
        task = asyncio.current_task()
        try:
            async with self._lock:
                self._syncing.pop(room_id, None)
                if sub.closed:
                    return
                if task is not None:
                    self._inflight[room_id] = task
                if room_id in self._room_users:
                    await sub.add(channel)
                else:
                    await sub.remove(channel)
        except Exception:
            log.exception("could not (un)subscribe %s", channel)
        finally:
            if self._inflight.get(room_id) is task:
                del self._inflight[room_id]

    def route(self, channel: str, payload: bytes) -> None:
        if channel.startswith("room:"):
            self._route_room(int(channel[5:]), payload)
            return
        if not channel.startswith("user:"):
            return
        user_id = int(channel[5:])
        kind, body = payload[:1], payload[1:]
        if kind == b"R":
            order = orjson.loads(body)
            self._membership(user_id, int(order["room"]), bool(order["joined"]))
            return
        if kind == b"Q":  # a membership order was lost: read the user's rooms again
            if user_id in self._by_user:
                self._reread_rooms.add(user_id)
                if self._rereading is None or self._rereading.done():
                    self._rereading = asyncio.create_task(self._reread(), name="hub-reread")
            return
        conns = self._by_user.get(user_id)
        if not conns:
            return
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

    def _route_room(self, room_id: int, payload: bytes) -> None:
        """A room event: the same frame (one ``str``) to every local socket of a member."""
        kind = payload[:1]
        if kind == b"D":
            self._room_gone(room_id)
            return
        members = self._room_users.get(room_id)
        if not members:
            return
        skip = 0
        if kind == b"E":
            frame = payload[1:].decode()
        elif kind == b"T":
            head, _, body = payload[1:].partition(b":")
            skip, frame = int(head), body.decode()
        else:
            return
        by_user = self._by_user
        wire = text_frame(frame)  # built once: the same bytes for every socket
        for user_id in members:
            if user_id == skip:
                continue
            for conn in by_user.get(user_id, ()):
                conn.send_shared(frame, wire)

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
                self.lost_events()
                continue
            except StopAsyncIteration:
                return
            try:
                self.route(channel, payload)
            except Exception:
                log.exception("could not route a bus message on %s", channel)

    def lost_events(self) -> None:
        """The bus subscription overflowed or reconnected: events meant for the sockets here
        may be gone. Each socket gets ``resync`` behind every frame it already has, so the
        client's cursors are exactly where the loss began and its ``hello`` replays what was
        lost (docs/protocol.md, "Lost wake-ups"). A membership or kick order may be gone
        too: the room index and the sessions are re-checked at once, not in 30 s."""
        self.losses += 1
        log.warning("bus events may have been lost; telling %d sockets to resync", self.count)
        self._tell_resync(list(self._by_user))
        self._recheck_again = True
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(self._recheck_now(), name="hub-recheck")

    def _tell_resync(self, user_ids: list[int]) -> None:
        """``resync`` (reason ``bus``) to every socket of these users here."""
        frame = notify.event_frame(ResyncEvent(data=ResyncData(reason="bus"))).decode()
        wire = text_frame(frame)
        for user_id in user_ids:
            for conn in self._by_user.get(user_id, ()):
                conn.send_shared(frame, wire)

    async def _reread(self) -> None:
        """Read the rooms of the users a ``Q`` order named (services/roomcast.py: their
        membership order could not be published); those who gained a room are told to
        resync, as after the re-check."""
        while self._reread_rooms:
            users, self._reread_rooms = sorted(self._reread_rooms), set()
            gained = await self.load_rooms(users)
            if gained:
                self._tell_resync(sorted(gained))

    async def _recheck_now(self) -> None:
        while self._recheck_again:  # once more for a loss during the re-check
            self._recheck_again = False
            try:
                await self._recheck_sessions()
            except Exception:
                log.exception("re-check after lost bus events failed; the keeper retries in 30 s")

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
        gained = await self.load_rooms(list(self._by_user))
        if gained:
            # A membership order was lost: these users' sockets missed what their new rooms
            # said until now (the channel is subscribed by now: load_rooms waited for it).
            log.warning("room index repaired for %d users; telling them to resync", len(gained))
            self._tell_resync(sorted(gained))
        dead = await accounts.inactive_sessions(self.ctx, list(by_session))
        for session_id in dead:
            frame = notify.event_frame(
                notify.kicked_event("session_revoked", "this session has ended")
            ).decode()
            for conn in by_session[session_id]:
                conn.send_final(frame, CLOSE_KICKED)
