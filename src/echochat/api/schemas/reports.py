"""Bodies of /reports and /admin/reports (docs/security.md, "Reports")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from echochat.services.reports import (
    EXCERPT_MAX,
    MUTE_MAX_MINUTES,
    REASON_MAX,
    ReportKind,
    ReportMine,
    ReportReview,
)

__all__ = [
    "ReportIn",
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


class ReportsMineOut(BaseModel):
    reports: list[ReportMine]


class ReportsQueueOut(BaseModel):
    reports: list[ReportReview]
    next_before: int | None  # pass as ``before`` for the next (older) page; None: no more
    open: int  # how many reports are open in all, whatever ``status`` was asked
