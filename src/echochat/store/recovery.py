"""Password resets and the first-admin claim: single-use secrets stored only as hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import admin_claims, password_resets

__all__ = [
    "ResetRow",
    "claim_valid",
    "insert_claim_txn",
    "insert_reset_txn",
    "invalidate_claims_txn",
    "invalidate_resets_txn",
    "reset_by",
    "take_pin_try_txn",
    "use_claim_txn",
    "use_reset_txn",
]


@dataclass(frozen=True)
class ResetRow:
    id: str
    user_id: int
    token_hash: str
    binding_hash: str
    pin_hash: str
    created_at: datetime
    link_expires_at: datetime
    pin_expires_at: datetime
    pin_attempts: int
    used_at: datetime | None


_COLS = (
    password_resets.c.id,
    password_resets.c.user_id,
    password_resets.c.token_hash,
    password_resets.c.binding_hash,
    password_resets.c.pin_hash,
    password_resets.c.created_at,
    password_resets.c.link_expires_at,
    password_resets.c.pin_expires_at,
    password_resets.c.pin_attempts,
    password_resets.c.used_at,
)


async def insert_reset_txn(
    conn: AsyncConnection,
    *,
    reset_id: str,
    user_id: int,
    token_hash: str,
    binding_hash: str,
    pin_hash: str,
    now: datetime,
    link_expires_at: datetime,
    pin_expires_at: datetime,
    ip: str,
) -> None:
    await conn.execute(
        insert(password_resets).values(
            id=reset_id,
            user_id=user_id,
            token_hash=token_hash,
            binding_hash=binding_hash,
            pin_hash=pin_hash,
            created_at=now,
            link_expires_at=link_expires_at,
            pin_expires_at=pin_expires_at,
            ip=ip[:64],
        )
    )


async def reset_by(
    conn: AsyncConnection, *, token_hash: str | None = None, binding_hash: str | None = None
) -> ResetRow | None:
    query = select(*_COLS)
    if token_hash is not None:
        query = query.where(password_resets.c.token_hash == token_hash)
    elif binding_hash is not None:
        query = query.where(password_resets.c.binding_hash == binding_hash)
    else:
        return None
    row = (await conn.execute(query)).first()
    return None if row is None else ResetRow(**row._mapping)


async def take_pin_try_txn(conn: AsyncConnection, reset_id: str, limit: int) -> int | None:
    """Spend one PIN try if fewer than ``limit`` were spent and the reset is unused; the
    number of tries spent so far, or None when none is left. One conditional UPDATE, so
    parallel guesses cannot all squeeze under the limit."""
    result = await conn.execute(
        update(password_resets)
        .where(
            password_resets.c.id == reset_id,
            password_resets.c.used_at.is_(None),
            password_resets.c.pin_attempts < limit,
        )
        .values(pin_attempts=password_resets.c.pin_attempts + 1)
    )
    if not result.rowcount:
        return None
    row = (
        await conn.execute(
            select(password_resets.c.pin_attempts).where(password_resets.c.id == reset_id)
        )
    ).scalar_one()
    return int(row)


async def use_reset_txn(conn: AsyncConnection, reset_id: str, now: datetime) -> bool:
    """Spend a reset; False if it was already used (single use under concurrency)."""
    result = await conn.execute(
        update(password_resets)
        .where(password_resets.c.id == reset_id, password_resets.c.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def invalidate_resets_txn(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    await conn.execute(
        update(password_resets)
        .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
        .values(used_at=now)
    )


async def insert_claim_txn(
    conn: AsyncConnection, token_hash: str, now: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        insert(admin_claims).values(token_hash=token_hash, created_at=now, expires_at=expires_at)
    )


async def invalidate_claims_txn(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(
        update(admin_claims).where(admin_claims.c.used_at.is_(None)).values(used_at=now)
    )


async def claim_valid(conn: AsyncConnection, token_hash: str, now: datetime) -> bool:
    row = (
        await conn.execute(
            select(admin_claims.c.expires_at, admin_claims.c.used_at).where(
                admin_claims.c.token_hash == token_hash
            )
        )
    ).first()
    return row is not None and row.used_at is None and row.expires_at > now


async def use_claim_txn(
    conn: AsyncConnection, token_hash: str, now: datetime, user_id: int
) -> bool:
    result = await conn.execute(
        update(admin_claims)
        .where(
            admin_claims.c.token_hash == token_hash,
            admin_claims.c.used_at.is_(None),
            admin_claims.c.expires_at > now,
        )
        .values(used_at=now, used_by=user_id)
    )
    return bool(result.rowcount)
