"""Room fan-out: one bus publish per room event on the room's channel, and the membership
hook that keeps every process's index of "which local sockets are in which room" right.

Channels and payloads (the hub, :mod:`echochat.realtime.hub`, applies them):

- ``room:<id>``: ``E`` + a ready-to-send event frame, for every local socket of a member
  (serialised once, the same ``str`` to every socket); ``T<user id>:`` + a frame, the
  same but not to that user's sockets (typing); ``D``: the room is gone, forget it.
- ``user:<id>``: ``R`` + JSON ``{"room", "joined"}``: the user joined or left a room; each
  process that holds sockets of that user adds or removes them from the room's index;
  ``Q``: such an order was lost (its publish failed), read the user's rooms again.

Why the membership goes on the *user's* channel: only processes with a socket of that
user care, and they already listen there. Ordering: a kicked member must get no later
message on any process. :func:`membership_changed` is called after the membership's
commit and returns after its publish; every later message is published after that, and
each process reads the bus on one connection (Redis delivers in publish order to it), so
the removal is applied before any later message is routed.

Who calls what: ``services/rooms.py`` (rooms-core) calls :func:`membership_changed` after
every join, accepted invite, leave, kick and ban, and :func:`room_deleted` when a room is
deleted; ``services/room_writer.py`` publishes messages with :func:`publish`.
"""

from __future__ import annotations

import logging

import orjson
from pydantic import BaseModel

from echochat.bus import BusUnavailable
from echochat.services import notify
from echochat.services.context import Context
from echochat.store import messages as runner
from echochat.store import room_messages as store

log = logging.getLogger("echochat.rooms")

__all__ = [
    "membership_changed",
    "publish",
    "publish_frame",
    "room_channel",
    "room_deleted",
    "rooms_of",
    "rooms_of_users",
]


def room_channel(room_id: int) -> str:
    return f"room:{room_id}"


async def publish_frame(ctx: Context, room_id: int, frame: bytes, *, skip: int = 0) -> None:
    """A ready event frame to every local socket of every member of the room, on every
    process (except the sockets of user ``skip``, when given)."""
    head = b"E" if not skip else b"T%d:" % skip
    await ctx.bus.publish(room_channel(room_id), head + frame)


async def publish(ctx: Context, room_id: int, event: BaseModel, *, skip: int = 0) -> None:
    await publish_frame(ctx, room_id, notify.event_frame(event), skip=skip)


async def membership_changed(ctx: Context, room_id: int, user_id: int, joined: bool) -> None:
    """THE membership hook: call it after the commit of every join (or accepted invite),
    leave, kick and ban of ``user_id`` in ``room_id``. Every process that holds sockets
    of that user starts (``joined``) or stops routing the room's events to them; a member
    who left gets no message published after this returns (if the bus takes the order: a
    failed publish does not undo the commit, and the order's retry re-reads the rooms)."""
    order = orjson.dumps({"room": room_id, "joined": joined})
    channel = notify.user_channel(user_id)
    try:
        await ctx.bus.publish(channel, b"R" + order)
    except BusUnavailable as exc:
        # Committed all the same: every process re-reads the user's rooms once the bus
        # takes a "Q" order (services/resync.py retries it); until then (and the hub's 30 s
        # re-check) a process may still route the room to a member who left.
        log.warning("membership order for user %s not published (%s); retried", user_id, exc)
        ctx.lost.note(ctx.bus, channel, reread_rooms=True)


async def room_deleted(ctx: Context, room_id: int) -> None:
    """Call after a room's deletion is committed: every process forgets the room."""
    await ctx.bus.publish(room_channel(room_id), b"D")


async def rooms_of(ctx: Context, user_id: int) -> set[int]:
    """The rooms ``user_id`` is a member of now (the hub loads them at connect)."""
    found = await runner.run_read(ctx.db, lambda conn: store.rooms_of(conn, user_id))
    return set(found)


async def rooms_of_users(ctx: Context, user_ids: list[int]) -> dict[int, set[int]]:
    """The rooms of each of these users (the hub's periodic re-check)."""
    return await runner.run_read(ctx.db, lambda conn: store.rooms_of_many(conn, user_ids))
