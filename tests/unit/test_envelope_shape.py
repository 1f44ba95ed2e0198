"""The envelope's shape (``echochat.domain.e2ee.check_envelope_shape``): the pure check a
server runs before storing an envelope, and the SDK runs first when opening one
(docs/e2ee.md 4.2, steps 1-3). It refuses with ``InvalidInput`` codes ``invalid_envelope``,
``unsupported_version``, ``too_many_wraps`` and ``envelope_too_large``; it verifies nothing
cryptographic.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from echochat.domain.e2ee import (
    MAX_ENVELOPE_BYTES,
    b64d,
    b64e,
    check_envelope_shape,
    envelope_size,
    parse_envelope,
)
from echochat.domain.errors import InvalidInput

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "e2ee_v1.json").read_text()
)
MULTI = next(c for c in VECTORS["envelopes"] if c["name"] == "multi_device")
ENVELOPE: dict[str, Any] = MULTI["envelope"]
SDK_CODES = {  # how the SDK reports each shape refusal (docs/e2ee.md 4.2)
    "invalid_envelope": "malformed",
    "too_many_wraps": "malformed",
    "envelope_too_large": "malformed",
    "unsupported_version": "unsupported_version",
}


def refused(code: str, field: str | None = None) -> pytest.RaisesExc[InvalidInput]:
    return pytest.raises(
        InvalidInput,
        check=lambda e: e.code == code and (field is None or e.details == {"field": field}),
    )


def changed(**fields: Any) -> dict[str, Any]:
    return {**ENVELOPE, **fields}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in ENVELOPE.items() if k != name}


def entry(index: int, **fields: Any) -> dict[str, Any]:
    """The envelope with key entry ``index`` changed."""
    keys = [dict(k) for k in ENVELOPE["keys"]]
    keys[index].update(fields)
    return changed(keys=keys)


# --- agreement with the vectors ------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["envelopes"], ids=lambda c: c["name"])
def test_vector_envelopes_have_the_shape(case: dict[str, Any]) -> None:
    check_envelope_shape(case["envelope"])
    parts = parse_envelope(case["envelope"])
    assert (parts.conv, parts.sender, parts.sender_device, parts.client_id) == (
        case["conv"],
        case["sender"],
        case["sender_device"],
        case["client_id"],
    )
    assert parts.nonce.hex() == case["nonce_hex"] and parts.ct.hex() == case["body_ct_hex"]
    assert [(u, d, b64e(w)) for u, d, w in parts.keys] == [
        (w["user"], w["device"], w["wrap"]) for w in case["wraps"]
    ]
    assert parts.sig.hex() == case["signature_hex"]


@pytest.mark.parametrize("case", VECTORS["refusals"], ids=lambda c: c["name"])
def test_vector_refusals_split_between_shape_and_cryptography(case: dict[str, Any]) -> None:
    """Every refusal the SDK reports as malformed or unsupported_version is a shape refusal
    (the server can refuse it too); every other one has a valid shape."""
    if case["error"] in SDK_CODES.values():
        with pytest.raises(InvalidInput) as caught:
            check_envelope_shape(case["envelope"])
        assert SDK_CODES.get(caught.value.code, "?") == case["error"]
        assert caught.value.status == 422 and caught.value.message
    else:
        check_envelope_shape(case["envelope"])


# --- the order of the checks ---------------------------------------------------------------


@pytest.mark.parametrize("obj", [[ENVELOPE], "envelope", None, 1, b"{}"])
def test_not_an_object(obj: object) -> None:
    with refused("invalid_envelope", "envelope"):
        check_envelope_shape(obj)


@pytest.mark.parametrize("v", [2, 0, True, "1", None, 1.5])
def test_version_other_than_the_number_one(v: object) -> None:
    with refused("unsupported_version", "v"):
        check_envelope_shape(changed(v=v))


def test_version_comes_before_anything_else() -> None:
    """Another version's fields may mean something else: nothing else is read."""
    with refused("unsupported_version"):
        check_envelope_shape(without("v"))
    with refused("unsupported_version"):
        check_envelope_shape({"v": 2, "ratchet": "x" * (MAX_ENVELOPE_BYTES + 1)})
    check_envelope_shape(changed(v=1.0))  # the JSON number 1, as in JavaScript


