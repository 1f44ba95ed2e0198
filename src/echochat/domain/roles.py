"""The role -> permission table: where access policy lives.

The database is the one source of truth for *who holds which role* and for the role ->
permission mapping that permission checks read. This module is the canonical description of
that mapping: migrations seed it, and a test checks that a migrated database agrees with it,
so changing a line here without a migration fails the suite.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PERMISSIONS", "ROLES", "ROLE_ORDER", "ROLE_PERMISSIONS", "permissions_for"]

PERMISSIONS: Final[dict[str, str]] = {
    "admin:basic": "Open the admin panel and read the dashboard",
    "users:manage": "Ban, unban, sign out and change roles of users",
    "rooms:manage": "Create, edit and delete rooms and categories; moderate any room",
    "settings:manage": "Change server settings",
    "reports:review": "Review and act on reports",
    "audit:read": "Read and export the audit log",
}

ROLES: Final[dict[str, str]] = {
    "admin": "Runs the server: every permission",
    "moderator": "Keeps rooms civil: reviews reports, moderates rooms",
    "user": "Everyone who has an account",
}

ROLE_ORDER: Final[tuple[str, ...]] = ("admin", "moderator", "user")

ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(PERMISSIONS),
    "moderator": frozenset({"admin:basic", "reports:review", "rooms:manage"}),
    "user": frozenset(),
}


def permissions_for(roles: set[str] | frozenset[str]) -> frozenset[str]:
    """The union of the permissions of ``roles`` according to the canonical table."""
    out: set[str] = set()
    for role in roles:
        out |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(out)
