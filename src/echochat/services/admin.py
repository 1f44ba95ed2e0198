"""Administration: who am I, users (search, view, ban, mute, roles, sign-out everywhere),
the audit log (pages and CSV export) and the dashboard's numbers.

Who may do what (the HTTP routes check the same permission first with ``require``):

- ``users:manage`` (admins): everything on users;
- ``reports:review`` (moderators), through :func:`set_ban` and :func:`set_mute` when acting
  on a report: only on users who hold no staff role (admin or moderator);
- nobody can ban the last active admin or take the role away from them (409
  ``last_admin``), nor ban or mute themselves.

Every change writes one audit row (who, what, target, from which IP) in the transaction
that makes it; kicks and events go out after the commit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from echochat.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from echochat.domain.roles import ROLE_ORDER
from echochat.services import notify, presence, roles, server_settings
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import admin as admin_store
from echochat.store import audit
from echochat.store import sessions as session_store
from echochat.store import users as user_store
from echochat.store.admin import AdminUserRow
from echochat.store.audit import AuditRow

__all__ = [
    "AUDIT_COLUMNS",
    "MUTE_MAX_MINUTES",
    "REASON_MAX",
    "AdminUser",
    "AuditPage",
    "DayStats",
    "Device",
    "Stats",
    "UserPage",
    "audit_csv",
    "audit_page",
    "csv_cell",
    "get_user",
    "list_users",
    "set_ban",
    "set_ban_as_operator",
    "set_mute",
    "set_roles",
    "settings_view",
    "sign_out_everywhere",
    "stats",
    "update_settings",
    "update_user",
]

log = logging.getLogger("echochat.admin")

MUTE_MAX_MINUTES = 366 * 24 * 60
REASON_MAX = 500
STAFF_ROLES = frozenset({"admin", "moderator"})
STATS_DAYS = 30


@dataclass(frozen=True)
class AdminUser:
    id: int
    username: str
    display_name: str
    email: str | None
    roles: list[str]
    banned: bool
    ban_reason: str | None
    banned_at: datetime | None
    muted_until: datetime | None
    created_at: datetime
    last_seen_at: datetime | None
    sessions: int
    devices: list[Device] | None = None  # the live sessions, when one user is viewed


@dataclass(frozen=True)
class Device:
    """One live session of a user, as the admin sees it (never its id or tokens)."""

    label: str
    ip: str
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class UserPage:
    total: int
    users: list[AdminUser]


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditRow]
    next_before: int | None


@dataclass(frozen=True)
class DayStats:
    day: date
    dms: int
    room_messages: int
    signups: int


@dataclass(frozen=True)
class Stats:
    online_users: int
    users_total: int
    days: list[DayStats] = field(default_factory=list)


def _need(actor: Principal, *permissions: str) -> None:
    if not any(actor.can(p) for p in permissions):
        raise Forbidden(
            f"you need the permission {' or '.join(permissions)}", code="permission_denied"
        )


def _reason(text: str) -> str:
    cleaned = " ".join(text.split())
    if len(cleaned) > REASON_MAX:
        raise InvalidInput(
            f"a reason may hold at most {REASON_MAX} characters",
            code="invalid_input",
            details={"field": "reason"},
        )
    return cleaned


def _muted(row: AdminUserRow, now: datetime) -> datetime | None:
    return row.muted_until if row.muted_until is not None and row.muted_until > now else None


def _user(row: AdminUserRow, held: set[str], now: datetime) -> AdminUser:
    return AdminUser(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        roles=[r for r in ROLE_ORDER if r in held | {"user"}] + sorted(held - set(ROLE_ORDER)),
        banned=row.banned_at is not None,
        ban_reason=row.ban_reason,
        banned_at=row.banned_at,
        muted_until=_muted(row, now),
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        sessions=row.sessions,
    )


# --- users ------------------------------------------------------------------------------------


async def list_users(
    ctx: Context, actor: Principal, *, q: str = "", limit: int = 50, offset: int = 0
) -> UserPage:
    """Users whose username, display name or email contains ``q``, by username."""
    _need(actor, "users:manage")
    now = ctx.clock()
    async with ctx.db.read() as conn:
        total = await admin_store.count_users(conn, q)
        rows = await admin_store.search_users(conn, now=now, q=q, limit=limit, offset=offset)
        held = await admin_store.roles_of_many(conn, [r.id for r in rows])
    return UserPage(total=total, users=[_user(r, held[r.id], now) for r in rows])


async def get_user(ctx: Context, actor: Principal, username: str) -> AdminUser:
    _need(actor, "users:manage", "reports:review")
    now = ctx.clock()
    async with ctx.db.read() as conn:
        rows = await admin_store.search_users(conn, now=now, username=username)
        if not rows:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        held = await admin_store.roles_of_many(conn, [rows[0].id])
        live = await session_store.active_for_user(conn, rows[0].id, now)
    devices = [Device(s.device_label, s.ip, s.created_at, s.last_seen_at) for s in live]
    return dataclasses.replace(_user(rows[0], held[rows[0].id], now), devices=devices)


@dataclass(frozen=True)
class _Actor:
    """Who acts: a signed-in user, or the server's operator at the command line."""

    name: str
    user_id: int | None
    manages_users: bool

    @classmethod
    def of(cls, principal: Principal) -> _Actor:
        return cls(principal.username, principal.user_id, principal.can("users:manage"))


