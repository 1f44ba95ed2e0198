"""Wake the right sockets on every process: events and kicks go through the bus.

Each user has one channel, ``user:<id>``. A payload is either ``E`` + a ready-to-send event
frame (serialised once, forwarded to each socket as is) or ``K`` + a JSON kick order. The
bus is at-most-once: durable state is in the database, and clients resynchronise from it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from echochat.domain.events import KickedData, KickedEvent, KickReason
from echochat.services.context import Context

__all__ = [
    "event_frame",
    "kick",
    "kicked_event",
    "to_user",
    "to_users",
    "to_users_in_order",
    "user_channel",
]


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def event_frame(event: BaseModel) -> bytes:
    """The ``{"op": "ev", "type", "data"}`` frame of a typed event."""
    body: dict[str, Any] = event.model_dump(mode="json")
    return orjson.dumps({"op": "ev", "type": body["type"], "data": body["data"]})


async def to_user(ctx: Context, user_id: int, event: BaseModel) -> None:
    await ctx.bus.publish(user_channel(user_id), b"E" + event_frame(event))


async def to_users(ctx: Context, user_ids: list[int], event: BaseModel) -> None:
    frame = b"E" + event_frame(event)
    for user_id in user_ids:
        await ctx.bus.publish(user_channel(user_id), frame)


async def to_users_in_order(
    ctx: Context, events: list[tuple[list[int], BaseModel | bytes]]
) -> None:
    """Several events, each to its users (serialised once each; ``bytes`` is a frame
    already made, as :func:`event_frame` makes them), with one :meth:`Bus.publish_many`:
    every user's channel gets its events in the given order, and on Redis the whole lot is
    one round trip (a pipeline) instead of one per (event, user)."""
    messages: list[tuple[str, bytes]] = []
    for user_ids, event in events:
        frame = b"E" + (event if isinstance(event, bytes) else event_frame(event))
        messages += [(user_channel(user_id), frame) for user_id in user_ids]
    await ctx.bus.publish_many(messages)


async def kick(
    ctx: Context,
    user_id: int,
    *,
    session_ids: list[str] | None,
    reason: KickReason,
    message: str,
) -> None:
    """Close the user's sockets (those of ``session_ids``, or all) after a ``kicked`` event."""
    frame = event_frame(kicked_event(reason, message))
    order = {"sessions": session_ids, "frame": frame.decode()}
    await ctx.bus.publish(user_channel(user_id), b"K" + orjson.dumps(order))


def kicked_event(reason: KickReason, message: str) -> KickedEvent:
    return KickedEvent(data=KickedData(reason=reason, message=message))
