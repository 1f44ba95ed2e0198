"""What the workloads share: users with real sessions, raw sockets, RSS, statistics, tables.

Users are created through the real API (``POST /auth/register`` with
``"token_response": true``), so every socket is a real session of a real account. Creating
thousands is slow on purpose (argon2id), so ``--users-file`` keeps their refresh tokens
between runs; a later run renews each session with ``POST /auth/refresh`` (no password
hashing) and only registers the users that are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.http11 import USER_AGENT
from websockets.typing import Origin

API = "/api/v1"
T = TypeVar("T")


# --- process limits and the event loop ----------------------------------------------------


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to the hard limit (one per socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def install_uvloop(enabled: bool) -> str:
    if enabled:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


# --- memory ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def own_rss_kib() -> int:
    return rss_kib(os.getpid())


# --- CPU ---------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu(path: Path) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (process or thread)."""
    text = path.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of process ``pid`` so far: the whole process, and its
    main thread (the event loop; the rest is worker threads: SQLite, argon2, DNS)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat")), _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def cpu_rows(
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    delivered: int,
    seconds: float,
    *,
    label: str,
    digits: int,
    undelivered: str = "n/a",
    total_label: str | None = None,
) -> list[tuple[str, str]]:
    """The servers' CPU over a measured window of ``seconds`` (``cpu_seconds`` before and
    after), per process: ``server PID <label>``, CPU ms per delivery in all and on the main
    thread (the event loop), with ``digits`` decimals (``undelivered`` when nothing was
    delivered); and CPU seconds with their share of one CPU. With ``total_label``, and more
    than one process, also the CPU ms per delivery of all processes together."""
    rows = []
    for pid in before:
        used = after[pid][0] - before[pid][0]
        main = after[pid][1] - before[pid][1]
        per = (
            f"{used * 1000 / delivered:.{digits}f} / {main * 1000 / delivered:.{digits}f}"
            if delivered
            else undelivered
        )
        rows.append((f"server {pid} {label}", per))
        rows.append(
            (
                f"server {pid} CPU s (all / event loop), % of one CPU",
                f"{used:.2f} / {main:.2f}, {100 * used / max(seconds, 1e-9):.0f}%",
            )
        )
    if total_label is not None and len(before) > 1 and delivered:
        used = sum(after[pid][0] - before[pid][0] for pid in before)
        rows.append((total_label, f"{used * 1000 / delivered:.{digits}f}"))
    return rows


# --- statistics and output -------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def latency_ms(values: Sequence[float], p: float | None) -> str:
    """The ``p``-th percentile (None: the maximum) of latencies in ms for a table; a message
    never delivered (``math.inf``) counts as infinitely late: "not delivered"."""
    if not values:
        return "n/a"
    ordered = sorted(values)
    rank = (len(ordered) - 1) * (100 if p is None else p) / 100
    if math.isinf(ordered[math.ceil(rank)]):
        return "not delivered"
    return f"{percentile(ordered, 100 if p is None else p):.2f}"


def load_row(before: float) -> tuple[str, str]:
    """The machine's 1-minute load average before the measured phase (``before``) and now."""
    return (
        "machine load (1-min average, before / after)",
        f"{before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
    )


