"""The ``/ws`` endpoint: authenticate the upgrade, then read frames and dispatch ops.

Refusals before the upgrade (no or bad credentials, foreign ``Origin``) answer an HTTP error
with the usual JSON body when the server supports it, else a close with code 1008. After
the upgrade, a bad frame gets an ``err`` reply and the socket stays open; a client that
keeps sending garbage or floods past its rate limit is closed with 1008 (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from echochat.api.cookies import read_access_cookie
from echochat.api.deps import bearer_token
from echochat.api.errors import BUS_DOWN, error_body
from echochat.api.responses import JSON
from echochat.bus import BusUnavailable
from echochat.domain.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    RateLimited,
    Unauthorized,
)
from echochat.domain.events import DmMessageEvent, HelloData, HelloEvent
from echochat.domain.events_room_messages import RoomMessageEvent
from echochat.domain.presence import State, check_state, check_status_text
from echochat.realtime.frames import (
    BuzzIn,
    ClientFrame,
    DmAckIn,
    DmSendIn,
    HelloIn,
    PingIn,
    PresenceSetIn,
    RoomReadIn,
    RoomSendIn,
    RoomTypingIn,
    TypingIn,
)
from echochat.realtime.hub import CLOSE_SLOW, Connection, Hub
from echochat.services import accounts, dm, notify, presence, room_messages
from echochat.services.context import Context
from echochat.services.typing import typing

__all__ = ["websocket_endpoint"]

log = logging.getLogger("echochat.realtime")


CLOSE_POLICY = 1008
MAX_STRIKES = 20

Handler = Callable[[Context, Connection, Any], Awaitable[dict[str, Any] | None]]


class TokenBucket:
    """``rate`` frames per second with bursts of ``burst``; time passed in for tests."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --- ops ----------------------------------------------------------------------------------


