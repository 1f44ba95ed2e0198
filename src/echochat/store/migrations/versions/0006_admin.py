"""Administration: reports, and a server-wide mute on users.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("users", sa.Column("muted_until", Timestamp, nullable=True))
    op.create_table(
        "reports",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("reporter_id", Id, nullable=False),
        sa.Column("target_user_id", Id, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("room_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("action", sa.String(16), nullable=False, server_default=""),
        sa.Column("resolution", sa.String(500), nullable=False, server_default=""),
        sa.Column("reviewed_by", Id, nullable=True),
        sa.Column("reviewed_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["users.id"], name="fk_reports_reporter_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_user_id"],
            ["users.id"],
            name="fk_reports_target_user_id_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"], ["users.id"], name="fk_reports_reviewed_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
    )
    op.create_index("ix_reports_status_id", "reports", ["status", "id"])
    op.create_index("ix_reports_reporter_id", "reports", ["reporter_id"])


def downgrade() -> None:
    op.drop_table("reports")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("muted_until")
