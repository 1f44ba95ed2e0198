"""Table definitions (SQLAlchemy Core). The schema itself is created only by migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "admin_claims",
    "audit_log",
    "blocks",
    "buddies",
    "buddy_groups",
    "buddy_requests",
    "device_keys",
    "dm_watermarks",
    "email_outbox",
    "identity_keys",
    "key_backups",
    "messages",
    "metadata",
    "password_resets",
    "permissions",
    "refresh_tokens",
    "reports",
    "role_assignments",
    "role_permissions",
    "roles",
    "room_bans",
    "room_categories",
    "room_invites",
    "room_members",
    "room_messages",
    "rooms",
    "server_settings",
    "sessions",
    "users",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines (SQLite keeps no zone: it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime()

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False),
    Column("display_name", String(64), nullable=False),
    Column("email", String(254), nullable=True),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
    Column("banned_at", Timestamp, nullable=True),
    Column("ban_reason", String(500), nullable=True),
    # A server-wide mute (a moderator acting on a report): no DMs, room posts or BUZZ! until then.
    Column("muted_until", Timestamp, nullable=True),
)
Index("uq_users_username_ci", func.lower(users.c.username), unique=True)
Index("uq_users_email_ci", func.lower(users.c.email), unique=True)

roles = Table(
    "roles",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("description", String(200), nullable=False),
)

permissions = Table(
    "permissions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", String(200), nullable=False),
)

role_permissions = Table(
    "role_permissions",
    metadata,
    Column("role", String(32), ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True),
    Column(
        "permission",
        String(64),
        ForeignKey("permissions.name", ondelete="CASCADE"),
        primary_key=True,
    ),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(32), ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True),
    Column("granted_at", Timestamp, nullable=False, server_default=func.now()),
    Column("granted_by", String(100), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(43), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("device_label", String(120), nullable=False, server_default=""),
    Column("user_agent", String(512), nullable=False, server_default=""),
    Column("ip", String(64), nullable=False, server_default=""),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("last_seen_at", Timestamp, nullable=False, server_default=func.now()),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False, server_default=func.now()),
    Column("actor_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False, server_default=""),
    Column("target", String(200), nullable=False, server_default=""),
    Column("ip", String(64), nullable=False, server_default=""),
    Column("details", JSON, nullable=False, default=dict),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_action", "action"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "session_id",
        String(43),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("issued_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
)

password_resets = Table(
    "password_resets",
    metadata,
    Column("id", String(43), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("binding_hash", String(64), nullable=False, unique=True),
    Column("pin_hash", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("link_expires_at", Timestamp, nullable=False),
    Column("pin_expires_at", Timestamp, nullable=False),
    Column("pin_attempts", Integer, nullable=False, server_default="0"),
    Column("used_at", Timestamp, nullable=True),
    Column("ip", String(64), nullable=False, server_default=""),
)

admin_claims = Table(
    "admin_claims",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("used_at", Timestamp, nullable=True),
    Column("used_by", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
)

email_outbox = Table(
    "email_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("to_addr", String(254), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
)

server_settings = Table(
    "server_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
    Column("updated_by", String(100), nullable=False, server_default=""),
)

buddy_groups = Table(
    "buddy_groups",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(40), primary_key=True),
    Column("position", Integer, nullable=False, server_default="0"),
)

buddies = Table(
    "buddies",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("buddy_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("group_name", String(40), nullable=False),
    Column("stealth", Boolean, nullable=False, server_default=false()),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Index("ix_buddies_buddy_id", "buddy_id"),
)

buddy_requests = Table(
    "buddy_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("from_user", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("to_user", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("message", String(200), nullable=False, server_default=""),
    Column("group_name", String(40), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("hidden", Boolean, nullable=False, server_default=false()),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("decided_at", Timestamp, nullable=True),
    Index("ix_buddy_requests_to_user", "to_user", "status"),
    Index("ix_buddy_requests_from_user", "from_user", "status"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("blocked_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Index("ix_blocks_blocked_id", "blocked_id"),
)

identity_keys = Table(
    "identity_keys",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("ed25519", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
)

device_keys = Table(
    "device_keys",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("x25519", String(64), nullable=False),
    Column("ed25519", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("label", String(120), nullable=False, server_default=""),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
)

key_backups = Table(
    "key_backups",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("blob", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
)

# Direct messages (services/dm.py). ``envelope`` is the sender's E2EE envelope as JSON text:
# ciphertext, wraps and a signature, never plaintext. ``conv`` is ``dm:<a>:<b>`` (sorted).
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("conv", String(80), nullable=False),
    Column("sender_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("recipient_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("sender_device", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_id"),
    Index("ix_messages_conv_id", "conv", "id"),  # history, newest per conversation
    Index("ix_messages_sender_id_id", "sender_id", "id"),  # replay (sent)
    Index("ix_messages_recipient_id_id", "recipient_id", "id"),  # replay (received)
    Index("ix_messages_created_at", "created_at"),  # retention
)

# One row per (user, peer) for every conversation, created with its first message:
# how far ``user``'s devices have acknowledged ``peer``'s messages.
dm_watermarks = Table(
    "dm_watermarks",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("peer_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("conv", String(80), nullable=False),
    Column("delivered_upto", BigInteger, nullable=False, server_default="0"),
    Column("read_upto", BigInteger, nullable=False, server_default="0"),
)

# Reports (services/reports.py): a user reports a user, a DM or a room message. DMs are
# end-to-end encrypted, so ``excerpt`` holds plaintext only when the reporter chose to
# include it.
reports = Table(
    "reports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("reporter_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("target_user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("kind", String(16), nullable=False),  # user | dm | room_message
    Column("message_id", BigInteger, nullable=True),  # messages.id or room_messages.id
    Column("room_id", BigInteger, nullable=True),
    Column("reason", String(500), nullable=False, server_default=""),
    Column("excerpt", Text, nullable=True),
    # open | dismissed | actioned
    Column("status", String(16), nullable=False, server_default="open"),
    Column("action", String(16), nullable=False, server_default=""),  # delete | mute | ban
    Column("resolution", String(500), nullable=False, server_default=""),
    Column("reviewed_by", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("reviewed_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Index("ix_reports_status_id", "status", "id"),
    Index("ix_reports_reporter_id", "reporter_id"),
)

# Chat rooms (services/rooms.py): public rooms in categories and private groups.
room_categories = Table(
    "room_categories",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(40), nullable=False, unique=True),
    Column("name", String(60), nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),
)

rooms = Table(
    "rooms",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # public | group
    Column("name", String(60), nullable=False),
    Column("topic", String(250), nullable=False, server_default=""),
    Column("category_id", Id, ForeignKey("room_categories.id", ondelete="SET NULL"), nullable=True),
    Column("owner_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("encrypted", Boolean, nullable=False, server_default=false()),
    Column("capacity", Integer, nullable=True),  # None: the server's room_capacity setting
    Column("created_by", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Index("ix_rooms_kind_category_id", "kind", "category_id"),
)

room_members = Table(
    "room_members",
    metadata,
    Column("room_id", Id, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False, server_default="member"),  # owner|moderator|member
    Column("joined_at", Timestamp, nullable=False, server_default=func.now()),
    # The member sees messages with a greater id: those from their join on.
    Column("first_message_id", BigInteger, nullable=False, server_default="0"),
    Column("read_upto", BigInteger, nullable=False, server_default="0"),
    Column("muted_until", Timestamp, nullable=True),
    Index("ix_room_members_user_id", "user_id"),
)

room_bans = Table(
    "room_bans",
    metadata,
    Column("room_id", Id, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("by_id", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("reason", String(500), nullable=False, server_default=""),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("until", Timestamp, nullable=True),  # None: until lifted
)

room_invites = Table(
    "room_invites",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("room_id", Id, ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    Column("from_user", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("to_user", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("decided_at", Timestamp, nullable=True),
    Index("ix_room_invites_to_user", "to_user", "status"),
    Index("ix_room_invites_room_id", "room_id", "status"),
)

# ``kind`` text: ``body`` is the plain text; kind e2ee: ``body`` is the sender's envelope
# (suite v1, wrapped for every member device) as JSON text.
room_messages = Table(
    "room_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("room_id", Id, ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    Column("sender_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("sender_device", String(64), nullable=False, server_default=""),
    Column("client_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # text | e2ee
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp, nullable=True),
    Column("deleted_by", Id, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    UniqueConstraint("sender_id", "client_id", name="uq_room_messages_sender_id"),
    Index("ix_room_messages_room_id_id", "room_id", "id"),
    Index("ix_room_messages_created_at", "created_at"),
)
