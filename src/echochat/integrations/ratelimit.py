"""Rate limits with the `limits` library: in memory (one process) or in Redis (shared).

A sliding-window counter per (rate, identifiers). :meth:`RateLimiter.hit` answers how long
to wait when the limit is exhausted, so callers can send ``Retry-After``.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, prefix: str = "echochat:") -> None:
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = storage_from_string(
                uri, implementation="redispy", key_prefix=prefix + "limits"
            )
            self.backend = "redis"
        else:
            storage = storage_from_string("async+memory://")
            self.backend = "memory"
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
        if await self._limiter.hit(item, *identifiers):
            return 0
        return await self.retry_after(rate, *identifiers)

    async def test(self, rate: str, *identifiers: str) -> int:
        """Like :meth:`hit` without counting: 0 if one more event would be allowed."""
        item = self._item(rate)
        if await self._limiter.test(item, *identifiers):
            return 0
        return await self.retry_after(rate, *identifiers)

    async def retry_after(self, rate: str, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(self._item(rate), *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def clear(self, rate: str, *identifiers: str) -> None:
        await self._limiter.clear(self._item(rate), *identifiers)

    async def close(self) -> None:
        """Close the Redis connections (`limits` opens them lazily and never closes them)."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()
