"""Settings an admin changes at run time (registration open, email required, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import server_settings

__all__ = ["StoredSetting", "all_rows", "all_values", "delete_txn", "put_txn"]


@dataclass(frozen=True)
class StoredSetting:
    key: str
    value: Any
    updated_at: datetime
    updated_by: str


async def all_values(conn: AsyncConnection) -> dict[str, Any]:
    rows = await conn.execute(select(server_settings.c.key, server_settings.c.value))
    return {str(row.key): row.value for row in rows}


async def all_rows(conn: AsyncConnection) -> dict[str, StoredSetting]:
    """Every stored setting with who changed it last, and when."""
    rows = await conn.execute(
        select(
            server_settings.c.key,
            server_settings.c.value,
            server_settings.c.updated_at,
            server_settings.c.updated_by,
        )
    )
    return {str(row.key): StoredSetting(**row._mapping) for row in rows}


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


async def delete_txn(conn: AsyncConnection, key: str) -> bool:
    """Forget a stored setting (its configured value applies again); False if none was."""
    result = await conn.execute(delete(server_settings).where(server_settings.c.key == key))
    return bool(result.rowcount)
