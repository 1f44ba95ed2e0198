"""The in-process bus: the embedded default. One process only (the server refuses more)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from echochat.bus.base import BusUnavailable, CappedAdd, Subscription

__all__ = ["MemoryBus"]


class MemoryBus:
    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._subscriptions: set[Subscription] = set()
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._sets: dict[str, set[str]] = defaultdict(set)
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()

    async def ping(self) -> None:
        if self._closed:
            raise BusUnavailable("in-process bus is closed")

    # publish / subscribe -----------------------------------------------------------------
    async def publish(self, channel: str, payload: bytes) -> None:
        for sub in list(self._subscribers.get(channel, ())):
            sub._deliver(channel, payload)

    async def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        subscribers = self._subscribers
        for channel, payload in messages:
            subs = subscribers.get(channel)
            if subs:
                for sub in list(subs):
                    sub._deliver(channel, payload)

    async def subscribe(self, *channels: str, maxsize: int = 1024) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscriptions.add(sub)
        await sub.add(*channels)
        return sub

    async def _attach(self, sub: Subscription, channels: Iterable[str]) -> None:
        for channel in channels:
            self._subscribers[channel].add(sub)

    async def _detach(self, sub: Subscription, channels: Iterable[str]) -> None:
        for channel in channels:
            subs = self._subscribers.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[channel]
        if not sub.channels and sub.closed:
            self._subscriptions.discard(sub)

    # keyed state -------------------------------------------------------------------------
    def _live(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline is not None and deadline <= self._clock():
            del self._values[key]
            return None
        return value

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, (_, d) in self._values.items() if d is not None and d <= now]:
            del self._values[key]

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if len(self._values) % 1024 == 1023:
            self._sweep()
        # An exact-size copy: orjson's results keep their whole working buffer (~4 KiB)
        # alive, which adds up to megabytes of presence state (docs/performance.md).
        self._values[key] = (bytes(memoryview(value)), None if ttl is None else self._clock() + ttl)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def delete(self, key: str) -> bool:
        existed = self._live(key) is not None
        self._values.pop(key, None)
        return existed

    async def expire(self, key: str, ttl: float) -> bool:
        value = self._live(key)
        if value is None:
            return False
        self._values[key] = (value, self._clock() + ttl)
        return True

    # capped sets -------------------------------------------------------------------------
    async def capped_add(self, key: str, member: str, cap: int) -> CappedAdd:
        members = self._sets[key]
        if member in members:
            return CappedAdd.ALREADY_MEMBER
        if cap > 0 and len(members) >= cap:
            return CappedAdd.FULL
        members.add(member)
        return CappedAdd.ADDED

    async def set_remove(self, key: str, member: str) -> bool:
        members = self._sets.get(key)
        if not members or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._sets[key]
        return True

    async def set_members(self, key: str) -> set[str]:
        return set(self._sets.get(key, ()))

    async def trim_random(self, key: str, cap: int) -> list[str]:
        members = self._sets.get(key)
        if cap <= 0 or not members or len(members) <= cap:
            return []
        removed = random.sample(sorted(members), len(members) - cap)
        members.difference_update(removed)
        return removed
