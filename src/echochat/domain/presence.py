"""Presence policy: where it lives.

- A *device* (one open socket) has a chosen state (``online``, ``away``, ``busy``,
  ``invisible``), a custom status text, and an idle flag the browser reports; an idle
  ``online`` device counts as ``away`` (auto-away).
- A *user* shows the most available state among their devices, by :data:`AVAILABILITY`
  (online > busy > away > invisible), with the status text of the device that wins (the most
  recently changed one on a tie). No device: ``offline``.
- What a *viewer* sees: ``invisible`` is shown as ``offline`` (with no status text), and so
  is a user who set stealth towards that viewer; only accepted, unblocked buddies see
  anything at all (the services enforce that part).

Pure functions; time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from echochat.domain.errors import InvalidInput
from echochat.domain.text import clean_line

__all__ = [
    "AVAILABILITY",
    "OFFLINE",
    "STATUS_TEXT_MAX",
    "DevicePresence",
    "Presence",
    "State",
    "aggregate",
    "check_status_text",
    "seen_by",
]

State = Literal["online", "away", "busy", "invisible", "offline"]
SETTABLE: Final[frozenset[str]] = frozenset({"online", "away", "busy", "invisible"})
AVAILABILITY: Final[tuple[str, ...]] = ("online", "busy", "away", "invisible")
STATUS_TEXT_MAX = 140


@dataclass(frozen=True)
class DevicePresence:
    state: State
    text: str
    idle: bool
    changed_at: float

    @property
    def effective(self) -> State:
        return "away" if self.state == "online" and self.idle else self.state


@dataclass(frozen=True)
class Presence:
    state: State
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state, "status": self.text}


OFFLINE: Final = Presence("offline", "")


def aggregate(devices: list[DevicePresence]) -> Presence:
    """The user's presence from all their devices' presences."""
    if not devices:
        return OFFLINE
    best = min(devices, key=lambda d: (AVAILABILITY.index(d.effective), -d.changed_at))
    return Presence(best.effective, best.text)


def seen_by(presence: Presence, *, stealth: bool) -> Presence:
    """What one buddy sees of ``presence``."""
    if stealth or presence.state in ("invisible", "offline"):
        return OFFLINE
    return presence


def check_state(raw: str) -> State:
    if raw not in SETTABLE:
        raise InvalidInput(
            "state must be one of online, away, busy, invisible", code="invalid_state"
        )
    return raw  # type: ignore[return-value]


def check_status_text(raw: str | None) -> str:
    """Plain text (see :func:`echochat.domain.text.clean_line`), at most 140 characters."""
    text = clean_line(raw)
    if len(text) > STATUS_TEXT_MAX:
        raise InvalidInput(
            f"status text must be at most {STATUS_TEXT_MAX} characters", code="status_too_long"
        )
    return text
