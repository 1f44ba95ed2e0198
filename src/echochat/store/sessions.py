"""Sessions (one per sign-in) and their rotating refresh tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.tables import refresh_tokens, sessions, users

__all__ = [
    "RefreshRow",
    "SessionRow",
    "active_for_user",
    "get",
    "get_with_user",
    "inactive_among",
    "insert_refresh_txn",
    "insert_txn",
    "lookup_refresh",
    "mark_refresh_used_txn",
    "revoke_all_for_user_txn",
    "revoke_txn",
    "touch_txn",
]


@dataclass(frozen=True)
class SessionRow:
    id: str
    user_id: int
    device_label: str
    user_agent: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True)
class SessionAuth:
    session: SessionRow
    username: str
    display_name: str
    banned_at: datetime | None
    ban_reason: str | None


@dataclass(frozen=True)
class RefreshRow:
    token_hash: str
    session_id: str
    issued_at: datetime
    used_at: datetime | None


_COLS = (
    sessions.c.id,
    sessions.c.user_id,
    sessions.c.device_label,
    sessions.c.user_agent,
    sessions.c.ip,
    sessions.c.created_at,
    sessions.c.last_seen_at,
    sessions.c.expires_at,
    sessions.c.revoked_at,
    sessions.c.revoked_reason,
)


async def insert_txn(
    conn: AsyncConnection,
    *,
    session_id: str,
    user_id: int,
    device_label: str,
    user_agent: str,
    ip: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(sessions).values(
            id=session_id,
            user_id=user_id,
            device_label=device_label[:120],
            user_agent=user_agent[:512],
            ip=ip[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )


async def get(conn: AsyncConnection, session_id: str) -> SessionRow | None:
    row = (await conn.execute(select(*_COLS).where(sessions.c.id == session_id))).first()
    return None if row is None else SessionRow(**row._mapping)


async def get_with_user(conn: AsyncConnection, session_id: str) -> SessionAuth | None:
    """The session and the fields of its user that authentication needs, in one query."""
    row = (
        await conn.execute(
            select(
                *_COLS,
                users.c.username,
                users.c.display_name,
                users.c.banned_at,
                users.c.ban_reason,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == session_id)
        )
    ).first()
    if row is None:
        return None
    m = row._mapping
    session = SessionRow(**{c.name: m[c.name] for c in _COLS})
    return SessionAuth(session, m["username"], m["display_name"], m["banned_at"], m["ban_reason"])


async def active_for_user(conn: AsyncConnection, user_id: int, now: datetime) -> list[SessionRow]:
    rows = await conn.execute(
        select(*_COLS)
        .where(
            sessions.c.user_id == user_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
        )
        .order_by(sessions.c.last_seen_at.desc())
    )
    return [SessionRow(**row._mapping) for row in rows]


async def touch_txn(
    conn: AsyncConnection, session_id: str, *, now: datetime, expires_at: datetime, ip: str
) -> None:
    await conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id)
        .values(last_seen_at=now, expires_at=expires_at, ip=ip[:64])
    )


async def revoke_txn(conn: AsyncConnection, session_id: str, *, now: datetime, reason: str) -> bool:
    result = await conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason[:64])
    )
    return bool(result.rowcount)


async def revoke_all_for_user_txn(
    conn: AsyncConnection, user_id: int, *, now: datetime, reason: str
) -> list[str]:
    """Revoke every live session of a user; the ids revoked."""
    ids = [
        sid
        for (sid,) in await conn.execute(
            select(sessions.c.id).where(
                sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)
            )
        )
    ]
    if ids:
        await conn.execute(
            update(sessions)
            .where(sessions.c.id.in_(ids), sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason[:64])
        )
    return ids


async def insert_refresh_txn(
    conn: AsyncConnection, token_hash: str, session_id: str, now: datetime
) -> None:
    await conn.execute(
        insert(refresh_tokens).values(token_hash=token_hash, session_id=session_id, issued_at=now)
    )


async def lookup_refresh(conn: AsyncConnection, token_hash: str) -> RefreshRow | None:
    row = (
        await conn.execute(
            select(
                refresh_tokens.c.token_hash,
                refresh_tokens.c.session_id,
                refresh_tokens.c.issued_at,
                refresh_tokens.c.used_at,
            ).where(refresh_tokens.c.token_hash == token_hash)
        )
    ).first()
    return None if row is None else RefreshRow(**row._mapping)


async def mark_refresh_used_txn(conn: AsyncConnection, token_hash: str, now: datetime) -> bool:
    """Mark a refresh token used; False if it already was (a concurrent refresh won)."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(and_(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None)))
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def inactive_among(conn: AsyncConnection, session_ids: list[str], now: datetime) -> set[str]:
    """Which of ``session_ids`` are revoked, expired, gone, or belong to a banned user."""
    if not session_ids:
        return set()
    rows = await conn.execute(
        select(sessions.c.id)
        .join(users, users.c.id == sessions.c.user_id)
        .where(
            sessions.c.id.in_(session_ids),
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
            users.c.banned_at.is_(None),
        )
    )
    alive = {sid for (sid,) in rows}
    return set(session_ids) - alive
