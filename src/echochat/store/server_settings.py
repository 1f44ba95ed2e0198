"""Settings an admin changes at run time (registration open, email required, ...)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import server_settings

__all__ = ["all_values", "put_txn"]


async def all_values(conn: AsyncConnection) -> dict[str, Any]:
    rows = await conn.execute(select(server_settings.c.key, server_settings.c.value))
    return {str(row.key): row.value for row in rows}


async def put_txn(conn: AsyncConnection, key: str, value: Any, *, by: str) -> None:
    result = await conn.execute(
        update(server_settings)
        .where(server_settings.c.key == key)
        .values(value=value, updated_at=func.now(), updated_by=by[:100])
    )
    if not result.rowcount:
        await conn.execute(
            server_settings.insert().values(key=key, value=value, updated_by=by[:100])
        )
