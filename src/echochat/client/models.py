"""Typed values the SDK returns (frozen dataclasses), and strict parsing of response bodies.

A body that does not have the documented shape raises :class:`EchoChatError` with code
``bad_response`` instead of handing half-parsed data to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from echochat.client.errors import EchoChatError

__all__ = ["Me", "Session", "User"]


@dataclass(frozen=True, slots=True)
class User:
    """A user as others see them."""

    id: int
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Me:
    """The signed-in user: profile, roles, permissions and the current session's id."""

    user: User
    email: str | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    session_id: str

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def display_name(self) -> str:
        return self.user.display_name

    def can(self, permission: str) -> bool:
        """Whether the user holds ``permission`` (e.g. ``"admin:basic"``)."""
        return permission in self.permissions


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in device of the user; ``current`` marks the one making the request."""

    id: str
    device_label: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


class _Body:
    """Typed access to one JSON object of a response, failing loudly on a wrong shape."""

    def __init__(self, data: Any, status: int, where: str = "body") -> None:
        if not isinstance(data, Mapping):
            raise _bad(status, f"{where} is not a JSON object")
        self._data: Mapping[str, Any] = data
        self._status = status
        self._where = where

    def _get(self, key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
        value = self._data.get(key)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise _bad(self._status, f"{self._where}.{key} is missing or has the wrong type")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str)
        return value

    def opt_text(self, key: str) -> str | None:
        if self._data.get(key) is None:
            return None
        return self.text(key)

    def integer(self, key: str) -> int:
        value: int = self._get(key, int)
        return value

    def flag(self, key: str) -> bool:
        value: bool = self._get(key, bool)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        items: list[Any] = self._get(key, list)
        if not all(isinstance(item, str) for item in items):
            raise _bad(self._status, f"{self._where}.{key} must be a list of strings")
        return tuple(items)

    def when(self, key: str) -> datetime:
        try:
            return datetime.fromisoformat(self.text(key))
        except ValueError as exc:
            raise _bad(self._status, f"{self._where}.{key} is not an ISO 8601 time") from exc

    def obj(self, key: str) -> _Body:
        return _Body(self._data.get(key), self._status, f"{self._where}.{key}")


def _bad(status: int, what: str) -> EchoChatError:
    return EchoChatError(status, "bad_response", f"unexpected response from the server: {what}")


def body(data: Any, status: int) -> _Body:
    return _Body(data, status)


def parse_user(data: _Body) -> User:
    return User(
        id=data.integer("id"),
        username=data.text("username"),
        display_name=data.text("display_name"),
    )


def parse_me(data: _Body) -> Me:
    return Me(
        user=parse_user(data.obj("user")),
        email=data.opt_text("email"),
        roles=data.texts("roles"),
        permissions=data.texts("permissions"),
        session_id=data.text("session_id"),
    )


def parse_sessions(data: Any, status: int) -> list[Session]:
    if not isinstance(data, list):
        raise _bad(status, "body is not a JSON list")
    sessions = []
    for index, item in enumerate(data):
        row = _Body(item, status, f"body[{index}]")
        sessions.append(
            Session(
                id=row.text("id"),
                device_label=row.text("device_label"),
                ip=row.text("ip"),
                created_at=row.when("created_at"),
                last_seen_at=row.when("last_seen_at"),
                current=row.flag("current"),
            )
        )
    return sessions