def _replay_page(ctx: Context) -> int:
    # A page must fit the socket's queue with room for live events, or the replay itself
    # would drop the client as too slow.
    return max(1, min(ctx.settings.replay_page, ctx.settings.ws_queue // 2))


async def op_hello(ctx: Context, conn: Connection, data: HelloIn) -> dict[str, Any]:
    """Resume: the user's messages after ``cursor``, one page, before the ``ok``
    (docs/protocol.md, "Resuming"); with ``rooms``, then the room messages after each
    room's cursor, in what is left of the page ("Room messages", "Resuming")."""
    budget = _replay_page(ctx)
    page = await dm.replay(ctx, conn.principal, data.cursor, budget)
    for message in page.messages:
        conn.send(notify.event_frame(DmMessageEvent(data=message)).decode())
    reply: dict[str, Any] = {
        "cursor": page.cursor,
        "replayed": len(page.messages),
        "more": page.more,
    }
    if data.rooms is not None:
        cursors = {int(room): cursor for room, cursor in data.rooms.items()}
        rooms = await room_messages.replay(
            ctx, conn.principal, cursors, budget - len(page.messages)
        )
        for room_message in rooms.messages:
            conn.send(notify.event_frame(RoomMessageEvent(data=room_message)).decode())
        reply["rooms"] = {str(room): cursor for room, cursor in sorted(rooms.cursors.items())}
        reply["rooms_replayed"] = len(rooms.messages)
        reply["more"] = page.more or rooms.more
    return reply


async def op_dm_send(ctx: Context, conn: Connection, data: DmSendIn) -> dict[str, Any]:
    sent = await dm.send(ctx, conn.principal, data.to, data.envelope)
    return {"message": sent.message.model_dump(mode="json"), "duplicate": sent.duplicate}


async def op_dm_delivered(ctx: Context, conn: Connection, data: DmAckIn) -> dict[str, Any]:
    return {"upto": await dm.acknowledge(ctx, conn.principal, data.peer, "delivered", data.upto)}


async def op_dm_read(ctx: Context, conn: Connection, data: DmAckIn) -> dict[str, Any]:
    return {"upto": await dm.acknowledge(ctx, conn.principal, data.peer, "read", data.upto)}


async def op_buzz(ctx: Context, conn: Connection, data: BuzzIn) -> None:
    await dm.buzz(ctx, conn.principal, data.to)


async def op_room_send(ctx: Context, conn: Connection, data: RoomSendIn) -> dict[str, Any]:
    sent = await room_messages.send(
        ctx,
        conn.principal,
        data.room,
        client_id=data.client_id,
        text=data.text,
        envelope=data.envelope,
    )
    return {"message": sent.message.model_dump(mode="json"), "duplicate": sent.duplicate}


async def op_room_typing(ctx: Context, conn: Connection, data: RoomTypingIn) -> None:
    await room_messages.typing(ctx, conn.principal, data.room, data.active)


async def op_room_read(ctx: Context, conn: Connection, data: RoomReadIn) -> dict[str, Any]:
    return {"upto": await room_messages.mark_read(ctx, conn.principal, data.room, data.upto)}


async def op_presence_set(ctx: Context, conn: Connection, data: PresenceSetIn) -> dict[str, Any]:
    text = check_status_text(data.status) if data.status is not None else None
    await presence.device_update(
        ctx,
        conn_id=conn.id,
        user_id=conn.principal.user_id,
        username=conn.principal.username,
        state=data.state,
        text=text,
        idle=data.idle,
    )
    return (await presence.current(ctx, conn.principal.user_id)).to_dict()


async def op_typing(ctx: Context, conn: Connection, data: TypingIn) -> None:
    await typing(ctx, conn.principal, data.to, data.active)


async def op_ping(ctx: Context, conn: Connection, data: PingIn) -> dict[str, Any]:
    return {"time": time.time()}


OPS: dict[str, tuple[type[BaseModel], Handler]] = {
    "hello": (HelloIn, op_hello),
    "presence.set": (PresenceSetIn, op_presence_set),
    "typing": (TypingIn, op_typing),
    "ping": (PingIn, op_ping),
    "dm.send": (DmSendIn, op_dm_send),
    "dm.delivered": (DmAckIn, op_dm_delivered),
    "dm.read": (DmAckIn, op_dm_read),
    "buzz": (BuzzIn, op_buzz),
    "room.send": (RoomSendIn, op_room_send),
    "room.typing": (RoomTypingIn, op_room_typing),
    "room.read": (RoomReadIn, op_room_read),
}


# --- the endpoint ---------------------------------------------------------------------------


async def _refuse(websocket: WebSocket, error: DomainError) -> None:
    log.warning("refused socket upgrade code=%s", error.code)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = JSON(error_body(error.code, error.message), status_code=error.status)
        await websocket.send_denial_response(body)
    else:
        await websocket.close(code=CLOSE_POLICY, reason=error.code)


async def _authenticate(websocket: WebSocket, ctx: Context) -> accounts.Principal:
    origin = websocket.headers.get("origin")
    bearer = bearer_token(websocket)
    if origin is not None and origin not in ctx.settings.origins:
        raise Forbidden(f"sockets from {origin} are not allowed", code="bad_origin")
    if bearer is None and origin is None:
        # Cookie credentials ride along on any page's request: only a browser page of ours,
        # which always sends its Origin, may use them (cross-site WebSocket hijacking).
        cookie = read_access_cookie(websocket, ctx.settings)
        if cookie:
            raise Forbidden("a cookie-authenticated socket must send Origin", code="bad_origin")
    token = bearer or read_access_cookie(websocket, ctx.settings)
    if not token:
        raise Unauthorized("sign in first", code="not_authenticated")
    return await accounts.authenticate(ctx, token)


def _too_large(text: str, limit: int) -> bool:
    """Whether ``text`` is over ``limit`` bytes of UTF-8 (encoding only when it could be)."""
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and len(text.encode()) > limit


def _initial_presence(websocket: WebSocket) -> tuple[State | None, str | None]:
    """``/ws?state=busy&status=...``: the presence this device starts with, so a client that
    reconnects (or a restarted server that forgot the user's choice) never flashes "online"
    to buddies before the client could say otherwise."""
    raw_state = websocket.query_params.get("state")
    raw_text = websocket.query_params.get("status")
    state = check_state(raw_state) if raw_state is not None else None
    text = check_status_text(raw_text) if raw_text is not None else None
    return state, text


def _reply(ref: str | None, data: dict[str, Any] | None) -> str:
    return orjson.dumps({"op": "ok", "ref": ref, "data": data or {}}).decode()


def _error(ref: str | None, code: str, message: str) -> str:
    return orjson.dumps(
        {"op": "err", "ref": ref, "error": {"code": code, "message": message}}
    ).decode()


async def websocket_endpoint(websocket: WebSocket) -> None:
    ctx: Context = websocket.app.state.ctx
    hub: Hub = websocket.app.state.hub
    try:
        principal = await _authenticate(websocket, ctx)
        initial_state, initial_text = _initial_presence(websocket)
    except DomainError as exc:
        await _refuse(websocket, exc)
        return
    try:
        # Before joining the hub, so that nothing live can come before it (docs/protocol.md,
        # "Resuming": hello, offline.summary, then live events).
        summary = notify.event_frame(await dm.offline_summary(ctx, principal)).decode()
    except DomainError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    settings = ctx.settings
    conn = Connection(
        id=hub.new_id(), principal=principal, websocket=websocket, limit=settings.ws_queue
    )
    conn.reader = asyncio.current_task()
    # hello and the summary are queued before the socket joins the hub, and written once it
    # has: joining awaits (the bus subscription, the user's rooms), a live event published
    # meanwhile must come after them, and hello must mean "live events flow now".
    conn.hold()
    conn.send(
        notify.event_frame(
            HelloEvent(
                data=HelloData(
                    session_id=principal.session_id,
                    username=principal.username,
                    server_time=time.time(),
                    heartbeat=settings.ws_heartbeat,
                )
            )
        ).decode()
    )
    conn.send(summary)
    try:
        await hub.add(conn)
    finally:
        conn.release()
    await presence.device_online(
        ctx,
        process_id=hub.process_id,
        conn_id=conn.id,
        user_id=principal.user_id,
        username=principal.username,
        state=initial_state,
        text=initial_text,
    )
    try:
        await _read_loop(ctx, conn, websocket)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not conn.dropped or task is None:
            raise
        task.uncancel()  # we cancelled ourselves to drop a slow client: carry on cleaning up
    finally:
        await hub.remove(conn)
        try:
            await presence.device_offline(
                ctx,
                process_id=hub.process_id,
                conn_id=conn.id,
                user_id=principal.user_id,
                username=principal.username,
            )
        except Exception:
            log.exception("could not record a disconnect; the presence sweep will")
    if conn.dropped:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code=CLOSE_SLOW), 1.0)


