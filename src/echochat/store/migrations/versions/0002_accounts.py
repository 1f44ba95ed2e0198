"""Accounts: refresh tokens, password resets, the first-admin claim, email outbox, settings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(43), nullable=False),
        sa.Column("issued_at", Timestamp, nullable=False),
        sa.Column("used_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_refresh_tokens_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])
    op.create_table(
        "password_resets",
        sa.Column("id", sa.String(43), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("pin_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("link_expires_at", Timestamp, nullable=False),
        sa.Column("pin_expires_at", Timestamp, nullable=False),
        sa.Column("pin_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("used_at", Timestamp, nullable=True),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_password_resets_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_password_resets"),
        sa.UniqueConstraint("token_hash", name="uq_password_resets_token_hash"),
        sa.UniqueConstraint("binding_hash", name="uq_password_resets_binding_hash"),
    )
    op.create_index("ix_password_resets_user_id", "password_resets", ["user_id"])
    op.create_table(
        "admin_claims",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("used_at", Timestamp, nullable=True),
        sa.Column("used_by", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["used_by"], ["users.id"], name="fk_admin_claims_used_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_admin_claims"),
    )
    op.create_table(
        "email_outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("to_addr", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_email_outbox"),
    )
    op.create_table(
        "server_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_by", sa.String(100), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("key", name="pk_server_settings"),
    )


def downgrade() -> None:
    for table in (
        "server_settings",
        "email_outbox",
        "admin_claims",
        "password_resets",
        "refresh_tokens",
    ):
        op.drop_table(table)
