"""Rate limits: a sliding-window counter per (rate, identifiers), in memory (one process)
or in Redis (shared, with the `limits` library). :meth:`RateLimiter.hit` answers how long
to wait when the limit is exhausted, so callers can send ``Retry-After``.

In memory the counters are a plain dict (:class:`LocalSlidingWindow`) with the arithmetic
of `limits`' sliding-window counter and its memory storage: `limits`' async machinery
(locks, storage calls, an expiry task) cost ~0.1 ms per check, a noticeable share of a DM
on the embedded default (docs/performance.md, "dm").

On Redis, :meth:`RateLimiter.hit` (once per DM sent) goes through
:class:`PipelinedSlidingWindow`: the hits waiting at the same time are sent as one
pipeline of `limits`' own sliding-window script, on `limits`' own keys, instead of one
round trip (and one redis-py command's overhead) each. A process on `limits`' unbatched
path and one on this path share the counters; ``test``, ``retry_after`` and ``clear``
still go through `limits`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from math import floor
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from echochat.domain.errors import Unavailable, server_stopping

__all__ = ["LocalSlidingWindow", "PipelinedSlidingWindow", "RateLimiter"]


class LocalSlidingWindow:
    """`limits`' sliding-window counter on its memory storage, synchronous: windows of
    ``expiry`` seconds aligned on the clock; the count is the current window's plus the
    previous window's weighted by how much of it still overlaps the last ``expiry``
    seconds. Same answers as ``SlidingWindowCounterRateLimiter`` over ``MemoryStorage``
    (tests/unit/test_dm_ratelimit_memory.py compares them)."""

    SWEEP_EVERY = 4096  # hits between sweeps of counters older than the previous window

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # key -> [window index, count in it, count in the window before]
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._expiry: dict[tuple[str, ...], int] = {}
        self._hits = 0

    def _window(self, key: tuple[str, ...], expiry: int, now: float) -> list[int]:
        current = int(now / expiry)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [current, 0, 0]
            self._expiry[key] = expiry
        elif entry[0] != current:
            # `limits` keys the previous window as int((now - expiry) / expiry)
            previous_index = int((now - expiry) / expiry)
            carried = entry[1] if entry[0] == previous_index else 0
            entry[:] = [current, 0, carried]
        return entry

    def _info(self, key: tuple[str, ...], expiry: int, now: float) -> tuple[int, float, int, float]:
        """(previous count, its time to live, current count, its time to live), as
        ``MemoryStorage.get_sliding_window``."""
        _, current_count, previous_count = self._window(key, expiry, now)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous_count else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous_count, previous_ttl, current_count, current_ttl

    def hit(self, key: tuple[str, ...], limit: int, expiry: int) -> bool:
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self.sweep()
        if limit < 1:
            return False
        now = self._clock()
        previous, previous_ttl, current, _ = self._info(key, expiry, now)
        if floor(previous * previous_ttl / expiry + current) + 1 > limit:
            return False
        self._counts[key][1] += 1
        return True

    def test(self, key: tuple[str, ...], limit: int, expiry: int) -> bool:
        previous, previous_ttl, current, _ = self._info(key, expiry, self._clock())
        return previous * previous_ttl / expiry + current < limit

    def reset_time(self, key: tuple[str, ...], limit: int, expiry: int) -> float:
        """When one more event will be allowed, as ``get_window_stats().reset_time``."""
        now = self._clock()
        previous, previous_ttl, current, current_ttl = self._info(key, expiry, now)
        if not (previous or current):
            return now
        previous_reset, current_reset = math.inf, math.inf
        if previous:
            previous_reset = previous_ttl % (expiry / previous)
        if current:
            current_reset = current_ttl % expiry
        return now + min(previous_reset, current_reset)

    def clear(self, key: tuple[str, ...]) -> None:
        self._counts.pop(key, None)
        self._expiry.pop(key, None)

    def sweep(self) -> None:
        """Forget counters whose windows are all over (nothing left to weigh)."""
        now = self._clock()
        for key, entry in list(self._counts.items()):
            expiry = self._expiry[key]
            if entry[0] < int((now - expiry) / expiry):
                self.clear(key)

    def __len__(self) -> int:
        return len(self._counts)


# previous window's key, current window's key, limit, expiry, amount, the caller's answer
_Entry = tuple[str, str, int, int, int, "asyncio.Future[bool]"]


class PipelinedSlidingWindow:
    """``RedisStorage.acquire_sliding_window_entry`` of `limits` (redis-py), with the calls
    waiting at the same time sent as one pipeline (``transaction=False``): each entry is
    `limits`' own script (``lua_acquire_sliding_window``) on the keys `limits` names, with
    its arguments, so the counts are the ones `limits` keeps, whoever writes them.

    A caller joins a pending list; a flush task, started by the first caller while none
    runs, sends what is pending, answers each caller, and goes on while callers arrived
    during the round trip (they make the next pipeline). Idle, nothing runs and nothing is
    kept. The pending list holds only callers awaiting their answer (bounded by the
    requests in flight); one pipeline carries at most :attr:`MAX_BATCH` of them.

    Errors reach the callers as on the unbatched path: a failed round trip (connection
    refused, timeout after redis-py's retries) raises its exception in every caller of
    that pipeline, an error reply raises in its own caller only. A server that lost the
    script (restart, ``SCRIPT FLUSH``) gets it loaded and the refused entries sent again,
    as redis-py's ``Script`` does (they did not run, so nothing is counted twice)."""

    MAX_BATCH = 512
    TIMEOUT = 5.0  # seconds for one flush: a stuck connection fails its callers, not all

    @classmethod
    def over(cls, storage: object) -> PipelinedSlidingWindow | None:
        """One over `limits`' storage, if that is Redis through a plain redis-py client
        (not a cluster's: its pipelines split commands by node)."""
        if isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge):
            client: object = storage.bridge.storage  # what get_connection() answers
            if isinstance(client, Redis):
                return cls(storage, storage.bridge, client)
        return None

    def __init__(self, storage: RedisStorage, bridge: RedispyBridge, client: Redis) -> None:
        self._storage = storage
        self._bridge = bridge
        self._client = client
        script = bridge.lua_acquire_sliding_window
        self._script = script.script
        self._sha: str = script.sha
        self._pending: list[_Entry] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """True if ``amount`` more events fit under ``limit`` per ``expiry`` seconds (and
        are counted), as ``RedisStorage.acquire_sliding_window_entry``."""
        if self._closed:
            raise server_stopping()
        storage, bridge = self._storage, self._bridge
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(
            (
                bridge.prefixed_key(storage._previous_window_key(key)),
                bridge.prefixed_key(storage._current_window_key(key)),
                limit,
                expiry,
                amount,
                future,
            )
        )
        task = self._task
        # done() as well: a task cancelled before its first step never runs its finally
        if task is None or task.done():
            self._task = asyncio.create_task(self._run(), name="ratelimit-flush")
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                taken = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                # a caller cancelled before its hit went out is not counted
                batch = [entry for entry in taken if not entry[5].done()]
                if batch:
                    await self._flush(batch)
        except BaseException:
            # cancelled (close(), loop shutdown): the waiting callers get an answer (their
            # own tasks were not cancelled)
            _fail_all(self._pending)
            self._pending.clear()
            raise
        finally:
            self._task = None

    async def _flush(self, batch: list[_Entry]) -> None:
        """Answer every caller in ``batch``: a result, an exception, or cancelled."""
        try:
            try:
                async with asyncio.timeout(self.TIMEOUT):
                    replies = await self._execute(batch)
            except TimeoutError as exc:
                raise Unavailable(
                    "the rate limiter's Redis did not answer; try again", code="unavailable"
                ) from exc
            for (*_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller was cancelled while the pipeline ran
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(bool(reply))
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:
            _fail_all(batch)
            raise

    async def _execute(self, batch: list[_Entry]) -> list[Any]:
        replies = await self._pipeline(batch)
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            self._sha = await self._client.script_load(self._script)  # str (str_if_bytes)
            for i, reply in zip(lost, await self._pipeline([batch[i] for i in lost]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, batch: list[_Entry]) -> list[Any]:
        # evalsha, not the Script object: a pipeline holding scripts asks SCRIPT EXISTS
        # first, one more round trip per flush
        async with self._client.pipeline(transaction=False) as pipe:
            for previous_key, current_key, limit, expiry, amount, _ in batch:
                pipe.evalsha(self._sha, 2, previous_key, current_key, limit, expiry, amount)
            return await pipe.execute(raise_on_error=False)

    async def close(self) -> None:
        """Stop a flush in progress; every caller still waiting, and any later one, gets
        :class:`Unavailable` (the server is stopping)."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        _fail_all(self._pending)  # a task cancelled before its first step left them
        self._pending.clear()


def _fail_all(entries: list[_Entry]) -> None:
    for *_, future in entries:
        if not future.done():
            future.set_exception(server_stopping())


class RateLimiter:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "echochat:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._local: LocalSlidingWindow | None = None
        self._batch: PipelinedSlidingWindow | None = None
        self._clock = clock
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = storage_from_string(
                uri, implementation="redispy", key_prefix=prefix + "limits"
            )
            self.backend = "redis"
        else:
            storage = storage_from_string("async+memory://")
            self.backend = "memory"
            self._local = LocalSlidingWindow(clock)
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._batch = PipelinedSlidingWindow.over(storage)
        self._parsed: dict[str, RateLimitItem] = {}

    def _item(self, rate: str) -> RateLimitItem:
        item = self._parsed.get(rate)
        if item is None:
            item = self._parsed[rate] = parse(rate)
        return item

    async def hit(self, rate: str, *identifiers: str) -> int:
        """Count one event; 0 if allowed, else the seconds to wait (at least 1)."""
        item = self._item(rate)
        local = self._local
        batch = self._batch
        if local is not None:
            if local.hit((rate, *identifiers), item.amount, item.get_expiry()):
                return 0
        elif batch is not None:
            # SlidingWindowCounterRateLimiter.hit(item, *identifiers), cost 1
            key = item.key_for(*identifiers)
            if await batch.acquire_sliding_window_entry(key, item.amount, item.get_expiry()):
                return 0
        elif await self._limiter.hit(item, *identifiers):
            return 0
        return await self.retry_after(rate, *identifiers)

    async def test(self, rate: str, *identifiers: str) -> int:
        """Like :meth:`hit` without counting: 0 if one more event would be allowed."""
        item = self._item(rate)
        local = self._local
        if local is not None:
            if local.test((rate, *identifiers), item.amount, item.get_expiry()):
                return 0
        elif await self._limiter.test(item, *identifiers):
            return 0
        return await self.retry_after(rate, *identifiers)

    async def retry_after(self, rate: str, *identifiers: str) -> int:
        item = self._item(rate)
        if self._local is not None:
            key = (rate, *identifiers)
            reset = self._local.reset_time(key, item.amount, item.get_expiry())
        else:
            reset = (await self._limiter.get_window_stats(item, *identifiers)).reset_time
        return max(1, math.ceil(reset - self._clock()))

    async def clear(self, rate: str, *identifiers: str) -> None:
        if self._local is not None:
            self._local.clear((rate, *identifiers))
            return
        await self._limiter.clear(self._item(rate), *identifiers)

    async def close(self) -> None:
        """Close the Redis connections (`limits` opens them lazily and never closes them)."""
        if self._batch is not None:
            await self._batch.close()
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()
