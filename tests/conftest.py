"""Fixtures shared by every suite: settings and apps on a temporary SQLite database,
PostgreSQL databases and Redis prefixes per run, live server processes, and a browser."""

from __future__ import annotations

import asyncio
import os
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
from asgi_lifespan import LifespanManager

from echochat.app import create_app
from echochat.config import ResolvedSettings, load_settings
from tests import services

pytest.register_assert_rewrite("tests.bus_contract")

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


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
        LifespanManager(app) as manager,
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """An ``echochat serve`` subprocess on a free port; its output goes to a log file."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ECHOCHAT_")},
            "ECHOCHAT_DATA_DIR": str(data_dir),
            "ECHOCHAT_PORT": str(self.port),
            "ECHOCHAT_PUBLIC_URL": self.url,
            "ECHOCHAT_LOG_LEVEL": "info",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> LiveServer:
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
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a readiness probe, bounded by the deadline
        self.stop()
        raise RuntimeError(f"server did not become healthy: {self.log_path.read_text()[-2000:]}")

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
