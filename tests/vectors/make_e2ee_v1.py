"""Generate ``tests/vectors/e2ee_v1.json``, the test vectors of E2EE suite v1 (docs/e2ee.md).

    .venv/bin/python tests/vectors/make_e2ee_v1.py            # (re)write the file
    .venv/bin/python tests/vectors/make_e2ee_v1.py --check    # exit 1 if it differs
    .venv/bin/python tests/vectors/make_e2ee_v1.py --fresh    # also redraw the HPKE wraps

Every key, content key, nonce and salt comes from a fixed seed (SHA-256 of a label), and
Ed25519 is deterministic, so the output is reproducible. The one exception is HPKE: its
ephemeral key is drawn inside ``cryptography`` and cannot be fixed. So the wraps are drawn
once and then *kept*: on a rerun each wrap is taken from the existing file as long as it
still opens, with the recipient's fixed key and the case's ``info``, to the case's fixed
content key; anything derived from the wraps (signatures, envelopes) is recomputed.

Hex (``*_hex``) is used for intermediates, base64url without padding where a value travels
in JSON on the wire, as in the envelope and the key directory.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from echochat.client import e2ee
from echochat.client.e2ee import DeviceKeys, Keyring, PublicDevice
from echochat.client.e2ee.backup import CROCKFORD, _derive, _seal_backup
from echochat.client.e2ee.envelope import _seal
from echochat.domain.e2ee import b64d, b64e, device_statement, lp

OUT = Path(__file__).with_name("e2ee_v1.json")
SEED_PREFIX = "echochat/e2ee-v1/test-vector/"
HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

# user -> device ids; the ids are chosen so that byte order ("Z" < "_" < "b") differs from
# a locale's order: an implementation sorting with localeCompare fails the vectors.
CAST: dict[str, list[str]] = {
    "alice": ["alice-laptop-1", "alice-phone-2"],
    "bob": ["bob-phone-01", "bob_laptop-2", "Zed-tablet-3"],
    "carol": ["carol-phone-1"],
}

Obj = dict[str, Any]


def seed(label: str, size: int = 32) -> bytes:
    """Fixed "random" bytes for ``label``: the first ``size`` bytes of SHA-256."""
    assert size <= 32
    return sha256((SEED_PREFIX + label).encode()).digest()[:size]


def device_keys(user: str, device_id: str) -> DeviceKeys:
    return DeviceKeys.from_private_bytes(
        device_id, seed(f"{user}/{device_id}/x25519"), seed(f"{user}/{device_id}/ed25519")
    )


def keyring(user: str) -> Keyring:
    ring = Keyring.from_private_bytes(seed(f"{user}/identity"))
    for device_id in CAST[user]:
        ring.add(device_keys(user, device_id))
    return ring


class Wraps:
    """HPKE wraps: kept from the previous file while they still open, else drawn anew."""

    def __init__(self, prior: Obj | None) -> None:
        self.prior: dict[tuple[str, str, str], bytes] = {}
        for case in (prior or {}).get("envelopes", []) + (prior or {}).get("refusals", []):
            envelope = case.get("envelope")
            keys = envelope.get("keys") if isinstance(envelope, dict) else None
            for entry in keys if isinstance(keys, list) else []:
                try:
                    raw = b64d(entry["wrap"])
                except (KeyError, TypeError, ValueError):
                    continue
                self.prior[(case["name"], entry["user"], entry["device"])] = raw

    def make(
        self, case: str, user: str, device: str, key: bytes, info: bytes, private: bytes
    ) -> bytes:
        old = self.prior.get((case, user, device))
        if old is not None:
            try:
                if HPKE.decrypt(old, X25519PrivateKey.from_private_bytes(private), info) == key:
                    return old
            except (InvalidTag, ValueError):
                pass  # no longer opens: draw a new one
        public = X25519PrivateKey.from_private_bytes(private).public_key()
        return HPKE.encrypt(key, public, info)


def directory_json(user: str, ring: Keyring, extra: Sequence[PublicDevice] = ()) -> Obj:
    """A user's directory exactly as ``GET /api/v1/keys/users/{user}`` shows it (minus
    ``created_at``): what a recipient passes, verified, as the sender's keys."""
    devices = [ring.certify(user, d).to_json() for d in ring.devices]
    devices += [d.to_json() for d in extra]
    return {"username": user, "identity_key": b64e(ring.identity_key), "devices": devices}


