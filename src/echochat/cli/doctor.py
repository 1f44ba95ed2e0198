"""``echochat doctor``: explain the configuration and check what it points at.

Answers the original project's worst support question, "which database am I talking to and
who is admin there?", in one screen: every setting with where its value came from (default,
file, env, generated, or ``admin`` for a value changed in the admin panel), then one line per
check (data dir, disk space, database, migrations, admins, bus/Redis, email, GIF provider),
then what to do about each problem. Exits 1 when a check fails; warnings do not fail.
Secrets (passwords, keys, tokens) are never printed.
"""

from __future__ import annotations

import os
import shutil
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosmtplib
from rich.table import Table

from echochat import __version__
from echochat.app import make_bus, make_database
from echochat.bus import BusUnavailable
from echochat.cli.common import ConfigOption, console, fail, guarded, resolve, run
from echochat.config import ResolvedSettings, Settings, mask_url
from echochat.services import server_settings
from echochat.services.roles import list_admins
from echochat.store import DatabaseUnavailable
from echochat.store.migrate import SchemaStatus, schema_state

__all__ = ["DISK_WARN_BYTES", "SMTP_PROBE_TIMEOUT", "Check", "Level", "doctor"]

DISK_WARN_BYTES = 2**30  # warn below 1 GiB free in the data dir
SMTP_PROBE_TIMEOUT = 5.0  # seconds for the whole SMTP conversation


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


_SHOWN = {Level.OK: "[green]ok[/]", Level.WARN: "[yellow]WARN[/]", Level.FAIL: "[red]FAIL[/]"}


@dataclass
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""  # what to do next (for a warning or a failure)

    @property
    def ok(self) -> bool:
        return self.level is not Level.FAIL


@dataclass
class Findings:
    checks: list[Check] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # the admin panel's, by name

    def add(self, name: str, level: Level, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, level, detail, fix))


# --- data dir and disk ---------------------------------------------------------------------------


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _data_dir_checks(settings: Settings, found: Findings) -> None:
    data_dir = settings.data_dir.resolve()
    if not data_dir.exists():
        found.add("data dir", Level.OK, f"{data_dir} (not created yet; serve creates it)")
    elif os.access(data_dir, os.W_OK):
        found.add("data dir", Level.OK, f"{data_dir} (writable)")
    else:
        found.add(
            "data dir",
            Level.FAIL,
            f"{data_dir} is NOT writable by this user",
            f"give the server's user write access to {data_dir}, or set data_dir",
        )
    usage = shutil.disk_usage(_existing_parent(data_dir))
    free = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"
    if usage.free < DISK_WARN_BYTES:
        found.add(
            "disk space",
            Level.WARN,
            f"{free} (under 1 GiB)",
            "free some space on the data dir's disk: the database and uploads live there",
        )
    else:
        found.add("disk space", Level.OK, free)


# --- database, migrations, admins, admin overrides ----------------------------------------------


async def _database_checks(settings: Settings, found: Findings) -> None:
    db = make_database(settings)
    label = db.masked_url
    try:
        if db.missing_file is not None:
            found.add("database", Level.OK, f"{label}: not created yet (serve creates it)")
            return
        try:
            await db.ping()
        except DatabaseUnavailable as exc:
            found.add(
                "database",
                Level.FAIL,
                str(exc),
                "check database_url (ECHOCHAT_DATABASE_URL) and that the database server "
                "runs and accepts this user",
            )
            return
        found.add("database", Level.OK, f"{label} ({db.dialect}, name {db.name})")
        state = await schema_state(db)
        if state.status is SchemaStatus.CURRENT:
            found.add("migrations", Level.OK, f"{state.describe()}, the code's head")
        elif state.status is SchemaStatus.AHEAD:
            found.add(
                "migrations",
                Level.FAIL,
                state.describe(),
                "install the EchoChat version that migrated this database, or restore a backup",
            )
            return
        elif settings.migrate_at_start and state.status is SchemaStatus.BEHIND:
            found.add(
                "migrations",
                Level.WARN,
                state.describe(),
                "'echochat serve' applies them at start (auto_migrate); back up first",
            )
        else:
            found.add(
                "migrations",
                Level.FAIL,
                state.describe(),
                "back up, then run 'echochat db upgrade' once (see docs/operations.md, Upgrade)",
            )
        if state.status is SchemaStatus.EMPTY:
            return
        await _admin_checks(db, found)
    finally:
        await db.close()


