"""Settings that admins change while the server runs, stored in the database.

Defaults live in :data:`DEFAULTS`; the database holds only what an admin changed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from echochat.domain.errors import InvalidInput
from echochat.services.context import Context
from echochat.store import audit
from echochat.store import server_settings as store

__all__ = ["ServerPolicy", "current", "update"]


@dataclass(frozen=True)
class ServerPolicy:
    registration_open: bool = True
    email_required: bool = False


async def current(ctx: Context) -> ServerPolicy:
    async with ctx.db.read() as conn:
        values = await store.all_values(conn)
    known = {f.name for f in fields(ServerPolicy)}
    return ServerPolicy(**{k: v for k, v in values.items() if k in known})


async def update(
    ctx: Context, changes: dict[str, Any], *, actor: str, actor_id: int | None, ip: str = ""
) -> ServerPolicy:
    types = {f.name: f.type for f in fields(ServerPolicy)}
    for key, value in changes.items():
        if key not in types:
            raise InvalidInput(f"unknown setting {key!r}", code="unknown_setting")
        if types[key] in (bool, "bool") and not isinstance(value, bool):
            raise InvalidInput(f"{key} must be true or false", code="invalid_setting")
    async with ctx.db.transaction() as conn:
        for key, value in changes.items():
            await store.put_txn(conn, key, value, by=actor)
            await audit.append_txn(
                conn,
                actor=actor,
                actor_id=actor_id,
                action="settings.update",
                target_type="setting",
                target=key,
                ip=ip,
                details={"value": value},
            )
    return await current(ctx)
