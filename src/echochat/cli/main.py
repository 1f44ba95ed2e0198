"""Entry point of the ``echochat`` command."""

from __future__ import annotations

import typer

from echochat import __version__
from echochat.cli import admin, db, doctor, serve, smoke

__all__ = ["app", "main"]

app = typer.Typer(
    name="echochat",
    help="EchoChat: a self-hosted, Yahoo-Messenger-style web messenger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"echochat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """EchoChat: a self-hosted, Yahoo-Messenger-style web messenger."""


app.command("serve")(serve.serve)
app.command("doctor")(doctor.doctor)
app.command("smoke")(smoke.smoke)
app.add_typer(db.app, name="db")
app.add_typer(admin.app, name="admin")


def main() -> None:
    app()
