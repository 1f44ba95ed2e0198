"""Rate limits: a sliding-window counter per (rate, identifiers), in memory (one process)
or in Redis (shared, with the `limits` library). :meth:`RateLimiter.hit` answers how long
to wait when the limit is exhausted, so callers can send ``Retry-After``.

In memory the counters are a plain dict (:class:`LocalSlidingWindow`) with the arithmetic
of `limits`' sliding-window counter and its memory storage: `limits`' async machinery
(locks, storage calls, an expiry task) cost ~0.1 ms per check, a noticeable share of a DM
on the embedded default (docs/performance.md, "dm").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from math import floor

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

__all__ = ["LocalSlidingWindow", "RateLimiter"]


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


class RateLimiter:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "echochat:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._local: LocalSlidingWindow | None = None
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
        if local is not None:
            if local.hit((rate, *identifiers), item.amount, item.get_expiry()):
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
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()
