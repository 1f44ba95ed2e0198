"""Reports: any user reports a user, a direct message or a room message; moderators
(``reports:review``) dismiss them or act (delete the message, mute or ban the user), and the
reporter is told the outcome (docs/security.md, "Reports").

Where the policy lives:
- what may be reported, and the refusals that leak nothing: :func:`_target` (a message that
  does not exist and one the reporter is not a party to are the same 404);
- the order of the checks in :func:`submit`: the rate limit first (refusals count, so
  probing message ids is as slow as reporting), then the input, the target, duplicates;
- which action fits which report, and who may take it: :func:`_check_action`;
- what a reviewer sees (:class:`ReportReview`) and what the reporter is told
  (:class:`ReportMine`, :data:`OUTCOMES`): the reporter never learns who the moderator was
  or what they wrote, only what happened;
- what the reviewers are told live (:func:`_tell_reviewers`): ``report.new`` and
  ``report.resolved`` carry an id, a kind and the open count, never who reported what.

DMs are end-to-end encrypted: the server cannot read them, so a report carries plaintext
only when the reporter chose to include an ``excerpt`` (their word, shown as such).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast, get_args

from pydantic import BaseModel

from echochat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from echochat.domain.events import (
    ReportNewData,
    ReportNewEvent,
    ReportResolvedData,
    ReportResolvedEvent,
)
from echochat.domain.events_admin import (
    ReportAction,
    ReportStatus,
    ReportUpdateData,
    ReportUpdateEvent,
)
from echochat.domain.text import clean_line
from echochat.services import notify
from echochat.services.accounts import Principal, limit
from echochat.services.context import Context
from echochat.store import audit
from echochat.store import messages as message_store
from echochat.store import reports as store
from echochat.store import users as user_store
from echochat.store.reports import NewReport, Reported, ReportRow

__all__ = [
    "EXCERPT_MAX",
    "MINE_LIMIT",
    "MUTE_MAX_MINUTES",
    "OUTCOMES",
    "QUEUE_LIMIT",
    "QUEUE_MAX",
    "REASON_MAX",
    "ReportKind",
    "ReportMessage",
    "ReportMine",
    "ReportReview",
    "mine",
    "queue",
    "resolve",
    "submit",
]

log = logging.getLogger("echochat.reports")

ReportKind = Literal["user", "dm", "room_message"]
REASON_MAX = 500
EXCERPT_MAX = 2000
MINE_LIMIT = 100
QUEUE_LIMIT = 50
QUEUE_MAX = 200
MUTE_MAX_MINUTES = 366 * 24 * 60  # a year and a day

# What the reporter is told, per action (never the moderator's own words or name).
OUTCOMES: dict[ReportAction | None, str] = {
    None: "Waiting for a moderator.",
    "dismiss": "A moderator reviewed your report and took no action.",
    "delete": "A moderator reviewed your report and removed the message.",
    "mute": "A moderator reviewed your report and muted the user.",
    "ban": "A moderator reviewed your report and banned the user.",
}


@dataclass(frozen=True)
class ReportMine:
    """A report as its reporter sees it."""

    id: int
    kind: ReportKind
    username: str | None  # the reported user
    message_id: int | None
    room_id: int | None
    reason: str
    excerpt: str | None
    status: ReportStatus
    action: ReportAction | None
    outcome: str
    created_at: str
    resolved_at: str | None


@dataclass(frozen=True)
class ReportMessage:
    """The reported message's metadata (never a DM's envelope)."""

    id: int
    found: bool  # False once deleted (by a moderator, its room, or retention)
    sender: str | None
    created_at: str | None
    room_id: int | None
    room_name: str | None


@dataclass(frozen=True)
class ReportReview:
    """A report as a reviewer sees it: enough to decide, no more."""

    id: int
    kind: ReportKind
    status: ReportStatus
    reporter: str
    username: str | None  # the reported user
    display_name: str | None
    banned: bool
    muted_until: str | None
    message: ReportMessage | None
    reason: str
    excerpt: str | None
    # Room text messages only: whether the stored text contains the excerpt (a reporter's
    # excerpt is their word; a DM's cannot be checked, the server cannot read it): None.
    excerpt_matches: bool | None
    action: ReportAction | None
    resolution: str
    reviewed_by: str | None
    reviewed_at: str | None
    created_at: str


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")


def _action(row: ReportRow) -> ReportAction | None:
    if row.status == "dismissed":
        return "dismiss"
    return cast(ReportAction, row.action) if row.action in get_args(ReportAction) else None


def _mine(row: ReportRow) -> ReportMine:
    action = _action(row)
    return ReportMine(
        id=row.id,
        kind=cast(ReportKind, row.kind),
        username=row.target,
        message_id=row.message_id,
        room_id=row.room_id,
        reason=row.reason,
        excerpt=row.excerpt,
        status=cast(ReportStatus, row.status),
        action=action,
        outcome=OUTCOMES[action],
        created_at=_iso(row.created_at) or "",
        resolved_at=_iso(row.reviewed_at),
    )


def _excerpt_matches(row: ReportRow) -> bool | None:
    if row.message_body is None or not row.excerpt:
        return None
    return _fold(row.excerpt) in _fold(row.message_body)


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _review(row: ReportRow) -> ReportReview:
    message = None
    if row.message_id is not None:
        message = ReportMessage(
            id=row.message_id,
            found=row.message_found,
            sender=row.message_sender,
            created_at=_iso(row.message_created_at),
            room_id=row.room_id,
            room_name=row.room_name,
        )
    return ReportReview(
        id=row.id,
        kind=cast(ReportKind, row.kind),
        status=cast(ReportStatus, row.status),
        reporter=row.reporter,
        username=row.target,
        display_name=row.target_display_name,
        banned=row.target_banned,
        muted_until=_iso(row.target_muted_until),
        message=message,
        reason=row.reason,
        excerpt=row.excerpt,
        excerpt_matches=_excerpt_matches(row),
        action=_action(row),
        resolution=row.resolution,
        reviewed_by=row.reviewed_by,
        reviewed_at=_iso(row.reviewed_at),
        created_at=_iso(row.created_at) or "",
    )


# --- reporting -------------------------------------------------------------------------------


def _clean_block(raw: str) -> str:
    """Several lines of plain text: NFC, line breaks kept (``\\n``), other control,
    private-use, unassigned and bidi-override characters dropped, trimmed."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(clean_line(line) for line in lines).strip()


