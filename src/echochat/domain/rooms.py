"""Room and group rules: where the policy lives.

- A room is ``public`` (in a category, made by staff, anyone may join while under capacity)
  or a ``group`` (private, made by any user, invite-only, with an ``owner``).
- Roles in a room rank ``owner`` > ``moderator`` > ``member``. Staff (the ``rooms:manage``
  permission) moderate every room whatever their role in it.
- Moderation (mute, kick, ban): by an owner, a moderator or staff; a moderator cannot act on
  an owner or another moderator; nobody acts on themselves (:func:`check_moderation`).
- Capacity: a public room holds ``room.capacity`` or the server's ``room_capacity``; a group
  ``group_max_members``; an encrypted group at most ``encrypted_group_max_members`` (every
  message is wrapped for every member device) (:func:`capacity_of`).
- Names and topics are one line of plain text (:func:`check_name`, :func:`check_topic`).

Pure functions; time is passed in.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final, Literal

from echochat.domain.errors import Forbidden, InvalidInput
from echochat.domain.text import clean_line

__all__ = [
    "BAN_MINUTES_MAX",
    "CATEGORY_NAME_MAX",
    "MUTE_MINUTES_MAX",
    "NAME_MAX",
    "RANK",
    "ROOMS_MANAGE",
    "TOPIC_MAX",
    "Kind",
    "Role",
    "active_until",
    "can_moderate",
    "capacity_of",
    "check_category_name",
    "check_minutes",
    "check_moderation",
    "check_name",
    "check_slug",
    "check_topic",
    "slug_from",
    "until_from",
]

Kind = Literal["public", "group"]
Role = Literal["owner", "moderator", "member"]

ROOMS_MANAGE: Final = "rooms:manage"
RANK: Final[dict[str, int]] = {"member": 0, "moderator": 1, "owner": 2}
NAME_MAX: Final = 60
TOPIC_MAX: Final = 250
CATEGORY_NAME_MAX: Final = 60
SLUG_MAX: Final = 40
MUTE_MINUTES_MAX: Final = 30 * 24 * 60
BAN_MINUTES_MAX: Final = 365 * 24 * 60
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


def check_name(raw: str | None) -> str:
    name = clean_line(raw)
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(
            f"a room name is 1-{NAME_MAX} printable characters",
            code="invalid_room_name",
            details={"field": "name"},
        )
    return name


def check_topic(raw: str | None) -> str:
    topic = clean_line(raw)
    if len(topic) > TOPIC_MAX:
        raise InvalidInput(
            f"a topic is at most {TOPIC_MAX} characters",
            code="topic_too_long",
            details={"field": "topic"},
        )
    return topic


def check_category_name(raw: str | None) -> str:
    name = clean_line(raw)
    if not name or len(name) > CATEGORY_NAME_MAX:
        raise InvalidInput(
            f"a category name is 1-{CATEGORY_NAME_MAX} printable characters",
            code="invalid_category_name",
            details={"field": "name"},
        )
    return name


def check_slug(raw: str) -> str:
    slug = raw.strip().lower()
    if not _SLUG.match(slug):
        raise InvalidInput(
            f"a slug is 1-{SLUG_MAX} lower-case letters, digits and inner hyphens",
            code="invalid_slug",
            details={"field": "slug"},
        )
    return slug


def slug_from(name: str) -> str:
    """A slug made from a category name ("Hip Hop & Rap" -> "hip-hop-rap")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_MAX].strip("-")
    return check_slug(slug or "category")


def check_minutes(minutes: int, *, most: int, field: str) -> int:
    if minutes < 0 or minutes > most:
        raise InvalidInput(
            f"{field} is 0-{most} minutes", code="invalid_minutes", details={"field": field}
        )
    return minutes


def until_from(now: datetime, minutes: int | None) -> datetime | None:
    """The end of a mute or ban of ``minutes`` from ``now``; None for none/forever (0/None)."""
    return None if not minutes else now + timedelta(minutes=minutes)


def active_until(until: datetime | None, now: datetime) -> bool:
    """Whether a mute ending at ``until`` still holds at ``now``."""
    return until is not None and until > now


def capacity_of(
    kind: str,
    *,
    encrypted: bool,
    capacity: int | None,
    room_capacity: int,
    group_max: int,
    encrypted_group_max: int,
) -> int:
    """How many members the room may hold (the settings passed in, read at call time)."""
    if kind == "public":
        return capacity or room_capacity
    limit = encrypted_group_max if encrypted else group_max
    return min(capacity, limit) if capacity else limit


def can_moderate(role: str | None, *, staff: bool) -> bool:
    """Whether someone with ``role`` in the room (None: not a member) may moderate it."""
    return staff or role in ("owner", "moderator")


def check_moderation(
    actor_role: str | None, *, staff: bool, target_role: str | None, on_self: bool
) -> None:
    """Refuse a moderation action the actor may not take on the target (None: the target is
    not a member, e.g. banned ahead of joining)."""
    if on_self:
        raise Forbidden("you cannot moderate yourself", code="cannot_moderate_self")
    if not can_moderate(actor_role, staff=staff):
        raise Forbidden("only the room's owner and moderators may do that", code="not_a_moderator")
    if staff or target_role is None:
        return
    if RANK[target_role] >= RANK.get(actor_role or "member", 0):
        raise Forbidden("moderators cannot act on the owner or other moderators", code="outranked")