async def _admin_checks(db: Any, found: Findings) -> None:
    where = f"in {db.masked_url}"
    try:
        admins = await list_admins(db)
    except Exception as exc:  # a schema too old to hold roles: the migration check says why
        found.add("admins", Level.FAIL, f"cannot read roles {where}: {type(exc).__name__}")
        return
    if admins:
        found.add("admins", Level.OK, f"{', '.join(admins)} ({where})")
    else:
        found.add(
            "admins",
            Level.FAIL,
            f"none {where}",
            "'echochat serve' prints a claim link, or run 'echochat admin grant USER' "
            "(with the same --config / ECHOCHAT_DATABASE_URL as the server)",
        )
    try:
        found.overrides = await server_settings.stored(db)
    except Exception:  # no settings table yet: nothing was overridden
        found.overrides = {}


# --- bus / Redis ---------------------------------------------------------------------------------


async def _bus_check(settings: Settings, found: Findings) -> None:
    if not settings.redis_url:
        found.add("bus", Level.OK, "in-process (no redis_url: one server process)")
        return
    bus = make_bus(settings)
    where = mask_url(settings.redis_url)
    try:
        await bus.start()
        await bus.ping()
        found.add("redis", Level.OK, f"{where} reachable, prefix {settings.redis_prefix!r}")
    except BusUnavailable as exc:
        found.add(
            "redis",
            Level.FAIL,
            str(exc),
            f"start Redis or fix redis_url (ECHOCHAT_REDIS_URL, now {where})",
        )
    finally:
        await bus.close()


# --- email ---------------------------------------------------------------------------------------


async def _email_check(settings: Settings, found: Findings) -> None:
    if settings.email_backend == "console":
        found.add(
            "email",
            Level.OK,
            "console: mail is kept in the outbox ('echochat admin outbox'), not sent",
        )
        return
    host, port, security = settings.smtp_host, settings.smtp_port, settings.smtp_security
    where = f"smtp {host}:{port} ({security})"
    problem, fix = await _smtp_probe(settings)
    if problem is None:
        login = "login accepted" if settings.smtp_username else "no login configured"
        found.add("email", Level.OK, f"{where}: answers, {login}")
    else:
        found.add("email", Level.FAIL, f"{where}: {problem}", fix)


