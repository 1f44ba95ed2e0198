"""``echochat db``: migrations and schema state."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from echochat.app import make_database
from echochat.cli.common import ConfigOption, console, fail, guarded, open_db, resolve, run
from echochat.config import mask_url
from echochat.store.migrate import SchemaState, SchemaStatus, schema_state, upgrade

__all__ = ["app"]

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@app.command("upgrade")
@guarded
def upgrade_cmd(config: Path | None = ConfigOption) -> None:
    """Apply every pending migration (each in its own transaction)."""
    settings = resolve(config).settings

    async def go() -> SchemaState:
        db = make_database(settings)
        try:
            await db.ping()
            before = await schema_state(db)
            if before.status is SchemaStatus.AHEAD:
                fail(f"database schema is {before.describe()}")
            if before.status is SchemaStatus.CURRENT:
                console.print(f"{db.masked_url}: already {before.describe()}")
                return before
            with Progress(
                TextColumn("[bold]migrating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=console,
            ) as progress:
                task = progress.add_task("", total=len(before.pending))

                def step(revision: str, done: int, total: int) -> None:
                    progress.update(task, completed=done, description=f"applied {revision}")

                after = await upgrade(db, on_step=step)
            console.print(f"{db.masked_url}: {after.describe()}")
            return after
        finally:
            await db.close()

    run(go())


@app.command("current")
@guarded
def current_cmd(
    config: Path | None = ConfigOption,
    check: bool = typer.Option(False, "--check", help="Exit 1 unless the schema is current."),
) -> None:
    """Show the database's migration state."""
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> SchemaState:
        async with open_db(settings, require_current=False) as db:
            return await schema_state(db)

    state = run(go())
    console.print(f"database: {mask_url(settings.resolved_database_url)}")
    console.print(f"revision: {state.current or '(none)'}   code head: {state.head}")
    console.print(f"state:    {state.describe()}")
    if state.status is SchemaStatus.AHEAD or (check and state.status is not SchemaStatus.CURRENT):
        fail(f"schema is {state.status.value}")
