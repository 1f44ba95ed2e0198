"""create_app(settings): the only place that picks concrete classes and wires them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from echochat import __version__
from echochat.api import health, metrics, pages
from echochat.api.errors import install_error_handlers
from echochat.api.security import SecurityHeadersMiddleware
from echochat.bus import Bus
from echochat.bus.memory import MemoryBus
from echochat.config import Settings, load_settings
from echochat.services import Context
from echochat.store import Database
from echochat.store.migrate import ensure_current

__all__ = ["create_app", "create_app_from_environment", "make_bus", "make_database"]

log = logging.getLogger("echochat")


def make_database(settings: Settings) -> Database:
    return Database.create(settings.resolved_database_url)


def make_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from echochat.bus.redis import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryBus()


def create_app(settings: Settings) -> FastAPI:
    db = make_database(settings)
    bus = make_bus(settings)
    ctx = Context(settings=settings, db=db, bus=bus)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.ping()
        await ensure_current(db, migrate=settings.migrate_at_start)
        await bus.start()
        try:
            yield
        finally:
            await bus.close()
            await db.close()

    app = FastAPI(
        title="EchoChat",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.metrics = metrics.Metrics()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(packages=[("echochat.web", "static")]), name="static")
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.secure_cookies)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn worker processes: settings come from the file and environment
    that ``echochat serve`` prepared."""
    return create_app(load_settings().settings)
