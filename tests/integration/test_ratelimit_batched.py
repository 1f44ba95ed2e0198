"""The Redis rate limiter pipelines concurrent hits: the hits waiting at the same time go to
Redis as one pipeline of `limits`' sliding-window script, on `limits`' keys, and each caller
gets the answer `limits`' own unbatched ``SlidingWindowCounterRateLimiter`` would give (the
two share counters, as two processes do during a rolling upgrade). A failed round trip
raises in every waiting caller; nothing runs while idle.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
import redis.asyncio as aioredis
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from echochat.domain.errors import Unavailable
from echochat.integrations.ratelimit import PipelinedSlidingWindow, RateLimiter

pytestmark = pytest.mark.integration

# A bound on waits that should end at once: a safety net against a hang, not a timing.
NO_HANG_S = 60.0


class Limits:
    """`limits`' unbatched limiter over the same Redis and prefix as a RateLimiter."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        storage = storage_from_string(
            "async+" + redis_url, implementation="redispy", key_prefix=prefix + "limits"
        )
        assert isinstance(storage, RedisStorage)
        assert isinstance(storage.bridge, RedispyBridge)
        self.storage = storage
        self.bridge = storage.bridge
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)

    async def hit(self, rate: str, *identifiers: str) -> bool:
        return await self.limiter.hit(parse(rate), *identifiers)

    async def close(self) -> None:
        await self.bridge.storage.aclose()


@pytest.fixture
async def limiter(redis_server: str, redis_prefix: str) -> AsyncIterator[RateLimiter]:
    ours = RateLimiter(redis_server, prefix=redis_prefix)
    assert ours.backend == "redis"
    yield ours
    await ours.close()


@pytest.fixture
async def reference(redis_server: str, redis_prefix: str) -> AsyncIterator[Limits]:
    theirs = Limits(redis_server, redis_prefix)
    yield theirs
    await theirs.close()


@pytest.fixture
async def redis_client(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server)
    yield client
    await client.aclose()


def current_key(prefix: str, rate: str, *identifiers: str) -> str:
    """The current window's key, as `limits`' Redis storage names it."""
    return f"{prefix}limits:{{{parse(rate).key_for(*identifiers)}}}"


async def burst(limiter: RateLimiter, n: int, rate: str, *identifiers: str) -> list[int]:
    """``n`` hits arriving in one event-loop turn."""
    calls = [limiter.hit(rate, *identifiers) for _ in range(n)]
    return list(await asyncio.wait_for(asyncio.gather(*calls), NO_HANG_S))


