"""Admin endpoint rows of the reports area: the review queue and resolving a report."""

from __future__ import annotations

from typing import Any

from echochat.services.context import Context
from echochat.store import reports as report_store
from echochat.store import users as user_store
from echochat.store.reports import NewReport
from tests.admin_table import Row


async def open_report(ctx: Any) -> dict[str, str]:
    """A fresh open report by bob about carol (each request resolves its own)."""
    assert isinstance(ctx, Context)
    async with ctx.db.transaction() as conn:
        bob = await user_store.by_username(conn, "bob")
        carol = await user_store.by_username(conn, "carol")
        assert bob is not None and carol is not None
        report_id = await report_store.insert_txn(
            conn,
            NewReport(
                reporter_id=bob.id,
                target_user_id=carol.id,
                kind="user",
                message_id=None,
                room_id=None,
                reason="table test",
                excerpt=None,
                created_at=ctx.clock(),
            ),
        )
    return {"report_id": str(report_id)}


ROWS: list[Row] = [
    Row("GET", "/api/v1/admin/reports", "reports:review"),
    Row(
        "GET",
        "/api/v1/admin/reports?status=dismissed&limit=5",
        "reports:review",
        route="/api/v1/admin/reports",
    ),
    Row(
        "POST",
        "/api/v1/admin/reports/{report_id}/resolve",
        "reports:review",
        json={"action": "dismiss", "resolution": "table test"},
        route="/api/v1/admin/reports/{report_id}/resolve",
        setup=open_report,
    ),
]
