"""What a service needs from the outside world, wired once by ``app.py`` or the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from echochat.bus import Bus
from echochat.config import Settings
from echochat.integrations.email import Mailer
from echochat.integrations.ratelimit import RateLimiter
from echochat.services.passwords import PasswordHasher
from echochat.services.resync import LostWakeups
from echochat.services.tokens import TokenKeys
from echochat.store import Database

__all__ = ["Context", "utcnow"]

log = logging.getLogger("echochat.tasks")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    db: Database
    bus: Bus
    keys: TokenKeys
    limiter: RateLimiter
    mailer: Mailer
    hasher: PasswordHasher = field(default_factory=lambda: PasswordHasher())
    clock: Callable[[], datetime] = utcnow
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # wake-ups a commit could not publish, told again as ``resync`` when the bus is back
    lost: LostWakeups = field(default_factory=LostWakeups)
    # settings as configured (defaults, file, environment) before the admin's overrides, which
    # services/server_settings.py applies to ``settings`` live; None: ``settings`` has none
    base_settings: Settings | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run work after the response (e.g. sending email) without losing track of it."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed: %s", name, t.exception())

        task.add_done_callback(done)
        return task

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for background work (at shutdown, and in tests)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