class RoundTrips:
    """Counts pipeline executions and writes to Redis connections (one write per round
    trip: a pipeline is packed into one write). With a ``gate``, writes wait for it once
    counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipelines = 0
        self.writes = 0
        self.gate: asyncio.Event | None = None
        self.written = asyncio.Event()
        execute = Pipeline.execute
        send = AbstractConnection.send_packed_command

        async def counted_execute(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
            self.pipelines += 1
            return await execute(pipe, raise_on_error)

        async def counted_send(conn: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            self.writes += 1
            self.written.set()
            if self.gate is not None:
                await self.gate.wait()
            await send(conn, *args, **kwargs)

        monkeypatch.setattr(Pipeline, "execute", counted_execute)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted_send)

    def reset(self) -> None:
        self.pipelines = self.writes = 0


async def test_concurrent_hits_on_one_key_allow_exactly_the_limit(
    limiter: RateLimiter, reference: Limits
) -> None:
    rate = "7/hour"
    waits = await burst(limiter, 30, rate, "dm", "alice")
    # in arrival order: the first seven pass, the rest wait for the window to slide
    assert waits[:7] == [0] * 7
    assert all(1 <= wait <= 3600 for wait in waits[7:])
    # `limits` unbatched, driven the same way on another key, answers the same
    theirs = await asyncio.gather(*(reference.hit(rate, "dm", "bob") for _ in range(30)))
    assert theirs.count(True) == 7
    assert [wait == 0 for wait in waits].count(True) == 7
    assert 1 <= await limiter.test(rate, "dm", "alice") <= 3600
    assert not await reference.limiter.test(parse(rate), "dm", "alice")


async def test_same_answers_as_limits_across_a_window_shift(
    limiter: RateLimiter,
    reference: Limits,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    """alice through the pipelined limiter in bursts, bob through `limits` one hit at a
    time, the same events; then both windows are moved on (the current window's TTL set
    to 0.55 of the expiry, as if 1.45 windows had passed: the next hit turns it into the
    previous window, weighed 0.55) and the same again."""
    rate = "10/hour"

    async def both(n: int) -> None:
        ours = await burst(limiter, n, rate, "dm", "alice")
        theirs = [await reference.hit(rate, "dm", "bob") for _ in range(n)]
        assert [wait == 0 for wait in ours] == theirs
        assert all(1 <= wait <= 3600 for wait in ours if wait)

    await both(4)
    await both(4)
    await both(4)  # two of these pass: ten in the window
    for user in ("alice", "bob"):
        assert await redis_client.get(current_key(redis_prefix, rate, "dm", user)) == b"10"
        await redis_client.pexpire(current_key(redis_prefix, rate, "dm", user), 1_980_000)
    # floor(10 * 0.55) = 5 of the previous window still count: five more pass
    await both(3)
    await both(3)
    for user in ("alice", "bob"):
        key = current_key(redis_prefix, rate, "dm", user)
        assert await redis_client.get(key) == b"5"
        assert await redis_client.get(key + "/-1") == b"10"
    assert 1 <= await limiter.retry_after(rate, "dm", "alice") <= 3600


async def test_the_pipelined_and_the_unbatched_path_share_the_counters(
    limiter: RateLimiter, reference: Limits, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """A process on the old code (`limits`' hit) and one on the new during a rolling
    upgrade count into the same keys."""
    rate = "6/hour"
    assert await burst(limiter, 3, rate, "dm", "carol") == [0, 0, 0]
    assert [await reference.hit(rate, "dm", "carol") for _ in range(2)] == [True, True]
    waits = await burst(limiter, 3, rate, "dm", "carol")
    assert waits[0] == 0
    assert all(1 <= wait <= 3600 for wait in waits[1:])
    assert not await reference.hit(rate, "dm", "carol")
    assert await redis_client.get(current_key(redis_prefix, rate, "dm", "carol")) == b"6"
    await limiter.clear(rate, "dm", "carol")
    assert await burst(limiter, 1, rate, "dm", "carol") == [0]


async def test_many_keys_in_one_flush_get_their_own_answers(
    limiter: RateLimiter, reference: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates = ["3/minute", "5/hour"]
    users = [f"user{i}" for i in range(20)]
    # user i has already sent i % 7 messages (through `limits`, unbatched)
    for i, user in enumerate(users):
        for _ in range(i % 7):
            await reference.hit(rates[i % 2], "dm", user)
    trips = RoundTrips(monkeypatch)
    calls = [limiter.hit(rates[i % 2], "dm", user) for i, user in enumerate(users)]
    waits = await asyncio.wait_for(asyncio.gather(*calls), NO_HANG_S)
    assert trips.pipelines == 1
    for i, wait in enumerate(waits):
        limit = parse(rates[i % 2]).amount
        if i % 7 < limit:
            assert wait == 0, users[i]
        else:
            assert 1 <= wait <= parse(rates[i % 2]).get_expiry(), users[i]


async def test_concurrent_hits_make_one_round_trip(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await limiter.hit("100/minute", "dm", "warm-up") == 0  # the connection is open
    trips = RoundTrips(monkeypatch)
    waits = await asyncio.wait_for(
        asyncio.gather(*(limiter.hit("100/minute", "dm", f"user{i}") for i in range(50))),
        NO_HANG_S,
    )
    assert waits == [0] * 50
    assert 1 <= trips.pipelines <= 2
    assert 1 <= trips.writes <= 2  # not 50

    # more than one pipeline holds (MAX_BATCH) go in as many pipelines, nobody left over
    trips.reset()
    waits = await asyncio.wait_for(
        asyncio.gather(*(limiter.hit("100/minute", "dm", f"many{i}") for i in range(600))),
        NO_HANG_S,
    )
    assert waits == [0] * 600
    assert trips.pipelines == 2


async def test_hits_arriving_during_a_flush_go_in_the_next(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await limiter.hit("100/minute", "dm", "warm-up") == 0
    trips = RoundTrips(monkeypatch)
    trips.gate = asyncio.Event()  # the first pipeline stays on its way until released
    first = asyncio.gather(*(limiter.hit("2/minute", "dm", "dave") for _ in range(3)))
    await asyncio.wait_for(trips.written.wait(), NO_HANG_S)
    arrived = 0
    all_arrived = asyncio.Event()

    async def late_hit() -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            all_arrived.set()
        return await limiter.hit("2/minute", "dm", "dave")  # waiting from its first step

    second = asyncio.gather(*(late_hit() for _ in range(3)))
    await asyncio.wait_for(all_arrived.wait(), NO_HANG_S)
    assert trips.writes == 1  # they did not start a flush of their own
    trips.gate.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), NO_HANG_S)
    assert one[:2] == [0, 0]
    assert all(wait >= 1 for wait in [*one[2:], *two])
    assert trips.pipelines == 2


async def test_nothing_runs_while_idle_and_hits_after_idling_work(limiter: RateLimiter) -> None:
    def others() -> set[asyncio.Task[Any]]:
        return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}

    before = others()
    for user in ("erin", "frank"):  # the second burst after an idle spell
        waits = await burst(limiter, 5, "3/minute", "dm", user)
        assert waits[:3] == [0, 0, 0]
        assert all(wait >= 1 for wait in waits[3:])
        assert others() == before  # no flush task left behind
        await asyncio.sleep(0.05)  # a few loop turns with nothing pending
        assert others() == before


async def test_a_cancelled_caller_does_not_disturb_the_others(limiter: RateLimiter) -> None:
    calls = [asyncio.ensure_future(limiter.hit("5/minute", "dm", "grace")) for _ in range(5)]
    await asyncio.sleep(0)  # all five are waiting, their pipeline not sent yet
    calls[2].cancel()
    _, pending = await asyncio.wait(calls, timeout=NO_HANG_S)
    assert not pending
    assert calls[2].cancelled()
    assert [call.result() for i, call in enumerate(calls) if i != 2] == [0, 0, 0, 0]
    # the cancelled hit never went out: one more fits, then none
    assert await limiter.hit("5/minute", "dm", "grace") == 0
    assert await limiter.hit("5/minute", "dm", "grace") >= 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def gather_errors(calls: list[Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), NO_HANG_S))


async def test_a_redis_failure_raises_in_every_waiting_caller(redis_prefix: str) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    limiter = RateLimiter(url, prefix=redis_prefix)
    reference = Limits(url, redis_prefix)
    try:
        outcomes = await gather_errors([limiter.hit("5/minute", "dm", "heidi") for _ in range(20)])
        [unbatched] = await gather_errors([reference.hit("5/minute", "dm", "heidi")])
    finally:
        await limiter.close()
        await reference.close()
    assert isinstance(unbatched, RedisConnectionError)
    assert all(type(outcome) is type(unbatched) for outcome in outcomes), outcomes


async def test_an_error_reply_raises_in_its_own_caller_only(
    limiter: RateLimiter,
    reference: Limits,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    rate = "5/minute"
    # a key holding a list: `limits`' script fails on it (WRONGTYPE)
    await redis_client.rpush(current_key(redis_prefix, rate, "dm", "ivan"), "not a counter")
    outcomes = await gather_errors(
        [limiter.hit(rate, "dm", "ivan" if i % 2 else "judy") for i in range(10)]
    )
    [unbatched] = await gather_errors([reference.hit(rate, "dm", "ivan")])
    assert isinstance(unbatched, ResponseError)
    assert [type(o) for o in outcomes[1::2]] == [type(unbatched)] * 5
    assert outcomes[0::2] == [0] * 5


async def test_a_server_that_lost_the_script_gets_it_again(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after a Redis restart or SCRIPT FLUSH (not run here: the server is shared):
    the pipeline's EVALSHA are refused with NOSCRIPT, the script is loaded and those
    entries sent again, counted once."""
    batch = limiter._batch
    assert batch is not None
    monkeypatch.setattr(batch, "_sha", "0" * 40)  # a script this server never saw
    waits = await burst(limiter, 4, "3/minute", "dm", "mallory")
    assert waits[:3] == [0, 0, 0]
    assert waits[3] >= 1


async def silent_server() -> tuple[asyncio.Server, int]:
    """A TCP server that accepts and never answers (a half-open Redis)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_a_redis_that_does_not_answer_fails_the_flush_not_the_process(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, port = await silent_server()
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", prefix=redis_prefix)
    monkeypatch.setattr(PipelinedSlidingWindow, "TIMEOUT", 0.2)
    try:
        outcomes = await gather_errors([limiter.hit("5/minute", "dm", "ivan") for _ in range(5)])
    finally:
        await limiter.close()
        server.close()
    assert all(isinstance(o, Unavailable) and o.code == "unavailable" for o in outcomes), outcomes


async def test_closing_answers_every_waiting_caller_and_refuses_later_hits(
    redis_prefix: str,
) -> None:
    server, port = await silent_server()
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", prefix=redis_prefix)
    try:
        calls = [asyncio.ensure_future(limiter.hit("5/minute", "dm", "judy")) for _ in range(5)]
        await asyncio.sleep(0)  # they are waiting on the flush (which waits on the server)
        await limiter.close()
        outcomes = await gather_errors(calls)
        with pytest.raises(Unavailable):
            await limiter.hit("5/minute", "dm", "judy")
    finally:
        server.close()
    # an answer, not a cancellation: the callers' own tasks were not cancelled
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert not any(call.cancelled() for call in calls)
