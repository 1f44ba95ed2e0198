"""/api/v1/reports (any signed-in user) and /api/v1/admin/reports (reports:review): thin
routes over services.reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from echochat.api.deps import ClientIP, Ctx, CurrentUser, require
from echochat.api.schemas.reports import ReportIn, ReportsMineOut, ReportsQueueOut, ResolveIn
from echochat.domain.events_admin import ReportStatus
from echochat.services import reports
from echochat.services.accounts import Principal
from echochat.services.reports import ReportMine, ReportReview

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["reports"])

Reviewer = Annotated[Principal, Depends(require("reports:review"))]
ReportId = Annotated[int, Path(ge=1, le=2**62)]


@router.post("/reports", status_code=status.HTTP_201_CREATED, response_model=ReportMine)
async def file_report(body: ReportIn, principal: CurrentUser, ctx: Ctx) -> ReportMine:
    """Report a user, a DM I sent or received, or a message of a room I am in."""
    return await reports.submit(
        ctx,
        principal,
        kind=body.kind,
        username=body.username,
        message_id=body.message_id,
        reason=body.reason,
        excerpt=body.excerpt,
    )


@router.get("/reports/mine", response_model=ReportsMineOut)
async def my_reports(principal: CurrentUser, ctx: Ctx) -> ReportsMineOut:
    """My reports, newest first, with their status and outcome."""
    return ReportsMineOut(reports=await reports.mine(ctx, principal))


@router.get("/admin/reports", response_model=ReportsQueueOut)
async def report_queue(
    principal: Reviewer,
    ctx: Ctx,
    status: Annotated[ReportStatus, Query()] = "open",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=reports.QUEUE_MAX)] = reports.QUEUE_LIMIT,
) -> ReportsQueueOut:
    """The reports with ``status``, newest first; page with ``before``."""
    found, open_ = await reports.queue(ctx, principal, status=status, before=before, limit=limit)
    return ReportsQueueOut(
        reports=found,
        next_before=found[-1].id if len(found) == limit else None,
        open=open_,
    )


@router.post("/admin/reports/{report_id}/resolve", response_model=ReportReview)
async def resolve_report(
    report_id: ReportId, body: ResolveIn, principal: Reviewer, ctx: Ctx, ip: ClientIP
) -> ReportReview:
    """Dismiss the report or act on it (delete the message, mute or ban the user)."""
    return await reports.resolve(
        ctx,
        principal,
        report_id,
        action=body.action,
        resolution=body.resolution,
        minutes=body.minutes,
        ip=ip,
    )
