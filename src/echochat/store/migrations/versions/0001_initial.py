"""Users, roles, permissions, role assignments, sessions and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

# Frozen copy of domain/roles.py at this revision: migrations never import live code.
PERMISSIONS = {
    "admin:basic": "Open the admin panel and read the dashboard",
    "users:manage": "Ban, unban, sign out and change roles of users",
    "rooms:manage": "Create, edit and delete rooms and categories; moderate any room",
    "settings:manage": "Change server settings",
    "reports:review": "Review and act on reports",
    "audit:read": "Read and export the audit log",
}
ROLES = {
    "admin": "Runs the server: every permission",
    "moderator": "Keeps rooms civil: reviews reports, moderates rooms",
    "user": "Everyone who has an account",
}
ROLE_PERMISSIONS = {
    "admin": sorted(PERMISSIONS),
    "moderator": ["admin:basic", "reports:review", "rooms:manage"],
    "user": [],
}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("banned_at", Timestamp, nullable=True),
        sa.Column("ban_reason", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_index("uq_users_username_ci", "users", [sa.text("lower(username)")], unique=True)
    op.create_index("uq_users_email_ci", "users", [sa.text("lower(email)")], unique=True)

    roles = op.create_table(
        "roles",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_roles"),
    )
    permissions = op.create_table(
        "permissions",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_permissions"),
    )
    role_permissions = op.create_table(
        "role_permissions",
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("permission", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["role"], ["roles.name"], name="fk_role_permissions_role_roles", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["permission"],
            ["permissions.name"],
            name="fk_role_permissions_permission_permissions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role", "permission", name="pk_role_permissions"),
    )
    op.create_table(
        "role_assignments",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("granted_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("granted_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_role_assignments_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["role"], ["roles.name"], name="fk_role_assignments_role_roles", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name="pk_role_assignments"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(43), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("device_label", sa.String(120), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.Column("revoked_reason", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("actor_id", Id, nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False, server_default=""),
        sa.Column("target", sa.String(200), nullable=False, server_default=""),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name="fk_audit_log_actor_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])

    op.bulk_insert(roles, [{"name": k, "description": v} for k, v in ROLES.items()])
    op.bulk_insert(permissions, [{"name": k, "description": v} for k, v in PERMISSIONS.items()])
    op.bulk_insert(
        role_permissions,
        [{"role": r, "permission": p} for r, perms in ROLE_PERMISSIONS.items() for p in perms],
    )


def downgrade() -> None:
    for table in (
        "audit_log",
        "sessions",
        "role_assignments",
        "role_permissions",
        "permissions",
        "roles",
    ):
        op.drop_table(table)
    op.drop_index("uq_users_email_ci", table_name="users")
    op.drop_index("uq_users_username_ci", table_name="users")
    op.drop_table("users")