def _reason(raw: str) -> str:
    reason = clean_line(raw)
    if not reason or len(reason) > REASON_MAX:
        raise InvalidInput(
            f"say why in 1-{REASON_MAX} characters",
            code="invalid_reason",
            details={"field": "reason"},
        )
    return reason


def _excerpt(raw: str | None) -> str | None:
    if raw is None:
        return None
    excerpt = _clean_block(raw)
    if len(excerpt) > EXCERPT_MAX:
        raise InvalidInput(
            f"the excerpt may hold at most {EXCERPT_MAX} characters",
            code="invalid_excerpt",
            details={"field": "excerpt"},
        )
    return excerpt or None


@dataclass(frozen=True)
class _Target:
    user_id: int
    message: Reported | None


async def _target(
    conn: store.Conn,
    principal: Principal,
    kind: ReportKind,
    username: str | None,
    message_id: int | None,
) -> _Target:
    if kind == "user":
        if not username or message_id is not None:
            raise InvalidInput(
                "a user report names a username (and no message_id)",
                code="invalid_input",
                details={"field": "username"},
            )
        user = await user_store.by_username(conn, username.strip())
        if user is None:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        return _Target(user.id, None)
    if message_id is None or username is not None:
        raise InvalidInput(
            "a message report names a message_id (and no username)",
            code="invalid_input",
            details={"field": "message_id"},
        )
    if kind == "dm":
        found = await store.dm_for(conn, message_id, principal.user_id)
    else:
        found = await store.room_message_for(conn, message_id, principal.user_id)
    if found is None:
        raise NotFound("no such message", code="message_not_found")
    return _Target(found.sender_id, found)


