"""Byte-exact encodings of E2EE suite v1 shared by the server, the SDK and (mirrored in
JavaScript) the browser. docs/e2ee.md is the specification; this is its pure core.

Every signed or bound context is a list of fields, each written as a 4-byte big-endian
length followed by the bytes (strings in UTF-8): unambiguous, so no two different contexts
encode the same. Binary fields travel as base64url without padding.
"""

from __future__ import annotations

import base64
import re
import struct

from echochat.domain.errors import InvalidInput

__all__ = [
    "DEVICE_ID_RE",
    "MAX_DEVICES",
    "VERSION",
    "b64d",
    "b64e",
    "device_statement",
    "key_field",
    "lp",
]

VERSION = 1
MAX_DEVICES = 20
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")


def lp(*fields: str | bytes) -> bytes:
    """Length-prefixed concatenation of ``fields``."""
    out = bytearray()
    for field in fields:
        data = field.encode() if isinstance(field, str) else field
        out += struct.pack(">I", len(data))
        out += data
    return bytes(out)


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    """Strict base64url without padding."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_field(value: str, name: str, size: int) -> bytes:
    """Decode a base64url field that must hold exactly ``size`` bytes, or refuse it."""
    try:
        raw = b64d(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{name} must be base64url without padding", code="invalid_key", details={"field": name}
        ) from exc
    if len(raw) != size:
        raise InvalidInput(
            f"{name} must be {size} bytes", code="invalid_key", details={"field": name}
        )
    if b64e(raw) != value:  # one spelling per key: no stray low bits in the last character
        raise InvalidInput(
            f"{name} is not canonical base64url", code="invalid_key", details={"field": name}
        )
    return raw


def device_statement(username: str, device_id: str, x25519: bytes, ed25519: bytes) -> bytes:
    """What a user's identity key signs to vouch for one of their devices."""
    return lp("echochat/v1/device", username, device_id, x25519, ed25519)
