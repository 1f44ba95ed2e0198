"""Wake-ups a commit could not publish, told again once the bus takes them.

A message is committed before it is published, and the bus is at-most-once: when the
publish after a commit fails (Redis unreachable for a moment), the message is safe in the
database but the sockets of its users were never woken, and later messages may reach them
first. The writers hand such a loss here: per channel (``user:<id>`` or ``room:<id>``), the
lowest id that was not published. A task publishes one ``resync`` event per channel,
retrying with backoff until the bus takes it, with ``cursor`` (DMs) or ``rooms`` (per room)
set just below that id; the clients lower their cursors to it and resume with ``hello``,
so the replay brings what was missed (docs/protocol.md, "Lost wake-ups").

A membership order (services/roomcast.py) that could not be published is retried the
same way, as a ``Q`` order on the user's channel: every process holding the user's sockets
reads their rooms again from the database (and tells them to resync if a room was missing).

Pending losses are merged per channel (the lowest id wins), so memory is bounded by the
number of channels, however long the bus stays away. They live in this process only: if it
stops before the bus comes back, a client whose cursor has moved past a missed message (a
later one arrived live) does not get it replayed; it is still in the history the window
fetches, and a DM still counts in the offline summary until a device acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import orjson

from echochat.bus import Bus
from echochat.domain.events import ResyncData, ResyncEvent

__all__ = ["LostWakeups"]

log = logging.getLogger("echochat.resync")

FIRST_DELAY = 0.05  # seconds before the first retry; doubles up to MAX_DELAY
MAX_DELAY = 5.0
LAST_TRY = 1.0  # seconds for one last publish of what is pending, at shutdown


@dataclass
class _Loss:
    """What one channel's sockets missed: the DM cursor to resume from (None: nothing
    durable, only receipts), and per room the room cursor."""

    cursor: int | None = None
    rooms: dict[int, int] = field(default_factory=dict)
    reread_rooms: bool = False  # a membership order was lost: processes read the rooms again
    told: bool = False  # a resync is due (not only a re-read)

    def merge(self, other: _Loss) -> None:
        self.told |= other.told
        self.reread_rooms |= other.reread_rooms
        self.add(other.cursor, other.rooms)

    def add(self, cursor: int | None, rooms: dict[int, int]) -> None:
        if cursor is not None:
            self.cursor = cursor if self.cursor is None else min(self.cursor, cursor)
        for room, at in rooms.items():
            self.rooms[room] = min(self.rooms.get(room, at), at)

    def payloads(self) -> list[bytes]:
        out = [b"Q"] if self.reread_rooms else []
        return [*out, self._resync()] if self.told else out

    def _resync(self) -> bytes:
        data = ResyncData(
            reason="publish",
            cursor=self.cursor,
            rooms={str(room): at for room, at in sorted(self.rooms.items())},
        )
        event = ResyncEvent(data=data).model_dump(mode="json")
        return b"E" + orjson.dumps({"op": "ev", "type": event["type"], "data": event["data"]})


class LostWakeups:
    """One per process (on the :class:`~echochat.services.context.Context`)."""

    def __init__(self) -> None:
        self._pending: dict[str, _Loss] = {}
        self._task: asyncio.Task[None] | None = None
        self._bus: Bus | None = None
        self._closed = False
        self.noted = 0  # losses handed here, in all (for /metrics)

    @property
    def pending(self) -> int:
        """Channels still waiting for their ``resync``."""
        return len(self._pending)

    def note(
        self,
        bus: Bus,
        channel: str,
        *,
        cursor: int | None = None,
        rooms: dict[int, int] | None = None,
        reread_rooms: bool = False,
    ) -> None:
        """The sockets on ``channel`` missed what follows ``cursor`` (DMs) and, per room,
        what follows ``rooms[room]``; tell them (now, or when the bus is back). With
        ``reread_rooms`` (and nothing else), a membership order on the user's channel was
        lost: the processes are told to read the user's rooms again instead."""
        if self._closed:
            return
        self._bus = bus
        self.noted += 1
        loss = self._pending.setdefault(channel, _Loss())
        loss.add(cursor, rooms or {})
        loss.reread_rooms |= reread_rooms
        loss.told |= not reread_rooms
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(bus), name="lost-wakeups")

    def _restore(self, batch: dict[str, _Loss]) -> None:
        """Put back what a publish did not take, merged with what came meanwhile."""
        for channel, loss in batch.items():
            self._pending.setdefault(channel, _Loss()).merge(loss)

    async def _publish(self, bus: Bus) -> None:
        batch, self._pending = self._pending, {}
        messages = [(ch, payload) for ch, loss in batch.items() for payload in loss.payloads()]
        try:
            await bus.publish_many(messages)
        except BaseException:
            self._restore(batch)
            raise

    async def _run(self, bus: Bus) -> None:
        delay = FIRST_DELAY
        while self._pending:
            told = len(self._pending)
            try:
                await self._publish(bus)
            except Exception as exc:
                log.warning(
                    "could not publish resync to %d channels (retrying in %.2f s): %s",
                    len(self._pending),
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            log.info("resync published to %d channels after a failed publish", told)
            delay = FIRST_DELAY

    async def close(self) -> None:
        """At shutdown: stop retrying, after one last try (bounded) for what is pending (the
        bus may be back while the retry sleeps; other processes' sockets need it)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending and self._bus is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(LAST_TRY):
                    await self._publish(self._bus)
        if self._pending:
            log.warning("stopping with %d channels not told to resync", len(self._pending))
