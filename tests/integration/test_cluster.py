"""Several server processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from echochat.store import Database
from echochat.store.migrate import SchemaStatus, schema_state, upgrade

pytestmark = pytest.mark.integration


def migrate(pg_url: str) -> None:
    async def go() -> None:
        db = Database.create(pg_url)
        try:
            assert (await upgrade(db)).status is SchemaStatus.CURRENT
        finally:
            await db.close()

    asyncio.run(go())


def schema_status(pg_url: str) -> SchemaStatus:
    async def go() -> SchemaStatus:
        db = Database.create(pg_url)
        try:
            return (await schema_state(db)).status
        finally:
            await db.close()

    return asyncio.run(go())


def cluster_env(pg_url: str, redis_server: str, redis_prefix: str) -> dict[str, str]:
    return {
        "ECHOCHAT_DATABASE_URL": pg_url,
        "ECHOCHAT_REDIS_URL": redis_server,
        "ECHOCHAT_REDIS_PREFIX": redis_prefix,
        # Every process of one deployment signs and checks tokens with the same key.
        "ECHOCHAT_SECRET_KEY": secrets.token_urlsafe(48),
    }


def assert_ready(url: str) -> None:
    response = httpx.get(url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "bus": "ok"}


def test_two_servers_share_postgres_and_redis(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., Any],
) -> None:
    env = cluster_env(pg_url, redis_server, redis_prefix)
    first = live_server_factory(env={**env, "ECHOCHAT_AUTO_MIGRATE": "1"})
    assert schema_status(pg_url) is SchemaStatus.CURRENT
    second = live_server_factory(env=env)
    assert first.url != second.url
    for server in (first, second):
        assert_ready(server.url)
        log = server.log_path.read_text()
        assert env["ECHOCHAT_SECRET_KEY"] not in log
        assert "Traceback" not in log


def test_server_with_several_workers(
    pg_url: str,
    redis_server: str,
    redis_prefix: str,
    live_server_factory: Callable[..., Any],
) -> None:
    migrate(pg_url)
    env = cluster_env(pg_url, redis_server, redis_prefix)
    server = live_server_factory(env={**env, "ECHOCHAT_WORKERS": "2"})
    # Several requests, so that more than one worker is likely to answer; all must be ready.
    for _ in range(6):
        assert_ready(server.url)
    assert "starting 2 worker processes" in server.log_path.read_text()
