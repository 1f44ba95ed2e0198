"""create_app(settings): the only place that picks concrete classes and wires them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from echochat import __version__
from echochat.api import admin as admin_api
from echochat.api import admin_assets, auth, buddies, dm, health, keys, metrics, pages
from echochat.api import admin_rooms as admin_rooms_api
from echochat.api import reports as reports_api
from echochat.api import room_messages as room_messages_api
from echochat.api import rooms as rooms_api
from echochat.api.csrf import CsrfMiddleware
from echochat.api.errors import UnexpectedErrorMiddleware, install_error_handlers
from echochat.api.security import SecurityHeadersMiddleware
from echochat.bus import Bus
from echochat.bus.memory import MemoryBus
from echochat.config import Settings, load_settings
from echochat.integrations.email import ConsoleMailer, Mailer, SmtpMailer
from echochat.integrations.ratelimit import RateLimiter
from echochat.realtime import gateway
from echochat.realtime.hub import Hub
from echochat.services import Context, server_settings
from echochat.services import dm as dm_service
from echochat.services.mail import keep_in_outbox
from echochat.services.tokens import TokenKeys
from echochat.store import Database
from echochat.store.migrate import ensure_current

__all__ = [
    "create_app",
    "create_app_from_environment",
    "make_bus",
    "make_context",
    "make_database",
    "make_mailer",
]

log = logging.getLogger("echochat")


def make_database(settings: Settings) -> Database:
    return Database.create(settings.resolved_database_url)


def make_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from echochat.bus.redis import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryBus()


def make_mailer(settings: Settings, db: Database) -> Mailer:
    if settings.email_backend == "smtp":
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            security=settings.smtp_security,
            timeout=settings.smtp_timeout,
        )
    return ConsoleMailer(sink=lambda email: keep_in_outbox(db, email))


def make_context(settings: Settings) -> Context:
    """Every concrete collaborator, chosen by settings: the app and the CLI share this."""
    db = make_database(settings)
    return Context(
        settings=settings,
        db=db,
        bus=make_bus(settings),
        keys=TokenKeys(
            settings.secret(), issuer=settings.public_url, access_ttl=settings.access_token_ttl
        ),
        limiter=RateLimiter(settings.redis_url, prefix=settings.redis_prefix),
        mailer=make_mailer(settings, db),
    )


class EchoChatApp(FastAPI):
    """FastAPI, with ``/ws`` upgrades handed straight to the gateway.

    A socket lives for hours: running it inside the HTTP middleware stack (none of which does
    anything for a WebSocket) kept every layer's frame alive per socket, about 11 KiB each
    (docs/performance.md)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            scope["app"] = self
            await gateway.websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def freeze_startup_heap() -> None:
    """Move everything alive once the server has started (modules, compiled statements and
    models: a few hundred thousand objects) out of the cyclic garbage collector's sight.

    A full (generation 2) collection walks every tracked object; with the start-up heap
    in it, one took 60-150 ms on this machine, and a server stops for that long: under
    load that was the latency tail (docs/performance.md, "dm"). Frozen objects are never
    walked, so a full collection only walks what was made since. They are still freed by
    reference counting; only a reference cycle among them that dies later is not
    collected (a bounded leak: start-up objects mostly live as long as the process).
    ``gc.unfreeze()`` at shutdown is process-wide (one server app per process)."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, *, ctx: Context | None = None, server_process: bool = False
) -> FastAPI:
    """The app. ``server_process``: this process is a server (``echochat serve``), so it
    checkpoints SQLite's WAL on a thread of its own (docs/performance.md, "dm"); apps made
    in tests leave checkpoints to SQLite."""
    ctx = ctx or make_context(settings)
    db, bus = ctx.db, ctx.bus
    hub = Hub(ctx)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.ping()
        await ensure_current(db, migrate=settings.migrate_at_start)
        if server_process:
            db.start_background_checkpoints()
        await bus.start()
        admin_settings = await server_settings.start_following(ctx)  # overrides, live
        await hub.start()
        retention = asyncio.create_task(dm_service.retention_loop(ctx), name="dm-retention")
        if server_process:
            freeze_startup_heap()
        try:
            yield
        finally:
            if server_process:
                gc.unfreeze()
            admin_settings.cancel()
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await admin_settings
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await hub.stop()
            await dm_service.stop_writer(db)
            await ctx.drain()
            await ctx.lost.close()
            await ctx.limiter.close()
            await bus.close()
            await db.close()

    app = EchoChatApp(
        title="EchoChat",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.hub = hub
    app.state.metrics = metrics.Metrics()
    app.state.metrics.sockets.set_function(lambda: hub.count)
    app.state.metrics.watch_losses(
        lambda: hub.losses, lambda: ctx.lost.noted, lambda: ctx.lost.pending
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(buddies.router)
    app.include_router(keys.router)
    app.include_router(dm.router)
    app.include_router(rooms_api.router)
    app.include_router(admin_rooms_api.router)
    app.include_router(room_messages_api.router)
    app.include_router(reports_api.router)
    app.include_router(admin_api.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    app.include_router(admin_assets.router)
    app.mount("/static", StaticFiles(packages=[("echochat.web", "static")]), name="static")
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(CsrfMiddleware)
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.secure_cookies)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn worker processes: settings come from the file and environment
    that ``echochat serve`` prepared."""
    return create_app(load_settings().settings, server_process=True)
