"""``echochat admin``: roles in the database, shown with the database they were read from."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from echochat.app import make_context
from echochat.cli.common import ConfigOption, cli_actor, console, guarded, open_db, resolve, run
from echochat.services import accounts, admin, roles
from echochat.store import outbox
from echochat.store.outbox import OutboxRow

__all__ = ["app"]

app = typer.Typer(help="Administrators and roles.", no_args_is_help=True)

RoleOption = typer.Option("admin", "--role", "-r", help="Role: admin, moderator or user.")


def _print_status(status: roles.RoleStatus) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("user", f"{status.username} ({status.display_name}), id {status.user_id}")
    table.add_row("banned", "yes" if status.banned else "no")
    table.add_row("roles", ", ".join(status.roles))
    table.add_row("permissions", ", ".join(status.permissions) or "(none)")
    table.add_row("database", f"{status.database} (name: {status.database_name})")
    console.print(table)


@app.command("status")
@guarded
def status_cmd(username: str, config: Path | None = ConfigOption) -> None:
    """Show a user's roles and permissions, and which database they were read from."""
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> roles.RoleStatus:
        async with open_db(settings) as db:
            return await roles.role_status(db, username)

    _print_status(run(go()))


@app.command("grant")
@guarded
def grant_cmd(username: str, role: str = RoleOption, config: Path | None = ConfigOption) -> None:
    """Give a role (default admin). Written to the audit log."""
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> tuple[bool, roles.RoleStatus]:
        async with open_db(settings) as db:
            changed = await roles.grant_role(db, username, role, actor=cli_actor())
            return changed, await roles.role_status(db, username)

    changed, status = run(go())
    console.print(f"{status.username} {'now has' if changed else 'already had'} role {role}")
    _print_status(status)


@app.command("revoke")
@guarded
def revoke_cmd(username: str, role: str = RoleOption, config: Path | None = ConfigOption) -> None:
    """Take a role away (default admin). The last admin cannot be removed. Audited."""
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> tuple[bool, roles.RoleStatus]:
        async with open_db(settings) as db:
            changed = await roles.revoke_role(db, username, role, actor=cli_actor())
            return changed, await roles.role_status(db, username)

    changed, status = run(go())
    console.print(f"{status.username} {'no longer has' if changed else 'did not have'} role {role}")
    _print_status(status)


def _ban(username: str, *, banned: bool, reason: str, config: Path | None) -> roles.RoleStatus:
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> roles.RoleStatus:
        async with open_db(settings):
            pass
        ctx = make_context(settings)
        try:
            await ctx.bus.start()  # with Redis, the servers' sockets of the user close at once
            await admin.set_ban_as_operator(
                ctx, username, banned=banned, reason=reason, actor=cli_actor()
            )
            return await roles.role_status(ctx.db, username)
        finally:
            await ctx.bus.close()
            await ctx.limiter.close()
            await ctx.db.close()

    return run(go())


@app.command("ban")
@guarded
def ban_cmd(
    username: str,
    reason: str = typer.Option("", "--reason", help="Shown to the user when they sign in."),
    config: Path | None = ConfigOption,
) -> None:
    """Ban a user: every session ends, sign-in is refused with the reason. Audited.
    The last admin cannot be banned."""
    status = _ban(username, banned=True, reason=reason, config=config)
    console.print(f"{status.username} is banned")
    _print_status(status)


@app.command("unban")
@guarded
def unban_cmd(username: str, config: Path | None = ConfigOption) -> None:
    """Lift a ban. Audited."""
    status = _ban(username, banned=False, reason="", config=config)
    console.print(f"{status.username} is not banned")
    _print_status(status)


@app.command("create")
@guarded
def create_cmd(
    username: str,
    role: str = RoleOption,
    email: str | None = typer.Option(None, help="Email address (for password resets)."),
    display_name: str | None = typer.Option(None, help="Name shown to buddies."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (scripts)."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Create a user with a role (default admin), asking for the password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = resolve(config).settings

    async def go() -> roles.RoleStatus:
        async with open_db(settings):
            pass
        ctx = make_context(settings)
        try:
            await accounts.create_account(
                ctx,
                username=username,
                password=password,
                email=email,
                display_name=display_name,
                role=role,
                actor=cli_actor(),
            )
            return await roles.role_status(ctx.db, username)
        finally:
            await ctx.db.close()

    status = run(go())
    console.print(f"created {status.username} with role {role}")
    _print_status(status)


@app.command("outbox")
@guarded
def outbox_cmd(
    to: str | None = typer.Option(None, help="Only email sent to this address."),
    limit: int = typer.Option(5, min=1, max=100, help="How many, newest first."),
    config: Path | None = ConfigOption,
) -> None:
    """Show email kept by the console backend (password resets on a server without SMTP)."""
    settings = resolve(config, create_data_dir=False).settings

    async def go() -> list[OutboxRow]:
        async with open_db(settings) as db, db.read() as conn:
            return await outbox.latest(conn, to=to, limit=limit)

    rows = run(go())
    if not rows:
        console.print("the outbox is empty")
    for row in rows:
        console.rule(f"#{row.id} {row.created_at:%Y-%m-%d %H:%M} UTC to {row.to_addr}")
        console.print(f"Subject: {row.subject}\n")
        console.print(row.body, markup=False, highlight=False)