def users_section(rings: dict[str, Keyring]) -> Obj:
    out: Obj = {}
    for user, ring in rings.items():
        devices = []
        for device_id, device in ring.devices.items():
            statement = device_statement(
                user, device_id, device.x25519_public, device.ed25519_public
            )
            devices.append(
                {
                    "device_id": device_id,
                    "x25519_private_hex": device.x25519_private_bytes().hex(),
                    "x25519_public_hex": device.x25519_public.hex(),
                    "x25519_public": b64e(device.x25519_public),
                    "ed25519_private_hex": device.ed25519_private_bytes().hex(),
                    "ed25519_public_hex": device.ed25519_public.hex(),
                    "ed25519_public": b64e(device.ed25519_public),
                    "statement_hex": statement.hex(),
                    "signature_hex": ring.certify(user, device_id).signature.hex(),
                    "put_body": ring.published_device(user, device_id),
                }
            )
        out[user] = {
            "identity_private_hex": ring.identity_private_bytes().hex(),
            "identity_public_hex": ring.identity_key.hex(),
            "identity_key": b64e(ring.identity_key),
            "devices": devices,
            "directory": directory_json(user, ring),
        }
    return out


def recipient_json(user: str, device: DeviceKeys) -> Obj:
    return {
        "user": user,
        "device": device.device_id,
        "x25519_private_hex": device.x25519_private_bytes().hex(),
    }


def compose(
    *,
    conv: str,
    sender: str,
    sender_keys: DeviceKeys,
    client_id: str,
    nonce: bytes,
    ct: bytes,
    keys: list[tuple[str, str, bytes]],
    v: Any = 1,
) -> Obj:
    """An envelope from its parts, signed by ``sender_keys`` (the parts may be tampered)."""
    signed = e2ee.signature_input(conv, sender, sender_keys.device_id, client_id, nonce, ct, keys)
    return {
        "v": v,
        "conv": conv,
        "sender": sender,
        "sender_device": sender_keys.device_id,
        "client_id": client_id,
        "nonce": b64e(nonce),
        "ct": b64e(ct),
        "keys": [{"user": u, "device": d, "wrap": b64e(w)} for u, d, w in keys],
        "sig": b64e(sender_keys._sign(signed)),
    }


def flip(data: bytes, index: int) -> bytes:
    """``data`` with the lowest bit of byte ``index`` flipped."""
    out = bytearray(data)
    out[index] ^= 1
    return bytes(out)


def parts(envelope: Obj) -> tuple[bytes, bytes, list[tuple[str, str, bytes]]]:
    keys = [(k["user"], k["device"], b64d(k["wrap"])) for k in envelope["keys"]]
    return b64d(envelope["nonce"]), b64d(envelope["ct"]), keys


# --- the positive cases ----------------------------------------------------------------------


POSITIVE: list[Obj] = [
    {
        "name": "single_recipient",
        "description": (
            "alice's laptop to bob's phone only: one wrap (seal takes any list of recipients; "
            "seal_dm would add alice's own devices, the sending one included)"
        ),
        "sender": "alice",
        "sender_device": "alice-laptop-1",
        "conv": "dm:alice:bob",
        "client_id": "c-0001",
        "payload": {"type": "text", "text": "Hello, Bob!"},
        "recipients": [("bob", "bob-phone-01")],
    },
    {
        "name": "multi_device",
        "description": (
            "alice's laptop to all three of bob's devices and both of alice's, the sending "
            "laptop included (its self-wrap lets alice's keys, restored from the backup, read "
            "her own message); the wraps sorted by (user, device) in byte order: "
            "'Zed-tablet-3' < 'bob-phone-01' < 'bob_laptop-2'"
        ),
        "sender": "alice",
        "sender_device": "alice-laptop-1",
        "conv": "dm:alice:bob",
        "client_id": "01HZX3M8Q4T7V9B2C5D6E7F8G9",
        "payload": {"type": "text", "text": "Lunch at noon? :-)"},
        "recipients": [
            ("bob", "bob-phone-01"),
            ("bob", "bob_laptop-2"),
            ("bob", "Zed-tablet-3"),
            ("alice", "alice-phone-2"),
            ("alice", "alice-laptop-1"),
        ],
    },
    {
        "name": "non_ascii",
        "description": (
            "bob's phone to alice (both devices) and bob's two other devices; the text mixes "
            "emoji (with ZWJ and skin tone), CJK, right-to-left Arabic and Hebrew, a "
            "combining accent, and characters JSON must escape"
        ),
        "sender": "bob",
        "sender_device": "bob-phone-01",
        "conv": "dm:alice:bob",
        "client_id": "\u00e9t\u00e9-\u2603-42",
        "payload": {
            "type": "text",
            "text": (
                "Hi \U0001f44b\U0001f3fd \U0001f469\u200d\U0001f4bb \u4f60\u597d\uff0c"
                "\u4e16\u754c \u3053\u3093\u306b\u3061\u306f "
                "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd "
                'cafe\u0301 "quoted" back\\slash\ttab\n\u2028end'
            ),
        },
        "recipients": [
            ("alice", "alice-laptop-1"),
            ("alice", "alice-phone-2"),
            ("bob", "bob_laptop-2"),
            ("bob", "Zed-tablet-3"),
        ],
    },
]


def positive_case(spec: Obj, rings: dict[str, Keyring], wraps: Wraps) -> Obj:
    name, sender, conv, client_id = spec["name"], spec["sender"], spec["conv"], spec["client_id"]
    sender_keys = rings[sender].device(spec["sender_device"])
    content_key, nonce = seed(f"{name}/content_key"), seed(f"{name}/nonce", 12)
    plaintext = e2ee.encode_payload(spec["payload"])
    aad = e2ee.body_aad(conv, sender, sender_keys.device_id, client_id)
    ct = AESGCM(content_key).encrypt(nonce, plaintext, aad)
    ordered = sorted(spec["recipients"])
    wrap_rows: list[Obj] = []
    fixed: dict[tuple[str, str], bytes] = {}
    for user, device_id in ordered:
        device = rings[user].device(device_id)
        info = e2ee.wrap_info(conv, sender, sender_keys.device_id, user, device_id, client_id)
        wrap = wraps.make(name, user, device_id, content_key, info, device.x25519_private_bytes())
        fixed[(user, device_id)] = wrap
        wrap_rows.append(
            {
                "user": user,
                "device": device_id,
                "x25519_public": b64e(device.x25519_public),
                "info_hex": info.hex(),
                "enc_hex": wrap[:32].hex(),
                "sealed_key_hex": wrap[32:].hex(),
                "wrap": b64e(wrap),
            }
        )
    envelope = _seal(
        plaintext,
        conv=conv,
        sender=sender,
        sender_device_keys=sender_keys,
        client_id=client_id,
        recipients=[(u, d, rings[u].device(d).x25519_public) for u, d in spec["recipients"]],
        content_key=content_key,
        nonce=nonce,
        wraps=fixed,
    )
    signed = e2ee.signature_input(
        conv,
        sender,
        sender_keys.device_id,
        client_id,
        nonce,
        ct,
        [(u, d, fixed[(u, d)]) for u, d in ordered],
    )
    assert envelope["ct"] == b64e(ct)
    return {
        "name": name,
        "description": spec["description"],
        "conv": conv,
        "sender": sender,
        "sender_device": sender_keys.device_id,
        "client_id": client_id,
        "payload": spec["payload"],
        "plaintext_hex": plaintext.hex(),
        "content_key_hex": content_key.hex(),
        "nonce_hex": nonce.hex(),
        "body_aad_hex": aad.hex(),
        "body_ct_hex": ct.hex(),
        "wraps": wrap_rows,
        "signature_input_hex": signed.hex(),
        "signature_hex": b64d(envelope["sig"]).hex(),
        "envelope": envelope,
        "sender_keys": directory_json(sender, rings[sender]),
        "opens_for": [recipient_json(u, rings[u].device(d)) for u, d in ordered],
        "not_for": [
            recipient_json(u, rings[u].device(d))
            for u in ("alice", "bob")
            for d in CAST[u]
            if (u, d) not in fixed
        ],
    }


