"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from echochat.bus import BusUnavailable
from echochat.services.context import Context
from echochat.store import DatabaseUnavailable

__all__ = ["Readiness", "readiness"]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


async def readiness(ctx: Context, timeout: float = 3.0) -> Readiness:
    """Probe the database and the bus concurrently; each check says ``ok`` or why not."""

    async def check_db() -> str:
        try:
            await ctx.db.ping(timeout)
        except DatabaseUnavailable as exc:
            return str(exc)
        return "ok"

    async def check_bus() -> str:
        try:
            async with asyncio.timeout(timeout):
                await ctx.bus.ping()
        except TimeoutError:
            return f"bus ({ctx.bus.name}) did not answer within {timeout:g}s"
        except BusUnavailable as exc:
            return str(exc)
        return "ok"

    db, bus = await asyncio.gather(check_db(), check_bus())
    return Readiness(db == "ok" and bus == "ok", {"database": db, "bus": bus})
