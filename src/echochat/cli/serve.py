"""``echochat serve``: prepare the data dir, database and bus, then run the HTTP server."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import typer
import uvicorn

from echochat.app import create_app, make_bus, make_context, make_database
from echochat.cli.common import ConfigOption, console, err_console, fail, guarded, resolve, run
from echochat.config import ENV_PREFIX, Settings
from echochat.logs import configure_logging, uvicorn_log_config
from echochat.services import recovery
from echochat.store.migrate import MigrationError, SchemaStatus, schema_state, upgrade

__all__ = ["serve"]


async def prepare(settings: Settings) -> str | None:
    """Check the database (migrating it when allowed) and the bus before taking traffic.
    While no admin exists, return a one-time claim token for the first admin."""
    bus = make_bus(settings)
    try:
        await bus.start()
    finally:
        await bus.close()
    db = make_database(settings)
    try:
        await db.ping()
        state = await schema_state(db)
        if state.status is SchemaStatus.AHEAD:
            raise MigrationError(f"database schema is {state.describe()}")
        if state.status is not SchemaStatus.CURRENT:
            if not settings.migrate_at_start:
                raise MigrationError(f"database schema is {state.describe()}")
            console.print(
                f"Migrating database {db.masked_url} ({len(state.pending)} step(s))...",
                soft_wrap=True,
            )

            def step(revision: str, done: int, total: int) -> None:
                console.print(f"  [{done}/{total}] applied migration {revision}")

            await upgrade(db, on_step=step)
    finally:
        await db.close()
    ctx = make_context(settings)
    try:
        return await recovery.new_admin_claim(ctx)
    finally:
        await ctx.db.close()


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(
                    f"port {port} on {host} is already in use; stop the other server or choose "
                    "another with --port"
                )
            fail(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port")


@guarded
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to bind (default 8000)."),
    workers: int | None = typer.Option(
        None, help="Server processes; more than one needs Redis and PostgreSQL."
    ),
    data_dir: Path | None = typer.Option(None, help="Data folder (default ./echochat-data)."),
    config: Path | None = ConfigOption,
) -> None:
    """Run the server. Creates the data dir and secret key, migrates SQLite, prints the URL."""
    resolved = resolve(config, host=host, port=port, workers=workers, data_dir=data_dir)
    settings = resolved.settings
    configure_logging(settings.log_level)
    _check_port(settings.host, settings.port)
    claim = run(prepare(settings))

    console.print(
        f"[bold]EchoChat[/] is starting at [link={settings.public_url}]{settings.public_url}[/link]"
    )
    if settings.public_url != f"http://{settings.host}:{settings.port}":
        console.print(f"  listening on {settings.host}:{settings.port}")
    if claim:
        hours = settings.admin_claim_ttl // 3600
        console.print(
            "\n[bold yellow]No admin exists yet.[/] Open this link to create the admin account "
            f"(works once, for {hours} h):\n  {settings.public_url}/claim#{claim}\n"
            "  (or run: echochat admin create USERNAME)\n",
            soft_wrap=True,
        )
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": uvicorn_log_config(settings.log_level),
        "server_header": False,
        "timeout_graceful_shutdown": 5,
        # Frames a little over the limit get an `err` and the socket stays open; far over it,
        # uvicorn closes with 1009 before reading them (docs/protocol.md).
        "ws_max_size": settings.max_frame_bytes * 2,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        # uvicorn's websockets Sans-I/O protocol, leaner per idle socket (docs/performance.md)
        "ws": "echochat.realtime.wsserver:LeanWebSocketProtocol",
        "ws_per_message_deflate": settings.ws_compression,
        # X-Forwarded-For is ours to judge (settings.trusted_proxies), not uvicorn's.
        "proxy_headers": False,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings, server_process=True), **common)  # type: ignore[arg-type]
        return
    # Worker processes rebuild their settings from the same file and environment.
    if resolved.config_file is not None:
        os.environ[ENV_PREFIX + "CONFIG"] = str(resolved.config_file.resolve())
    for name, value in {
        "HOST": settings.host,
        "PORT": str(settings.port),
        "DATA_DIR": str(settings.data_dir),
    }.items():
        os.environ[ENV_PREFIX + name] = value
    err_console.print(f"starting {settings.workers} worker processes")
    uvicorn.run(
        "echochat.app:create_app_from_environment",
        factory=True,
        workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )
