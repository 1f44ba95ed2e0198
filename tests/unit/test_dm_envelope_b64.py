"""The envelope's binary fields must be canonical base64url without padding: one spelling
per value. ``parse_envelope`` checks that on the text (alphabet, length, no stray bits in
the last character) instead of re-encoding the bytes; these tests hold it to the rule
"decoding then encoding gives the same text" on arbitrary texts, and show each refusal.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from echochat.client.e2ee import Keyring, encode_payload, seal
from echochat.domain.e2ee import NONCE_SIZE, b64e, parse_envelope
from echochat.domain.errors import InvalidInput

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def canonical(text: str) -> bytes | None:
    """The reference rule: the bytes, if ``text`` is the one unpadded base64url spelling of
    them, else None."""
    if len(text) % 4 == 1 or any(c not in ALPHABET for c in text):
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if b64e(raw) == text else None


def envelope(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "conv": "dm:alice:bob",
        "sender": "alice",
        "sender_device": "alice-dev-0001",
        "client_id": "c-1",
        "nonce": b64e(bytes(NONCE_SIZE)),
        "ct": b64e(bytes(32)),
        "keys": [{"user": "bob", "device": "bob-dev-0001", "wrap": b64e(bytes(80))}],
        "sig": b64e(bytes(64)),
    }
    return base | fields


def refusal(obj: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as refused:
        parse_envelope(obj)
    return refused.value.message


@given(st.text(alphabet=ALPHABET + "+/=. \u00e9", max_size=48))
def test_the_ct_field_is_accepted_exactly_when_canonical(text: str) -> None:
    expected = canonical(text)
    if expected is not None and len(expected) >= 16:
        assert parse_envelope(envelope(ct=text)).ct == expected
        return
    # refused for the spelling, or (a canonical one) for being shorter than a tag
    with pytest.raises(InvalidInput) as refused:
        parse_envelope(envelope(ct=text))
    assert (refused.value.code, refused.value.details) == ("invalid_envelope", {"field": "ct"})
    reason = "impossible length" if expected is not None else "base64url"
    assert reason in refused.value.message


@given(st.binary(min_size=16, max_size=64))
def test_every_canonical_spelling_decodes_to_its_bytes(raw: bytes) -> None:
    assert parse_envelope(envelope(ct=b64e(raw))).ct == raw


def test_each_refusal_names_its_field_and_reason() -> None:
    nonce = b64e(bytes(NONCE_SIZE))  # 16 characters: no unused bits
    sig = b64e(bytes(64))  # 86 characters: 4 unused bits in the last one
    wrap = b64e(bytes(80))  # 107 characters: 2 unused bits in the last one
    assert "not canonical" in refusal(envelope(sig=sig[:-1] + "B"))
    assert "not canonical" in refusal(envelope(sig=sig[:-1] + "P"))
    entry = {"user": "bob", "device": "bob-dev-0001", "wrap": wrap[:-1] + "B"}
    assert "keys.wrap is not canonical" in refusal(envelope(keys=[entry]))
    assert "not base64url" in refusal(envelope(nonce=nonce[:-1] + "+"))
    assert "not base64url" in refusal(envelope(nonce=nonce + "="))
    assert "not base64url" in refusal(envelope(nonce=nonce + "A"))  # length 17: impossible
    assert "must be 12 bytes" in refusal(envelope(nonce=nonce + "AA"))
    assert "base64url string" in refusal(envelope(nonce=12))
    # the last character's used bits are free
    assert parse_envelope(envelope(sig=sig[:-1] + "Q")).sig[-1] == 1


def test_a_real_sealed_envelope_passes() -> None:
    ring = Keyring.generate()
    device = ring.add_device("alice-dev-0001")
    other = Keyring.generate().add_device("bob-dev-00001")
    sealed = seal(
        encode_payload({"type": "text", "text": "hi"}),
        conv="dm:alice:bob",
        sender="alice",
        sender_device_keys=device,
        client_id="c-1",
        recipients=[
            ("alice", device.device_id, device.x25519_public),
            ("bob", other.device_id, other.x25519_public),
        ],
    )
    parts = parse_envelope(sealed)
    assert (parts.conv, parts.sender_device, len(parts.keys)) == (
        "dm:alice:bob",
        "alice-dev-0001",
        2,
    )
