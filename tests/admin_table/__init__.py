"""The admin endpoint table: one row per admin endpoint, split into one module per area.

``tests/unit/test_admin_endpoints.py`` walks every route of the app under ``/api/v1/admin``
and fails when a route has no row here. For each row it checks: 401 without a session, 403
for a signed-in user lacking ``permission`` (skipped when ``permission`` is None, which means
any signed-in user may call it), and ``ok`` for a caller holding it.

Areas: ``users.py`` (admin-server: whoami, users, settings, audit, stats), ``reports.py``
(reports), ``rooms.py`` (rooms-core). Each exports ``ROWS: list[Row]``.

Paths are the full request path with sample values filled in (e.g.
``/api/v1/admin/users/alice``); ``route`` is the route's template as FastAPI declares it
(e.g. ``/api/v1/admin/users/{username}``), used to match rows to routes; it defaults to
``path`` when the path has no parameters.

Sample data available to rows (created by the test before each row is run, in a fresh app):
- users ``alice`` (admin), ``mod`` (moderator), ``bob`` (plain user), ``carol`` (plain user,
  a harmless target for user actions);
- a row may give ``setup``: an async callable ``(ctx) -> dict[str, str]`` run with the app's
  context before the row; the returned mapping is substituted into ``path`` with
  ``str.format`` (e.g. ``/api/v1/admin/reports/{report_id}/resolve``) and into string values
  of ``json`` the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "Setup"]

Setup = Callable[[Any], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class Row:
    method: str
    """HTTP method, upper case."""
    path: str
    """Request path, may hold ``{name}`` placeholders filled from ``setup``'s mapping."""
    permission: str | None
    """Permission needed; None = any signed-in user."""
    json: dict[str, Any] | list[Any] | None = None
    """Request body (None = no body)."""
    ok: int = 200
    """Status expected from a caller holding the permission."""
    route: str = ""
    """The FastAPI route template this row covers; defaults to ``path``."""
    setup: Setup | None = None
    """Optional async ``(ctx) -> mapping`` run before each request of the row."""

    @property
    def route_path(self) -> str:
        return self.route or self.path
