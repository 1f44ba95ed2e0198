"""Starting an app in-process for a test, with room for a loaded machine."""

from __future__ import annotations

from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

__all__ = ["STARTUP_TIMEOUT", "running"]

# Start-up migrates a fresh database: well under a second on a quiet machine, but
# asgi-lifespan's default of 5 s was reached on a loaded one (tests in parallel).
STARTUP_TIMEOUT = 60.0


def running(app: ASGIApp) -> LifespanManager:
    """``async with running(app) as manager:`` the app's lifespan, started and stopped."""
    return LifespanManager(app, startup_timeout=STARTUP_TIMEOUT, shutdown_timeout=STARTUP_TIMEOUT)
