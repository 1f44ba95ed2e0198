"""Workload ``idle``: N authenticated sockets that do nothing but keep their heartbeat.

1. Make sure N accounts exist with a fresh access token each (``--users-file`` caches them;
   ``--accounts-only`` stops here, to create them ahead of the measured runs).
2. Read the server's RSS (``--pid``): the baseline, taken after the HTTP work, so that what
   the server allocated to answer it is not counted against the sockets.
3. Open N sockets (``--concurrency`` upgrades in flight), each reading the ``hello`` event
   and sending the ``hello`` op as the SDK does; wait until all have their reply.
4. Let the server settle (``--settle`` seconds), read its RSS again; hold the sockets for
   ``--hold`` seconds (they ping every heartbeat, the server pings them too) and read again.
5. Report RSS growth per socket, then close everything.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time

from bench.common import (
    Socket,
    Users,
    bounded,
    http_client,
    own_rss_kib,
    rss_kib,
    say,
    table,
    ws_url,
)

NAME = "idle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--sockets", type=int, default=1000, help="sockets to open")
    parser.add_argument("--pid", type=int, help="server process id (for its RSS)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds to keep the sockets open afterwards"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, help="upgrades (and HTTP calls) in flight"
    )
    parser.add_argument(
        "--accounts-only",
        action="store_true",
        help="only create (or refresh) the N accounts into --users-file, then stop",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="do not offer permessage-deflate (browsers always offer it)",
    )
    parser.add_argument(
        "--browser-headers",
        action="store_true",
        help="upgrade as a browser page does (access cookie, Origin, user agent and the usual "
        "headers) instead of a bearer token",
    )
    parser.add_argument(
        "--dump-signal",
        type=int,
        help="diagnostics: send this signal to --pid right after the baseline and the open "
        "RSS readings (for a server instrumented to dump its heap on it), then wait --dump-wait",
    )
    parser.add_argument(
        "--dump-wait", type=float, default=20.0, help="seconds the server gets for a dump"
    )


async def poke(args: argparse.Namespace) -> None:
    """Ask an instrumented server to dump its heap (``--dump-signal``), after a reading."""
    if args.dump_signal and args.pid:
        os.kill(args.pid, args.dump_signal)
        await asyncio.sleep(args.dump_wait)


async def run(args: argparse.Namespace, users: Users) -> str:
    n = args.sockets
    names = [f"{args.prefix}{i:05d}" for i in range(n)]
    async with http_client(args.url, args.concurrency) as http:
        t0 = time.monotonic()
        accounts = await users.ensure(
            http,
            names,
            min(args.concurrency, args.http_concurrency),
            margin=float("inf") if args.refresh_all else 300,
        )
        accounts_s = time.monotonic() - t0
    if args.accounts_only:
        rate = len(accounts) / max(accounts_s, 1e-9)
        return table(
            f"idle: {len(accounts)} accounts ready",
            [
                ("accounts ready (s)", f"{accounts_s:.1f} ({rate:.1f}/s)"),
                ("signed up or in / refreshed", f"{users.registered} / {users.refreshed}"),
            ],
        )
    gc.collect()
    server_before = rss_kib(args.pid) if args.pid else None
    client_before = own_rss_kib()
    await poke(args)
    url = ws_url(args.url)

    sockets = [
        Socket(a, url, compression=not args.no_compression, browser=args.browser_headers)
        for a in accounts
    ]
    failures: list[str] = []

    async def open_one(sock: Socket) -> None:
        try:
            await sock.open()
        except Exception as exc:
            failures.append(f"{sock.account.username}: {type(exc).__name__}: {exc}")

    t1 = time.monotonic()
    await bounded(sockets, open_one, args.concurrency, "sockets")
    open_s = time.monotonic() - t1
    if failures:
        say(f"{len(failures)} socket(s) failed, e.g. {failures[:3]}")
    opened = [s for s in sockets if s.task is not None]
    say(f"{len(opened)} sockets open in {open_s:.1f} s; settling {args.settle:g} s")
    await asyncio.sleep(args.settle)
    server_open = rss_kib(args.pid) if args.pid else None
    client_open = own_rss_kib()
    await poke(args)
    if args.hold > 0:
        say(f"holding the sockets for {args.hold:g} s (heartbeats keep them alive)")
        await asyncio.sleep(args.hold)
    server_held = rss_kib(args.pid) if args.pid else None
    alive = sum(1 for s in opened if s.closed_with is None)
    heartbeat = opened[0].heartbeat if opened else float("nan")
    compressed = sum(1 for s in opened if deflated(s))

    t2 = time.monotonic()
    await bounded(opened, lambda s: s.close(), args.concurrency * 5, "closing")
    close_s = time.monotonic() - t2
    await asyncio.sleep(args.settle)
    server_after = rss_kib(args.pid) if args.pid else None

    rows = [
        ("server", args.url),
        ("sockets requested", f"{n}"),
        ("sockets open (hello answered)", f"{len(opened)}"),
        ("still open after hold", f"{alive}"),
        ("permessage-deflate negotiated", f"{compressed}"),
        ("upgrade headers", "browser-like (cookie)" if args.browser_headers else "bearer token"),
        ("heartbeat (s, from hello)", f"{heartbeat:g}"),
        (
            "accounts ready (s)",
            f"{accounts_s:.1f} ({users.registered} signed up or in, {users.refreshed} refreshed)",
        ),
        ("open all sockets (s)", f"{open_s:.1f} ({len(opened) / max(open_s, 1e-9):.0f}/s)"),
        ("close all sockets (s)", f"{close_s:.1f}"),
    ]
    if server_before is not None and server_open is not None and server_held is not None:
        per_open = (server_open - server_before) / max(len(opened), 1)
        per_held = (server_held - server_before) / max(len(opened), 1)
        rows += [
            ("server RSS before (MiB)", f"{server_before / 1024:.1f}"),
            (f"server RSS open +{args.settle:g}s (MiB)", f"{server_open / 1024:.1f}"),
            (f"server RSS after hold {args.hold:g}s (MiB)", f"{server_held / 1024:.1f}"),
            ("server RSS after close (MiB)", f"{(server_after or 0) / 1024:.1f}"),
            ("server KiB per socket (open)", f"{per_open:.1f}"),
            ("server KiB per socket (after hold)", f"{per_held:.1f}"),
            ("bar: <= 20 KiB per socket", "met" if max(per_open, per_held) <= 20 else "NOT met"),
        ]
    rows.append(
        (
            "bench client KiB per socket",
            f"{(client_open - client_before) / max(len(opened), 1):.1f}",
        )
    )
    title = f"idle: {len(opened)} authenticated idle sockets"
    return table(title, rows)


def deflated(sock: Socket) -> bool:
    """Whether the server accepted permessage-deflate for this socket."""
    response = sock.ws.response if sock.ws is not None else None
    if response is None:
        return False
    return "permessage-deflate" in (response.headers.get("Sec-WebSocket-Extensions") or "")
