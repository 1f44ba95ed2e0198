"""Presence policy (``echochat.domain.presence``): pure functions, time passed in.

ARCHITECTURE section 8: states online, away, busy, invisible (shown as offline), offline;
custom status text (plain, trimmed, at most 140 characters); several devices show the most
available state; stealth towards one buddy shows offline to that buddy.
"""

from __future__ import annotations

import itertools

import pytest

from echochat.domain.errors import InvalidInput
from echochat.domain.presence import (
    AVAILABILITY,
    OFFLINE,
    STATUS_TEXT_MAX,
    DevicePresence,
    Presence,
    aggregate,
    check_state,
    check_status_text,
    seen_by,
)

T0 = 1_800_000_000.0  # any fixed instant: the policy never reads the clock


def device(state: str, text: str = "", *, idle: bool = False, at: float = T0) -> DevicePresence:
    return DevicePresence(state, text, idle, at)  # type: ignore[arg-type]


# --- aggregate ---------------------------------------------------------------------------------


def test_no_device_is_offline() -> None:
    assert aggregate([]) == Presence("offline", "")
    assert aggregate([]) == OFFLINE


@pytest.mark.parametrize("state", ["online", "away", "busy", "invisible"])
def test_one_device_shows_its_own_state_and_text(state: str) -> None:
    assert aggregate([device(state, "at lunch")]) == Presence(state, "at lunch")  # type: ignore[arg-type]


def test_idle_online_device_counts_as_away() -> None:
    assert aggregate([device("online", "brb", idle=True)]) == Presence("away", "brb")
    assert device("online", idle=True).effective == "away"
    assert device("online").effective == "online"


@pytest.mark.parametrize("state", ["away", "busy", "invisible"])
def test_idle_changes_only_online(state: str) -> None:
    """Auto-away never makes a busy user look away, nor an invisible one look present."""
    assert device(state, idle=True).effective == state
    assert aggregate([device(state, idle=True)]).state == state


def test_availability_order() -> None:
    assert AVAILABILITY == ("online", "busy", "away", "invisible")


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        (a, b)
        for i, a in enumerate(("online", "busy", "away", "invisible"))
        for b in ("online", "busy", "away", "invisible")[i + 1 :]
    ],
)
def test_most_available_device_wins_whatever_the_order(better: str, worse: str) -> None:
    devices = [device(better, f"{better} text", at=T0), device(worse, f"{worse} text", at=T0 + 5)]
    for order in itertools.permutations(devices):
        assert aggregate(list(order)) == Presence(better, f"{better} text")  # type: ignore[arg-type]


def test_several_devices_most_available_of_three() -> None:
    phone = device("away", "on the phone", at=T0 + 1)
    laptop = device("busy", "coding", at=T0 + 2)
    tablet = device("invisible", "hidden", at=T0 + 3)
    assert aggregate([phone, laptop, tablet]) == Presence("busy", "coding")
    # the laptop goes idle-online: online-but-idle is away, so busy still wins
    laptop_idle = device("online", "coding", idle=True, at=T0 + 4)
    assert aggregate([phone, laptop_idle, tablet]) == Presence("away", "coding")


def test_idle_device_loses_to_an_active_online_device() -> None:
    office = device("online", "at the office", idle=True, at=T0 + 10)
    home = device("online", "at home", at=T0)
    assert aggregate([office, home]) == Presence("online", "at home")


def test_tie_takes_the_latest_text() -> None:
    old = device("online", "morning", at=T0)
    new = device("online", "afternoon", at=T0 + 60)
    assert aggregate([old, new]) == Presence("online", "afternoon")
    assert aggregate([new, old]) == Presence("online", "afternoon")


def test_tie_between_idle_online_and_away_takes_the_latest() -> None:
    idle = device("online", "idle one", idle=True, at=T0 + 2)
    away = device("away", "away one", at=T0 + 1)
    assert aggregate([away, idle]) == Presence("away", "idle one")


def test_invisible_everywhere_stays_invisible() -> None:
    assert aggregate([device("invisible", at=T0), device("invisible", "x", at=T0 + 1)]) == (
        Presence("invisible", "x")
    )


def test_presence_to_dict() -> None:
    assert Presence("busy", "meeting").to_dict() == {"state": "busy", "status": "meeting"}


# --- what a buddy sees -----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["online", "away", "busy"])
def test_buddy_sees_visible_states_as_they_are(state: str) -> None:
    shown = Presence(state, "hello")  # type: ignore[arg-type]
    assert seen_by(shown, stealth=False) == shown


@pytest.mark.parametrize("state", ["invisible", "offline"])
def test_invisible_and_offline_are_offline_without_text(state: str) -> None:
    assert seen_by(Presence(state, "secret plans"), stealth=False) == Presence("offline", "")  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["online", "away", "busy", "invisible", "offline"])
def test_stealth_shows_offline_without_text(state: str) -> None:
    assert seen_by(Presence(state, "secret plans"), stealth=True) == Presence("offline", "")  # type: ignore[arg-type]


# --- states a client may set ---------------------------------------------------------------


@pytest.mark.parametrize("state", ["online", "away", "busy", "invisible"])
def test_settable_states(state: str) -> None:
    assert check_state(state) == state


@pytest.mark.parametrize("state", ["offline", "ONLINE", "", "dnd"])
def test_other_states_are_refused(state: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_state(state)
    assert caught.value.code == "invalid_state"


# --- status text -------------------------------------------------------------------------------


def test_status_text_is_trimmed() -> None:
    assert check_status_text("  out for lunch \t\n") == "out for lunch"
    assert check_status_text("") == ""
    assert check_status_text(None) == ""
    assert check_status_text("   ") == ""


def test_status_text_loses_control_characters() -> None:
    assert check_status_text("be\x00 right\x07 back\x1b[31m") == "be right back[31m"
    assert "\t" not in check_status_text("tab\there")
    assert check_status_text("\u202eevil") == "evil"  # no bidi override spoofing


def test_status_text_keeps_unicode() -> None:
    assert check_status_text("Café ☕ 😀 日本語") == "Café ☕ 😀 日本語"
    assert check_status_text("Cafe\u0301") == "Café"  # NFC


def test_status_text_is_trimmed_after_control_characters_go() -> None:
    assert check_status_text("\x00 brb \x00") == "brb"


def test_status_text_keeps_emoji_sequences() -> None:
    coder = "\U0001f469\u200d\U0001f4bb"  # woman technologist: woman + ZWJ + laptop
    assert check_status_text(f"{coder} hacking") == f"{coder} hacking"


def test_status_text_of_140_characters_is_accepted() -> None:
    text = "x" * STATUS_TEXT_MAX
    assert STATUS_TEXT_MAX == 140
    assert check_status_text(text) == text
    assert check_status_text("😀" * 140) == "😀" * 140  # characters, not bytes
    assert check_status_text("  " + text + "  ") == text  # counted after trimming


def test_status_text_of_141_characters_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_status_text("x" * 141)
    assert caught.value.code == "status_too_long"
    assert caught.value.status == 422
