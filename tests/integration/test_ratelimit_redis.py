"""Rate limits on Redis storage: several app instances (as several server processes would)
share one limit, and the key prefix keeps deployments apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from echochat.integrations.ratelimit import RateLimiter
from tests.unit.test_auth_api import (
    API,
    PASSWORD,
    MakeSettings,
    Site,
    expect_error,
    open_site,
)

pytestmark = pytest.mark.integration

WRONG = {"username": "alice", "password": "not the password"}


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """Apps started in a test, stopped at its end (request it last: before Redis cleanup)."""
    async with AsyncExitStack() as exits:
        yield exits


async def start(
    stack: AsyncExitStack,
    make_settings: MakeSettings,
    redis_server: str,
    prefix: str,
    data_dir: Path,
    **overrides: Any,
) -> Site:
    """One app instance on Redis (bus and limits) and a SQLite file shared with its peers."""
    return await stack.enter_async_context(
        open_site(
            make_settings,
            redis_url=redis_server,
            redis_prefix=prefix,
            data_dir=data_dir,
            **overrides,
        )
    )


def assert_limited(response: httpx.Response, window: int) -> None:
    error = expect_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= window
    assert error["details"]["retry_after"] == int(response.headers["retry-after"])


async def test_login_ip_limit_is_shared_by_two_instances(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    one = await start(
        stack,
        make_settings,
        redis_server,
        redis_prefix,
        tmp_path / "d",
        rate_limit_login_ip="3/minute",
    )
    two = await start(
        stack,
        make_settings,
        redis_server,
        redis_prefix,
        tmp_path / "d",
        rate_limit_login_ip="3/minute",
    )
    assert one.ctx.limiter.backend == two.ctx.limiter.backend == "redis"
    ip = "203.0.113.7"
    expect_error(
        await one.client(ip=ip).post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
    )
    expect_error(
        await two.client(ip=ip).post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
    )
    expect_error(
        await one.client(ip=ip).post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
    )
    assert_limited(await two.client(ip=ip).post(f"{API}/auth/login", json=WRONG), 60)
    assert_limited(await one.client(ip=ip).post(f"{API}/auth/login", json=WRONG), 60)
    # other addresses are not affected
    other = await two.client(ip="203.0.113.8").post(f"{API}/auth/login", json=WRONG)
    expect_error(other, 401, "bad_credentials")

    # the counters live under the deployment's prefix
    client = aioredis.from_url(redis_server)
    try:
        keys = [k async for k in client.scan_iter(match=redis_prefix + "limits*")]
    finally:
        await client.aclose()
    assert keys


async def test_failed_logins_per_account_are_shared(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    settings = {"rate_limit_login_account": "3/minute"}
    one = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    two = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    await one.register("alice")
    for site in (one, two, one):
        expect_error(
            await site.client().post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
        )
    right = await two.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert_limited(right, 60)


async def test_success_clears_the_shared_failure_count(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    settings = {"rate_limit_login_account": "3/minute"}
    one = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    two = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    await one.register("alice")
    right = {"username": "alice", "password": PASSWORD}
    for _ in range(2):
        expect_error(
            await one.client().post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
        )
    assert (await two.client().post(f"{API}/auth/login", json=right)).status_code == 200
    for _ in range(2):
        expect_error(
            await two.client().post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials"
        )
    assert (await one.client().post(f"{API}/auth/login", json=right)).status_code == 200


async def test_reset_limit_per_account_is_shared(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    settings = {"rate_limit_reset_account": "2/hour"}
    one = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    two = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    body = {"login": "alice"}
    assert (await one.client().post(f"{API}/auth/password/forgot", json=body)).status_code == 202
    assert (await two.client().post(f"{API}/auth/password/forgot", json=body)).status_code == 202
    assert_limited(await one.client().post(f"{API}/auth/password/forgot", json=body), 3600)


async def test_registration_limit_per_ip_is_shared(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    settings = {"rate_limit_register_ip": "1/hour"}
    one = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    two = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "d", **settings)
    await one.register("alice", ip="203.0.113.7")
    second = await two.client(ip="203.0.113.7").post(
        f"{API}/auth/register", json={"username": "bob", "password": PASSWORD}
    )
    assert_limited(second, 3600)
    assert await two.user_count() == 1


async def test_prefix_keeps_deployments_apart(
    make_settings: MakeSettings,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    stack: AsyncExitStack,
) -> None:
    settings = {"rate_limit_login_ip": "1/minute"}
    one = await start(stack, make_settings, redis_server, redis_prefix, tmp_path / "a", **settings)
    other = await start(
        stack, make_settings, redis_server, redis_prefix + "other:", tmp_path / "b", **settings
    )
    expect_error(await one.client().post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials")
    assert_limited(await one.client().post(f"{API}/auth/login", json=WRONG), 60)
    expect_error(await other.client().post(f"{API}/auth/login", json=WRONG), 401, "bad_credentials")


async def test_rate_limiter_on_redis_directly(redis_server: str, redis_prefix: str) -> None:
    limiter = RateLimiter(redis_server, prefix=redis_prefix)
    peer = RateLimiter(redis_server, prefix=redis_prefix)
    try:
        assert await limiter.test("2/minute", "scope", "key") == 0
        assert await limiter.hit("2/minute", "scope", "key") == 0
        assert await peer.hit("2/minute", "scope", "key") == 0
        wait = await limiter.hit("2/minute", "scope", "key")
        assert 1 <= wait <= 60
        assert 1 <= await peer.test("2/minute", "scope", "key") <= 60
        assert await peer.hit("2/minute", "scope", "other") == 0
        await peer.clear("2/minute", "scope", "key")
        assert await limiter.hit("2/minute", "scope", "key") == 0
    finally:
        await limiter.close()
        await peer.close()
