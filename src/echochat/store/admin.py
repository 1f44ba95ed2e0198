"""Queries of the admin panel: users with their roles and sessions, and daily counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from echochat.store.tables import messages, role_assignments, room_messages, sessions, users

__all__ = ["AdminUserRow", "count_users", "daily_counts", "roles_of_many", "search_users"]


@dataclass(frozen=True)
class AdminUserRow:
    id: int
    username: str
    display_name: str
    email: str | None
    created_at: datetime
    banned_at: datetime | None
    ban_reason: str | None
    muted_until: datetime | None
    last_seen_at: datetime | None
    sessions: int


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _matching(q: str) -> ColumnElement[bool] | None:
    q = q.strip()
    if not q:
        return None
    pattern = _like(q)
    return or_(
        func.lower(users.c.username).like(pattern, escape="\\"),
        func.lower(users.c.display_name).like(pattern, escape="\\"),
        func.lower(users.c.email).like(pattern, escape="\\"),
    )


async def count_users(conn: AsyncConnection, q: str = "") -> int:
    query = select(func.count()).select_from(users)
    where = _matching(q)
    if where is not None:
        query = query.where(where)
    return int((await conn.execute(query)).scalar_one())


async def search_users(
    conn: AsyncConnection,
    *,
    now: datetime,
    q: str = "",
    limit: int = 50,
    offset: int = 0,
    username: str | None = None,
) -> list[AdminUserRow]:
    """Users whose username, display name or email contains ``q`` (ignoring case), by
    username; or the one named ``username``. With the last time any session was used and
    the number of live sessions."""
    live = (
        select(
            sessions.c.user_id,
            func.max(sessions.c.last_seen_at).label("last_seen_at"),
            func.sum(
                case(
                    (sessions.c.revoked_at.is_(None) & (sessions.c.expires_at > now), 1),
                    else_=0,
                )
            ).label("sessions"),
        )
        .group_by(sessions.c.user_id)
        .subquery()
    )
    query = select(
        users.c.id,
        users.c.username,
        users.c.display_name,
        users.c.email,
        users.c.created_at,
        users.c.banned_at,
        users.c.ban_reason,
        users.c.muted_until,
        live.c.last_seen_at,
        func.coalesce(live.c.sessions, 0).label("sessions"),
    ).select_from(users.outerjoin(live, live.c.user_id == users.c.id))
    if username is not None:
        query = query.where(func.lower(users.c.username) == username.lower())
    else:
        where = _matching(q)
        if where is not None:
            query = query.where(where)
        query = query.order_by(func.lower(users.c.username)).limit(limit).offset(offset)
    rows = await conn.execute(query)
    return [AdminUserRow(**{**row._mapping, "sessions": int(row.sessions or 0)}) for row in rows]


async def roles_of_many(conn: AsyncConnection, user_ids: list[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {uid: set() for uid in user_ids}
    if not user_ids:
        return out
    rows = await conn.execute(
        select(role_assignments.c.user_id, role_assignments.c.role).where(
            role_assignments.c.user_id.in_(user_ids)
        )
    )
    for user_id, role in rows:
        out[int(user_id)].add(str(role))
    return out


async def daily_counts(conn: AsyncConnection, since: datetime) -> dict[str, dict[date, int]]:
    """Per UTC day since ``since``: direct messages, room messages and sign-ups."""
    sqlite = conn.dialect.name == "sqlite"
    out: dict[str, dict[date, int]] = {}
    for name, column in (
        ("dms", messages.c.created_at),
        ("room_messages", room_messages.c.created_at),
        ("signups", users.c.created_at),
    ):
        # SQLite keeps naive UTC text; PostgreSQL: the UTC day of a timestamptz
        day = func.date(column) if sqlite else cast(func.timezone("UTC", column), Date)
        rows = await conn.execute(
            select(day.label("day"), func.count()).where(column >= since).group_by(day)
        )
        counts: dict[date, int] = {}
        for value, count in rows:
            key = date.fromisoformat(value) if isinstance(value, str) else value
            counts[key] = int(count)
        out[name] = counts
    return out
