"""Byte-exact encodings of E2EE suite v1 shared by the server, the SDK and (mirrored in
JavaScript) the browser, and the envelope's shape. docs/e2ee.md is the specification; this
is its pure core.

Every signed or bound context is a list of fields, each written as a 4-byte big-endian
length followed by the bytes (strings in UTF-8): unambiguous, so no two different contexts
encode the same. Binary fields travel as base64url without padding.

The policy for what an envelope may look like lives in :func:`parse_envelope` (and
:func:`check_envelope_shape`, for the server): types, sizes, field presence, the version,
the number of wraps and the serialised size. It checks no signature and opens nothing:
that is the recipients' job (``echochat.client.e2ee``).
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

from echochat.domain.accounts import USERNAME_RE
from echochat.domain.errors import InvalidInput

__all__ = [
    "CONV_RE",
    "DEVICE_ID_RE",
    "ENVELOPE_FIELDS",
    "KEY_SIZE",
    "MAX_CLIENT_ID",
    "MAX_DEVICES",
    "MAX_ENVELOPE_BYTES",
    "MAX_PLAINTEXT",
    "MAX_RECIPIENTS",
    "NONCE_SIZE",
    "SIGNATURE_SIZE",
    "TAG_SIZE",
    "USERNAME_RE",
    "VERSION",
    "WRAP_SIZE",
    "EnvelopeParts",
    "b64d",
    "b64e",
    "check_envelope_shape",
    "device_statement",
    "dm_members",
    "envelope_size",
    "is_client_id",
    "is_conv",
    "is_json_one",
    "key_field",
    "lp",
    "parse_envelope",
]

VERSION = 1
MAX_DEVICES = 20
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
CONV_RE = re.compile(r"dm:([a-z0-9_.-]{3,32}):([a-z0-9_.-]{3,32})|group:[A-Za-z0-9_-]{1,64}")

# docs/e2ee.md, "Limits"
MAX_RECIPIENTS = 40  # wraps per envelope: 20 devices of the peer + 20 of the sender
MAX_PLAINTEXT = 16 * 1024
MAX_ENVELOPE_BYTES = 60 * 1024  # the envelope plus its frame must fit a 64 KiB WebSocket frame
MAX_CLIENT_ID = 64

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SIGNATURE_SIZE = 64
WRAP_SIZE = 32 + KEY_SIZE + TAG_SIZE  # HPKE enc || AES-256-GCM(content key)

ENVELOPE_FIELDS = frozenset(
    {"v", "conv", "sender", "sender_device", "client_id", "nonce", "ct", "keys", "sig"}
)
_KEY_ENTRY_FIELDS = frozenset({"user", "device", "wrap"})


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


# --- values inside an envelope -------------------------------------------------------------


def is_json_one(value: object) -> bool:
    """The JSON number 1 (JavaScript's ``value === 1``: ``true`` is not 1, ``1.0`` is)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 1


def dm_members(conv: str) -> tuple[str, str] | None:
    """The two usernames of a ``dm:<a>:<b>`` conversation id, else None."""
    found = CONV_RE.fullmatch(conv)
    if found is None or found.group(1) is None:
        return None
    return found.group(1), found.group(2)


def is_conv(value: object) -> TypeGuard[str]:
    """``dm:<a>:<b>`` with the two usernames sorted, or ``group:<id>``."""
    if not isinstance(value, str) or not CONV_RE.fullmatch(value):
        return False
    members = dm_members(value)
    return members is None or members[0] <= members[1]


def is_client_id(value: object) -> TypeGuard[str]:
    """1-64 Unicode code points, well formed (a lone surrogate has no UTF-8)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def envelope_size(envelope: Mapping[str, object]) -> int:
    """Bytes of the envelope as compact JSON with non-ASCII escaped: never less than any
    other compact spelling (``JSON.stringify`` in UTF-8 included). TypeError, ValueError
    or RecursionError if it is not JSON at all."""

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    return len(json.dumps(envelope, separators=(",", ":"), default=plain))


# --- the envelope's shape ------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeParts:
    """An envelope that has the v1 shape, its binary fields decoded. Nothing is verified:
    the signature and the wraps are still the sender's word."""

    conv: str
    sender: str
    sender_device: str
    client_id: str
    nonce: bytes
    ct: bytes
    keys: tuple[tuple[str, str, bytes], ...]  # (user, device, wrap), strictly increasing
    sig: bytes


def _invalid(message: str, field: str, code: str = "invalid_envelope") -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field})


def _text(value: object, field: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _invalid(f"{field} must be {rule}", field)
    return value


_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_DIGITS)}
# The bits of the last character that carry no data, by the text's length modulo 4: they
# must be zero for the text to be the one spelling of its bytes.
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}


