"""Room-message helpers for the suites that run a server in this process: rooms and
memberships written straight into the database (as rooms-core's services do) followed by
the membership hook they call (``services.roomcast.membership_changed``), and wrappers for
the room ops.

Writing the rows directly keeps these tests about room messages: the membership rules have
their own tests (rooms-core's), which go through the API.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from echochat.services import roomcast
from echochat.services.context import Context
from echochat.store.tables import room_members, room_messages, rooms, users
from tests.wsutil import Frame, Socket

_client_ids = itertools.count(1)


def cid(prefix: str = "r") -> str:
    return f"{prefix}-{next(_client_ids)}"


async def make_room(
    ctx: Context, *, kind: str = "public", encrypted: bool = False, name: str = "Test room"
) -> int:
    async with ctx.db.transaction() as conn:
        result = await conn.execute(
            insert(rooms).values(kind=kind, name=name, encrypted=encrypted).returning(rooms.c.id)
        )
        return int(result.scalar_one())


async def add_member(ctx: Context, room_id: int, user_id: int, role: str = "member") -> int:
    """Join ``user_id`` to the room (seeing messages from now on) and call the hook; the
    member's first_message_id."""
    async with ctx.db.transaction() as conn:
        newest = (
            await conn.execute(
                select(func.coalesce(func.max(room_messages.c.id), 0)).where(
                    room_messages.c.room_id == room_id
                )
            )
        ).scalar_one()
        await conn.execute(
            insert(room_members).values(
                room_id=room_id, user_id=user_id, role=role, first_message_id=int(newest)
            )
        )
    await roomcast.membership_changed(ctx, room_id, user_id, True)
    return int(newest)


async def remove_member(ctx: Context, room_id: int, user_id: int) -> None:
    """Leave, kick or ban: the row goes, then the hook."""
    async with ctx.db.transaction() as conn:
        await conn.execute(
            delete(room_members).where(
                room_members.c.room_id == room_id, room_members.c.user_id == user_id
            )
        )
    await roomcast.membership_changed(ctx, room_id, user_id, False)


async def mute_in_room(ctx: Context, room_id: int, user_id: int, minutes: int) -> datetime:
    until = ctx.clock() + timedelta(minutes=minutes)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            update(room_members)
            .where(room_members.c.room_id == room_id, room_members.c.user_id == user_id)
            .values(muted_until=until)
        )
    return until


async def mute_on_server(ctx: Context, user_id: int, minutes: int) -> datetime:
    until = ctx.clock() + timedelta(minutes=minutes)
    async with ctx.db.transaction() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(muted_until=until))
    return until


async def say(sock: Socket, room: int, text: str, client_id: str | None = None) -> Frame:
    """``room.send`` of ``text`` that must succeed: its reply data."""
    return await sock.call(
        "room.send", {"room": room, "client_id": client_id or cid(), "text": text}
    )


async def refused(sock: Socket, data: dict[str, Any]) -> Frame:
    """``room.send`` that must be refused: the error object."""
    return await sock.error("room.send", data)


async def room_event(sock: Socket, message_id: int | None = None) -> Frame:
    """The next ``room.message`` (with ``id`` if given): its data."""
    if message_id is None:
        frame = await sock.event("room.message")
    else:
        frame = await sock.event("room.message", id=message_id)
    data: Frame = frame["data"]
    return data


def no_room_messages(frame: Frame) -> bool:
    return frame.get("op") == "ev" and frame.get("type") == "room.message"
