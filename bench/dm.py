"""Workload ``dm``: P pairs exchange end-to-end encrypted direct messages; the latency from
the send to the recipient's socket, throughput, and lost / duplicated / out-of-order counts.

1. The server: ``--url`` (one running server, or several comma-separated processes of one
   cluster), or ``--spawn sqlite`` (starts ``echochat serve`` on SQLite, the embedded
   default) or ``--spawn cluster --processes 2`` (PostgreSQL + Redis, a fresh database and
   key prefix). A spawned server gets the limits of ``bench.common.BENCH_ENV`` lifted
   (registrations per IP, DMs per account, frames per socket): the bench sends more than a
   person, from one IP.
2. Accounts ``<prefix>NNNNs`` (sender) and ``<prefix>NNNNr`` (recipient) per pair; each
   gets an identity and a device key (suite v1, ``echochat.client.e2ee``), published with
   ``PUT /keys/devices/{id}``.
3. Envelopes are sealed **before** the measured phase (sealing is client CPU, not server
   work): real v1 envelopes for the recipient's device and the sender's own, each with its
   own ``client_id``, and each ``dm.send`` frame serialised ahead of time.
4. Every account opens one socket. With several processes, pair i's sender connects to
   process i mod n and its recipient to the next one, so every message crosses processes.
5. ``--mode closed``: each sender sends its next message when the previous one reached the
   recipient's socket. ``--mode open``: a fixed total ``--rate`` (messages per second)
   spread evenly over the pairs, whatever the answers.
6. Latency = the time the recipient's socket read ``dm.message`` minus the time just before
   the sender's frame left. Recipients acknowledge each message (``dm.delivered``, like an
   SDK client) unless ``--ack none``.
7. After the last send it waits up to ``--drain`` seconds for stragglers, then reports:
   lost = acknowledged by ``ok`` but never delivered; duplicated = delivered twice to the
   recipient's socket; out of order = arrived after a later message of the same pair.

All sockets are in this one process (asyncio, uvloop), on the same machine as the server:
the latency includes this process's own queueing.
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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    API,
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
from echochat.client.e2ee import DeviceKeys, Keyring, dm_conversation, encode_payload, seal

NAME = "dm"
SPAWNS = True  # may start its own server (--spawn): --url is optional


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("-p", "--pairs", type=int, default=100, help="sender/recipient pairs (P)")
    parser.add_argument("--mode", choices=("open", "closed"), default="open")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: messages/s, total")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: seconds")
    parser.add_argument("--count", type=int, default=100, help="closed loop: messages per pair")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent before measuring")
    parser.add_argument("--ack", choices=("each", "none"), default="each")
    parser.add_argument("--text-bytes", type=int, default=64, help="plaintext size")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait at the end")
    parser.add_argument("--timeout", type=float, default=10.0, help="closed loop: per message")
    parser.add_argument("--concurrency", type=int, default=50, help="HTTP calls in flight")
    add_pid_argument(parser)
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record the server processes with py-spy during the measured phase into this "
        "folder (collapsed stacks; needs py-spy installed)",
    )


@dataclass
class Pair:
    index: int
    sender: Account
    recipient: Account
    frames: list[tuple[str, str]] = field(default_factory=list)  # (client_id, frame text)
    sent_at: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    out_of_order: int = 0
    last_index: int = -1
    errors: list[str] = field(default_factory=list)
    oks: int = 0
    ok_ids: set[str] = field(default_factory=set)
    ok_latency: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    waiter: asyncio.Event = field(default_factory=asyncio.Event)
    awaited: str = ""


def _auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.access_token}"}


async def publish(http: httpx.AsyncClient, account: Account) -> tuple[Keyring, DeviceKeys]:
    keyring = Keyring.generate()
    device = keyring.add_device()
    body: dict[str, Any] = dict(keyring.published_device(account.username, device.device_id))
    body |= {"label": "bench", "reset_identity": True}  # a rerun's accounts start fresh
    response = await http.put(
        API + f"/keys/devices/{device.device_id}", json=body, headers=_auth(account)
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"publishing {account.username}'s device: {response.text[:300]}")
    return keyring, device


def seal_frames(
    pair: Pair, keys: dict[str, tuple[Keyring, DeviceKeys]], count: int, size: int, run: str
) -> None:
    s, r = pair.sender.username, pair.recipient.username
    s_dev = keys[s][1]
    r_dev = keys[r][1]
    recipients = [
        (s, s_dev.device_id, s_dev.x25519_public),
        (r, r_dev.device_id, r_dev.x25519_public),
    ]
    conv = dm_conversation(s, r)
    filler = "x" * max(0, size - 16)
    for k in range(count):
        client_id = f"{run}-{pair.index}-{k}"
        envelope = seal(
            encode_payload({"type": "text", "text": f"{k:08d} {filler}"}),
            conv=conv,
            sender=s,
            sender_device_keys=s_dev,
            client_id=client_id,
            recipients=recipients,
        )
        frame = {"op": "dm.send", "ref": client_id, "data": {"to": r, "envelope": envelope}}
        pair.frames.append((client_id, json.dumps(frame, separators=(",", ":"))))


async def quietly(send: Any) -> None:
    """An acknowledgement in its own task: a socket closed meanwhile is not an error."""
    with contextlib.suppress(Exception):
        await send


async def send(pair: Pair, sock: Socket, client_id: str, text: str) -> None:
    reply = sock.expect(client_id)

    def done(future: asyncio.Future[dict[str, Any]]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            pair.errors.append(str(future.exception()))
        else:
            pair.oks += 1
            pair.ok_ids.add(client_id)
            pair.ok_latency.append(time.perf_counter() - pair.sent_at[client_id])

    reply.add_done_callback(done)
    pair.sent_at[client_id] = time.perf_counter()
    await sock.send_text(text)


async def run(args: argparse.Namespace, users: Users | None) -> str:
    return await run_workload(args, "echochat-bench-dm-", measure)


async def measure(
    args: argparse.Namespace, users: Users, urls: list[str], server: str, spawned: Spawned | None
) -> str:
    p = args.pairs
    run_id = secrets.token_hex(3)
    names = []
    for i in range(p):
        names += [f"{args.prefix}{i:04d}s", f"{args.prefix}{i:04d}r"]
    async with http_client(urls[0], args.concurrency) as http:
        accounts = await users.ensure(
            http, names, min(args.concurrency, args.http_concurrency), margin=900
        )
        by_name = {a.username: a for a in accounts}
        published = await bounded(accounts, lambda a: publish(http, a), 20, "devices")
    keys = {a.username: k for a, k in zip(accounts, published, strict=True)}
    pairs = [Pair(i, by_name[names[2 * i]], by_name[names[2 * i + 1]]) for i in range(p)]

    if args.mode == "open":
        per_pair = math.ceil(args.rate * (args.duration + args.warmup) / p)
    else:
        per_pair = args.count
    say(f"sealing {per_pair * p} envelopes ({per_pair} per pair)")
    started = time.perf_counter()
    for pair in pairs:
        seal_frames(pair, keys, per_pair, args.text_bytes, run_id)
    say(f"  sealed in {time.perf_counter() - started:.1f} s")

    n = len(urls)
    sockets: dict[str, Socket] = {}

    def on_recipient(pair: Pair) -> Any:
        def on_event(frame: dict[str, Any], arrived: float) -> None:
            if frame.get("type") != "dm.message":
                return
            data = frame.get("data") or {}
            if data.get("sender") != pair.sender.username:
                return
            client_id = str(data.get("client_id"))
            if client_id in pair.arrived:
                pair.duplicates += 1
                return
            pair.arrived[client_id] = arrived
            index = int(client_id.rsplit("-", 1)[1])
            if index < pair.last_index:
                pair.out_of_order += 1
            pair.last_index = max(pair.last_index, index)
            if client_id == pair.awaited:
                pair.waiter.set()
            if args.ack == "each":
                sock = sockets[pair.recipient.username]
                ack = {"op": "dm.delivered", "ref": f"a{data['id']}"}
                ack["data"] = {"peer": pair.sender.username, "upto": data["id"]}  # type: ignore[assignment]
                asyncio.get_running_loop().create_task(quietly(sock.send_text(json.dumps(ack))))

        return on_event

    for pair in pairs:
        s_url, r_url = urls[pair.index % n], urls[(pair.index + 1) % n]
        sockets[pair.sender.username] = Socket(pair.sender, ws_url(s_url), compression=False)
        sockets[pair.recipient.username] = Socket(
            pair.recipient, ws_url(r_url), compression=False, on_event=on_recipient(pair)
        )
    await bounded(list(sockets.values()), lambda s: s.open(), 50, "sockets")

    # This process's own start-up heap and the sealed frames (a few hundred thousand
    # objects) out of the garbage collector's full collections: one took 25-50 ms here,
    # a pause that would be counted as the server's latency (the server does the same).
    gc.collect()
    gc.freeze()
    load_before = os.getloadavg()[0]
    cpu_before = {pid: cpu_seconds(pid) for pid in server_pids(args, spawned)}
    profilers = await start_py_spy(args, spawned)
    say(f"{args.mode} loop: {p} pairs" + (f", {args.rate:g} msg/s" if args.mode == "open" else ""))
    t_start = time.perf_counter()
    if args.mode == "closed":
        await closed_loop(pairs, sockets, args.timeout)
    else:
        await open_loop(pairs, sockets, args.rate, p)
    t_sent = time.perf_counter()
    try:
        async with asyncio.timeout(args.drain):
            while not finished(pairs):  # noqa: ASYNC110 - a bounded poll of counters
                await asyncio.sleep(0.05)
    except TimeoutError:
        say(f"  drain: still missing messages after {args.drain:g} s")
    t_end = time.perf_counter()
    cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
    for proc in profilers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 60)
    closed_early = collections.Counter(
        ("sender" if name.endswith("s") else "recipient", sock.closed_with)
        for name, sock in sockets.items()
        if sock.closed_with is not None
    )
    await bounded(list(sockets.values()), lambda s: s.close(), 100, "closing")

    # Measured: messages sent after the warm-up (open loop) or all (closed loop).
    warm = t_start + (args.warmup if args.mode == "open" else 0.0)
    latencies: list[float] = []
    measured = delivered = 0
    ok_ms: list[float] = []
    for pair in pairs:
        for cid, t0 in pair.sent_at.items():
            if t0 < warm:
                continue
            measured += 1
            arrived = pair.arrived.get(cid)
            if arrived is None:  # counts as slower than anything delivered
                latencies.append(math.inf)
                continue
            delivered += 1
            latencies.append((arrived - t0) * 1000)
        ok_ms += [x * 1000 for x in pair.ok_latency]
    total_sent = sum(len(pr.sent_at) for pr in pairs)
    total_ok = sum(pr.oks for pr in pairs)
    total_arrived = sum(len(pr.arrived) for pr in pairs)
    errors = [e for pr in pairs for e in pr.errors]
    lost = sum(1 for pr in pairs for cid in pr.ok_ids if cid not in pr.arrived)
    lags = [x * 1000 for pr in pairs for x in pr.lag]
    span = max((max(pr.arrived.values()) for pr in pairs if pr.arrived), default=t_sent) - t_start
    rows = [
        ("server", server),
        load_row(load_before),
        (
            "mode",
            f"{args.mode} loop" + (f", target {args.rate:g} msg/s" if args.mode == "open" else ""),
        ),
        ("pairs (P)", f"{p}"),
        ("acks", "dm.delivered per message" if args.ack == "each" else "none"),
        ("sent / ok / errors", f"{total_sent} / {total_ok} / {len(errors)}"),
        ("delivered to recipients", f"{total_arrived}"),
        (f"lost (ok, not delivered within the {args.drain:g} s drain)", f"{lost}"),
        ("duplicated", f"{sum(pr.duplicates for pr in pairs)}"),
        ("out of order", f"{sum(pr.out_of_order for pr in pairs)}"),
        (
            "sockets closed early (role, close code)",
            ", ".join(f"{n} {role} {code}" for (role, code), n in closed_early.items()) or "0",
        ),
        ("sending took (s)", f"{t_sent - t_start:.1f}"),
        ("delivered/s (all)", f"{total_arrived / span:.0f}" if span > 0 else "n/a"),
        ("measured (after warm-up)", f"{measured} sent, {delivered} delivered"),
        ("latency: from the send to the recipient's socket", "undelivered = infinite"),
        ("latency p50 (ms)", latency_ms(latencies, 50)),
        ("latency p95 (ms)", latency_ms(latencies, 95)),
        ("latency p99 (ms)", latency_ms(latencies, 99)),
        ("latency max (ms)", latency_ms(latencies, None)),
        ("ok reply p50 / p99 (ms)", f"{percentile(ok_ms, 50):.2f} / {percentile(ok_ms, 99):.2f}"),
    ]
    # the servers' CPU over the sending and drain: per DM delivered (its dm.delivered ack
    # included when acks are on), and as a share of one CPU, per process
    rows += cpu_rows(
        cpu_before,
        cpu_after,
        total_arrived,
        t_end - t_start,
        label="CPU ms per DM delivered (all / event loop thread)",
        digits=3,
        undelivered="n/a / n/a",
        total_label="servers' CPU ms per DM delivered, all processes",
    )
    if args.mode == "open":
        rows.append(("send lag behind schedule p99 (ms)", f"{percentile(lags, 99):.2f}"))
    if errors:
        rows.append(("first error", errors[0][:120]))
    if profilers:
        rows.append(("py-spy output", str(args.py_spy)))
    say(f"  measured window {t_end - t_start:.1f} s")
    return table(f"dm: {p} pairs, {args.mode} loop", rows)


def finished(pairs: list[Pair]) -> bool:
    """Every send answered, and every acknowledged message delivered."""
    return not any(
        pr.ok_ids - pr.arrived.keys() or len(pr.sent_at) > pr.oks + len(pr.errors) for pr in pairs
    )


async def closed_loop(pairs: list[Pair], sockets: dict[str, Socket], timeout: float) -> None:
    async def one(pair: Pair) -> None:
        sock = sockets[pair.sender.username]
        for client_id, text in pair.frames:
            pair.awaited = client_id
            pair.waiter.clear()
            try:
                await send(pair, sock, client_id, text)
            except Exception as exc:  # the socket is gone (counted under "closed early")
                pair.errors.append(f"{client_id}: {exc!r}")
                return
            try:
                async with asyncio.timeout(timeout):
                    await pair.waiter.wait()
            except TimeoutError:
                pair.errors.append(f"{client_id} not delivered within {timeout:g} s")

    await asyncio.gather(*(one(pair) for pair in pairs))


async def open_loop(pairs: list[Pair], sockets: dict[str, Socket], rate: float, p: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    interval = p / rate  # between two messages of one pair

    async def one(pair: Pair) -> None:
        sock = sockets[pair.sender.username]
        offset = pair.index / rate  # pairs interleave evenly
        for k, (client_id, text) in enumerate(pair.frames):
            due = start + offset + k * interval
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            pair.lag.append(max(0.0, loop.time() - due))
            try:
                await send(pair, sock, client_id, text)
            except Exception as exc:  # the socket is gone (counted under "closed early")
                pair.errors.append(f"{client_id}: {exc!r}")
                return

    await asyncio.gather(*(one(pair) for pair in pairs))


async def start_py_spy(
    args: argparse.Namespace, spawned: Spawned | None
) -> list[asyncio.subprocess.Process]:
    if args.py_spy is None:
        return []
    if spawned is None:
        raise SystemExit("--py-spy needs --spawn (it records the servers this bench starts)")
    args.py_spy.mkdir(parents=True, exist_ok=True)
    seconds = args.duration + args.warmup if args.mode == "open" else max(10.0, args.count * 0.05)
    procs = []
    for pid in spawned.pids:
        out = args.py_spy / f"server-{pid}.txt"
        procs.append(
            await asyncio.create_subprocess_exec(
                os.path.join(os.path.dirname(sys.executable), "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(math.ceil(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    return procs