def table(title: str, rows: Iterable[tuple[str, str]]) -> str:
    """A two-column text table (Markdown-compatible, so it pastes into docs)."""
    rows = list(rows)
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    lines = [
        f"{title}",
        "",
        f"| {'measure'.ljust(width)} | {'value'.rjust(vwidth)} |",
        f"|{'-' * (width + 2)}|{'-' * (vwidth + 1)}:|",
    ]
    lines += [f"| {k.ljust(width)} | {v.rjust(vwidth)} |" for k, v in rows]
    return "\n".join(lines)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def bounded(
    items: Sequence[T], worker: Callable[[T], Awaitable[Any]], concurrency: int, label: str
) -> list[Any]:
    """Run ``worker`` on every item with at most ``concurrency`` at once, with progress."""
    results: list[Any] = [None] * len(items)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(items)):
        queue.put_nowait(index)
    done = 0
    started = time.monotonic()
    step = max(1, len(items) // 10)

    async def run() -> None:
        nonlocal done
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results[index] = await worker(items[index])
            done += 1
            if done % step == 0 or done == len(items):
                rate = done / max(time.monotonic() - started, 1e-9)
                say(f"  {label}: {done}/{len(items)} ({rate:.0f}/s)")

    await asyncio.gather(*(run() for _ in range(min(concurrency, len(items)) or 1)))
    return results


# --- users with real sessions ----------------------------------------------------------------


@dataclass
class Account:
    username: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0  # wall-clock seconds when the access token runs out


class Users:
    """Accounts on one server, kept fresh through the real API and cached in a JSON file
    (mode 0600: it holds passwords and refresh tokens of bench accounts)."""

    def __init__(self, url: str, path: Path | None) -> None:
        self.url = url.rstrip("/")
        self.path = path
        self.accounts: dict[str, Account] = {}
        self.password = "bench-" + secrets.token_urlsafe(18)
        self.registered = 0
        self.refreshed = 0
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            if data.get("url") != self.url:
                raise SystemExit(
                    f"{path} holds the accounts of {data.get('url')}, not {self.url}: "
                    "give another --users-file (this one is left as it is)"
                )
            self.password = data.get("password", self.password)
            for row in data.get("accounts", []):
                account = Account(**row)
                self.accounts[account.username] = account

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        payload = {
            "url": self.url,
            "password": self.password,
            "accounts": [asdict(a) for a in self.accounts.values()],
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(payload, out)
        tmp.replace(self.path)

    async def ensure(
        self, http: httpx.AsyncClient, names: Sequence[str], concurrency: int, margin: float = 300
    ) -> list[Account]:
        """Every account in ``names`` signed in with an access token valid for ``margin``
        more seconds: refreshed when cached, registered when new."""

        async def one(name: str) -> Account:
            account = self.accounts.get(name)
            if account is not None and account.expires_at - time.time() > margin:
                return account
            if account is not None and account.refresh_token:
                response = await http.post(
                    API + "/auth/refresh", json={"refresh_token": account.refresh_token}
                )
                if response.status_code == 200:
                    self._keep(account, response.json())
                    self.refreshed += 1
                    return account
                say(f"  refresh of {name} failed ({response.status_code}); signing in again")
            known = account is not None
            account = Account(name, self.password)
            credentials = {"username": name, "password": self.password, "token_response": True}
            answer: httpx.Response | None = None
            if not known:
                answer = await post_patiently(http, API + "/auth/register", credentials)
            if answer is None or answer.status_code == 409:  # exists: sign in instead
                answer = await post_patiently(http, API + "/auth/login", credentials)
            response = answer
            if response.status_code not in (200, 201):
                raise RuntimeError(
                    f"cannot sign in {name}: HTTP {response.status_code} {response.text[:300]}"
                )
            self._keep(account, response.json())
            self.accounts[name] = account
            self.registered += 1
            return account

        try:
            return await bounded(list(names), one, concurrency, "accounts")
        finally:
            self.save()

    @staticmethod
    def _keep(account: Account, body: dict[str, Any]) -> None:
        account.access_token = body["access_token"]
        account.refresh_token = body["refresh_token"]
        account.expires_at = time.time() + float(body["expires_in"])


async def post_patiently(
    http: httpx.AsyncClient, path: str, payload: dict[str, Any], tries: int = 20
) -> httpx.Response:
    """POST, waiting out 429 answers (``Retry-After``) of the server's rate limits."""
    for _ in range(tries):
        response = await http.post(path, json=payload)
        if response.status_code != 429:
            return response
        wait = float(response.headers.get("retry-after") or 5)
        say(f"  {path}: rate limited, waiting {wait:g} s (see docs/performance.md)")
        await asyncio.sleep(min(wait, 120))
    return response


def http_client(url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=url.rstrip("/"), timeout=120, limits=limits)


# --- raw sockets on the SDK's wire protocol ----------------------------------------------------


def ws_url(url: str) -> str:
    base = url.rstrip("/")
    return ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]) + "/ws"


BROWSER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