async def _target_txn(
    conn: user_store.Conn,
    actor: _Actor,
    username: str,
    what: str,
    *,
    keep_last_admin: bool = False,
) -> user_store.UserRow:
    """The user ``actor`` means to act on, after the checks every action shares; with
    ``keep_last_admin``, 409 ``last_admin`` first when the user is the last active admin."""
    user = await user_store.by_username(conn, username)
    if user is None:
        raise NotFound(f"no user named {username!r}", code="user_not_found")
    if (
        user.id != actor.user_id
        and not actor.manages_users
        and await user_store.roles_of(conn, user.id) & STAFF_ROLES
    ):
        raise Forbidden(
            f"{user.username} is staff; only someone with users:manage can {what} them",
            code="permission_denied",
        )
    if (
        keep_last_admin
        and user.banned_at is None
        and "admin" in await user_store.roles_of(conn, user.id)
        and await user_store.count_with_role(conn, "admin") <= 1
    ):
        raise Conflict(
            f"{user.username} is the last admin and cannot be banned; grant admin to "
            "someone else first",
            code="last_admin",
        )
    if user.id == actor.user_id:
        raise Conflict(f"you cannot {what} yourself", code="self_action")
    return user


async def set_ban(
    ctx: Context,
    actor: Principal,
    username: str,
    *,
    banned: bool,
    reason: str = "",
    ip: str = "",
) -> None:
    """Ban (or unban) a user. A ban takes effect at once: every session is revoked (so
    refresh fails), the user's sockets on every process get ``kicked`` (reason ``banned``)
    and close, and signing in is refused with the reason. Audited ``user.ban`` /
    ``user.unban``. Refuses the last active admin (409 ``last_admin``). Moderators
    (``reports:review``) may ban non-staff when acting on a report; lifting a ban needs
    ``users:manage``."""
    if banned:
        _need(actor, "users:manage", "reports:review")
    else:
        _need(actor, "users:manage")
    await _ban(ctx, _Actor.of(actor), username, banned=banned, reason=reason, ip=ip)


async def set_ban_as_operator(
    ctx: Context, username: str, *, banned: bool, reason: str = "", actor: str
) -> None:
    """:func:`set_ban` for ``echochat admin ban``: the operator of the server (``actor`` as
    the CLI names them) holds every permission but the last admin stays."""
    await _ban(ctx, _Actor(actor, None, True), username, banned=banned, reason=reason, ip="")


