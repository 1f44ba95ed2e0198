"""Reports of users, direct messages and room messages: filing, the review queue, closing.

The finders answer ``None`` both for a message that does not exist and for one the reporter
is not a party to, so the service cannot leak which is which.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from echochat.store.db import Database
from echochat.store.tables import messages, reports, room_members, room_messages, rooms, users

__all__ = [
    "Conn",
    "NewReport",
    "ReportRow",
    "Reported",
    "by_id",
    "count_open",
    "dm_for",
    "insert_txn",
    "lock_reporter_txn",
    "mine",
    "open_duplicate_txn",
    "queue",
    "resolve_txn",
    "reviewing",
    "room_message_for",
]

Conn = AsyncConnection

# Advisory lock namespace of report resolutions (the two-int form: namespace, report id).
_LOCK_NAMESPACE = 0x5250
_local_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Reported:
    """A message the reporter may report: who sent it, when, where."""

    id: int
    sender_id: int
    created_at: datetime
    room_id: int | None = None


@dataclass(frozen=True)
class NewReport:
    reporter_id: int
    target_user_id: int
    kind: str
    message_id: int | None
    room_id: int | None
    reason: str
    excerpt: str | None
    created_at: datetime


@dataclass(frozen=True)
class ReportRow:
    """A report with what a reviewer sees of its target and message (joined)."""

    id: int
    kind: str
    reporter_id: int
    reporter: str
    target_user_id: int | None
    target: str | None
    target_display_name: str | None
    target_banned: bool
    target_muted_until: datetime | None
    message_id: int | None
    room_id: int | None
    room_name: str | None
    message_found: bool  # the reported message is still stored (not deleted)
    message_sender: str | None
    message_created_at: datetime | None
    message_kind: str | None  # room messages: text | e2ee
    message_body: str | None  # room text messages only, to check the excerpt against
    reason: str
    excerpt: str | None
    status: str
    action: str
    resolution: str
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_at: datetime


async def dm_for(conn: AsyncConnection, message_id: int, user_id: int) -> Reported | None:
    """The DM ``message_id`` if ``user_id`` sent or received it."""
    row = (
        await conn.execute(
            select(messages.c.id, messages.c.sender_id, messages.c.created_at).where(
                messages.c.id == message_id,
                or_(messages.c.sender_id == user_id, messages.c.recipient_id == user_id),
            )
        )
    ).first()
    return None if row is None else Reported(row.id, row.sender_id, row.created_at)


async def room_message_for(conn: AsyncConnection, message_id: int, user_id: int) -> Reported | None:
    """The room message ``message_id`` if it is not deleted and ``user_id`` is a member of
    its room who can see it (it is newer than their ``first_message_id``)."""
    row = (
        await conn.execute(
            select(
                room_messages.c.id,
                room_messages.c.sender_id,
                room_messages.c.created_at,
                room_messages.c.room_id,
            )
            .join(
                room_members,
                and_(
                    room_members.c.room_id == room_messages.c.room_id,
                    room_members.c.user_id == user_id,
                ),
            )
            .where(
                room_messages.c.id == message_id,
                room_messages.c.deleted_at.is_(None),
                room_messages.c.id > room_members.c.first_message_id,
            )
        )
    ).first()
    if row is None:
        return None
    return Reported(row.id, row.sender_id, row.created_at, row.room_id)


async def lock_reporter_txn(conn: AsyncConnection, reporter_id: int) -> None:
    """Serialise one reporter's submissions (PostgreSQL; SQLite writes are serial already),
    so two identical reports sent at once cannot both pass the duplicate check."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(users.c.id).where(users.c.id == reporter_id).with_for_update())


async def open_duplicate_txn(
    conn: AsyncConnection,
    reporter_id: int,
    kind: str,
    target_user_id: int,
    message_id: int | None,
) -> int | None:
    """The id of the reporter's open report on the same target, if any."""
    query = select(reports.c.id).where(
        reports.c.reporter_id == reporter_id,
        reports.c.status == "open",
        reports.c.kind == kind,
    )
    if message_id is None:
        query = query.where(reports.c.target_user_id == target_user_id)
    else:
        query = query.where(reports.c.message_id == message_id)
    found = (await conn.execute(query.limit(1))).scalar()
    return None if found is None else int(found)


async def insert_txn(conn: AsyncConnection, new: NewReport) -> int:
    result = await conn.execute(
        insert(reports)
        .values(
            reporter_id=new.reporter_id,
            target_user_id=new.target_user_id,
            kind=new.kind,
            message_id=new.message_id,
            room_id=new.room_id,
            reason=new.reason,
            excerpt=new.excerpt,
            created_at=new.created_at,
        )
        .returning(reports.c.id)
    )
    return int(result.scalar_one())


