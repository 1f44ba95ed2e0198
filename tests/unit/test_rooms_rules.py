"""The pure room rules (domain/rooms.py): names, slugs, capacity, time limits, and who may
moderate whom, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from echochat.domain.errors import Forbidden, InvalidInput
from echochat.domain.rooms import (
    active_until,
    capacity_of,
    check_minutes,
    check_moderation,
    check_name,
    check_slug,
    check_topic,
    slug_from,
    until_from,
)

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_names_and_topics_are_one_clean_line() -> None:
    assert check_name("  Movie\nnight\u202e ") == "Movie night"
    assert check_topic(None) == ""
    for bad in ("", "   ", "\u200b", "x" * 61):
        with pytest.raises(InvalidInput) as caught:
            check_name(bad)
        assert caught.value.code == "invalid_room_name"
    with pytest.raises(InvalidInput) as caught:
        check_topic("t" * 251)
    assert caught.value.code == "topic_too_long"


def test_slugs() -> None:
    assert slug_from("Hip Hop & Rap!") == "hip-hop-rap"
    assert slug_from("!!!") == "category"
    assert check_slug(" Tech ") == "tech"
    for bad in ("-tech", "tech-", "te ch", "x" * 41, ""):
        with pytest.raises(InvalidInput):
            check_slug(bad)


def test_capacity_by_kind_and_setting() -> None:
    limits = {"room_capacity": 1000, "group_max": 200, "encrypted_group_max": 20}
    assert capacity_of("public", encrypted=False, capacity=None, **limits) == 1000
    assert capacity_of("public", encrypted=False, capacity=50, **limits) == 50
    assert capacity_of("group", encrypted=False, capacity=None, **limits) == 200
    assert capacity_of("group", encrypted=True, capacity=None, **limits) == 20
    assert capacity_of("group", encrypted=True, capacity=500, **limits) == 20


def test_times() -> None:
    assert until_from(NOW, 0) is None and until_from(NOW, None) is None
    assert until_from(NOW, 5) == NOW + timedelta(minutes=5)
    assert active_until(NOW + timedelta(seconds=1), NOW)
    assert not active_until(NOW, NOW) and not active_until(None, NOW)
    assert check_minutes(0, most=10, field="minutes") == 0
    with pytest.raises(InvalidInput):
        check_minutes(11, most=10, field="minutes")


@pytest.mark.parametrize(
    ("actor", "staff", "target", "on_self", "code"),
    [
        ("owner", False, "moderator", False, None),
        ("owner", False, "member", False, None),
        ("moderator", False, "member", False, None),
        ("moderator", False, None, False, None),  # not a member: a ban ahead of joining
        ("moderator", False, "moderator", False, "outranked"),
        ("moderator", False, "owner", False, "outranked"),
        ("member", False, "member", False, "not_a_moderator"),
        (None, False, "member", False, "not_a_moderator"),
        (None, True, "owner", False, None),  # staff moderate any room
        ("member", True, "moderator", False, None),
        ("owner", False, "owner", True, "cannot_moderate_self"),
        (None, True, "member", True, "cannot_moderate_self"),
    ],
)
def test_who_may_moderate_whom(
    actor: str | None, staff: bool, target: str | None, on_self: bool, code: str | None
) -> None:
    if code is None:
        check_moderation(actor, staff=staff, target_role=target, on_self=on_self)
        return
    with pytest.raises(Forbidden) as caught:
        check_moderation(actor, staff=staff, target_role=target, on_self=on_self)
    assert caught.value.code == code
