"""Presence: every open socket is a device; the bus holds them, so every process agrees.

Policy (states, aggregation, what a viewer sees) is in :mod:`echochat.domain.presence`.
This module keeps the shared state and tells buddies when a user's presence changes.

Bus keys (all under the bus prefix):

- ``pres:dev:<conn>``: one device's presence (JSON: user id, username, state, text, idle,
  changed at);
- ``pres:user:<user id>``: set of that user's device ids;
- ``pres:last:<user id>``: the presence last announced to buddies (to announce changes only);
- ``pres:chosen:<user id>``: the state and status text the user chose last, which new
  devices start with;
- ``pres:procs``, ``pres:proc:<process>`` (heartbeat with a time to live) and
  ``pres:proc-conns:<process>``: which process holds which devices. A process that dies
  (SIGKILL, power loss) stops its heartbeat; any other process then sweeps its devices away
  and the users' buddies see them go offline: no ghosts.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import orjson

from echochat.domain.events import (
    PresenceData,
    PresenceEvent,
    PresenceSelfData,
    PresenceSelfEvent,
)
from echochat.domain.presence import (
    OFFLINE,
    DevicePresence,
    Presence,
    State,
    aggregate,
    seen_by,
)
from echochat.services import notify
from echochat.services.context import Context
from echochat.store import buddies as buddy_store

__all__ = [
    "announce",
    "current",
    "current_many",
    "device_offline",
    "device_online",
    "device_update",
    "online_snapshot",
    "process_gone",
    "process_heartbeat",
    "sweep_dead_processes",
]

log = logging.getLogger("echochat.presence")

PROCS = "pres:procs"
CHOSEN_TTL = 30 * 86400.0


def _dev(conn_id: str) -> str:
    return f"pres:dev:{conn_id}"


def _user(user_id: int) -> str:
    return f"pres:user:{user_id}"


def _last(user_id: int) -> str:
    return f"pres:last:{user_id}"


def _chosen(user_id: int) -> str:
    return f"pres:chosen:{user_id}"


def _proc(process_id: str) -> str:
    return f"pres:proc:{process_id}"


def _proc_conns(process_id: str) -> str:
    return f"pres:proc-conns:{process_id}"


def _decode(raw: bytes) -> tuple[int, str, DevicePresence]:
    data = orjson.loads(raw)
    return (
        int(data["u"]),
        str(data["n"]),
        DevicePresence(data["s"], data["t"], bool(data["i"]), float(data["c"])),
    )


def _encode(user_id: int, username: str, device: DevicePresence) -> bytes:
    return orjson.dumps(
        {
            "u": user_id,
            "n": username,
            "s": device.state,
            "t": device.text,
            "i": device.idle,
            "c": device.changed_at,
        }
    )


async def current(ctx: Context, user_id: int) -> Presence:
    """The user's presence over all their devices on all processes."""
    return (await current_many(ctx, [user_id]))[user_id]


async def current_many(ctx: Context, user_ids: list[int]) -> dict[int, Presence]:
    out: dict[int, Presence] = {}
    for user_id in user_ids:
        conns = sorted(await ctx.bus.set_members(_user(user_id)))
        raws = await ctx.bus.get_many([_dev(c) for c in conns]) if conns else []
        devices = [_decode(raw)[2] for raw in raws if raw is not None]
        out[user_id] = aggregate(devices)
    return out


async def online_snapshot(ctx: Context) -> dict[int, Presence]:
    """Every user with a device on any process, with their aggregated presence, in 2 + P
    bus round trips (P processes) whatever the number of users: for counts over many users
    (a room list's ``online_count``), where :func:`current_many` would cost 2 per user."""
    conns: list[str] = []
    for process_id in sorted(await ctx.bus.set_members(PROCS)):
        conns += [m.partition("|")[2] for m in await ctx.bus.set_members(_proc_conns(process_id))]
    devices: dict[int, list[DevicePresence]] = {}
    for raw in await ctx.bus.get_many([_dev(c) for c in conns]) if conns else []:
        if raw is not None:
            user_id, _, device = _decode(raw)
            devices.setdefault(user_id, []).append(device)
    return {user_id: aggregate(found) for user_id, found in devices.items()}


async def device_online(
    ctx: Context,
    *,
    process_id: str,
    conn_id: str,
    user_id: int,
    username: str,
    state: State | None = None,
    text: str | None = None,
) -> None:
    """A new device starts with the state and text the user chose last (so a user who went
    invisible does not flash online when opening another tab)."""
    chosen = await ctx.bus.get(_chosen(user_id))
    last = orjson.loads(chosen) if chosen is not None else {"s": "online", "t": ""}
    initial: State = state if state is not None else cast(State, last["s"])
    device = DevicePresence(
        initial, text if text is not None else str(last["t"]), False, time.time()
    )
    await ctx.bus.put(_dev(conn_id), _encode(user_id, username, device))
    await ctx.bus.capped_add(_user(user_id), conn_id, 0)
    await ctx.bus.capped_add(_proc_conns(process_id), f"{user_id}|{conn_id}", 0)
    await announce(ctx, user_id, username)