def _query() -> Any:
    reporter = users.alias("reporter")
    target = users.alias("target")
    reviewer = users.alias("reviewer")
    dm_sender = users.alias("dm_sender")
    room_sender = users.alias("room_sender")
    dm = messages.alias("dm")
    rm = room_messages.alias("rm")
    is_dm = reports.c.kind == "dm"
    is_room = reports.c.kind == "room_message"
    return (
        select(
            reports.c.id,
            reports.c.kind,
            reports.c.reporter_id,
            reporter.c.username.label("reporter"),
            reports.c.target_user_id,
            target.c.username.label("target"),
            target.c.display_name.label("target_display_name"),
            target.c.banned_at.label("target_banned_at"),
            target.c.muted_until.label("target_muted_until"),
            reports.c.message_id,
            reports.c.room_id,
            rooms.c.name.label("room_name"),
            dm.c.id.label("dm_id"),
            rm.c.id.label("rm_id"),
            rm.c.deleted_at.label("rm_deleted_at"),
            func.coalesce(dm_sender.c.username, room_sender.c.username).label("message_sender"),
            func.coalesce(dm.c.created_at, rm.c.created_at).label("message_created_at"),
            rm.c.kind.label("message_kind"),
            rm.c.body.label("rm_body"),
            reports.c.reason,
            reports.c.excerpt,
            reports.c.status,
            reports.c.action,
            reports.c.resolution,
            reviewer.c.username.label("reviewed_by"),
            reports.c.reviewed_at,
            reports.c.created_at,
        )
        .select_from(reports)
        .join(reporter, reporter.c.id == reports.c.reporter_id)
        .outerjoin(target, target.c.id == reports.c.target_user_id)
        .outerjoin(reviewer, reviewer.c.id == reports.c.reviewed_by)
        .outerjoin(rooms, rooms.c.id == reports.c.room_id)
        .outerjoin(dm, and_(is_dm, dm.c.id == reports.c.message_id))
        .outerjoin(dm_sender, dm_sender.c.id == dm.c.sender_id)
        .outerjoin(rm, and_(is_room, rm.c.id == reports.c.message_id))
        .outerjoin(room_sender, room_sender.c.id == rm.c.sender_id)
    )


def _row(row: Any) -> ReportRow:
    found = row.dm_id is not None or (row.rm_id is not None and row.rm_deleted_at is None)
    text_body = found and row.rm_id is not None and row.message_kind == "text"
    return ReportRow(
        id=row.id,
        kind=row.kind,
        reporter_id=row.reporter_id,
        reporter=row.reporter,
        target_user_id=row.target_user_id,
        target=row.target,
        target_display_name=row.target_display_name,
        target_banned=row.target_banned_at is not None,
        target_muted_until=row.target_muted_until,
        message_id=row.message_id,
        room_id=row.room_id,
        room_name=row.room_name,
        message_found=found,
        message_sender=row.message_sender if found else None,
        message_created_at=row.message_created_at if found else None,
        message_kind=row.message_kind if found else None,
        message_body=row.rm_body if text_body else None,
        reason=row.reason,
        excerpt=row.excerpt,
        status=row.status,
        action=row.action,
        resolution=row.resolution,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        created_at=row.created_at,
    )


async def by_id(conn: AsyncConnection, report_id: int) -> ReportRow | None:
    row = (await conn.execute(_query().where(reports.c.id == report_id))).first()
    return None if row is None else _row(row)


async def mine(conn: AsyncConnection, reporter_id: int, limit: int) -> list[ReportRow]:
    """The reporter's reports, newest first."""
    rows = await conn.execute(
        _query()
        .where(reports.c.reporter_id == reporter_id)
        .order_by(reports.c.id.desc())
        .limit(limit)
    )
    return [_row(r) for r in rows]


async def count_open(conn: AsyncConnection) -> int:
    """How many reports are open (the moderators' queue)."""
    found = await conn.scalar(
        select(func.count()).select_from(reports).where(reports.c.status == "open")
    )
    return int(found or 0)


async def queue(
    conn: AsyncConnection, *, status: str, before: int | None, limit: int
) -> list[ReportRow]:
    """Reports with ``status``, newest first, below id ``before`` when given."""
    query = _query().where(reports.c.status == status)
    if before is not None:
        query = query.where(reports.c.id < before)
    rows = await conn.execute(query.order_by(reports.c.id.desc()).limit(limit))
    return [_row(r) for r in rows]


async def resolve_txn(
    conn: AsyncConnection,
    report_id: int,
    *,
    status: str,
    action: str,
    resolution: str,
    reviewer_id: int,
    at: datetime,
) -> bool:
    """Close an open report; False if it was no longer open (someone else resolved it)."""
    result = await conn.execute(
        update(reports)
        .where(reports.c.id == report_id, reports.c.status == "open")
        .values(
            status=status,
            action=action,
            resolution=resolution,
            reviewed_by=reviewer_id,
            reviewed_at=at,
        )
    )
    return bool(result.rowcount)


@asynccontextmanager
async def reviewing(db: Database, report_id: int) -> AsyncIterator[None]:
    """Hold the report for the block: one resolution at a time, on every process, so two
    moderators acting at once cannot both act (one bans while the other dismisses); the
    second finds it closed. PostgreSQL: a session advisory lock on a connection of its own
    (the block's own transactions use others); SQLite (one process): an asyncio lock."""
    if db.dialect != "postgresql":
        lock = _local_locks.get(db)
        if lock is None:
            lock = _local_locks[db] = asyncio.Lock()
        async with lock:
            yield
        return
    key = {"ns": _LOCK_NAMESPACE, "key": report_id & 0x7FFFFFFF}
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:ns, :key)"), key)
        await conn.commit()
        try:
            yield
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), key)
                await conn.commit()
            except BaseException:
                await conn.invalidate()  # a closed session holds no locks
                raise
