"""Account policy: what a valid username, display name, email and password are.

Pure functions; the list of common passwords is package data read once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from echochat.domain.errors import InvalidInput
from echochat.domain.text import clean_line

__all__ = [
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "check_display_name",
    "check_email",
    "check_password",
    "check_username",
    "is_common_password",
]

USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
PASSWORD_MIN = 10
PASSWORD_MAX = 1024


def check_username(raw: str) -> str:
    """The canonical (lower-case) username, or :class:`InvalidInput`."""
    name = raw.strip()
    if not name.isascii():  # before lower(): "\u212a".lower() is an ASCII "k"
        name = ""
    name = name.lower()
    if not USERNAME_RE.fullmatch(name):
        raise InvalidInput(
            "username must be 3-32 characters of a-z, 0-9, '_', '.' and '-'",
            code="invalid_username",
            details={"field": "username"},
        )
    return name


def check_display_name(raw: str | None, username: str) -> str:
    name = clean_line(raw)
    if not name:
        return username
    if len(name) > 64:
        raise InvalidInput(
            "display name must be at most 64 characters",
            code="invalid_display_name",
            details={"field": "display_name"},
        )
    return name


def check_email(raw: str | None) -> str | None:
    """A trimmed email address, None when empty, or :class:`InvalidInput`."""
    if raw is None or not raw.strip():
        return None
    email = raw.strip()
    if len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise InvalidInput(
            "email must look like name@example.org",
            code="invalid_email",
            details={"field": "email"},
        )
    return email


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    text = (files("echochat.data") / "common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def is_common_password(password: str) -> bool:
    return password.lower() in _common_passwords()


def check_password(password: str, username: str) -> None:
    """Refuse short, over-long, common and username-like passwords (ASVS 5.0, 6.2)."""
    field = {"field": "password"}
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(
            f"password must be at least {PASSWORD_MIN} characters",
            code="password_too_short",
            details=field,
        )
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(
            f"password must be at most {PASSWORD_MAX} characters",
            code="password_too_long",
            details=field,
        )
    if password.lower() == username.lower():
        raise InvalidInput(
            "password must not be your username", code="password_is_username", details=field
        )
    if is_common_password(password):
        raise InvalidInput(
            "that password is among the most common ones; choose another",
            code="password_too_common",
            details=field,
        )
