"""Workload ``fanout``: one sender, a room of R members; the latency until the LAST member's
socket has each message, deliveries per second, and the server's CPU per delivery.

1. The server: ``--url`` (one running server, or several comma-separated processes of one
   cluster), or ``--spawn sqlite`` (``echochat serve`` on SQLite, the embedded default) or
   ``--spawn cluster --processes 2`` (PostgreSQL + Redis). A spawned server gets the limits
   of ``bench.common.BENCH_ENV`` lifted, and room messages per account too.
2. Accounts ``<prefix>NNNN``; all R join the first public room of ``GET /rooms`` (the
   default Lobby; its capacity, 1,000 by default, bounds R). Account 0 is the sender.
3. Every member opens one socket (the SDK's wire protocol, ``bench.common.Socket``); with
   several processes, member i connects to process i mod n.
4. ``--mode open``: ``--rate`` room messages per second for ``--duration`` seconds after a
   ``--warmup``; ``--mode closed``: the next message goes when the last member has the
   previous one (``--count`` messages). Plain-text messages of ``--text-bytes``, each
   ``room.send`` frame serialised ahead of time.
5. Latency = the time the last member socket read ``room.message`` minus the time just
   before the sender's frame left (the sender's own socket is a member too: it counts).
   Also: to the first and to the median member.
6. After the last send it waits up to ``--drain`` seconds, then reports lost (``ok`` but not
   at every member), duplicated and out-of-order deliveries (per member socket).

All sockets are in this one process (asyncio, uvloop), on the same machine as the server:
the latency includes this process's own queueing, and on a small machine its CPU competes
with the server's (the table gives both).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import math
import os
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import (
    API,
    BENCH_ENV,
    Account,
    Socket,
    Spawned,
    Users,
    add_pid_argument,
    add_server_arguments,
    bounded,
    cpu_rows,
    cpu_seconds,
    http_client,
    latency_ms,
    load_row,
    percentile,
    run_workload,
    say,
    server_pids,
    table,
    ws_url,
)

NAME = "fanout"
SPAWNS = True  # may start its own server (--spawn): --url is optional

# one sender posts far more than a person may (rate_limit_room_account); the shared
# BENCH_ENV of bench/common.py gets this one limit lifted too when this workload is loaded
BENCH_ENV.setdefault("ECHOCHAT_RATE_LIMIT_ROOM_ACCOUNT", "1000000/10seconds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("-r", "--members", type=int, default=500, help="room members (R)")
    parser.add_argument("--mode", choices=("open", "closed"), default="open")
    parser.add_argument("--rate", type=float, default=10.0, help="open loop: messages/s")
    parser.add_argument("--duration", type=float, default=20.0, help="open loop: seconds")
    parser.add_argument("--count", type=int, default=200, help="closed loop: messages")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent before measuring")
    parser.add_argument("--text-bytes", type=int, default=64, help="message size")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait at the end")
    parser.add_argument("--timeout", type=float, default=10.0, help="closed loop: per message")
    parser.add_argument("--concurrency", type=int, default=50, help="HTTP calls in flight")
    parser.add_argument(
        "--client",
        choices=("lean", "websockets"),
        default="lean",
        help="how the R-1 receiving members read: lean (a minimal frame reader on each "
        "socket once it said hello, so that 500 sockets in one process cost little) or "
        "websockets (the library, as bench.common.Socket and the SDK do)",
    )
    add_pid_argument(parser)


@dataclass
class Delivery:
    """One message: when it left, and when each member socket read it."""

    index: int
    client_id: str
    frame: str
    sent_at: float = 0.0
    ok_at: float = 0.0
    ok: bool = False
    error: str = ""
    arrivals: list[float] = field(default_factory=list)


@dataclass
class Member:
    account: Account
    last_index: int = -1
    duplicates: int = 0
    out_of_order: int = 0
    got: set[int] = field(default_factory=set)


def _auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.access_token}"}


async def join_room(http: httpx.AsyncClient, accounts: list[Account]) -> tuple[int, str]:
    listing = await http.get(API + "/rooms", headers=_auth(accounts[0]))
    if listing.status_code != 200 or not listing.json().get("rooms"):
        raise RuntimeError(
            f"no public room to use: HTTP {listing.status_code} {listing.text[:200]}"
        )
    room = listing.json()["rooms"][0]

    async def join(account: Account) -> None:
        response = await http.post(f"{API}/rooms/{room['id']}/join", headers=_auth(account))
        if response.status_code != 200 and "already" not in response.text:
            raise RuntimeError(f"{account.username} cannot join: {response.text[:200]}")

    await bounded(accounts, join, 20, "joins")
    return int(room["id"]), str(room.get("name", ""))


async def run(args: argparse.Namespace, users: Users | None) -> str:
    return await run_workload(args, "echochat-bench-fanout-", measure)


async def measure(
    args: argparse.Namespace, users: Users, urls: list[str], server: str, spawned: Spawned | None
) -> str:
    r = args.members
    names = [f"{args.prefix}{i:04d}" for i in range(r)]
    async with http_client(urls[0], args.concurrency) as http:
        accounts = await users.ensure(
            http, names, min(args.concurrency, args.http_concurrency), margin=900
        )
        room, room_name = await join_room(http, accounts)
    members = [Member(a) for a in accounts]

    count = (
        math.ceil(args.rate * (args.duration + args.warmup)) if args.mode == "open" else args.count
    )
    run_id = secrets.token_hex(3)
    filler = "x" * max(0, args.text_bytes - 12)
    deliveries = []
    for k in range(count):
        client_id = f"{run_id}-{k}"
        frame = {
            "op": "room.send",
            "ref": client_id,
            "data": {"room": room, "client_id": client_id, "text": f"{k:08d} {filler}"},
        }
        deliveries.append(Delivery(k, client_id, json.dumps(frame, separators=(",", ":"))))
    by_client_id = {d.client_id: d for d in deliveries}
    last_done = asyncio.Event()
    awaited: list[Delivery | None] = [None]

    def record(member: Member, client_id: str, arrived: float) -> None:
        delivery = by_client_id.get(client_id)
        if delivery is None:
            return
        if delivery.index in member.got:
            member.duplicates += 1
            return
        member.got.add(delivery.index)
        if delivery.index < member.last_index:
            member.out_of_order += 1
        member.last_index = max(member.last_index, delivery.index)
        delivery.arrivals.append(arrived)
        if len(delivery.arrivals) == r and awaited[0] is delivery:
            last_done.set()

    def on_member(member: Member) -> Any:
        def on_event(frame: dict[str, Any], arrived: float) -> None:
            data = frame.get("data") or {}
            if frame.get("type") == "room.message" and data.get("room") == room:
                record(member, str(data.get("client_id")), arrived)

        return on_event

    n = len(urls)
    sockets = [
        Socket(m.account, ws_url(urls[i % n]), compression=False, on_event=on_member(m))
        for i, m in enumerate(members)
    ]
    await bounded(sockets, lambda s: s.open(), 50, "sockets")
    sender = sockets[0]
    readers: list[LeanReader] = []
    if args.client == "lean":  # every member but the sender reads with the lean reader
        for sock, member in zip(sockets[1:], members[1:], strict=True):
            readers.append(await LeanReader.take_over(sock, lambda c, t, m=member: record(m, c, t)))
    pinger = asyncio.create_task(LeanReader.ping_all(readers, sender.heartbeat))

    # the bench's own garbage collector must not pause the measured phase: what exists now
    # (sockets, accounts, frames) is moved out of its sight
    gc.collect()
    gc.freeze()
    load_before = os.getloadavg()[0]
    cpu_before = {pid: cpu_seconds(pid) for pid in server_pids(args, spawned)}
    own_before = time.process_time()
    say(f"{args.mode} loop: room {room} ({room_name}) of {r} members, {count} messages")

    async def send(delivery: Delivery) -> None:
        reply = sender.expect(delivery.client_id)

        def done(future: asyncio.Future[dict[str, Any]]) -> None:
            if future.cancelled():
                return
            if future.exception() is not None:
                delivery.error = str(future.exception())
            else:
                delivery.ok = True
                delivery.ok_at = time.perf_counter()

        reply.add_done_callback(done)
        delivery.sent_at = time.perf_counter()
        await sender.send_text(delivery.frame)

    t_start = time.perf_counter()
    if args.mode == "closed":
        for delivery in deliveries:
            awaited[0] = delivery
            last_done.clear()
            await send(delivery)
            try:
                async with asyncio.timeout(args.timeout):
                    await last_done.wait()
            except TimeoutError:
                delivery.error = delivery.error or f"not at every member within {args.timeout:g} s"
    else:
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.2
        for delivery in deliveries:
            due = begin + delivery.index / args.rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await send(delivery)
    try:
        async with asyncio.timeout(args.drain):
            while any(d.ok and len(d.arrivals) < r for d in deliveries) or any(  # noqa: ASYNC110
                not d.ok and not d.error for d in deliveries
            ):
                await asyncio.sleep(0.05)
    except TimeoutError:
        say(f"  drain: still missing deliveries after {args.drain:g} s")
    t_end = time.perf_counter()
    cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
    own_cpu = time.process_time() - own_before
    pinger.cancel()
    closed_early = sum(1 for s in sockets if s.closed_with is not None)
    closed_early += sum(1 for reader in readers if reader.closed)
    why = collections.Counter(reader.why for reader in readers if reader.closed)
    for reader in readers:
        reader.transport.close()
    await bounded(sockets, lambda s: s.close(), 100, "closing")

    warm = t_start + (args.warmup if args.mode == "open" else 0.0)
    measured = [d for d in deliveries if d.sent_at >= warm]
    last_ms = [
        (max(d.arrivals) - d.sent_at) * 1000 if len(d.arrivals) == r else math.inf for d in measured
    ]
    first_ms = [(min(d.arrivals) - d.sent_at) * 1000 for d in measured if d.arrivals]
    median_ms = [(statistics.median(d.arrivals) - d.sent_at) * 1000 for d in measured if d.arrivals]
    ok_ms = [(d.ok_at - d.sent_at) * 1000 for d in measured if d.ok]
    total = sum(len(d.arrivals) for d in deliveries)
    arrivals = [t for d in deliveries for t in d.arrivals]
    span = (max(arrivals) - t_start) if arrivals else 0.0
    lost = sum(r - len(d.arrivals) for d in deliveries if d.ok)
    errors = [d.error for d in deliveries if d.error]
    rows = [
        ("server", server),
        load_row(load_before),
        ("mode", f"{args.mode} loop" + (f", {args.rate:g} msg/s" if args.mode == "open" else "")),
        ("room members (R), sockets", f"{r}, one each; receivers read with {args.client}"),
        (
            "messages sent / ok / errors",
            f"{len(deliveries)} / {sum(d.ok for d in deliveries)} / {len(errors)}",
        ),
        ("deliveries (message x member socket)", f"{total} of {len(deliveries) * r}"),
        (f"lost (ok, missing at a member after the {args.drain:g} s drain)", f"{lost}"),
        (
            "duplicated / out of order",
            f"{sum(m.duplicates for m in members)} / {sum(m.out_of_order for m in members)}",
        ),
        (
            "sockets closed early (receivers: how)",
            f"{closed_early}"
            + (f" ({', '.join(f'{n} {w}' for w, n in why.items())})" if why else ""),
        ),
        ("deliveries/s", f"{total / span:.0f}" if span > 0 else "n/a"),
        ("measured (after warm-up)", f"{len(measured)} messages"),
        ("to the LAST member p50 (ms)", latency_ms(last_ms, 50)),
        ("to the LAST member p95 (ms)", latency_ms(last_ms, 95)),
        ("to the LAST member p99 (ms)", latency_ms(last_ms, 99)),
        ("to the LAST member max (ms)", latency_ms(last_ms, None)),
        (
            "to the first / median member p50 (ms)",
            f"{percentile(first_ms, 50):.2f} / {percentile(median_ms, 50):.2f}",
        ),
        (
            "ok reply to the sender p50 / p99 (ms)",
            f"{percentile(ok_ms, 50):.2f} / {percentile(ok_ms, 99):.2f}",
        ),
        ("bench client CPU per delivery (ms)", f"{own_cpu * 1000 / total:.3f}" if total else "n/a"),
    ]
    rows += cpu_rows(
        cpu_before,
        cpu_after,
        total,
        t_end - t_start,
        label="CPU ms per delivery (all / event loop)",
        digits=4,
    )
    if errors:
        rows.append(("first error", errors[0][:120]))
    say(f"  measured window {t_end - t_start:.1f} s")
    return table(f"fanout: 1 sender, room of {r}, {args.mode} loop", rows)


_ROOM_MESSAGE = '"type":"room.message"'
_CLIENT_ID = '"client_id":"'


class LeanReader(asyncio.Protocol):
    """A receiving member's socket after its handshake and ``hello``: server frames are
    parsed straight from the transport (unmasked, unfragmented text frames, as the server
    sends them) and each ``room.message`` is recorded with its arrival time, with no task,
    no per-frame timeout and no JSON parse: on a small machine, 500 receivers in this one
    process would otherwise cost more CPU than the server's fan-out they measure."""

    def __init__(self, on_message: Any, transport: asyncio.Transport, library: Any) -> None:
        self.on_message = on_message
        self.transport = transport
        self.library = library  # the library's connection object, kept alive (not reading)
        self.buffer = bytearray()
        self.closed = False
        self.why = ""  # how it ended: "close <code>" or "lost"

    @classmethod
    async def take_over(cls, sock: Socket, on_message: Any) -> LeanReader:
        assert sock.ws is not None and sock.task is not None
        sock.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sock.task
        sock.task = None
        library = sock.ws
        transport = library.transport
        sock.ws = None  # closed by closing the transport (the library no longer reads it)
        reader = cls(on_message, transport, library)
        transport.set_protocol(reader)
        return reader

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter()
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == 1:
                text = payload.decode()
                if _ROOM_MESSAGE in text:
                    at = text.find(_CLIENT_ID) + len(_CLIENT_ID)
                    self.on_message(text[at : text.find('"', at)], arrived)
            elif opcode == 9:  # the server's keepalive ping: answer, or it closes (1011)
                self.send_frame(0x8A, payload)
            elif opcode == 8:
                self.closed = True
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.why = self.why or f"close {code}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.why = self.why or f"lost ({type(exc).__name__ if exc else 'EOF'})"

    def send_text(self, text: str) -> None:
        self.send_frame(0x81, text.encode())

    def send_frame(self, head: int, payload: bytes) -> None:
        """One masked client frame (payloads under 126 bytes: pings, pongs)."""
        mask = secrets.token_bytes(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes((head, 0x80 | len(payload))) + mask + masked)

    @staticmethod
    async def ping_all(readers: list[LeanReader], heartbeat: float) -> None:
        """The app-level heartbeat the server expects of every socket (the server closes
        sockets silent for three periods; opening 500 can take longer than that on a busy
        machine, so the first round goes at once)."""
        while True:
            for reader in readers:
                if not reader.closed:
                    reader.send_text('{"op":"ping"}')
            await asyncio.sleep(heartbeat / 2)
