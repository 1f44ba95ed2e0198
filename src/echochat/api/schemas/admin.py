"""Bodies of /api/v1/admin (whoami, users, settings, audit, stats); docs/security.md,
"Administration"."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from echochat.services.admin import MUTE_MAX_MINUTES, REASON_MAX

__all__ = [
    "AdminUserOut",
    "AuditEntryOut",
    "AuditPageOut",
    "DatabaseOut",
    "DayOut",
    "DeviceOut",
    "LogoutOut",
    "SettingOut",
    "SettingsOut",
    "StatsOut",
    "UserPageOut",
    "UserPatchIn",
    "WhoAmIOut",
    "WhoAmIUser",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class WhoAmIUser(BaseModel):
    id: int
    username: str
    display_name: str


class DatabaseOut(BaseModel):
    url: str = Field(description="The database URL with any password masked.")
    name: str


class WhoAmIOut(BaseModel):
    user: WhoAmIUser
    roles: list[str]
    permissions: list[str]
    panel: bool = Field(description="Whether the admin panel is served to me (admin:basic).")
    database: DatabaseOut
    explanation: str


class DeviceOut(BaseModel):
    label: str
    ip: str
    created_at: str
    last_seen_at: str


class AdminUserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    roles: list[str]
    banned: bool
    ban_reason: str | None
    banned_at: str | None
    muted_until: str | None
    created_at: str
    last_seen_at: str | None
    sessions: int
    devices: list[DeviceOut] | None = Field(
        default=None, description="The live sessions; only when one user is asked for."
    )


class UserPageOut(BaseModel):
    total: int
    limit: int
    offset: int
    users: list[AdminUserOut]


class UserPatchIn(_In):
    banned: bool | None = Field(default=None, strict=True)
    ban_reason: str = Field(default="", max_length=REASON_MAX)
    roles: list[Literal["admin", "moderator", "user"]] | None = Field(default=None, max_length=3)
    muted_minutes: int | None = Field(default=None, ge=0, le=MUTE_MAX_MINUTES, strict=True)
    mute_reason: str = Field(default="", max_length=REASON_MAX)


class LogoutOut(BaseModel):
    username: str
    sessions_revoked: int


class SettingOut(BaseModel):
    name: str
    kind: Literal["bool", "int", "choice", "rate", "secret"]
    description: str
    value: bool | int | str | None = Field(description="Never the value of a secret.")
    is_set: bool
    source: Literal["admin", "config"]
    updated_by: str | None
    updated_at: str | None
    choices: list[str] | None
    minimum: int | None
    maximum: int | None


class SettingsOut(BaseModel):
    settings: list[SettingOut]


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target_type: str
    target: str
    ip: str
    details: dict[str, object]


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_before: int | None


class DayOut(BaseModel):
    day: str
    dms: int
    room_messages: int
    signups: int


class StatsOut(BaseModel):
    online_users: int
    users_total: int
    days: list[DayOut]
