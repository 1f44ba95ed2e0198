"""Workload ``presence``: one user with B buddies, all connected; the user changes presence K
times; each change's latency to every buddy.

1. Accounts ``<prefix>star`` and ``<prefix>b000..`` (cached like ``idle``); make each buddy
   an accepted buddy of the star through the REST API (request + accept), once.
2. Connect the B buddies, then the star; wait until every buddy saw the star come online.
3. K times: the star sends ``presence.set`` alternating busy/online with a unique status
   text; the send time is taken just before the frame leaves; every buddy's socket notes when
   the ``presence`` event with that text arrived. The next change goes out once all B got it
   (or ``--timeout`` passed), no sooner than ``--interval`` after the previous one: the
   server allows a socket 20 frames per second (ws_frames_per_second).
4. Report p50/p90/p99/max over all K x B deliveries, and the ``ok`` reply time.

All sockets live in this one process, so a latency includes the time this process took to
read the frames of the buddies served before (an upper bound for the server's share).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import (
    API,
    Account,
    Socket,
    Users,
    bounded,
    http_client,
    mean,
    percentile,
    say,
    table,
    ws_url,
)

NAME = "presence"
ONLINE = "(online, no status)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--buddies", type=int, default=50, help="buddies of the user (B)")
    parser.add_argument("-k", "--changes", type=int, default=200, help="presence changes (K)")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="least seconds between two changes"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per change")
    parser.add_argument("--concurrency", type=int, default=50, help="HTTP calls in flight")
    parser.add_argument("--no-compression", action="store_true", help="do not offer deflate")


async def befriend(http: httpx.AsyncClient, star: Account, buddies: list[Account]) -> int:
    """Make each of ``buddies`` an accepted buddy of ``star``; the number made now."""

    def auth(account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.access_token}"}

    listing = await http.get(API + "/buddies", headers=auth(star))
    listing.raise_for_status()
    have = {b["username"] for b in listing.json()["buddies"]}
    missing = [b for b in buddies if b.username not in have]

    async def one(buddy: Account) -> None:
        sent = await http.post(
            API + "/buddies/requests", json={"username": buddy.username}, headers=auth(star)
        )
        sent.raise_for_status()
        accepted = await http.post(
            API + f"/buddies/requests/{sent.json()['id']}/accept", json={}, headers=auth(buddy)
        )
        accepted.raise_for_status()

    await bounded(missing, one, 4, "buddy pairs")
    return len(missing)


async def run(args: argparse.Namespace, users: Users) -> str:
    b, k = args.buddies, args.changes
    star_name = f"{args.prefix}star"
    names = [star_name] + [f"{args.prefix}b{i:04d}" for i in range(b)]
    async with http_client(args.url, args.concurrency) as http:
        accounts = await users.ensure(
            http,
            names,
            min(args.concurrency, args.http_concurrency),
            margin=float("inf") if args.refresh_all else 300,
        )
        star, buddies = accounts[0], accounts[1:]
        made = await befriend(http, star, buddies)
    url = ws_url(args.url)
    compression = not args.no_compression

    # arrivals[status text] = list of arrival times (perf_counter), one per buddy
    arrivals: dict[str, list[float]] = {}
    online_seen: set[str] = set()
    everyone = asyncio.Event()  # set when all B buddies got the change in awaited[0]
    awaited = [ONLINE]  # the star is restored to its last chosen state when it connects,
    # so events of an earlier run's text may arrive first: only the awaited one counts

    def watcher(name: str) -> Any:
        def on_event(frame: dict[str, Any], arrived: float) -> None:
            if frame.get("type") != "presence":
                return
            data = frame.get("data") or {}
            if data.get("username") != star_name:
                return
            text = data.get("status", "")
            if text.startswith("k"):
                got = arrivals.setdefault(text, [])
                got.append(arrived)
                if text == awaited[0] and len(got) == b:
                    everyone.set()
            elif data.get("state") == "online" and text == "":
                online_seen.add(name)
                if awaited[0] == ONLINE and len(online_seen) == b:
                    everyone.set()

        return on_event

    sockets = [
        Socket(a, url, compression=compression, on_event=watcher(a.username)) for a in buddies
    ]
    await bounded(sockets, lambda s: s.open(), 50, "buddy sockets")
    star_socket = Socket(star, url, compression=compression)
    everyone.clear()
    await star_socket.open()
    await star_socket.request("presence.set", {"state": "online", "status": ""})
    try:
        async with asyncio.timeout(args.timeout):
            await everyone.wait()
    except TimeoutError:
        say(f"only {len(online_seen)}/{b} buddies saw the star come online; carrying on")

    latencies: list[float] = []
    replies: list[float] = []
    missing = 0
    incomplete: list[str] = []
    say(f"{k} presence changes to {b} buddies")
    started = time.monotonic()
    for i in range(k):
        text = f"k{i}"
        state = "busy" if i % 2 == 0 else "online"
        everyone.clear()
        arrivals[text] = []
        awaited[0] = text
        t0 = time.perf_counter()
        await star_socket.request("presence.set", {"state": state, "status": text})
        replies.append(time.perf_counter() - t0)
        try:
            async with asyncio.timeout(args.timeout):
                await everyone.wait()
        except TimeoutError:
            pass
        got = arrivals[text]
        missing += b - len(got)
        if len(got) < b:
            incomplete.append(f"{text}:{len(got)}/{b}")
            if len(incomplete) <= 5:
                say(f"  change {text} ({state}) reached {len(got)}/{b} buddies in time")
        latencies.extend(t - t0 for t in got)
        pause = args.interval - (time.perf_counter() - t0)
        if pause > 0:
            await asyncio.sleep(pause)
    elapsed = time.monotonic() - started
    closed_early = sum(1 for s in [*sockets, star_socket] if s.closed_with is not None)
    await bounded([*sockets, star_socket], lambda s: s.close(), 100, "closing")

    ms = [x * 1000 for x in latencies]
    reply_ms = [x * 1000 for x in replies]
    rows = [
        ("server", args.url),
        ("buddies (B)", f"{b}"),
        ("presence changes (K)", f"{k}"),
        ("deliveries expected / received", f"{k * b} / {len(ms)}"),
        ("deliveries missing", f"{missing}"),
        ("changes not seen by every buddy", f"{len(incomplete)}"),
        ("sockets closed early", f"{closed_early}"),
        ("buddy pairs created now", f"{made}"),
        ("duration (s)", f"{elapsed:.1f}"),
        ("latency p50 (ms)", f"{percentile(ms, 50):.2f}"),
        ("latency p90 (ms)", f"{percentile(ms, 90):.2f}"),
        ("latency p99 (ms)", f"{percentile(ms, 99):.2f}"),
        ("latency max (ms)", f"{max(ms, default=float('nan')):.2f}"),
        ("latency mean (ms)", f"{mean(ms):.2f}"),
        (
            "ok reply p50 / p99 (ms)",
            f"{percentile(reply_ms, 50):.2f} / {percentile(reply_ms, 99):.2f}",
        ),
    ]
    return table(f"presence: 1 user -> {b} buddies, {k} changes", rows)
