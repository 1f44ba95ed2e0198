"""Direct messages: the stored E2EE envelopes and the per-conversation watermarks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
        "messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("conv", sa.String(80), nullable=False),
        sa.Column("sender_id", Id, nullable=False),
        sa.Column("recipient_id", Id, nullable=False),
        sa.Column("sender_device", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        _user_fk("sender_id", "messages"),
        _user_fk("recipient_id", "messages"),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_id"),
    )
    op.create_index("ix_messages_conv_id", "messages", ["conv", "id"])
    op.create_index("ix_messages_sender_id_id", "messages", ["sender_id", "id"])
    op.create_index("ix_messages_recipient_id_id", "messages", ["recipient_id", "id"])
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_table(
        "dm_watermarks",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("peer_id", Id, nullable=False),
        sa.Column("conv", sa.String(80), nullable=False),
        sa.Column("delivered_upto", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("read_upto", sa.BigInteger(), nullable=False, server_default="0"),
        _user_fk("user_id", "dm_watermarks"),
        _user_fk("peer_id", "dm_watermarks"),
        sa.PrimaryKeyConstraint("user_id", "peer_id", name="pk_dm_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("dm_watermarks")
    op.drop_table("messages")