async def device_update(
    ctx: Context,
    *,
    conn_id: str,
    user_id: int,
    username: str,
    state: State | None = None,
    text: str | None = None,
    idle: bool | None = None,
) -> None:
    raw = await ctx.bus.get(_dev(conn_id))
    if raw is None:
        return
    _, _, old = _decode(raw)
    device = DevicePresence(
        state if state is not None else old.state,
        text if text is not None else old.text,
        idle if idle is not None else old.idle,
        time.time(),
    )
    await ctx.bus.put(_dev(conn_id), _encode(user_id, username, device))
    if state is not None or text is not None:
        choice = {"s": device.state, "t": device.text}
        await ctx.bus.put(_chosen(user_id), orjson.dumps(choice), ttl=CHOSEN_TTL)
        # The user's other tabs and devices show the same choice in their status selector.
        mine = PresenceSelfData(state=device.state, status=device.text)
        await notify.to_user(ctx, user_id, PresenceSelfEvent(data=mine))
    await announce(ctx, user_id, username)


async def device_offline(
    ctx: Context, *, process_id: str, conn_id: str, user_id: int, username: str
) -> None:
    await ctx.bus.delete(_dev(conn_id))
    await ctx.bus.set_remove(_user(user_id), conn_id)
    await ctx.bus.set_remove(_proc_conns(process_id), f"{user_id}|{conn_id}")
    await announce(ctx, user_id, username)


async def announce(ctx: Context, user_id: int, username: str) -> None:
    """Tell each buddy about the user's presence if what *that buddy* sees changed.

    Comparing per viewer matters: an invisible user changing their status text must not
    send anything, or the stream of "offline" events would betray them."""
    new = await current(ctx, user_id)
    raw_old = await ctx.bus.get(_last(user_id))
    # Nothing announced yet: buddies saw (and a fresh list fetch shows) "offline".
    old = _presence_from(raw_old) if raw_old is not None else OFFLINE
    if old == new:
        return
    await ctx.bus.put(_last(user_id), orjson.dumps(new.to_dict()))
    async with ctx.db.read() as conn:
        watchers = await buddy_store.watchers(conn, user_id)
    for buddy_id, stealth in watchers:
        view = seen_by(new, stealth=stealth)
        if seen_by(old, stealth=stealth) == view:
            continue
        await notify.to_user(ctx, buddy_id, presence_event(username, view))


def _presence_from(raw: bytes) -> Presence:
    data = orjson.loads(raw)
    return Presence(data["state"], data["status"])


def presence_event(username: str, view: Presence) -> PresenceEvent:
    return PresenceEvent(data=PresenceData(username=username, state=view.state, status=view.text))


# process liveness ------------------------------------------------------------------------


async def process_heartbeat(ctx: Context, process_id: str, ttl: float) -> None:
    await ctx.bus.put(_proc(process_id), b"1", ttl=ttl)
    await ctx.bus.capped_add(PROCS, process_id, 0)


async def sweep_dead_processes(ctx: Context) -> int:
    """Remove the devices of processes whose heartbeat expired; the number of processes
    swept. Safe to run on every process at once: removing a process from the set of
    processes is the claim, so each dead process is swept once."""
    processes = sorted(await ctx.bus.set_members(PROCS))
    if not processes:
        return 0
    alive = await ctx.bus.get_many([_proc(p) for p in processes])
    swept = 0
    for process_id, beat in zip(processes, alive, strict=True):
        if beat is None and await ctx.bus.set_remove(PROCS, process_id):
            await process_gone(ctx, process_id)
            swept += 1
    return swept


async def process_gone(ctx: Context, process_id: str) -> None:
    """Forget every device of ``process_id`` and tell buddies who went offline."""
    members = await ctx.bus.set_members(_proc_conns(process_id))
    users: dict[int, str] = {}
    for member in members:
        user_part, _, conn_id = member.partition("|")
        raw = await ctx.bus.get(_dev(conn_id))
        if raw is not None:
            user_id, username, _ = _decode(raw)
            users[user_id] = username
        await ctx.bus.delete(_dev(conn_id))
        await ctx.bus.set_remove(_user(int(user_part)), conn_id)
        await ctx.bus.set_remove(_proc_conns(process_id), member)
    await ctx.bus.delete(_proc(process_id))
    for user_id, username in users.items():
        await announce(ctx, user_id, username)
    if members:
        log.info("swept %d device(s) of stopped process %s", len(members), process_id)
