"""/api/v1/admin: whoami, users, settings, the audit log and the dashboard's numbers.

Thin routes over services.admin, services.server_settings and services.roles. Every route
but whoami depends on ``require(permission)`` (api/deps.py); the table in
tests/admin_table/ lists each route with its permission, and a test fails for a route
without a row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import StreamingResponse

from echochat.api.deps import ClientIP, Ctx, CurrentUser, require
from echochat.api.schemas.admin import (
    AdminUserOut,
    AuditEntryOut,
    AuditPageOut,
    DatabaseOut,
    DayOut,
    DeviceOut,
    LogoutOut,
    SettingOut,
    SettingsOut,
    StatsOut,
    UserPageOut,
    UserPatchIn,
    WhoAmIOut,
    WhoAmIUser,
)
from echochat.services import admin, roles, server_settings
from echochat.services.accounts import Principal
from echochat.services.admin import AdminUser
from echochat.store.audit import AuditRow

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

UserManager = Annotated[Principal, Depends(require("users:manage"))]
SettingsManager = Annotated[Principal, Depends(require("settings:manage"))]
AuditReader = Annotated[Principal, Depends(require("audit:read"))]
Staff = Annotated[Principal, Depends(require("admin:basic"))]
Username = Annotated[str, Path(min_length=1, max_length=64)]
Filter = Annotated[str, Query(max_length=200)]


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _user_out(user: AdminUser) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        roles=user.roles,
        banned=user.banned,
        ban_reason=user.ban_reason,
        banned_at=_iso(user.banned_at),
        muted_until=_iso(user.muted_until),
        created_at=_iso(user.created_at) or "",
        last_seen_at=_iso(user.last_seen_at),
        sessions=user.sessions,
        devices=None
        if user.devices is None
        else [
            DeviceOut(
                label=d.label,
                ip=d.ip,
                created_at=_iso(d.created_at) or "",
                last_seen_at=_iso(d.last_seen_at) or "",
            )
            for d in user.devices
        ],
    )


def _entry_out(row: AuditRow) -> AuditEntryOut:
    return AuditEntryOut(
        id=row.id,
        at=_iso(row.at) or "",
        actor=row.actor,
        action=row.action,
        target_type=row.target_type,
        target=row.target,
        ip=row.ip,
        details=row.details,
    )


@router.get("/whoami", response_model=WhoAmIOut)
async def whoami(principal: CurrentUser, ctx: Ctx) -> WhoAmIOut:
    """Any signed-in user: my roles and permissions, and the database they were read from,
    so that a missing admin panel explains itself."""
    status = await roles.role_status(ctx.db, principal.username)
    panel = "admin:basic" in status.permissions
    if panel:
        explanation = (
            f"you hold {', '.join(r for r in status.roles if r != 'user')} in database "
            f"{status.database_name}, so the admin panel is served to you"
        )
    else:
        explanation = (
            f"you hold no admin or moderator role in database {status.database_name} "
            f"({status.database}); an admin can grant one in the panel, or on the server: "
            f"echochat admin grant {status.username} --role admin (with the same database)"
        )
    return WhoAmIOut(
        user=WhoAmIUser(
            id=status.user_id, username=status.username, display_name=status.display_name
        ),
        roles=status.roles,
        permissions=status.permissions,
        panel=panel,
        database=DatabaseOut(url=status.database, name=status.database_name),
        explanation=explanation,
    )


# --- users ----------------------------------------------------------------------------------


@router.get("/users", response_model=UserPageOut)
async def list_users(
    principal: UserManager,
    ctx: Ctx,
    q: Filter = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> UserPageOut:
    """Users whose username, display name or email contains ``q``, by username."""
    page = await admin.list_users(ctx, principal, q=q, limit=limit, offset=offset)
    return UserPageOut(
        total=page.total, limit=limit, offset=offset, users=[_user_out(u) for u in page.users]
    )


@router.get("/users/{username}", response_model=AdminUserOut)
async def get_user(username: Username, principal: UserManager, ctx: Ctx) -> AdminUserOut:
    return _user_out(await admin.get_user(ctx, principal, username))


@router.patch("/users/{username}", response_model=AdminUserOut)
async def update_user(
    username: Username, body: UserPatchIn, principal: UserManager, ctx: Ctx, ip: ClientIP
) -> AdminUserOut:
    """Any of: roles (the full set wanted), banned (+ ban_reason), muted_minutes (0 lifts;
    + mute_reason). Applied in that order, each audited."""
    user = await admin.update_user(
        ctx,
        principal,
        username,
        roles_wanted=list(body.roles) if body.roles is not None else None,
        banned=body.banned,
        ban_reason=body.ban_reason,
        muted_minutes=body.muted_minutes,
        mute_reason=body.mute_reason,
        ip=ip,
    )
    return _user_out(user)


@router.post("/users/{username}/logout", response_model=LogoutOut)
async def sign_out_everywhere(
    username: Username, principal: UserManager, ctx: Ctx, ip: ClientIP
) -> LogoutOut:
    """End every session of the user; their sockets on every process get ``kicked``."""
    count = await admin.sign_out_everywhere(ctx, principal, username, ip=ip)
    return LogoutOut(username=username, sessions_revoked=count)


# --- settings ---------------------------------------------------------------------------------


def _settings_out(views: list[server_settings.SettingView]) -> SettingsOut:
    return SettingsOut(settings=[SettingOut(**asdict(view)) for view in views])


@router.get("/settings", response_model=SettingsOut)
async def get_settings(principal: SettingsManager, ctx: Ctx) -> SettingsOut:
    """Every setting an admin may change, its value (a secret only as set or not) and source."""
    return _settings_out(await admin.settings_view(ctx, principal))


@router.patch("/settings", response_model=SettingsOut)
async def update_settings(
    body: Annotated[dict[str, bool | int | str | None], Body(max_length=64)],
    principal: SettingsManager,
    ctx: Ctx,
    ip: ClientIP,
) -> SettingsOut:
    """``{"name": value, ...}``; null puts a setting back to its configured value. All or
    nothing; applied on every process at once."""
    return _settings_out(await admin.update_settings(ctx, principal, dict(body), ip=ip))


# --- the audit log ----------------------------------------------------------------------------


@router.get("/audit", response_model=AuditPageOut)
async def audit_log(
    principal: AuditReader,
    ctx: Ctx,
    action: Filter = "",
    actor: Filter = "",
    target: Filter = "",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPageOut:
    """Newest first; pass ``next_before`` as ``before`` for the next page."""
    page = await admin.audit_page(
        ctx,
        principal,
        action=action,
        actor_name=actor,
        target=target,
        before=before,
        limit=limit,
    )
    return AuditPageOut(
        entries=[_entry_out(row) for row in page.entries], next_before=page.next_before
    )


@router.get("/audit.csv", response_class=StreamingResponse)
async def audit_export(
    principal: AuditReader,
    ctx: Ctx,
    ip: ClientIP,
    action: Filter = "",
    actor: Filter = "",
    target: Filter = "",
) -> StreamingResponse:
    """The filtered audit log as CSV (streamed), newest first."""
    lines: AsyncIterator[str] = await admin.audit_csv(
        ctx, principal, action=action, actor_name=actor, target=target, ip=ip
    )
    stamp = ctx.clock().astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="echochat-audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


# --- the dashboard ----------------------------------------------------------------------------


@router.get("/stats", response_model=StatsOut)
async def stats(principal: Staff, ctx: Ctx) -> StatsOut:
    """Online now, and per day for the last 30 days: DMs, room messages, sign-ups."""
    found = await admin.stats(ctx, principal)
    return StatsOut(
        online_users=found.online_users,
        users_total=found.users_total,
        days=[
            DayOut(
                day=d.day.isoformat(), dms=d.dms, room_messages=d.room_messages, signups=d.signups
            )
            for d in found.days
        ],
    )
