"""Buddy lists: groups, buddies (one row per direction), requests, blocks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _user_fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=f"fk_{table}_{column}_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "buddy_groups",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        _user_fk("user_id", "buddy_groups"),
        sa.PrimaryKeyConstraint("user_id", "name", name="pk_buddy_groups"),
    )
    op.create_table(
        "buddies",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("buddy_id", Id, nullable=False),
        sa.Column("group_name", sa.String(40), nullable=False),
        sa.Column("stealth", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _user_fk("user_id", "buddies"),
        _user_fk("buddy_id", "buddies"),
        sa.PrimaryKeyConstraint("user_id", "buddy_id", name="pk_buddies"),
    )
    op.create_index("ix_buddies_buddy_id", "buddies", ["buddy_id"])
    op.create_table(
        "buddy_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("from_user", Id, nullable=False),
        sa.Column("to_user", Id, nullable=False),
        sa.Column("message", sa.String(200), nullable=False, server_default=""),
        sa.Column("group_name", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("decided_at", Timestamp, nullable=True),
        _user_fk("from_user", "buddy_requests"),
        _user_fk("to_user", "buddy_requests"),
        sa.PrimaryKeyConstraint("id", name="pk_buddy_requests"),
    )
    op.create_index("ix_buddy_requests_to_user", "buddy_requests", ["to_user", "status"])
    op.create_index("ix_buddy_requests_from_user", "buddy_requests", ["from_user", "status"])
    op.create_table(
        "blocks",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("blocked_id", Id, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _user_fk("user_id", "blocks"),
        _user_fk("blocked_id", "blocks"),
        sa.PrimaryKeyConstraint("user_id", "blocked_id", name="pk_blocks"),
    )
    op.create_index("ix_blocks_blocked_id", "blocks", ["blocked_id"])


def downgrade() -> None:
    for table in ("blocks", "buddy_requests", "buddies", "buddy_groups"):
        op.drop_table(table)
