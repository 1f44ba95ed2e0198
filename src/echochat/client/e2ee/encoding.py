"""Values as they travel, checked on the way in: canonical base64url fields, JSON numbers,
usernames, device ids, client ids, conversation ids and the message payload. Every refusal
is an :class:`E2EEError`, ``malformed`` unless said otherwise."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.suite import KEY_SIZE, MAX_CLIENT_ID
from echochat.domain.e2ee import (
    CONV_RE,
    DEVICE_ID_RE,
    USERNAME_RE,
    b64d,
    b64e,
    dm_members,
    is_client_id,
    is_json_one,
)

__all__ = [
    "canonical_username",
    "check_client_id",
    "check_conv",
    "check_device_id",
    "check_username",
    "dm_conversation",
    "dm_members",
    "encode_payload",
    "is_json_one",
    "json_int",
    "key_bytes",
    "raw_field",
]


def raw_field(value: Any, size: int | None, what: str, code: str = "malformed") -> bytes:
    """Decode canonical base64url without padding (optionally of an exact size), or refuse.
    Canonical: re-encoding gives the same text, so one value has one spelling."""
    if not isinstance(value, str):
        raise E2EEError(code, f"{what} must be a base64url string")
    try:
        raw = b64d(value)
    except ValueError as exc:
        raise E2EEError(code, f"{what} is not base64url without padding") from exc
    if b64e(raw) != value:
        raise E2EEError(code, f"{what} is not canonical base64url")
    if size is not None and len(raw) != size:
        raise E2EEError(code, f"{what} must be {size} bytes, not {len(raw)}")
    return raw


def key_bytes(value: str | bytes, what: str) -> bytes:
    """A 32-byte public key given raw or as base64url."""
    raw = value if isinstance(value, bytes) else raw_field(value, KEY_SIZE, what)
    if len(raw) != KEY_SIZE:
        raise E2EEError("malformed", f"{what} must be {KEY_SIZE} bytes")
    return raw


def json_int(value: Any) -> int | None:
    """A JSON integer (JavaScript's ``Number.isInteger``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_username(name: Any, what: str = "username") -> str:
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise E2EEError("malformed", f"{what} must be a canonical (lower-case) username")
    return name


def canonical_username(name: str) -> str:
    """A username as typed -> canonical (the server's rule: ASCII only, then lower-cased;
    "\u212a".lower() is an ASCII "k", so non-ASCII is refused first)."""
    text = name.strip()
    if not text.isascii():
        raise E2EEError("malformed", "usernames are ASCII")
    return check_username(text.lower())


def check_device_id(device_id: Any, what: str = "device id") -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise E2EEError("malformed", f"{what} must be 8-64 characters of A-Z a-z 0-9 _ -")
    return device_id


def check_client_id(client_id: Any) -> str:
    if not is_client_id(client_id):
        raise E2EEError("malformed", f"client_id must be 1-{MAX_CLIENT_ID} characters")
    return client_id


def check_conv(conv: Any) -> str:
    if not isinstance(conv, str) or not CONV_RE.fullmatch(conv):
        raise E2EEError("malformed", "conv must be 'dm:<a>:<b>' or 'group:<id>'")
    members = dm_members(conv)
    if members is not None and members[0] > members[1]:
        raise E2EEError("malformed", "the usernames of a dm conversation must be sorted")
    return conv


def dm_conversation(user_a: str, user_b: str) -> str:
    """The conversation id of the direct messages between two users: ``dm:<a>:<b>`` with the
    two lower-case usernames sorted."""
    a, b = sorted((canonical_username(user_a), canonical_username(user_b)))
    return f"dm:{a}:{b}"


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The plaintext of a message: its payload as compact UTF-8 JSON (for a DM text,
    ``{"type":"text","text":...}``)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
