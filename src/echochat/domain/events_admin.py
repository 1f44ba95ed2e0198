"""Events of administration and moderation (``{"op": "ev", "type", "data"}`` on ``/ws``).

``report.update``: the reporter's sockets learn that a moderator resolved their report, and
what happened. It never names the moderator and never carries the moderator's free-text
note (docs/security.md, "Reports").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ReportAction", "ReportStatus", "ReportUpdateData", "ReportUpdateEvent"]

ReportStatus = Literal["open", "dismissed", "actioned"]
ReportAction = Literal["dismiss", "delete", "mute", "ban"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportUpdateData(_Model):
    id: int
    status: ReportStatus
    action: ReportAction | None
    outcome: str  # one sentence for the reporter, chosen by the server per action
    resolved_at: str | None


class ReportUpdateEvent(_Model):
    """To every socket of the reporter, after a moderator resolved their report."""

    type: Literal["report.update"] = "report.update"
    data: ReportUpdateData
