"""The Bus interface: fan-out between processes and small shared state.

The database is the truth; the bus is a poke that wakes the right sockets on every process
(ARCHITECTURE section 2). Publish/subscribe is at-most-once: a subscriber that falls behind
is told so (:class:`BusOverflow`) and resynchronises from the database; nothing may depend on
a message arriving.

Implementations: :mod:`echochat.bus.memory` (one process) and :mod:`echochat.bus.redis`
(any number of processes). Both pass the contract in ``tests/bus_contract.py``. Any
operation may raise :class:`BusUnavailable` when the backend is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "Bus",
    "BusOverflow",
    "BusUnavailable",
    "CappedAdd",
    "Subscription",
]


class BusUnavailable(Exception):
    """The bus cannot be reached; the message names it (password masked)."""


class BusOverflow(Exception):
    """A subscriber's bounded queue overflowed: messages were dropped, resync from the truth."""


class CappedAdd(StrEnum):
    ADDED = "added"
    ALREADY_MEMBER = "already_member"
    FULL = "full"


_CLOSED = object()
_OVERFLOW = object()


class Subscription:
    """One subscriber's bounded queue of ``(channel, payload)`` over a changing set of channels.

    Iterate with ``async for channel, payload in sub``. When more than ``maxsize`` messages
    wait, the queue is cleared and the next read raises :class:`BusOverflow` once; reading
    then continues with new messages. The owning bus routes messages in with :meth:`_deliver`.
    """

    def __init__(self, bus: Bus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.channels: set[str] = set()
        self.closed = False
        self.dropped = 0

    async def add(self, *channels: str) -> None:
        new = [c for c in channels if c not in self.channels]
        if new:
            self.channels.update(new)
            await self._bus._attach(self, new)

    async def remove(self, *channels: str) -> None:
        gone = [c for c in channels if c in self.channels]
        if gone:
            self.channels.difference_update(gone)
            await self._bus._detach(self, gone)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        channels, self.channels = list(self.channels), set()
        if channels:
            await self._bus._detach(self, channels)
        self._put_control(_CLOSED)

    def _deliver(self, channel: str, payload: bytes) -> None:
        """Called by the bus, from the event loop, never blocking."""
        if self.closed:
            return
        if self._queue.qsize() >= self._maxsize:
            self.dropped += self._queue.qsize()
            self._clear()
            self._queue.put_nowait(_OVERFLOW)
            return
        self._queue.put_nowait((channel, payload))

    def signal_overflow(self) -> None:
        """Tell the consumer that messages may have been lost (e.g. the bus reconnected):
        its next read raises :class:`BusOverflow` and it resynchronises from the database."""
        if not self.closed:
            self._put_control(_OVERFLOW)

    def _put_control(self, item: object) -> None:
        self._clear()
        self._queue.put_nowait(item)

    def _clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def get(self) -> tuple[str, bytes]:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise StopAsyncIteration
        if item is _OVERFLOW:
            raise BusOverflow(f"subscriber fell more than {self._maxsize} messages behind")
        assert isinstance(item, tuple)
        return item

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        return await self.get()


@runtime_checkable
class Bus(Protocol):
    """What every bus offers. Keys and channels are plain strings; the bus adds its prefix."""

    name: str

    async def start(self) -> None:
        """Connect; raise :class:`BusUnavailable` with a clear reason if it cannot."""

    async def close(self) -> None:
        """Close every subscription and connection."""

    async def ping(self) -> None:
        """Round-trip, or :class:`BusUnavailable`."""

    # publish / subscribe -----------------------------------------------------------------
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to every current subscriber of ``channel`` on every process."""

    async def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """:meth:`publish` each ``(channel, payload)``, in list order (so in order within
        each channel, as consecutive publishes would be), in as few round trips as the
        backend allows (Redis: one pipeline)."""

    async def subscribe(self, *channels: str, maxsize: int = 1024) -> Subscription:
        """A new subscription, already listening on ``channels`` when this returns."""

    async def _attach(self, sub: Subscription, channels: Iterable[str]) -> None: ...

    async def _detach(self, sub: Subscription, channels: Iterable[str]) -> None: ...

    # small keyed state with expiry -----------------------------------------------------
    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``; it disappears ``ttl`` seconds later (None: never)."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def delete(self, key: str) -> bool:
        """True if the key existed."""

    async def expire(self, key: str, ttl: float) -> bool:
        """Reset the time to live of an existing key; False if it does not exist."""

    # capped sets (voice rosters) ---------------------------------------------------------
    async def capped_add(self, key: str, member: str, cap: int) -> CappedAdd:
        """Atomically add ``member`` unless the set already holds ``cap`` members (0: no cap)."""

    async def set_remove(self, key: str, member: str) -> bool: ...

    async def set_members(self, key: str) -> set[str]: ...

    async def trim_random(self, key: str, cap: int) -> list[str]:
        """Atomically remove randomly chosen members until at most ``cap`` remain (0: none
        removed); return the removed members."""