# --- the refusals ----------------------------------------------------------------------------


def refusals(cases: dict[str, Obj], rings: dict[str, Keyring], wraps: Wraps) -> list[Obj]:
    base = cases["multi_device"]
    env: Obj = base["envelope"]
    conv, client_id = base["conv"], base["client_id"]
    alice, bob = rings["alice"], rings["bob"]
    laptop = alice.device("alice-laptop-1")
    phone = bob.device("bob-phone-01")
    content_key = bytes.fromhex(base["content_key_hex"])
    nonce, ct, keys = parts(env)
    bob_phone = recipient_json("bob", phone)
    alice_dir = directory_json("alice", alice)
    out: list[Obj] = []

    def add(name: str, description: str, envelope: Any, error: str, **extra: Any) -> None:
        out.append(
            {
                "name": name,
                "description": description,
                "envelope": envelope,
                "expected_conv": extra.pop("expected_conv", conv),
                "recipient": extra.pop("recipient", bob_phone),
                "sender_keys": extra.pop("sender_keys", alice_dir),
                **extra,
                "error": error,
            }
        )

    def fresh_keys(
        case: str, sender_device: str, cid: str, key: bytes, conv_: str = conv
    ) -> list[tuple[str, str, bytes]]:
        made = []
        for user, device_id, _ in keys:
            device = rings[user].device(device_id)
            info = e2ee.wrap_info(conv_, "alice", sender_device, user, device_id, cid)
            made.append(
                (
                    user,
                    device_id,
                    wraps.make(case, user, device_id, key, info, device.x25519_private_bytes()),
                )
            )
        return made

    def signed(**changes: Any) -> Obj:
        args: Obj = {
            "conv": conv,
            "sender": "alice",
            "sender_keys": laptop,
            "client_id": client_id,
            "nonce": nonce,
            "ct": ct,
            "keys": keys,
        }
        args.update(changes)
        return compose(**args)

    wrong = DeviceKeys.from_private_bytes(
        "bob-phone-01", seed("bob/bob-phone-01/wrong-x25519"), seed("bob/bob-phone-01/ed25519")
    )
    add(
        "wrong_recipient_key",
        "multi_device opened by bob-phone-01 holding another X25519 private key",
        env,
        "wrap_failed",
        recipient=recipient_json("bob", wrong),
    )
    add(
        "ct_bit_flipped",
        "a bit of ct flipped in storage (signature left as it was)",
        {**env, "ct": b64e(flip(ct, 5))},
        "bad_signature",
    )
    add(
        "ct_bit_flipped_resigned",
        "a bit of ct flipped and the envelope re-signed by the sender's device (a sender "
        "cannot make a recipient accept a body the AES-GCM tag refuses)",
        signed(ct=flip(ct, 5)),
        "decrypt_failed",
    )
    phone_at = next(i for i, k in enumerate(keys) if k[:2] == ("bob", "bob-phone-01"))
    flipped = list(keys)
    flipped[phone_at] = ("bob", "bob-phone-01", flip(keys[phone_at][2], 40))
    add(
        "wrap_bit_flipped",
        "a bit of bob-phone-01's wrap flipped (signature left as it was)",
        {**env, "keys": [{"user": u, "device": d, "wrap": b64e(w)} for u, d, w in flipped]},
        "bad_signature",
    )
    add(
        "wrap_bit_flipped_resigned",
        "a bit of bob-phone-01's wrap flipped, re-signed by the sender's device",
        signed(keys=flipped),
        "wrap_failed",
    )
    laptop_at = next(i for i, k in enumerate(keys) if k[:2] == ("bob", "bob_laptop-2"))
    swapped = list(keys)
    swapped[phone_at] = ("bob", "bob-phone-01", keys[laptop_at][2])
    swapped[laptop_at] = ("bob", "bob_laptop-2", keys[phone_at][2])
    add(
        "wraps_swapped",
        "the wraps of bob-phone-01 and bob_laptop-2 swapped",
        {**env, "keys": [{"user": u, "device": d, "wrap": b64e(w)} for u, d, w in swapped]},
        "bad_signature",
    )
    add(
        "wraps_swapped_resigned",
        "the wraps of bob-phone-01 and bob_laptop-2 swapped, re-signed (the info binds each "
        "wrap to its recipient device)",
        signed(keys=swapped),
        "wrap_failed",
    )
    add(
        "client_id_changed",
        "client_id changed (an AAD/info field), signature left as it was",
        {**env, "client_id": "c-9999"},
        "bad_signature",
    )
    add(
        "client_id_changed_resigned",
        "client_id changed, the wraps made anew for the new client_id and re-signed, but the "
        "body still under the old AAD: the body's AAD binds client_id",
        signed(
            client_id="c-9999",
            keys=fresh_keys("client_id_changed_resigned", laptop.device_id, "c-9999", content_key),
        ),
        "decrypt_failed",
    )
    add(
        "bad_signature",
        "one bit of sig flipped",
        {**env, "sig": b64e(flip(b64d(env["sig"]), 10))},
        "bad_signature",
    )
    other = alice.device("alice-phone-2")
    forged = compose(
        conv=conv,
        sender="alice",
        sender_keys=other,
        client_id=client_id,
        nonce=nonce,
        ct=ct,
        keys=keys,
    )
    add(
        "signed_by_other_device",
        "signed by alice-phone-2 but claiming sender_device alice-laptop-1",
        {**forged, "sender_device": laptop.device_id},
        "bad_signature",
    )
    add(
        "replayed_into_other_conversation",
        "the dm:alice:bob envelope delivered by the server in group:family (bob is a member)",
        env,
        "wrong_conversation",
        expected_conv="group:family",
    )
    add(
        "conv_rewritten",
        "conv rewritten to group:family and delivered there (signature left as it was)",
        {**env, "conv": "group:family"},
        "bad_signature",
        expected_conv="group:family",
    )
    add("unsupported_version", "v is 2", {**env, "v": 2}, "unsupported_version")
    add("version_as_string", 'v is the string "1"', {**env, "v": "1"}, "unsupported_version")
    add(
        "version_missing",
        "no v",
        {k: v for k, v in env.items() if k != "v"},
        "unsupported_version",
    )

    # A device the server slipped into alice's directory: certified by mallory's identity key.
    mallory = Keyring.from_private_bytes(seed("mallory/identity"))
    rogue = device_keys("alice", "alice-tablet-9")
    mallory.add(rogue)
    rogue_cert = mallory.certify("alice", rogue.device_id)
    rogue_keys = fresh_keys("device_not_certified", rogue.device_id, client_id, content_key)
    add(
        "device_not_certified",
        "signed by alice-tablet-9, which is in alice's directory but certified by another "
        "identity key (mallory's), not alice's",
        compose(
            conv=conv,
            sender="alice",
            sender_keys=rogue,
            client_id=client_id,
            nonce=nonce,
            ct=ct,
            keys=rogue_keys,
        ),
        "bad_device_signature",
        sender_keys=directory_json("alice", alice, [rogue_cert]),
    )
    add(
        "unknown_sender_device",
        "the sender device is not in the sender's directory",
        env,
        "unknown_sender_device",
        sender_keys={
            **alice_dir,
            "devices": [d for d in alice_dir["devices"] if d["device_id"] != laptop.device_id],
        },
    )
    # The server swaps alice's whole directory for one under mallory's identity.
    fake = Keyring.from_private_bytes(seed("mallory/identity"))
    fake.add(rogue)
    swapped_dir = directory_json("alice", fake)
    add(
        "identity_changed",
        "alice's directory replaced by one under another identity key, whose device signed "
        "the envelope; the recipient had pinned alice's real identity key",
        compose(
            conv=conv,
            sender="alice",
            sender_keys=rogue,
            client_id=client_id,
            nonce=nonce,
            ct=ct,
            keys=fresh_keys("identity_changed", rogue.device_id, client_id, content_key),
        ),
        "identity_changed",
        sender_keys=swapped_dir,
        trusted_identity=b64e(alice.identity_key),
    )
    add(
        "sender_not_in_conversation",
        "sender changed to carol, opened with carol's directory: carol is not in dm:alice:bob",
        {**env, "sender": "carol"},
        "wrong_sender",
        sender_keys=directory_json("carol", rings["carol"]),
    )
    add(
        "sender_keys_of_someone_else",
        "the sender is alice but the directory passed is bob's",
        env,
        "wrong_sender",
        sender_keys=directory_json("bob", bob),
    )
    add(
        "not_a_recipient_other_device",
        "bob's Zed-tablet-3 opening single_recipient, whose only wrap is for bob-phone-01",
        cases["single_recipient"]["envelope"],
        "not_a_recipient",
        recipient=recipient_json("bob", bob.device("Zed-tablet-3")),
    )
    add(
        "not_a_recipient_outsider",
        "carol, who holds the ciphertext, opening multi_device",
        env,
        "not_a_recipient",
        recipient=recipient_json("carol", rings["carol"].device("carol-phone-1")),
    )
    add(
        "not_a_recipient_sending_device",
        "the sending device opening single_recipient, which was sealed without a wrap for it "
        "(seal_dm always adds one; the format does not require it)",
        cases["single_recipient"]["envelope"],
        "not_a_recipient",
        recipient=recipient_json("alice", laptop),
    )
    bad_payload_key = seed("payload_not_json/content_key")
    add(
        "payload_not_json",
        "a correctly sealed body whose plaintext is not JSON",
        signed(
            ct=AESGCM(bad_payload_key).encrypt(
                nonce, b"not json", e2ee.body_aad(conv, "alice", laptop.device_id, client_id)
            ),
            keys=fresh_keys("payload_not_json", laptop.device_id, client_id, bad_payload_key),
        ),
        "bad_payload",
    )
    # malformed: refused before any cryptography
    entries = env["keys"]
    add(
        "keys_unsorted",
        "key entries not in (user, device) byte order",
        {**env, "keys": [entries[1], entries[0], *entries[2:]]},
        "malformed",
    )
    add(
        "keys_duplicated",
        "a key entry listed twice",
        {**env, "keys": [entries[0], entries[0], *entries[1:]]},
        "malformed",
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sig_text = env["sig"]  # 64 bytes: 86 symbols, the last one carries 4 unused bits
    index = alphabet.index(sig_text[-1])
    assert index % 16 == 0
    add(
        "non_canonical_base64url",
        "sig's last symbol with a non-zero unused bit: it decodes to the same 64 bytes, but "
        "is not the canonical spelling",
        {**env, "sig": sig_text[:-1] + alphabet[index + 1]},
        "malformed",
    )
    add(
        "padded_base64url",
        "sig written with '=' padding",
        {**env, "sig": env["sig"] + "=="},
        "malformed",
    )
    add(
        "unknown_field",
        "an extra top-level field",
        {**env, "extra": True},
        "malformed",
    )
    add(
        "missing_field",
        "no sig",
        {k: v for k, v in env.items() if k != "sig"},
        "malformed",
    )
    add("not_an_object", "the envelope is a JSON array", [env], "malformed")
    add(
        "client_id_lone_surrogate",
        "client_id is a lone UTF-16 surrogate (\\ud800 in JSON): not well-formed Unicode, "
        "so it has no UTF-8 to bind (JavaScript: check String.prototype.isWellFormed)",
        {**env, "client_id": "\ud800"},
        "malformed",
    )
    return out


# --- backup, recovery key, safety number -------------------------------------------------------


def recovery_section() -> Obj:
    counter = 0
    while True:  # the first seed whose key shows both 0 and 1, to show O -> 0 and I/L -> 1
        raw = seed(f"recovery_key/{counter}")
        text = e2ee.format_recovery_key(raw)
        if "0" in text and "1" in text:
            break
        counter += 1
    plain = text.replace("-", "")
    variants = [
        text.lower(),
        " ".join(text.split("-")),
        plain,
        text.replace("0", "O"),
        text.replace("1", "I"),
        text.replace("1", "l"),
        f"  {text.lower().replace('-', ' - ')}  ",
    ]
    assert all(e2ee.parse_recovery_key(v) == raw for v in variants)
    not_keys = [
        plain[:-1],
        plain + "0",
        plain[:-1] + "U",
        plain[:-1] + ("Z" if plain[-1] != "Z" else "Y"),  # non-zero padding bits
        text.replace("-", "+"),
    ]
    assert all(e2ee.parse_recovery_key(v) is None for v in not_keys)
    return {
        "alphabet": CROCKFORD,
        "raw_hex": raw.hex(),
        "formatted": text,
        "accepted_inputs": variants,
        "not_recovery_keys": not_keys,
        "note": (
            "a string that is not a recovery key is a passphrase: its secret is the UTF-8 of "
            "its NFC form"
        ),
    }


def backup_section(rings: dict[str, Keyring]) -> Obj:
    ring = rings["alice"]
    plaintext = ring.export()
    passphrase = "Cafe\u0301 \u00fcber \U0001f511 correct horse battery staple"
    secret = e2ee.backup_secret(passphrase)
    salt, nonce = seed("backup/salt", 16), seed("backup/nonce", 12)
    iterations = e2ee.MIN_ITERATIONS
    key = _derive(secret, salt, iterations)
    blob = _seal_backup(plaintext, secret, "alice", iterations, salt, nonce)
    low = _seal_backup(plaintext, secret, "alice", 1000, salt, nonce)
    data = json.loads(blob)

    def variant(**changes: Any) -> str:
        return json.dumps({**data, **changes}, separators=(",", ":"))

    wrong_secret = "Cafe\u0301 \u00fcber \U0001f511 correct horse battery stapler"
    return {
        "username": "alice",
        "passphrase": passphrase,
        "secret_hex": secret.hex(),
        "keyring": ring.to_json(),
        "keyring_plaintext_hex": plaintext.hex(),
        "kdf": e2ee.BACKUP_KDF,
        "iterations": iterations,
        "salt_hex": salt.hex(),
        "nonce_hex": nonce.hex(),
        "derived_key_hex": key.hex(),
        "aad_hex": e2ee.backup_aad("alice").hex(),
        "ct_hex": b64d(data["ct"]).hex(),
        "blob": blob,
        "refusals": [
            {
                "name": "low_iterations",
                "description": "the same keyring under 1000 iterations (a downgrade); it would "
                "decrypt with the passphrase, but must be refused before deriving",
                "blob": low,
                "username": "alice",
                "secret": passphrase,
                "error": "weak_kdf",
            },
            {
                "name": "wrong_passphrase",
                "description": "one letter more",
                "blob": blob,
                "username": "alice",
                "secret": wrong_secret,
                "error": "decrypt_failed",
            },
            {
                "name": "other_user",
                "description": "alice's blob opened as bob's (the AAD binds the username)",
                "blob": blob,
                "username": "bob",
                "secret": passphrase,
                "error": "decrypt_failed",
            },
            {
                "name": "unsupported_version",
                "description": "v is 2",
                "blob": variant(v=2),
                "username": "alice",
                "secret": passphrase,
                "error": "unsupported_version",
            },
            {
                "name": "unsupported_kdf",
                "description": "kdf is scrypt",
                "blob": variant(kdf="scrypt"),
                "username": "alice",
                "secret": passphrase,
                "error": "unsupported_kdf",
            },
            {
                "name": "too_many_iterations",
                "description": "more than 10,000,000 iterations (denial of service)",
                "blob": variant(iterations=10_000_001),
                "username": "alice",
                "secret": passphrase,
                "error": "unsupported_kdf",
            },
        ],
    }


def safety_section(rings: dict[str, Keyring]) -> Obj:
    alice, bob = rings["alice"].identity_key, rings["bob"].identity_key
    number = e2ee.safety_number("bob", bob, "alice", alice)
    assert number == e2ee.safety_number("alice", alice, "bob", bob)
    return {
        "user_a": "bob",
        "identity_a": b64e(bob),
        "user_b": "alice",
        "identity_b": b64e(alice),
        "input_hex": lp("echochat/v1/safety", "alice", alice, "bob", bob).hex(),
        "digest_hex": number.digest.hex(),
        "digits": number.digits,
        "display": str(number),
        "qr_payload": number.qr_payload,
    }


# --- the file --------------------------------------------------------------------------------


def build(prior: Obj | None = None) -> Obj:
    rings = {user: keyring(user) for user in CAST}
    wraps = Wraps(prior)
    cases = {spec["name"]: positive_case(spec, rings, wraps) for spec in POSITIVE}
    return {
        "suite": "echochat e2ee v1",
        "spec": "docs/e2ee.md",
        "generator": "tests/vectors/make_e2ee_v1.py",
        "notes": [
            "lp(f1, f2, ...) = for each field: 4-byte big-endian length, then the bytes "
            "(strings as UTF-8).",
            "Binary values in envelopes and directories are base64url without padding, "
            "canonical; *_hex fields are hex.",
            "HPKE: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, "
            "single-shot (sequence 0), empty AAD; a wrap is enc (32) || ciphertext (48).",
            "Fixed seeds: every private key, content key, nonce and salt is the first bytes of "
            f"SHA-256('{SEED_PREFIX}' + label). HPKE's ephemeral keys are not seeded: the "
            "wraps are fixed values that must open; fresh wraps can never equal them.",
            "Recipients: seal_dm wraps for every device of the peer and of the sender, the "
            "sending device included (multi_device); single_recipient and non_ascii are sealed "
            "to explicit lists without a wrap for the sending device, which the format allows.",
            "A refusal is opened with expected_conv, recipient (user, device, X25519 private "
            "key), sender_keys (the sender's directory as the server returns it) and, if "
            "present, trusted_identity; it must fail with error.",
        ],
        "lp_example": {
            "fields": ["echochat", "", "hex:00ff"],
            "hex": lp("echochat", "", b"\x00\xff").hex(),
        },
        "users": users_section(rings),
        "envelopes": list(cases.values()),
        "refusals": refusals(cases, rings, wraps),
        "safety_number": safety_section(rings),
        "recovery_key": recovery_section(),
        "backup": backup_section(rings),
    }


def render(data: Obj) -> str:
    return json.dumps(data, indent=1, ensure_ascii=True) + "\n"


def load(path: Path = OUT) -> Obj | None:
    try:
        loaded: Obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--fresh", action="store_true", help="draw new HPKE wraps")
    args = parser.parse_args(argv)
    prior = None if args.fresh else load()
    text = render(build(copy.deepcopy(prior)))
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from what the generator makes")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
