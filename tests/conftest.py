"""Fixtures shared by every suite: settings and apps on a temporary SQLite database,
PostgreSQL databases and Redis prefixes per run, live server processes, and a browser."""

from __future__ import annotations

import os

# A pytest-xdist worker starts with COLUMNS=80 and LINES=24 in its environment, and Rich
# fixes a console's size when the console is made (echochat.cli's, at import): the CLI
# tests' own COLUMNS would then be ignored and their tables wrapped. Drop them here, before
# anything imports Rich, so a worker's environment is a plain run's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

import asyncio
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from echochat.app import create_app
from echochat.config import ResolvedSettings, load_settings
from tests import services
from tests.apps import running

pytest.register_assert_rewrite("tests.bus_contract")

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
LOUD_SKIP = "SKIPPED LOUDLY: "  # how tests/services.py need() words its skips


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the loud skips' reasons where the summary is printed: in this process, or in
    the controller of a parallel run (pytest-xdist), which sees only the workers' reports."""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(LOUD_SKIP):
            message = reason.removeprefix(LOUD_SKIP)
            if message not in services.MISSING:
                services.MISSING.append(message)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if services.MISSING:
        terminalreporter.section("SERVICES MISSING: tests were skipped", sep="!", red=True)
        for line in services.MISSING:
            terminalreporter.line(f"  {line}", red=True)
        terminalreporter.line(
            "  Start them (see CONTRIBUTING.md) or set ECHOCHAT_REQUIRE_SERVICES=1 "
            "to make this an error.",
            red=True,
        )


# --- settings and in-process apps ----------------------------------------------------------


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's artefacts (screenshots, logs): test-output/<test id>/."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    path = OUTPUT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., ResolvedSettings]:
    """Settings on a fresh data dir under tmp_path; keyword arguments override values."""

    def make(**overrides: Any) -> ResolvedSettings:
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(environ={}, overrides=overrides, config_file=None)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., ResolvedSettings]) -> ResolvedSettings:
    return make_settings()


@pytest.fixture
async def client(settings: ResolvedSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a started app (lifespan run) on a temporary SQLite db."""
    app = create_app(settings.settings)
    async with (
        running(app) as manager,  # migrating: slow when loaded
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url=settings.settings.public_url,
        ) as http,
    ):
        yield http


# --- PostgreSQL and Redis -------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(services.PG_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> str:
    services.need("PostgreSQL", services.reachable(services.PG_URL), services.PG_URL)
    return services.PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards (SQLAlchemy URL)."""
    name = f"echochat_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = pg_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_server() -> str:
    services.need("Redis", services.reachable(services.REDIS_URL), services.REDIS_URL)
    return services.REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"echochat-test:{secrets.token_hex(6)}:"
    yield prefix

    async def cleanup() -> None:
        import redis.asyncio as redis

        client = redis.from_url(redis_server)
        try:
            keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(cleanup())


# --- live server processes ------------------------------------------------------------------


# How long a server may take to answer /healthz after its start: seconds on a quiet machine,
# much more on a loaded one (a parallel run, or other work on the same two cores); a bound,
# not a wait: start() returns as soon as the server answers.
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """An ``echochat serve`` subprocess on a free port; its output goes to a log file."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ECHOCHAT_")},
            "ECHOCHAT_DATA_DIR": str(data_dir),
            "ECHOCHAT_LOG_LEVEL": "info",
            **(env or {}),
        }
        self._own_public_url = "ECHOCHAT_PUBLIC_URL" not in (env or {})
        self._use_port(free_port())
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env["ECHOCHAT_PORT"] = str(port)
        if self._own_public_url:  # a cluster's servers share the URL their tests give them
            self.env["ECHOCHAT_PUBLIC_URL"] = self.url

    def start(self, timeout: float = START_TIMEOUT_S) -> LiveServer:
        """Start ``echochat serve`` and wait until /healthz answers (bounded). A port taken
        between :func:`free_port` and the server's bind (another process of a parallel run
        got it first) is the only failure answered by starting again, on a new port, and only
        before the server was ever up (a restart keeps its URL: the browsers use it)."""
        for _attempt in range(3):
            if self._start(timeout):
                return self
            self._use_port(free_port())
        raise RuntimeError(f"no free port for the server: {self.log_path.read_text()[-2000:]}")

    def _start(self, timeout: float) -> bool:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "echochat", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir.parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if self.proc.poll() is not None:
                if "is already in use" in output and not self.started_once:
                    return False
                raise RuntimeError(f"server exited early: {output[-2000:]}")
            # Until it says it is starting (its port check passed), whatever answers on the
            # port is not this server.
            if "is starting at" not in output:
                time.sleep(0.05)  # polling the log, bounded by the deadline
                continue
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    self.started_once = True
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a readiness probe, bounded by the deadline
        self.stop()
        output = self.log_path.read_bytes()[offset:].decode(errors="replace")
        raise RuntimeError(f"server did not become healthy in {timeout} s: {output[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def live_server_factory(tmp_path: Path, output_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(env: dict[str, str] | None = None, data_dir: Path | None = None) -> LiveServer:
        index = len(started)
        server = LiveServer(
            data_dir or tmp_path / f"server{index}",
            output_dir / f"server{index}.log",
            env,
        )
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def live_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory()
