"""Public E2EE keys (identity and devices) and the opaque key backups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import device_keys, identity_keys, key_backups

__all__ = [
    "BackupRow",
    "DeviceRow",
    "backup",
    "count_devices",
    "delete_device_txn",
    "delete_devices_txn",
    "devices",
    "identity",
    "put_backup_txn",
    "put_device_txn",
    "set_identity_txn",
]


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    x25519: str
    ed25519: str
    signature: str
    label: str
    created_at: datetime


@dataclass(frozen=True)
class BackupRow:
    blob: str
    version: int
    updated_at: datetime


async def identity(conn: AsyncConnection, user_id: int) -> str | None:
    row = (
        await conn.execute(
            select(identity_keys.c.ed25519).where(identity_keys.c.user_id == user_id)
        )
    ).first()
    return None if row is None else str(row[0])


async def set_identity_txn(conn: AsyncConnection, user_id: int, ed25519: str) -> None:
    result = await conn.execute(
        update(identity_keys)
        .where(identity_keys.c.user_id == user_id)
        .values(ed25519=ed25519, created_at=func.now())
    )
    if not result.rowcount:
        await conn.execute(insert(identity_keys).values(user_id=user_id, ed25519=ed25519))


async def devices(conn: AsyncConnection, user_id: int) -> list[DeviceRow]:
    rows = await conn.execute(
        select(
            device_keys.c.device_id,
            device_keys.c.x25519,
            device_keys.c.ed25519,
            device_keys.c.signature,
            device_keys.c.label,
            device_keys.c.created_at,
        )
        .where(device_keys.c.user_id == user_id)
        .order_by(device_keys.c.created_at, device_keys.c.device_id)
    )
    return [DeviceRow(**row._mapping) for row in rows]


async def count_devices(conn: AsyncConnection, user_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(device_keys)
                .where(device_keys.c.user_id == user_id)
            )
        ).scalar_one()
    )


async def put_device_txn(
    conn: AsyncConnection,
    user_id: int,
    *,
    device_id: str,
    x25519: str,
    ed25519: str,
    signature: str,
    label: str,
) -> None:
    await conn.execute(
        insert(device_keys).values(
            user_id=user_id,
            device_id=device_id,
            x25519=x25519,
            ed25519=ed25519,
            signature=signature,
            label=label[:120],
        )
    )


async def delete_device_txn(conn: AsyncConnection, user_id: int, device_id: str) -> bool:
    result = await conn.execute(
        delete(device_keys).where(
            device_keys.c.user_id == user_id, device_keys.c.device_id == device_id
        )
    )
    return bool(result.rowcount)


async def delete_devices_txn(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(delete(device_keys).where(device_keys.c.user_id == user_id))


async def backup(conn: AsyncConnection, user_id: int) -> BackupRow | None:
    row = (
        await conn.execute(
            select(key_backups.c.blob, key_backups.c.version, key_backups.c.updated_at).where(
                key_backups.c.user_id == user_id
            )
        )
    ).first()
    return None if row is None else BackupRow(**row._mapping)


async def put_backup_txn(
    conn: AsyncConnection, user_id: int, blob: str, expected_version: int | None
) -> int | None:
    """Store a backup if the stored version is ``expected_version`` (None: no backup yet);
    the new version, or None when someone else wrote first."""
    if expected_version is None:
        exists = await backup(conn, user_id)
        if exists is not None:
            return None
        await conn.execute(insert(key_backups).values(user_id=user_id, blob=blob, version=1))
        return 1
    result = await conn.execute(
        update(key_backups)
        .where(key_backups.c.user_id == user_id, key_backups.c.version == expected_version)
        .values(blob=blob, version=expected_version + 1, updated_at=func.now())
    )
    return expected_version + 1 if result.rowcount else None