class Socket:
    """One authenticated socket speaking the protocol the SDK speaks: it reads the server's
    ``hello`` event, sends the ``hello`` op, then pings every heartbeat period and hands
    every event to ``on_event`` (with the time it arrived)."""

    def __init__(
        self,
        account: Account,
        url: str,
        *,
        compression: bool,
        on_event: Callable[[dict[str, Any], float], None] | None = None,
        browser: bool = False,
    ) -> None:
        self.account = account
        self.url = url
        self.compression = compression
        self.browser = browser
        self.on_event = on_event
        self.ws: ClientConnection | None = None
        self.heartbeat = 25.0
        self.task: asyncio.Task[None] | None = None
        self.closed_with: int | None = None
        self._refs = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def open(self, timeout: float = 60) -> None:
        if self.browser:
            # What a browser page of ours sends: the access cookie (and the CSRF cookie) with
            # its Origin, and the usual request headers; the server keeps what it is sent
            # for the socket's lifetime, so this costs it more than a bearer token does.
            headers = {
                "Cookie": f"echochat_access={self.account.access_token}; "
                f"echochat_csrf={secrets.token_urlsafe(32)}",
                "Pragma": "no-cache",
                "Cache-Control": "no-cache",
                "Accept-Encoding": "gzip, deflate, br, zstd",
                "Accept-Language": "en-GB,en-US;q=0.9,en;q=0.8",
            }
            origin: Origin | None = Origin("http" + self.url.removesuffix("/ws")[2:])
            agent = BROWSER_AGENT
        else:
            headers = {"Authorization": f"Bearer {self.account.access_token}"}
            origin = None
            agent = USER_AGENT
        self.ws = await ws_connect(
            self.url,
            additional_headers=headers,
            origin=origin,
            user_agent_header=agent,
            compression="deflate" if self.compression else None,
            ping_interval=None,  # like the SDK: the app-level heartbeat
            open_timeout=timeout,
            max_queue=16,
        )
        async with asyncio.timeout(timeout):
            first = json.loads(await self.ws.recv())
        if first.get("type") != "hello":
            raise RuntimeError(f"expected hello, got {first!r}")
        self.heartbeat = float(first["data"]["heartbeat"])
        self.task = asyncio.create_task(self._run())
        await self.request("hello", {}, timeout=timeout)

    async def request(self, op: str, data: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        assert self.ws is not None
        self._refs += 1
        ref = f"b{self._refs}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            await self.ws.send(json.dumps({"op": op, "ref": ref, "data": data}))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiting.pop(ref, None)

    def expect(self, ref: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply to a frame with ``ref`` that the caller sends itself
        (:meth:`send_text`); it resolves with the ``ok`` data or fails on ``err``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        future.add_done_callback(lambda _: self._waiting.pop(ref, None))
        return future

    async def send_text(self, text: str) -> None:
        """Send one ready-made frame (serialised ahead of time, so the sending costs no JSON
        work in the measured loop)."""
        assert self.ws is not None
        await self.ws.send(text)

    async def _run(self) -> None:
        assert self.ws is not None
        ws = self.ws
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.heartbeat
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, next_ping - loop.time())):
                        raw = await ws.recv()
                except TimeoutError:
                    next_ping = loop.time() + self.heartbeat
                    self._refs += 1
                    await ws.send(json.dumps({"op": "ping", "ref": f"p{self._refs}"}))
                    continue
                arrived = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("op")
                if kind == "ev":
                    if self.on_event is not None:
                        self.on_event(frame, arrived)
                elif kind in ("ok", "err"):
                    future = self._waiting.get(frame.get("ref"))
                    if future is not None and not future.done():
                        if kind == "ok":
                            future.set_result(frame.get("data") or {})
                        else:
                            future.set_exception(RuntimeError(str(frame.get("error"))))
        except Exception:
            self.closed_with = ws.close_code if ws.close_code is not None else -1

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 10)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


# --- servers the bench starts itself -------------------------------------------------------

