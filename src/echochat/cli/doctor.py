"""``echochat doctor``: explain the configuration and check what it points at.

Answers the original project's worst support question, "which database am I talking to and
who is admin there?", in one screen. Exits 1 when any check fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from echochat import __version__
from echochat.app import make_bus, make_database
from echochat.bus import BusUnavailable
from echochat.cli.common import ConfigOption, console, fail, guarded, resolve, run
from echochat.config import ResolvedSettings, mask_url
from echochat.services.roles import list_admins
from echochat.store import DatabaseUnavailable
from echochat.store.migrate import SchemaStatus, schema_state

__all__ = ["doctor"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _data_dir_checks(resolved: ResolvedSettings) -> list[Check]:
    data_dir = resolved.settings.data_dir
    if not data_dir.exists():
        return [
            Check("data dir", True, f"{data_dir.resolve()} (not created yet; serve creates it)")
        ]
    writable = os.access(data_dir, os.W_OK)
    usage = shutil.disk_usage(data_dir)
    free_gib = usage.free / 2**30
    return [
        Check(
            "data dir",
            writable,
            f"{data_dir.resolve()} ({'writable' if writable else 'NOT writable'})",
        ),
        Check(
            "disk space", free_gib >= 1, f"{free_gib:.1f} GiB free of {usage.total / 2**30:.1f} GiB"
        ),
    ]


async def _service_checks(resolved: ResolvedSettings) -> list[Check]:
    settings = resolved.settings
    checks: list[Check] = []
    db = make_database(settings)
    label = f"{db.masked_url}"
    try:
        if db.missing_file is not None:
            checks.append(Check("database", True, f"{label}: not created yet (serve creates it)"))
        else:
            await db.ping()
            checks.append(Check("database", True, f"{label} ({db.dialect}, name {db.name})"))
            state = await schema_state(db)
            checks.append(
                Check("migrations", state.status is SchemaStatus.CURRENT, state.describe())
            )
            if state.status is SchemaStatus.CURRENT:
                admins = await list_admins(db)
                checks.append(
                    Check(
                        "admins",
                        bool(admins),
                        ", ".join(admins)
                        if admins
                        else "none: 'echochat serve' prints a claim link, "
                        "or run 'echochat admin grant USER'",
                    )
                )
    except DatabaseUnavailable as exc:
        checks.append(Check("database", False, str(exc)))
    finally:
        await db.close()

    bus = make_bus(settings)
    try:
        await bus.start()
        detail = (
            "in-process (one server process)"
            if bus.name == "memory"
            else (
                f"Redis at {mask_url(settings.redis_url or '')} reachable, "
                f"prefix {settings.redis_prefix!r}"
            )
        )
        checks.append(Check("bus", True, detail))
    except BusUnavailable as exc:
        checks.append(Check("bus", False, str(exc)))
    finally:
        await bus.close()
    return checks


@guarded
def doctor(config: Path | None = ConfigOption) -> None:
    """Print the resolved settings with their provenance, and check database, bus and disk."""
    resolved = resolve(config, create_data_dir=False)
    console.print(
        f"[bold]EchoChat {__version__}[/]  config file: "
        f"{resolved.config_file.resolve() if resolved.config_file else '(none)'}"
    )
    table = Table(title="Settings", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for name, shown, source in resolved.rows():
        table.add_row(name, shown, source)
    console.print(table)

    checks = _data_dir_checks(resolved) + run(_service_checks(resolved))
    result = Table(title="Checks", title_justify="left")
    result.add_column("check")
    result.add_column("", width=4)
    result.add_column("detail", overflow="fold")
    for check in checks:
        result.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(result)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        fail(f"{len(failed)} check(s) failed: {', '.join(failed)}")