def _bytes(value: object, field: str, size: int | None = None) -> bytes:
    """Canonical base64url without padding (re-encoding gives the same text): the
    alphabet, a possible length, and no stray bits in the last character, checked on the
    text itself rather than by encoding the bytes again (the hot path of every send)."""
    if not isinstance(value, str):
        raise _invalid(f"{field} must be a base64url string", field)
    tail = len(value) % 4
    if tail == 1 or not _B64URL.fullmatch(value):
        raise _invalid(f"{field} is not base64url without padding", field)
    if tail and _B64URL_VALUE[value[-1]] & _UNUSED_BITS[tail]:
        raise _invalid(f"{field} is not canonical base64url", field)
    raw = base64.urlsafe_b64decode(value + "==="[: -tail % 4] if tail else value)
    if size is not None and len(raw) != size:
        raise _invalid(f"{field} must be {size} bytes, not {len(raw)}", field)
    return raw


def parse_envelope(obj: object) -> EnvelopeParts:
    """Check an envelope's shape (docs/e2ee.md, 4.2, steps 1-3) and decode it, or raise
    :class:`InvalidInput` with the first failure's code: ``invalid_envelope`` (not an
    object, missing or unknown fields, a field's syntax or size), ``unsupported_version``
    (``v`` is not the number 1; checked before anything else in it is read),
    ``envelope_too_large`` (over 60 KiB serialised) or ``too_many_wraps`` (over 40)."""
    if not isinstance(obj, Mapping):
        raise _invalid("an envelope is a JSON object", "envelope")
    if not is_json_one(obj.get("v")):
        raise _invalid(
            f"unsupported envelope version {obj.get('v')!r}; version {VERSION} is supported",
            "v",
            "unsupported_version",
        )
    if set(obj) != ENVELOPE_FIELDS:
        missing = sorted(ENVELOPE_FIELDS - set(obj))
        extra = sorted(str(k) for k in set(obj) - ENVELOPE_FIELDS)
        raise _invalid(f"envelope fields: missing {missing}, unknown {extra}", "envelope")
    try:
        size = envelope_size(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _invalid("the envelope is not JSON", "envelope") from exc
    if size > MAX_ENVELOPE_BYTES:
        raise _invalid(
            f"the envelope is larger than {MAX_ENVELOPE_BYTES} bytes",
            "envelope",
            "envelope_too_large",
        )
    conv = obj["conv"]
    if not is_conv(conv):
        raise _invalid("conv must be 'dm:<a>:<b>' (a < b) or 'group:<id>'", "conv")
    username = "a canonical (lower-case) username"
    device_rule = "8-64 characters of A-Z a-z 0-9 _ -"
    sender = _text(obj["sender"], "sender", USERNAME_RE, username)
    sender_device = _text(obj["sender_device"], "sender_device", DEVICE_ID_RE, device_rule)
    client_id = obj["client_id"]
    if not is_client_id(client_id):
        raise _invalid(f"client_id must be 1-{MAX_CLIENT_ID} characters", "client_id")
    nonce = _bytes(obj["nonce"], "nonce", NONCE_SIZE)
    ct = _bytes(obj["ct"], "ct")
    if not TAG_SIZE <= len(ct) <= MAX_PLAINTEXT + TAG_SIZE:
        raise _invalid("ct has an impossible length", "ct")
    entries = obj["keys"]
    if not isinstance(entries, list) or not entries:
        raise _invalid(f"keys must be a list of 1-{MAX_RECIPIENTS} wraps", "keys")
    if len(entries) > MAX_RECIPIENTS:
        raise _invalid(f"at most {MAX_RECIPIENTS} wraps per envelope", "keys", "too_many_wraps")
    keys: list[tuple[str, str, bytes]] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or set(entry) != _KEY_ENTRY_FIELDS:
            raise _invalid("each key entry has exactly user, device and wrap", "keys")
        user = _text(entry["user"], "keys.user", USERNAME_RE, username)
        device = _text(entry["device"], "keys.device", DEVICE_ID_RE, device_rule)
        if keys and (keys[-1][0], keys[-1][1]) >= (user, device):
            raise _invalid("key entries must be sorted by (user, device), unique", "keys")
        keys.append((user, device, _bytes(entry["wrap"], "keys.wrap", WRAP_SIZE)))
    sig = _bytes(obj["sig"], "sig", SIGNATURE_SIZE)
    return EnvelopeParts(conv, sender, sender_device, client_id, nonce, ct, tuple(keys), sig)


def check_envelope_shape(obj: object) -> None:
    """Refuse (:class:`InvalidInput`) an object that is not a v1 envelope by its shape:
    what a server can check before storing one. See :func:`parse_envelope`."""
    parse_envelope(obj)