async def _read_loop(ctx: Context, conn: Connection, websocket: WebSocket) -> None:
    settings = ctx.settings
    bucket = TokenBucket(settings.ws_frames_per_second, settings.ws_burst)
    # Mistakes are forgiven slowly: a burst of MAX_STRIKES bad frames, then one per 5 s.
    patience = TokenBucket(0.2, MAX_STRIKES)
    # No timer per socket: the hub closes sockets silent for three heartbeats (Hub._sweep).
    while not conn.closing:
        # One frame per call, so that what it parsed is freed before the next wait instead of
        # living as long as the socket idles (docs/performance.md, "idle").
        if not await _next_frame(ctx, conn, websocket, bucket, patience):
            return


async def _next_frame(
    ctx: Context,
    conn: Connection,
    websocket: WebSocket,
    bucket: TokenBucket,
    patience: TokenBucket,
) -> bool:
    """Wait for one frame and answer it; False when the socket is done."""
    settings = ctx.settings
    message = await websocket.receive()
    conn.last_seen = time.monotonic()
    if message["type"] == "websocket.disconnect":
        return False
    text = message.get("text")
    ref: str | None = None
    try:
        if text is None:
            raise InvalidInput("send JSON text frames", code="bad_frame")
        if _too_large(text, settings.max_frame_bytes):
            raise InvalidInput(
                f"frame larger than {settings.max_frame_bytes} bytes", code="frame_too_large"
            )
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("frame is not valid JSON", code="bad_json") from exc
        if isinstance(raw, dict) and isinstance(raw.get("ref"), str):
            ref = raw["ref"][:64]
        if not bucket.take():  # after parsing, so the refusal carries the frame's ref
            raise RateLimited("slow down: too many frames", retry_after=1)
        frame = ClientFrame.model_validate(raw)
        entry = OPS.get(frame.op)
        if entry is None:
            raise InvalidInput(f"unknown op {frame.op!r}", code="unknown_op")
        schema, handler = entry
        data = schema.model_validate(frame.data)
        result = await handler(ctx, conn, data)
    except ValidationError as exc:
        abusive = not patience.take()
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
        conn.send(_error(ref, "invalid_input", f"{where}: {first.get('msg', 'invalid')}"))
    except DomainError as exc:
        abusive = exc.status in (400, 413, 422, 429) and not patience.take()
        conn.send(_error(ref, exc.code, exc.message))
    except WebSocketDisconnect:
        return False
    except BusUnavailable as exc:
        log.warning("op %s: %s", frame.op, exc)
        conn.send(_error(ref, "unavailable", BUS_DOWN))
        return True
    except Exception:
        log.exception("op failed user=%s", conn.principal.username)
        conn.send(_error(ref, "internal", "unexpected server error"))
        return True
    else:
        conn.send(_reply(ref, result))
        return True
    if abusive:
        log.warning("closing abusive socket user=%s", conn.principal.username)
        conn.send(_error(None, "too_many_errors", "too many bad or excess frames"))
        conn.close(CLOSE_POLICY)
        return False
    return True