async def _ban(
    ctx: Context, actor: _Actor, username: str, *, banned: bool, reason: str, ip: str
) -> None:
    note = _reason(reason)
    now = ctx.clock()
    revoked: list[str] = []
    async with ctx.db.transaction() as conn:
        await user_store.lock_role_txn(conn, "admin")
        user = await _target_txn(
            conn, actor, username, "ban" if banned else "unban", keep_last_admin=banned
        )
        if banned:
            if user.banned_at is not None and (user.ban_reason or "") == note:
                return
            await user_store.set_ban_txn(
                conn, user.id, banned_at=user.banned_at or now, reason=note
            )
            revoked = await session_store.revoke_all_for_user_txn(
                conn, user.id, now=now, reason="banned"
            )
        else:
            if user.banned_at is None:
                return
            await user_store.set_ban_txn(conn, user.id, banned_at=None, reason=None)
        await audit.append_txn(
            conn,
            actor=actor.name,
            actor_id=actor.user_id,
            action="user.ban" if banned else "user.unban",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"reason": note, "sessions_revoked": len(revoked)} if banned else {},
        )
    if banned:
        log.warning("user banned user=%s by=%s", user.username, actor.name)
        await notify.kick(
            ctx,
            user.id,
            session_ids=None,
            reason="banned",
            message=f"this account is banned: {note}" if note else "this account is banned",
        )


async def set_mute(
    ctx: Context,
    actor: Principal,
    username: str,
    *,
    minutes: int,
    reason: str = "",
    ip: str = "",
) -> datetime | None:
    """Mute a user server-wide for ``minutes`` (0 lifts the mute): no DMs, room posts or
    BUZZ! until then. The end of the mute, or None. Audited ``user.mute`` / ``user.unmute``."""
    _need(actor, "users:manage", "reports:review")
    if isinstance(minutes, bool) or not 0 <= minutes <= MUTE_MAX_MINUTES:
        raise InvalidInput(
            f"minutes must be between 0 (lift the mute) and {MUTE_MAX_MINUTES}",
            code="invalid_input",
            details={"field": "muted_minutes"},
        )
    note = _reason(reason)
    now = ctx.clock()
    until = now + timedelta(minutes=minutes) if minutes else None
    async with ctx.db.transaction() as conn:
        user = await _target_txn(conn, _Actor.of(actor), username, "mute" if minutes else "unmute")
        was_muted = user.muted_until is not None and user.muted_until > now
        if until is None and not was_muted:
            if user.muted_until is not None:
                await user_store.set_mute_txn(conn, user.id, until=None)
            return None
        await user_store.set_mute_txn(conn, user.id, until=until)
        await audit.append_txn(
            conn,
            actor=actor.username,
            actor_id=actor.user_id,
            action="user.mute" if until else "user.unmute",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"minutes": minutes, "until": until.isoformat(), "reason": note}
            if until
            else {"reason": note},
        )
    return until


async def set_roles(
    ctx: Context, actor: Principal, username: str, wanted: list[str], *, ip: str = ""
) -> tuple[list[str], list[str]]:
    """Make the user's roles exactly ``wanted`` (``user`` implied); (granted, revoked).
    Audited per role (``role.grant`` / ``role.revoke``); the last admin keeps the role."""
    _need(actor, "users:manage")
    return await roles.set_roles(
        ctx.db, username, set(wanted), actor=actor.username, actor_id=actor.user_id, ip=ip
    )


async def sign_out_everywhere(
    ctx: Context, actor: Principal, username: str, *, ip: str = ""
) -> int:
    """Revoke every session of the user and close their sockets on every process (``kicked``,
    reason ``session_revoked``); how many sessions were live. Audited ``user.logout``."""
    _need(actor, "users:manage")
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        user = await user_store.by_username(conn, username)
        if user is None:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        revoked = await session_store.revoke_all_for_user_txn(
            conn, user.id, now=now, reason="admin_logout"
        )
        await audit.append_txn(
            conn,
            actor=actor.username,
            actor_id=actor.user_id,
            action="user.logout",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"sessions_revoked": len(revoked)},
        )
    await notify.kick(
        ctx,
        user.id,
        session_ids=None,
        reason="session_revoked",
        message="an administrator signed you out on every device",
    )
    return len(revoked)


async def update_user(
    ctx: Context,
    actor: Principal,
    username: str,
    *,
    roles_wanted: list[str] | None = None,
    banned: bool | None = None,
    ban_reason: str = "",
    muted_minutes: int | None = None,
    mute_reason: str = "",
    ip: str = "",
) -> AdminUser:
    """The panel's one edit: roles, then ban, then mute (each its own audited step)."""
    _need(actor, "users:manage")
    await get_user(ctx, actor, username)  # 404 before any change
    if roles_wanted is not None:
        await set_roles(ctx, actor, username, roles_wanted, ip=ip)
    if banned is not None:
        await set_ban(ctx, actor, username, banned=banned, reason=ban_reason, ip=ip)
    if muted_minutes is not None:
        await set_mute(ctx, actor, username, minutes=muted_minutes, reason=mute_reason, ip=ip)
    return await get_user(ctx, actor, username)