async def submit(
    ctx: Context,
    principal: Principal,
    *,
    kind: ReportKind,
    reason: str,
    username: str | None = None,
    message_id: int | None = None,
    excerpt: str | None = None,
) -> ReportMine:
    """File a report. Refusals: 429 (rate limit, checked first), 422 (reason, excerpt,
    reporting yourself), 404 (unknown user, or a message that is not there or not yours to
    report), 409 ``already_reported`` (an open report of yours on the same target). After the
    commit the reviewers are told (``report.new``: its id, kind and the open count only)."""
    await limit(ctx, ctx.settings.rate_limit_report_account, "report", str(principal.user_id))
    clean_reason = _reason(reason)
    clean_excerpt = _excerpt(excerpt)
    async with ctx.db.transaction() as conn:
        target = await _target(conn, principal, kind, username, message_id)
        if target.user_id == principal.user_id:
            raise InvalidInput("you cannot report yourself", code="cannot_report_self")
        await store.lock_reporter_txn(conn, principal.user_id)
        if await store.open_duplicate_txn(
            conn, principal.user_id, kind, target.user_id, message_id
        ):
            raise Conflict(
                "you already reported this; a moderator will look at it",
                code="already_reported",
            )
        report_id = await store.insert_txn(
            conn,
            NewReport(
                reporter_id=principal.user_id,
                target_user_id=target.user_id,
                kind=kind,
                message_id=message_id,
                room_id=target.message.room_id if target.message else None,
                reason=clean_reason,
                excerpt=clean_excerpt,
                created_at=ctx.clock(),
            ),
        )
        row = await store.by_id(conn, report_id)
    assert row is not None
    log.info("report filed id=%d kind=%s", report_id, kind)
    await _tell_reviewers(
        ctx, lambda open_: ReportNewEvent(data=ReportNewData(id=report_id, kind=kind, open=open_))
    )
    return _mine(row)


async def _tell_reviewers(ctx: Context, make: Callable[[int], BaseModel]) -> None:
    """After a commit: every socket of every holder of ``reports:review`` gets ``make(open
    reports now)``, one bus round trip. Best effort: the report is committed whatever
    happens here, so a failure is logged, not raised (a panel also reloads when shown and
    when its socket reconnects)."""
    try:
        async with ctx.db.read() as conn:
            reviewers = await user_store.holders_of(conn, "reports:review")
            open_ = await store.count_open(conn)
        if reviewers:
            await notify.to_users_in_order(ctx, [(reviewers, make(open_))])
    except Exception:
        log.exception("report queue event not published; panels catch up when reloaded")


async def mine(ctx: Context, principal: Principal) -> list[ReportMine]:
    """The caller's reports, newest first, with their status and outcome."""
    async with ctx.db.read() as conn:
        rows = await store.mine(conn, principal.user_id, MINE_LIMIT)
    return [_mine(r) for r in rows]


# --- reviewing -------------------------------------------------------------------------------


def _reviewer(principal: Principal) -> None:
    if not principal.can("reports:review"):
        raise Forbidden("you need the permission reports:review", code="permission_denied")


async def queue(
    ctx: Context,
    principal: Principal,
    *,
    status: ReportStatus = "open",
    before: int | None = None,
    limit: int = QUEUE_LIMIT,
) -> tuple[list[ReportReview], int]:
    """Reports with ``status``, newest first (page with ``before`` = the last id seen), and
    how many reports are open in all (the count the panel shows)."""
    _reviewer(principal)
    async with ctx.db.read() as conn:
        rows = await store.queue(
            conn, status=status, before=before, limit=max(1, min(limit, QUEUE_MAX))
        )
        open_ = await store.count_open(conn)
    return [_review(r) for r in rows], open_


def _check_action(
    principal: Principal, row: ReportRow, action: ReportAction, minutes: int | None
) -> None:
    if row.target_user_id == principal.user_id:
        raise Forbidden(
            "this report is about you; another moderator must resolve it", code="own_report"
        )
    if action == "delete" and row.kind == "user":
        raise InvalidInput(
            "a user report has no message to delete; dismiss, mute or ban",
            code="invalid_action",
            details={"field": "action"},
        )
    if action == "mute" and (minutes is None or not 1 <= minutes <= MUTE_MAX_MINUTES):
        raise InvalidInput(
            f"a mute needs minutes between 1 and {MUTE_MAX_MINUTES}",
            code="invalid_minutes",
            details={"field": "minutes"},
        )
    if action in ("mute", "ban") and row.target is None:
        raise NotFound("the reported user no longer exists", code="user_not_found")


