"""What every command shares: settings from flags, one-line errors, the Rich consoles."""

from __future__ import annotations

import asyncio
import functools
import getpass
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from echochat.app import make_database
from echochat.bus import BusUnavailable
from echochat.config import ConfigError, ResolvedSettings, Settings, load_settings
from echochat.domain.errors import DomainError
from echochat.store import Database, DatabaseUnavailable
from echochat.store.migrate import MigrationError, ensure_current

__all__ = [
    "ConfigOption",
    "cli_actor",
    "console",
    "err_console",
    "fail",
    "guarded",
    "open_db",
    "resolve",
    "run",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
T = TypeVar("T")

ConfigOption = typer.Option(
    None, "--config", "-c", help="Path of echochat.toml (default: ./echochat.toml if present)."
)

EXPECTED = (ConfigError, DatabaseUnavailable, BusUnavailable, MigrationError, DomainError)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def guarded(func: Callable[P, T]) -> Callable[P, T]:
    """Turn the failures we expect into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except EXPECTED as exc:
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            fail(message)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def resolve(
    config: Path | None, *, create_data_dir: bool = True, **overrides: Any
) -> ResolvedSettings:
    return load_settings(config_file=config, overrides=overrides, create_data_dir=create_data_dir)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def cli_actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"cli:{who}"


@asynccontextmanager
async def open_db(settings: Settings, *, require_current: bool = True) -> AsyncIterator[Database]:
    """The configured database, reachable and (unless told otherwise) at the code's schema."""
    db = make_database(settings)
    try:
        if db.missing_file is not None:
            fail(
                f"no database yet at {db.missing_file}; 'echochat serve' or "
                "'echochat db upgrade' creates it (or check --config / ECHOCHAT_DATA_DIR)"
            )
        await db.ping()
        if require_current:
            await ensure_current(db, migrate=False)
        yield db
    finally:
        await db.close()