# --- settings ---------------------------------------------------------------------------------


async def settings_view(ctx: Context, actor: Principal) -> list[server_settings.SettingView]:
    _need(actor, "settings:manage")
    return await server_settings.view(ctx)


async def update_settings(
    ctx: Context, actor: Principal, changes: dict[str, Any], *, ip: str = ""
) -> list[server_settings.SettingView]:
    """Change settings live on every process (services/server_settings.py); audited."""
    _need(actor, "settings:manage")
    await server_settings.update(ctx, changes, actor=actor.username, actor_id=actor.user_id, ip=ip)
    return await server_settings.view(ctx)


# --- the audit log ------------------------------------------------------------------------------


async def audit_page(
    ctx: Context,
    actor: Principal,
    *,
    action: str = "",
    actor_name: str = "",
    target: str = "",
    before: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Newest first; ``next_before`` continues below this page (None: the end)."""
    _need(actor, "audit:read")
    async with ctx.db.read() as conn:
        rows = await audit.page(
            conn, action=action, actor=actor_name, target=target, before=before, limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(entries=rows, next_before=rows[-1].id if more and rows else None)


AUDIT_COLUMNS = ("id", "at", "actor", "action", "target_type", "target", "ip", "details")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula (``= + - @``, tab,
    carriage return) gets a leading ``'`` (OWASP, CSV injection). Quoting is the writer's."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(
        [csv_cell(v) for v in values]
    )
    return out.getvalue()


def _details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False, default=str)


async def audit_csv(
    ctx: Context,
    actor: Principal,
    *,
    action: str = "",
    actor_name: str = "",
    target: str = "",
    ip: str = "",
    batch: int = 500,
) -> AsyncIterator[str]:
    """The filtered audit log as CSV lines, newest first, read in batches (streamed: the
    whole log is never in memory). The export itself is audited (``audit.export``)."""
    _need(actor, "audit:read")
    async with ctx.db.transaction() as conn:
        await audit.append_txn(
            conn,
            actor=actor.username,
            actor_id=actor.user_id,
            action="audit.export",
            target_type="audit",
            ip=ip,
            details={"action": action, "actor": actor_name, "target": target},
        )
    return _csv_rows(ctx, action=action, actor_name=actor_name, target=target, batch=batch)


async def _csv_rows(
    ctx: Context, *, action: str, actor_name: str, target: str, batch: int
) -> AsyncIterator[str]:
    yield _csv_line(list(AUDIT_COLUMNS))
    before: int | None = None
    while True:
        async with ctx.db.read() as conn:
            rows = await audit.page(
                conn, action=action, actor=actor_name, target=target, before=before, limit=batch
            )
        for row in rows:
            yield _csv_line(
                [
                    row.id,
                    row.at.astimezone(UTC).isoformat(),
                    row.actor,
                    row.action,
                    row.target_type,
                    row.target,
                    row.ip,
                    _details(row.details),
                ]
            )
        if len(rows) < batch:
            return
        before = rows[-1].id


# --- the dashboard ----------------------------------------------------------------------------


async def stats(ctx: Context, actor: Principal, *, days: int = STATS_DAYS) -> Stats:
    """Online now (from presence, every process), and per UTC day for the last ``days``
    days (today included): direct messages, room messages and sign-ups."""
    _need(actor, "admin:basic")
    today = ctx.clock().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    async with ctx.db.read() as conn:
        counts = await admin_store.daily_counts(conn, since)
        total = await admin_store.count_users(conn)
    online = await presence.online_snapshot(ctx)
    series = [
        DayStats(
            day=day,
            dms=counts["dms"].get(day, 0),
            room_messages=counts["room_messages"].get(day, 0),
            signups=counts["signups"].get(day, 0),
        )
        for day in (first + timedelta(days=i) for i in range(days))
    ]
    return Stats(online_users=len(online), users_total=total, days=series)
