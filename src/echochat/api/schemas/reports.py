"""Bodies of /reports and /admin/reports (docs/security.md, "Reports")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from echochat.domain.events_admin import ReportAction, ReportStatus
from echochat.services.reports import EXCERPT_MAX, MUTE_MAX_MINUTES, REASON_MAX, ReportKind

__all__ = [
    "ReportIn",
    "ReportMessageOut",
    "ReportMineOut",
    "ReportReviewOut",
    "ReportsMineOut",
    "ReportsQueueOut",
    "ResolveIn",
]


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ReportKind
    username: str | None = Field(default=None, min_length=1, max_length=64)
    message_id: int | None = Field(default=None, ge=1, le=2**62)
    reason: str = Field(min_length=1, max_length=REASON_MAX)
    # plaintext the reporter chose to include (DMs are end-to-end encrypted)
    excerpt: str | None = Field(default=None, max_length=EXCERPT_MAX)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["dismiss", "delete", "mute", "ban"]
    resolution: str = Field(default="", max_length=REASON_MAX)
    minutes: int | None = Field(default=None, ge=1, le=MUTE_MAX_MINUTES)


class ReportMineOut(BaseModel):
    id: int
    kind: ReportKind
    username: str | None
    message_id: int | None
    room_id: int | None
    reason: str
    excerpt: str | None
    status: ReportStatus
    action: ReportAction | None
    outcome: str
    created_at: str
    resolved_at: str | None


class ReportsMineOut(BaseModel):
    reports: list[ReportMineOut]


class ReportMessageOut(BaseModel):
    id: int
    found: bool
    sender: str | None
    created_at: str | None
    room_id: int | None
    room_name: str | None


class ReportReviewOut(BaseModel):
    id: int
    kind: ReportKind
    status: ReportStatus
    reporter: str
    username: str | None
    display_name: str | None
    banned: bool
    muted_until: str | None
    message: ReportMessageOut | None
    reason: str
    excerpt: str | None
    excerpt_matches: bool | None
    action: ReportAction | None
    resolution: str
    reviewed_by: str | None
    reviewed_at: str | None
    created_at: str


class ReportsQueueOut(BaseModel):
    reports: list[ReportReviewOut]
    next_before: int | None  # pass as ``before`` for the next (older) page; None: no more
