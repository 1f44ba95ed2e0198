"""End-to-end encryption keys: identity keys, device keys, passphrase-encrypted backups.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "identity_keys",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("ed25519", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _user_fk("identity_keys"),
        sa.PrimaryKeyConstraint("user_id", name="pk_identity_keys"),
    )
    op.create_table(
        "device_keys",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("x25519", sa.String(64), nullable=False),
        sa.Column("ed25519", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("label", sa.String(120), nullable=False, server_default=""),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _user_fk("device_keys"),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_device_keys"),
    )
    op.create_table(
        "key_backups",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _user_fk("key_backups"),
        sa.PrimaryKeyConstraint("user_id", name="pk_key_backups"),
    )


def downgrade() -> None:
    for table in ("key_backups", "device_keys", "identity_keys"):
        op.drop_table(table)