async def _smtp_probe(settings: Settings) -> tuple[str | None, str]:
    """Connect, say EHLO, STARTTLS and log in as configured, then quit: (problem, fix), or
    (None, "") when all of it worked. Sends no mail."""
    host, port, security = settings.smtp_host, settings.smtp_port, settings.smtp_security
    smtp = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        use_tls=security == "tls",
        start_tls=False,
        timeout=min(settings.smtp_timeout, SMTP_PROBE_TIMEOUT),
    )
    step = "connect"
    try:
        await smtp.connect()
        if security == "starttls":
            step = "starttls"
            await smtp.starttls()
        if settings.smtp_username:
            step = "login"
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            await smtp.login(settings.smtp_username, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        return (
            f"login refused ({exc.code})",
            "check smtp_username and smtp_password (ECHOCHAT_SMTP_PASSWORD)",
        )
    except (ssl.SSLError, aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _smtp_advice(step, exc, security, port)
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()
    return None, ""


def _smtp_advice(step: str, exc: BaseException, security: str, port: int) -> tuple[str, str]:
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    tls_hint = (
        "smtp_security must match the server: 'tls' for port 465, 'starttls' for 587, "
        "'none' only for a local relay"
    )
    if isinstance(exc, ssl.SSLError) or (step == "connect" and security == "tls"):
        return f"TLS failed ({reason})", tls_hint
    if step == "starttls":
        return f"STARTTLS failed ({reason})", tls_hint
    if step == "login":
        return f"login failed ({reason})", (
            "the server offers no login here (is smtp_security right?) or refused it: check "
            "smtp_username and smtp_password"
        )
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return f"no answer within {SMTP_PROBE_TIMEOUT:g}s", (
            f"check smtp_host and smtp_port ({port}) and that a firewall lets this host reach it"
        )
    return f"cannot connect ({reason})", (
        f"nobody answers there: check smtp_host and smtp_port ({port}) and that the mail "
        "server runs; or set email_backend = console to keep mail in the outbox"
    )


# --- GIF provider --------------------------------------------------------------------------------


def _gif_check(rows: dict[str, tuple[str, str]], found: Findings) -> None:
    """From the shown settings rows (the admin panel may override both; the key is masked)."""
    provider, provider_from = rows.get("gif_provider", ("none", "default"))
    key_set = bool(rows.get("gif_api_key", ("", ""))[0])
    if provider == "none":
        found.add("gif provider", Level.OK, "none (GIF search off)")
    elif key_set:
        found.add(
            "gif provider",
            Level.OK,
            f"{provider} (from {provider_from}), API key set (not shown; not checked online)",
        )
    else:
        found.add(
            "gif provider",
            Level.FAIL,
            f"{provider} without an API key: GIF search fails",
            "set gif_api_key (admin panel, or ECHOCHAT_GIF_API_KEY), or gif_provider = none",
        )


# --- the command ---------------------------------------------------------------------------------


async def _gather(settings: Settings) -> Findings:
    found = Findings()
    _data_dir_checks(settings, found)
    await _database_checks(settings, found)
    await _bus_check(settings, found)
    await _email_check(settings, found)
    return found


def _settings_rows(resolved: ResolvedSettings, found: Findings) -> list[tuple[str, str, str]]:
    return [
        (name, shown, str(source))
        for name, shown, source in server_settings.doctor_rows(resolved, found.overrides)
    ]


@guarded
def doctor(config: Path | None = ConfigOption) -> None:
    """Print the resolved settings with their provenance, and check database, migrations,
    admins, Redis, email, GIF provider and disk space."""
    resolved = resolve(config, create_data_dir=False)
    found = run(_gather(resolved.settings))
    rows = _settings_rows(resolved, found)
    _gif_check({name: (shown, source) for name, shown, source in rows}, found)

    console.print(
        f"[bold]EchoChat {__version__}[/]  config file: "
        f"{resolved.config_file.resolve() if resolved.config_file else '(none)'}"
    )
    table = Table(title="Settings", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for name, shown, source in rows:
        table.add_row(name, shown, source)
    console.print(table)

    result = Table(title="Checks", title_justify="left")
    result.add_column("check")
    result.add_column("", width=4)
    result.add_column("detail", overflow="fold")
    for check in found.checks:
        result.add_row(check.name, _SHOWN[check.level], check.detail)
    console.print(result)

    todo = [c for c in found.checks if c.level is not Level.OK and c.fix]
    if todo:
        console.print("[bold]What to do next[/]")
        for check in todo:
            console.print(f"  {check.name}: {check.fix}", soft_wrap=True)
    failed = [c for c in found.checks if c.level is Level.FAIL]
    if failed:
        first = next((c for c in failed if c.fix), failed[0])
        fail(
            f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}"
            + (f"; next: {first.fix}" if first.fix else "")
        )
    warned = any(c.level is Level.WARN for c in found.checks)
    console.print(f"[green]All checks passed{' (see the warnings above)' if warned else ''}.[/]")