# Limits a load test must lift: it registers hundreds of accounts from one IP and sends more
# frames per socket than a person would. Everything else is the shipped default.
BENCH_ENV = {
    "ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1000000/hour",
    "ECHOCHAT_RATE_LIMIT_LOGIN_IP": "1000000/hour",
    "ECHOCHAT_RATE_LIMIT_DM_ACCOUNT": "1000000/10seconds",
    "ECHOCHAT_WS_FRAMES_PER_SECOND": "1000",
    "ECHOCHAT_WS_BURST": "10000",
    "ECHOCHAT_LOG_LEVEL": "warning",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Spawned:
    """``echochat serve`` processes started by the bench (one URL and pid each)."""

    urls: list[str]
    pids: list[int]
    description: str
    cleanup: list[Callable[[], Awaitable[None]]]
    procs: list[asyncio.subprocess.Process]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for step in self.cleanup:
            await step()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the server exited early: {_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the server did not become healthy: {_tail(log)}")


async def spawn_servers(
    kind: str, processes: int, workdir: Path, *, pg_url: str, redis_url: str
) -> Spawned:
    """Start ``processes`` ``echochat serve`` processes on free ports: ``sqlite`` (the
    embedded default: one process, SQLite in ``workdir``, in-process bus) or ``cluster``
    (a fresh PostgreSQL database on ``pg_url``, Redis with a fresh key prefix, all
    processes sharing the data dir for the secret key; ``echochat db upgrade`` first). Each
    process is healthy before the next starts."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    cleanup: list[Callable[[], Awaitable[None]]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOCHAT_")}
    env |= BENCH_ENV | {"ECHOCHAT_DATA_DIR": str(data)}
    if kind == "cluster":
        import asyncpg

        name = f"echochat_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

        async def drop() -> None:
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        cleanup.append(drop)
        base = pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        env["ECHOCHAT_DATABASE_URL"] = f"{base}/{name}"
        env["ECHOCHAT_REDIS_URL"] = redis_url
        env["ECHOCHAT_REDIS_PREFIX"] = f"echochat-bench:{secrets.token_hex(4)}:"
        description = f"{processes} x echochat serve, PostgreSQL ({name}) + Redis"
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "echochat",
            "db",
            "upgrade",
            env=env,
            cwd=workdir,
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await upgrade.wait() != 0:
            raise RuntimeError("echochat db upgrade failed on the bench database")
    elif kind == "sqlite":
        if processes != 1:
            raise SystemExit("the embedded default (SQLite, in-process bus) is one process")
        description = "echochat serve, SQLite + in-process bus (embedded default)"
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    ports = [free_port() for _ in range(processes)]
    public = f"http://127.0.0.1:{ports[0]}"  # one issuer for every process's tokens
    urls: list[str] = []
    pids: list[int] = []
    procs: list[asyncio.subprocess.Process] = []
    for index, port in enumerate(ports):
        log = workdir / f"server{index}.log"
        proc_env = env | {"ECHOCHAT_PORT": str(port), "ECHOCHAT_PUBLIC_URL": public}
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "echochat",
                "serve",
                env=proc_env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=workdir,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_healthy(url, proc, log)
        except BaseException:
            await Spawned(urls, pids, description, cleanup, procs).stop()
            raise
        urls.append(url)
        pids.append(proc.pid)
        say(f"  server {index}: {url} (pid {proc.pid}, log {log})")
    return Spawned(urls, pids, description, cleanup, procs)


# --- workloads that start their own servers (--spawn) or use running ones (--url) ----------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--spawn``, ``--processes``, ``--pg-url``, ``--redis-url``: which server(s) to start."""
    parser.add_argument(
        "--spawn",
        choices=("sqlite", "cluster"),
        help="start the server(s) here instead of --url: sqlite (embedded default) or "
        "cluster (PostgreSQL + Redis)",
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes (cluster)")
    parser.add_argument(
        "--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="--spawn cluster"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="--spawn cluster")


def add_pid_argument(parser: argparse.ArgumentParser) -> None:
    """``--pid``: with ``--url``, the server processes whose CPU time to report."""
    parser.add_argument(
        "--pid",
        default="",
        help="with --url: the server process ids (comma-separated) whose CPU time to report",
    )


def server_pids(args: argparse.Namespace, spawned: Spawned | None) -> list[int]:
    """The server processes to measure: the spawned ones, or those of ``--pid``."""
    return spawned.pids if spawned else [int(x) for x in args.pid.split(",") if x.strip()]


Measure = Callable[[argparse.Namespace, Users, list[str], str, Spawned | None], Awaitable[str]]


async def run_workload(args: argparse.Namespace, prefix: str, measure: Measure) -> str:
    """Start the servers of ``--spawn`` (in a new temporary folder named ``prefix...``) or
    take those of ``--url``, run ``measure(args, users, urls, server description, spawned)``
    and stop what was started."""
    spawned: Spawned | None = None
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    if args.spawn:
        say(f"starting {args.spawn} server(s) in {workdir}")
        spawned = await spawn_servers(
            args.spawn, args.processes, workdir, pg_url=args.pg_url, redis_url=args.redis_url
        )
        urls = spawned.urls
        server = spawned.description
    elif args.url:
        urls = [u.strip().rstrip("/") for u in args.url.split(",")]
        server = ", ".join(urls)
    else:
        raise SystemExit("give --url URL[,URL2...] or --spawn sqlite|cluster")
    try:
        return await measure(args, Users(urls[0], args.users_file), urls, server, spawned)
    finally:
        if spawned is not None:
            await spawned.stop()
