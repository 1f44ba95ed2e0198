"""Admin endpoint rows of the admin-server area: whoami, users, settings, audit, stats."""

from __future__ import annotations

from tests.admin_table import Row

ROWS: list[Row] = [
    Row("GET", "/api/v1/admin/whoami", None),
]