def test_exactly_the_nine_fields() -> None:
    with refused("invalid_envelope", "envelope") as caught:
        check_envelope_shape(without("sig"))
    assert "sig" in caught.value.message
    with refused("invalid_envelope", "envelope") as caught:
        check_envelope_shape(changed(note="hi"))
    assert "note" in caught.value.message
    with refused("invalid_envelope", "envelope"):
        check_envelope_shape({**ENVELOPE, 7: "x"})


def test_total_size() -> None:
    """Checked before any field's syntax: a huge value is refused without being decoded."""
    assert envelope_size(ENVELOPE) == len(json.dumps(ENVELOPE, separators=(",", ":")))
    huge = "A" * MAX_ENVELOPE_BYTES
    with refused("envelope_too_large", "envelope"):
        check_envelope_shape(changed(ct=huge))
    with refused("envelope_too_large"):
        check_envelope_shape(changed(keys=ENVELOPE["keys"] * 300))
    with refused("invalid_envelope", "envelope"):  # not JSON at all
        check_envelope_shape(changed(ct=b"raw bytes"))


def test_size_is_an_upper_bound_of_any_compact_spelling() -> None:
    """Non-ASCII is counted escaped, so JSON.stringify's UTF-8 is never larger."""
    case = next(c for c in VECTORS["envelopes"] if c["name"] == "non_ascii")
    stringified = json.dumps(case["envelope"], separators=(",", ":"), ensure_ascii=False)
    assert len(stringified.encode()) < envelope_size(case["envelope"])


def test_wrap_count() -> None:
    with refused("too_many_wraps", "keys"):
        check_envelope_shape(changed(keys=ENVELOPE["keys"] * 9))  # 45 entries
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(changed(keys=[]))
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(changed(keys=tuple(ENVELOPE["keys"])))


# --- each field ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conv", "dm:bob:alice"),  # not sorted
        ("conv", "dm:alice:Bob"),
        ("conv", "room:1"),
        ("conv", "group:" + "x" * 65),
        ("conv", 5),
        ("sender", "Alice"),
        ("sender", "al"),
        ("sender_device", "short"),
        ("sender_device", "alice laptop 1"),
        ("client_id", ""),
        ("client_id", "x" * 65),
        ("client_id", "\ud800"),  # a lone surrogate has no UTF-8
        ("client_id", 42),
        ("nonce", b64e(bytes(11))),
        ("nonce", b64e(bytes(12)) + "="),
        ("ct", b64e(bytes(15))),
        ("ct", b64e(bytes(16 * 1024 + 17))),
        ("sig", ENVELOPE["sig"] + "=="),
        ("sig", ENVELOPE["sig"][:-1] + "B"),  # same bytes, not the canonical spelling
        ("sig", b64e(bytes(63))),
        ("sig", None),
    ],
)
def test_field_syntax(field: str, value: object) -> None:
    with refused("invalid_envelope", field):
        check_envelope_shape(changed(**{field: value}))


def test_field_limits_inclusive() -> None:
    check_envelope_shape(changed(client_id="\U0001f600" * 64))  # 64 code points
    check_envelope_shape(changed(conv="group:" + "x" * 64))
    check_envelope_shape(changed(ct=b64e(bytes(16 * 1024 + 16))))
    check_envelope_shape(changed(keys=ENVELOPE["keys"][:1]))


def test_key_entries() -> None:
    keys = ENVELOPE["keys"]
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(changed(keys=[keys[1], keys[0], *keys[2:]]))
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(changed(keys=[keys[0], *keys]))
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(changed(keys=[*keys[:-1], "wrap"]))
    with refused("invalid_envelope", "keys"):
        check_envelope_shape(entry(0, extra=1))
    with refused("invalid_envelope", "keys.user"):
        check_envelope_shape(entry(0, user="ALICE"))
    with refused("invalid_envelope", "keys.device"):
        check_envelope_shape(entry(0, device="x"))
    with refused("invalid_envelope", "keys.wrap"):
        check_envelope_shape(entry(0, wrap=b64e(b64d(keys[0]["wrap"])[:79])))


def test_any_mapping_is_an_object() -> None:
    frozen = MappingProxyType({**ENVELOPE, "keys": [MappingProxyType(k) for k in ENVELOPE["keys"]]})
    check_envelope_shape(frozen)
    assert parse_envelope(frozen) == parse_envelope(ENVELOPE)
