"""Chat rooms and private groups, with a default set of categories and public rooms.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

# (slug, name, [(room name, topic), ...]): what a fresh server offers; admins edit it.
DEFAULT_ROOMS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("lobby", "Lobby", [("Lobby", "Say hello: everyone starts here")]),
    ("music", "Music", [("Music Lounge", "What are you listening to?"), ("Rock", "Riffs")]),
    ("tech", "Technology", [("Tech Talk", "Gadgets, code and help"), ("Python", "import this")]),
    ("games", "Games", [("Gamers", "Find a team"), ("Chess", "e4 or d4?")]),
    (
        "regional",
        "Regional",
        [("Europe", "Hello from Europe"), ("Americas", "Hello from the Americas"), ("Asia", "")],
    ),
]


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    ref = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"fk_{table}_{column}_{ref}", ondelete=ondelete
    )


def upgrade() -> None:
    categories = op.create_table(
        "room_categories",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_room_categories"),
        sa.UniqueConstraint("slug", name="uq_room_categories_slug"),
    )
    rooms = op.create_table(
        "rooms",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("topic", sa.String(250), nullable=False, server_default=""),
        sa.Column("category_id", Id, nullable=True),
        sa.Column("owner_id", Id, nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("created_by", Id, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        _fk("rooms", "category_id", "room_categories.id", "SET NULL"),
        _fk("rooms", "owner_id", "users.id", "SET NULL"),
        _fk("rooms", "created_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_rooms"),
    )
    op.create_index("ix_rooms_kind_category_id", "rooms", ["kind", "category_id"])
    op.create_table(
        "room_members",
        sa.Column("room_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("role", sa.String(16), nullable=False, server_default="member"),
        sa.Column("joined_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("first_message_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("read_upto", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("muted_until", Timestamp, nullable=True),
        _fk("room_members", "room_id", "rooms.id", "CASCADE"),
        _fk("room_members", "user_id", "users.id", "CASCADE"),
        sa.PrimaryKeyConstraint("room_id", "user_id", name="pk_room_members"),
    )
    op.create_index("ix_room_members_user_id", "room_members", ["user_id"])
    op.create_table(
        "room_bans",
        sa.Column("room_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("by_id", Id, nullable=True),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("until", Timestamp, nullable=True),
        _fk("room_bans", "room_id", "rooms.id", "CASCADE"),
        _fk("room_bans", "user_id", "users.id", "CASCADE"),
        _fk("room_bans", "by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("room_id", "user_id", name="pk_room_bans"),
    )
    op.create_table(
        "room_invites",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("room_id", Id, nullable=False),
        sa.Column("from_user", Id, nullable=False),
        sa.Column("to_user", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("decided_at", Timestamp, nullable=True),
        _fk("room_invites", "room_id", "rooms.id", "CASCADE"),
        _fk("room_invites", "from_user", "users.id", "CASCADE"),
        _fk("room_invites", "to_user", "users.id", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_room_invites"),
    )
    op.create_index("ix_room_invites_to_user", "room_invites", ["to_user", "status"])
    op.create_index("ix_room_invites_room_id", "room_invites", ["room_id", "status"])
    op.create_table(
        "room_messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("room_id", Id, nullable=False),
        sa.Column("sender_id", Id, nullable=False),
        sa.Column("sender_device", sa.String(64), nullable=False, server_default=""),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("deleted_at", Timestamp, nullable=True),
        sa.Column("deleted_by", Id, nullable=True),
        _fk("room_messages", "room_id", "rooms.id", "CASCADE"),
        _fk("room_messages", "sender_id", "users.id", "CASCADE"),
        _fk("room_messages", "deleted_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_room_messages"),
        sa.UniqueConstraint("sender_id", "client_id", name="uq_room_messages_sender_id"),
    )
    op.create_index("ix_room_messages_room_id_id", "room_messages", ["room_id", "id"])
    op.create_index("ix_room_messages_created_at", "room_messages", ["created_at"])

    conn = op.get_bind()
    for position, (slug, name, room_list) in enumerate(DEFAULT_ROOMS):
        category_id = conn.execute(
            categories.insert()
            .values(slug=slug, name=name, position=position)
            .returning(categories.c.id)
        ).scalar_one()
        for room_name, topic in room_list:
            conn.execute(
                rooms.insert().values(
                    kind="public", name=room_name, topic=topic, category_id=category_id
                )
            )


def downgrade() -> None:
    op.drop_table("room_messages")
    op.drop_table("room_invites")
    op.drop_table("room_bans")
    op.drop_table("room_members")
    op.drop_table("rooms")
    op.drop_table("room_categories")