async def _act(
    ctx: Context,
    principal: Principal,
    row: ReportRow,
    action: ReportAction,
    resolution: str,
    minutes: int | None,
    ip: str,
) -> None:
    """Carry out the action through the services that own it (each audits its own step)."""
    reason = resolution or f"report #{row.id}"
    if action == "delete" and row.kind == "room_message" and row.message_found:
        from echochat.services import room_messages

        assert row.message_id is not None
        await room_messages.delete_message(
            ctx, principal, row.message_id, reason=reason, ip=ip, as_admin=True
        )
    elif action == "mute":
        from echochat.services import admin

        assert row.target is not None and minutes is not None
        await admin.set_mute(ctx, principal, row.target, minutes=minutes, reason=reason, ip=ip)
    elif action == "ban":
        from echochat.services import admin

        assert row.target is not None
        await admin.set_ban(ctx, principal, row.target, banned=True, reason=reason, ip=ip)


async def _close(
    ctx: Context,
    principal: Principal,
    row: ReportRow,
    action: ReportAction,
    note: str,
    minutes: int | None,
    ip: str,
) -> ReportRow:
    """Close the report (deleting a DM's envelope in the same transaction) and audit it."""
    async with ctx.db.transaction() as conn:
        deleted_dm = None
        if action == "delete" and row.kind == "dm" and row.message_found:
            assert row.message_id is not None
            deleted_dm = await message_store.delete_message_txn(conn, row.message_id)
        if not await store.resolve_txn(
            conn,
            row.id,
            status="dismissed" if action == "dismiss" else "actioned",
            action="" if action == "dismiss" else action,
            resolution=note,
            reviewer_id=principal.user_id,
            at=ctx.clock(),
        ):
            raise Conflict(f"report {row.id} was resolved meanwhile", code="already_resolved")
        details: dict[str, object] = {"action": action, "kind": row.kind}
        if row.message_id is not None:
            details["message_id"] = row.message_id
        if deleted_dm is not None:
            details["dm_deleted"] = deleted_dm
        if minutes is not None and action == "mute":
            details["minutes"] = minutes
        await audit.append_txn(
            conn,
            actor=principal.username,
            actor_id=principal.user_id,
            action="report.resolve",
            target_type="report",
            target=str(row.id),
            ip=ip,
            details=details,
        )
        done = await store.by_id(conn, row.id)
    assert done is not None
    return done


async def resolve(
    ctx: Context,
    principal: Principal,
    report_id: int,
    *,
    action: ReportAction,
    resolution: str = "",
    minutes: int | None = None,
    ip: str = "",
) -> ReportReview:
    """Dismiss a report or act on it (delete the message, mute or ban the reported user),
    close it, audit ``report.resolve``, tell the reporter (``report.update``) and the
    reviewers (``report.resolved``, with the open count).

    One resolution of a report at a time (:func:`store.reviewing`, on every process): a
    second moderator waits, then finds it closed. Refusals: 404 ``report_not_found``, 409
    ``already_resolved``, 422 for an action that does not fit (deleting a user report, a
    mute without minutes), 403 ``own_report``, and any refusal of the action itself (e.g.
    403 for staff, 409 ``last_admin``). A refused action leaves the report open."""
    _reviewer(principal)
    note = clean_line(resolution)
    if len(note) > REASON_MAX:
        raise InvalidInput(
            f"the resolution may hold at most {REASON_MAX} characters",
            code="invalid_input",
            details={"field": "resolution"},
        )
    async with store.reviewing(ctx.db, report_id):
        async with ctx.db.read() as conn:
            row = await store.by_id(conn, report_id)
        if row is None:
            raise NotFound(f"no report {report_id}", code="report_not_found")
        if row.status != "open":
            raise Conflict(f"report {report_id} is already {row.status}", code="already_resolved")
        _check_action(principal, row, action, minutes)
        await _act(ctx, principal, row, action, note, minutes, ip)
        done = await _close(ctx, principal, row, action, note, minutes, ip)
    told = _mine(done)
    event = ReportUpdateEvent(
        data=ReportUpdateData(
            id=told.id,
            status=told.status,
            action=told.action,
            outcome=told.outcome,
            resolved_at=told.resolved_at,
        )
    )
    try:
        await notify.to_user(ctx, done.reporter_id, event)
    except Exception:
        log.exception("report.update not published; the reporter sees it in /reports/mine")
    await _tell_reviewers(
        ctx, lambda open_: ReportResolvedEvent(data=ReportResolvedData(id=done.id, open=open_))
    )
    return _review(done)
