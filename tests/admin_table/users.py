"""Admin endpoint rows of the admin-server area: whoami, users, settings, audit, stats.

Targets are ``carol`` (a plain user the test creates); bodies are harmless so the rows can
run in any order on one app (lifting a mute that is not there, setting a value to itself).
"""

from __future__ import annotations

from tests.admin_table import Row

A = "/api/v1/admin"

ROWS: list[Row] = [
    Row("GET", f"{A}/whoami", None),
    Row("GET", f"{A}/users?q=car&limit=5", "users:manage", route=f"{A}/users"),
    Row("GET", f"{A}/users/carol", "users:manage", route=f"{A}/users/{{username}}"),
    Row(
        "PATCH",
        f"{A}/users/carol",
        "users:manage",
        json={"muted_minutes": 0},
        route=f"{A}/users/{{username}}",
    ),
    Row("POST", f"{A}/users/carol/logout", "users:manage", route=f"{A}/users/{{username}}/logout"),
    Row("GET", f"{A}/settings", "settings:manage"),
    Row("PATCH", f"{A}/settings", "settings:manage", json={"registration_open": True}),
    Row("GET", f"{A}/audit?action=user&limit=10", "audit:read", route=f"{A}/audit"),
    Row("GET", f"{A}/audit.csv?action=role", "audit:read", route=f"{A}/audit.csv"),
    Row("GET", f"{A}/stats", "admin:basic"),
]
