"""E2EE suite v1 in the SDK (``echochat.client.e2ee``, spec ``docs/e2ee.md``): the test
vectors of ``tests/vectors/e2ee_v1.json`` reproduced byte for byte wherever the encoding is
deterministic (recomputed from the primitives, not only through the SDK), the fixed
envelopes opened, every refusal refused with its code, fresh round trips, a property test,
and RFC 9180's vector against ``cryptography``'s HPKE.

PBKDF2 at 600,000 iterations costs about a quarter of a second here: only the tests about
the real backup use it.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echochat.client import e2ee
from echochat.client.e2ee import (
    DeviceKeys,
    E2EEError,
    KeyDirectory,
    Keyring,
    PublicDevice,
    decrypt_backup,
    open_envelope,
    seal,
    seal_dm,
    verify_directory,
)
from echochat.client.e2ee.backup import _derive
from echochat.client.e2ee.envelope import _parse, _seal
from echochat.domain.e2ee import b64d, b64e, device_statement, lp
from tests.vectors import make_e2ee_v1

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "e2ee_v1.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
# RFC 9180 Appendix A.1.1, as published (a copy of ../shared/vectors, kept with the tests).
RFC9180_A11 = VECTORS_PATH.parent / "rfc9180-a11-x25519-hkdfsha256-aes128gcm-base.json"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

ENVELOPES = {case["name"]: case for case in VECTORS["envelopes"]}
REFUSALS = {case["name"]: case for case in VECTORS["refusals"]}
BACKUP = VECTORS["backup"]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def receiver(row: dict[str, Any]) -> DeviceKeys:
    """A recipient device from a vector row (only its X25519 key matters for opening)."""
    return DeviceKeys.from_private_bytes(row["device"], h(row["x25519_private_hex"]), bytes(32))


def directory(data: dict[str, Any]) -> KeyDirectory:
    """The sender's directory exactly as given (unfiltered: opening checks the sender
    device's certificate itself)."""
    return KeyDirectory(
        data["username"],
        b64d(data["identity_key"]),
        tuple(PublicDevice.from_json(d) for d in data["devices"]),
    )


def vector_keyring(user: str) -> Keyring:
    data = VECTORS["users"][user]
    return Keyring.from_private_bytes(
        h(data["identity_private_hex"]),
        {
            d["device_id"]: (h(d["x25519_private_hex"]), h(d["ed25519_private_hex"]))
            for d in data["devices"]
        },
    )


def refused(code: str) -> pytest.RaisesExc[E2EEError]:
    return pytest.raises(E2EEError, check=lambda e: e.code == code)


# --- the file itself -----------------------------------------------------------------------


def test_the_vector_file_is_what_the_generator_makes() -> None:
    """Regenerating (keeping the HPKE wraps, which are drawn, not seeded) gives the committed
    file byte for byte: every deterministic value follows from the seeds and the code."""
    prior = json.loads(VECTORS_PATH.read_text())
    assert make_e2ee_v1.render(make_e2ee_v1.build(prior)) == VECTORS_PATH.read_text()


def test_vector_file_covers_the_required_cases() -> None:
    assert set(ENVELOPES) >= {"single_recipient", "multi_device", "non_ascii"}
    multi = ENVELOPES["multi_device"]
    assert len(multi["wraps"]) == 5 and multi["not_for"] == []
    # the sending device has its own wrap (docs/e2ee.md 4.1), like every other device
    sender = (multi["sender"], multi["sender_device"])
    assert sender in [(r["user"], r["device"]) for r in multi["opens_for"]]
    assert {r["error"] for r in REFUSALS.values()} >= {
        "wrap_failed",
        "bad_signature",
        "decrypt_failed",
        "wrong_conversation",
        "unsupported_version",
        "bad_device_signature",
        "unknown_sender_device",
        "not_a_recipient",
        "wrong_sender",
        "identity_changed",
        "bad_payload",
        "malformed",
    }
    assert {"wrong_recipient_key", "ct_bit_flipped", "wrap_bit_flipped", "client_id_changed"} <= (
        set(REFUSALS)
    )


def test_lp_example() -> None:
    example = VECTORS["lp_example"]
    assert lp("echochat", "", b"\x00\xff").hex() == example["hex"]
    assert example["hex"] == "00000008" + b"echochat".hex() + "00000000" + "00000002" + "00ff"


# --- keys and device certificates --------------------------------------------------------------


@pytest.mark.parametrize("user", sorted(VECTORS["users"]))
def test_identity_and_device_keys(user: str) -> None:
    data = VECTORS["users"][user]
    identity = Ed25519PrivateKey.from_private_bytes(h(data["identity_private_hex"]))
    identity_public = identity.public_key().public_bytes_raw()
    assert identity_public.hex() == data["identity_public_hex"]
    assert b64e(identity_public) == data["identity_key"]
    ring = vector_keyring(user)
    for row in data["devices"]:
        x = X25519PrivateKey.from_private_bytes(h(row["x25519_private_hex"]))
        ed = Ed25519PrivateKey.from_private_bytes(h(row["ed25519_private_hex"]))
        x_public = x.public_key().public_bytes_raw()
        ed_public = ed.public_key().public_bytes_raw()
        assert x_public.hex() == row["x25519_public_hex"]
        assert ed_public.hex() == row["ed25519_public_hex"]
        assert b64e(x_public) == row["x25519_public"]
        assert b64e(ed_public) == row["ed25519_public"]
        statement = device_statement(user, row["device_id"], x_public, ed_public)
        assert statement.hex() == row["statement_hex"]
        assert statement == lp("echochat/v1/device", user, row["device_id"], x_public, ed_public)
        # Ed25519 is deterministic: the signature is reproduced exactly.
        assert identity.sign(statement).hex() == row["signature_hex"]
        assert ring.published_device(user, row["device_id"]) == row["put_body"]
        assert row["put_body"]["signature"] == b64e(h(row["signature_hex"]))
    verified = verify_directory(user, data["identity_key"], data["directory"]["devices"])
    assert [d.device_id for d in verified.devices] == [d["device_id"] for d in data["devices"]]
    assert verified.rejected == ()


# --- the fixed envelopes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_envelope_reproduced_from_primitives(name: str) -> None:
    case = ENVELOPES[name]
    env = case["envelope"]
    conv, sender, device, client_id = (
        case["conv"],
        case["sender"],
        case["sender_device"],
        case["client_id"],
    )
    plaintext = h(case["plaintext_hex"])
    assert (
        plaintext == json.dumps(case["payload"], ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert plaintext == e2ee.encode_payload(case["payload"])
    aad = lp("echochat/v1/body", "1", conv, sender, device, client_id)
    assert aad.hex() == case["body_aad_hex"] == e2ee.body_aad(conv, sender, device, client_id).hex()
    key, nonce = h(case["content_key_hex"]), h(case["nonce_hex"])
    ct = AESGCM(key).encrypt(nonce, plaintext, aad)
    assert ct.hex() == case["body_ct_hex"]
    assert env["ct"] == b64e(ct) and env["nonce"] == b64e(nonce)

    recipients = {(r["user"], r["device"]): r for r in case["opens_for"]}
    assert [(w["user"], w["device"]) for w in case["wraps"]] == sorted(recipients)
    signed: list[str | bytes] = ["echochat/v1/sig", "1", conv, sender, device, client_id]
    signed += [nonce, ct]
    for wrap, entry in zip(case["wraps"], env["keys"], strict=True):
        user, dev = wrap["user"], wrap["device"]
        info = lp("echochat/v1/wrap", "1", conv, sender, device, user, dev, client_id)
        assert info.hex() == wrap["info_hex"]
        raw = h(wrap["enc_hex"]) + h(wrap["sealed_key_hex"])
        assert len(raw) == 80 and b64e(raw) == wrap["wrap"] == entry["wrap"]
        assert entry == {"user": user, "device": dev, "wrap": wrap["wrap"]}
        private = X25519PrivateKey.from_private_bytes(
            h(recipients[(user, dev)]["x25519_private_hex"])
        )
        assert private.public_key().public_bytes_raw() == b64d(wrap["x25519_public"])
        assert SUITE.decrypt(raw, private, info) == key
        signed += [user, dev, raw]
    signature_input = lp(*signed)
    assert signature_input.hex() == case["signature_input_hex"]

    sender_row = next(d for d in VECTORS["users"][sender]["devices"] if d["device_id"] == device)
    signer = Ed25519PrivateKey.from_private_bytes(h(sender_row["ed25519_private_hex"]))
    assert signer.sign(signature_input).hex() == case["signature_hex"]
    assert env["sig"] == b64e(h(case["signature_hex"]))
    Ed25519PublicKey.from_public_bytes(h(sender_row["ed25519_public_hex"])).verify(
        h(case["signature_hex"]), signature_input
    )
    assert list(env) == [
        "v",
        "conv",
        "sender",
        "sender_device",
        "client_id",
        "nonce",
        "ct",
        "keys",
        "sig",
    ]
    assert (env["v"], env["conv"], env["sender"]) == (1, conv, sender)
    assert (env["sender_device"], env["client_id"]) == (device, client_id)


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_sdk_seal_reproduces_the_envelope(name: str) -> None:
    """With the case's content key, nonce and (drawn once) wraps, the SDK's seal produces
    the vector's envelope exactly, as JSON text too."""
    case = ENVELOPES[name]
    ring = vector_keyring(case["sender"])
    users = {u: vector_keyring(u) for u in ("alice", "bob")}
    envelope = _seal(
        h(case["plaintext_hex"]),
        conv=case["conv"],
        sender=case["sender"],
        sender_device_keys=ring.device(case["sender_device"]),
        client_id=case["client_id"],
        recipients=[
            (w["user"], w["device"], users[w["user"]].device(w["device"]).x25519_public)
            for w in reversed(case["wraps"])  # any order in, sorted out
        ],
        content_key=h(case["content_key_hex"]),
        nonce=h(case["nonce_hex"]),
        wraps={(w["user"], w["device"]): b64d(w["wrap"]) for w in case["wraps"]},
    )
    assert json.dumps(envelope) == json.dumps(case["envelope"])


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_fixed_envelope_opens_for_every_recipient(name: str) -> None:
    case = ENVELOPES[name]
    sender_keys = verify_directory(
        case["sender"], case["sender_keys"]["identity_key"], case["sender_keys"]["devices"]
    )
    for row in case["opens_for"]:
        opened = open_envelope(
            case["envelope"],
            expected_conv=case["conv"],
            me_user=row["user"],
            my_device_keys=receiver(row),
            sender_keys=sender_keys,
            trusted_identity=sender_keys.identity_key,
        )
        assert opened.payload == case["payload"]
        assert opened.plaintext == h(case["plaintext_hex"])
        assert (opened.conv, opened.sender, opened.sender_device, opened.client_id) == (
            case["conv"],
            case["sender"],
            case["sender_device"],
            case["client_id"],
        )
    for row in case["not_for"]:
        with refused("not_a_recipient"):
            open_envelope(
                case["envelope"],
                expected_conv=case["conv"],
                me_user=row["user"],
                my_device_keys=receiver(row),
                sender_keys=sender_keys,
            )


def test_non_ascii_text_survives() -> None:
    text = ENVELOPES["non_ascii"]["payload"]["text"]
    assert "\U0001f469\u200d\U0001f4bb" in text and "\u4f60\u597d" in text
    assert "\u05e9\u05dc\u05d5\u05dd" in text and "e\u0301" in text  # RTL; not normalised


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_fresh_seal_with_vector_keys_opens(name: str) -> None:
    """The cross-check a second implementation runs against Python: seal anew with the
    vector keys (fresh content key, nonce and wraps), open with the vector keys."""
    case = ENVELOPES[name]
    users = {u: vector_keyring(u) for u in ("alice", "bob")}
    fresh = seal(
        h(case["plaintext_hex"]),
        conv=case["conv"],
        sender=case["sender"],
        sender_device_keys=users[case["sender"]].device(case["sender_device"]),
        client_id=case["client_id"],
        recipients=[
            (r["user"], r["device"], users[r["user"]].device(r["device"]).x25519_public)
            for r in case["opens_for"]
        ],
    )
    assert fresh["ct"] != case["envelope"]["ct"]
    for row in case["opens_for"]:
        opened = open_envelope(
            fresh,
            expected_conv=case["conv"],
            me_user=row["user"],
            my_device_keys=receiver(row),
            sender_keys=directory(case["sender_keys"]),
        )
        assert opened.payload == case["payload"]


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusal(name: str) -> None:
    case = REFUSALS[name]
    trusted = case.get("trusted_identity")
    with refused(case["error"]) as caught:
        open_envelope(
            case["envelope"],
            expected_conv=case["expected_conv"],
            me_user=case["recipient"]["user"],
            my_device_keys=receiver(case["recipient"]),
            sender_keys=directory(case["sender_keys"]),
            trusted_identity=None if trusted is None else b64d(trusted),
        )
    assert caught.value.message and str(caught.value).startswith(case["error"] + ": ")


def test_uncertified_device_is_dropped_by_verify_directory() -> None:
    case = REFUSALS["device_not_certified"]
    data = case["sender_keys"]
    verified = verify_directory(data["username"], data["identity_key"], data["devices"])
    assert [d.device_id for d in verified.devices] == ["alice-laptop-1", "alice-phone-2"]
    assert verified.rejected == (e2ee.RejectedDevice("alice-tablet-9", "bad_device_signature"),)
    with refused("unknown_sender_device"):  # what a client that filters first sees
        open_envelope(
            case["envelope"],
            expected_conv=case["expected_conv"],
            me_user="bob",
            my_device_keys=receiver(case["recipient"]),
            sender_keys=verified,
        )


def test_resigned_tampering_passes_the_signature_and_fails_later() -> None:
    """The "_resigned" refusals have valid signatures: they exercise the AEAD layers."""
    for name in ("ct_bit_flipped_resigned", "wrap_bit_flipped_resigned", "payload_not_json"):
        case = REFUSALS[name]
        parsed = _parse(case["envelope"])
        sender = directory(case["sender_keys"]).device(parsed.sender_device)
        assert sender is not None
        Ed25519PublicKey.from_public_bytes(sender.ed25519).verify(
            parsed.sig,
            e2ee.signature_input(
                parsed.conv,
                parsed.sender,
                parsed.sender_device,
                parsed.client_id,
                parsed.nonce,
                parsed.ct,
                parsed.keys,
            ),
        )


# --- safety numbers and recovery keys ----------------------------------------------------------


def test_safety_number_vector() -> None:
    vector = VECTORS["safety_number"]
    a, b = b64d(vector["identity_a"]), b64d(vector["identity_b"])
    number = e2ee.safety_number(vector["user_a"], a, vector["user_b"], b)
    assert number == e2ee.safety_number(vector["user_b"], b, vector["user_a"], a)
    pair = sorted([(vector["user_a"], a), (vector["user_b"], b)])
    data = lp("echochat/v1/safety", pair[0][0], pair[0][1], pair[1][0], pair[1][1])
    assert data.hex() == vector["input_hex"]
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    raw = digest.finalize()
    assert raw.hex() == vector["digest_hex"] == number.digest.hex()
    digits = str(int.from_bytes(raw, "big") % 10**60).zfill(60)
    assert digits == vector["digits"] == number.digits
    assert vector["display"] == " ".join(digits[i : i + 5] for i in range(0, 60, 5))
    assert str(number) == vector["display"] and len(number.groups) == 12
    assert number.qr_payload == vector["qr_payload"] == f"echochat-safety:1:{raw.hex()}"
    assert number.matches_qr(vector["qr_payload"].upper())
    other = e2ee.safety_number(vector["user_a"], a, vector["user_b"], bytes(32))
    assert other != number and not other.matches_qr(vector["qr_payload"])


def test_recovery_key_vector() -> None:
    vector = VECTORS["recovery_key"]
    raw = h(vector["raw_hex"])
    assert e2ee.format_recovery_key(raw) == vector["formatted"]
    groups = vector["formatted"].split("-")
    assert len(groups) == 13 and all(len(g) == 4 for g in groups)
    assert set(vector["formatted"].replace("-", "")) <= set(vector["alphabet"])
    for text in vector["accepted_inputs"]:
        assert e2ee.parse_recovery_key(text) == raw, text
        assert e2ee.backup_secret(text) == raw
    for text in vector["not_recovery_keys"]:
        assert e2ee.parse_recovery_key(text) is None, text
        assert e2ee.backup_secret(text) == unicodedata.normalize("NFC", text).encode()


def test_new_recovery_keys_round_trip() -> None:
    seen = set()
    for _ in range(50):
        key = e2ee.new_recovery_key()
        raw = e2ee.parse_recovery_key(key)
        assert raw is not None and e2ee.format_recovery_key(raw) == key
        seen.add(key)
    assert len(seen) == 50


# --- the key backup ----------------------------------------------------------------------------


def test_backup_vector_reproduced_and_opened() -> None:
    """The real thing: 600,000 iterations (derived once here, once by decrypt_backup)."""
    secret = unicodedata.normalize("NFC", BACKUP["passphrase"]).encode()
    assert secret != BACKUP["passphrase"].encode()  # the vector's passphrase is not NFC
    assert secret.hex() == BACKUP["secret_hex"] == e2ee.backup_secret(BACKUP["passphrase"]).hex()
    ring = vector_keyring("alice")
    assert ring.to_json() == BACKUP["keyring"]
    plaintext = json.dumps(BACKUP["keyring"], separators=(",", ":")).encode()
    assert plaintext.hex() == BACKUP["keyring_plaintext_hex"] == ring.export().hex()
    salt, nonce = h(BACKUP["salt_hex"]), h(BACKUP["nonce_hex"])
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, BACKUP["iterations"]).derive(secret)
    assert BACKUP["iterations"] == 600_000 and key.hex() == BACKUP["derived_key_hex"]
    aad = lp("echochat/v1/backup", BACKUP["username"])
    assert aad.hex() == BACKUP["aad_hex"]
    ct = AESGCM(key).encrypt(nonce, plaintext, aad)
    assert ct.hex() == BACKUP["ct_hex"]
    blob = {
        "v": 1,
        "kdf": "pbkdf2-sha256",
        "iterations": 600_000,
        "salt": b64e(salt),
        "nonce": b64e(nonce),
        "ct": b64e(ct),
    }
    assert json.dumps(blob, separators=(",", ":")) == BACKUP["blob"]
    restored = decrypt_backup(BACKUP["blob"], BACKUP["passphrase"], BACKUP["username"])
    assert restored.to_json() == BACKUP["keyring"]
    assert restored.identity_key == ring.identity_key


@pytest.mark.parametrize("case", BACKUP["refusals"], ids=lambda c: c["name"])
def test_backup_refusal(case: dict[str, Any]) -> None:
    with refused(case["error"]):
        decrypt_backup(case["blob"], case["secret"], case["username"])


def test_low_iteration_blob_is_refused_only_for_its_iterations() -> None:
    """The downgrade blob is otherwise valid: bypassing the check (the private path, as an
    attacker's client would), it decrypts. The SDK refuses it before deriving a key."""
    case = next(c for c in BACKUP["refusals"] if c["name"] == "low_iterations")
    data = json.loads(case["blob"])
    assert data["iterations"] == 1000
    key = _derive(e2ee.backup_secret(case["secret"]), b64d(data["salt"]), 1000)
    plaintext = AESGCM(key).decrypt(b64d(data["nonce"]), b64d(data["ct"]), e2ee.backup_aad("alice"))
    assert json.loads(plaintext) == BACKUP["keyring"]


def test_backup_with_recovery_key_round_trip() -> None:
    ring = Keyring.generate()
    ring.add_device("device-one-1")
    recovery = e2ee.new_recovery_key()
    blob = e2ee.encrypt_backup(ring, recovery, "alice")
    assert json.loads(blob)["iterations"] == 600_000
    typed = recovery.lower().replace("-", " ").replace("0", "o")
    assert decrypt_backup(blob, typed, "alice").to_json() == ring.to_json()


def test_backup_refuses_weak_settings_when_encrypting() -> None:
    ring = Keyring.generate()
    with refused("weak_kdf"):
        e2ee.encrypt_backup(ring, "a fine passphrase", "alice", iterations=599_999)
    with refused("weak_passphrase"):
        e2ee.encrypt_backup(ring, "short", "alice")
    with refused("malformed"):
        decrypt_backup("not json", "whatever", "alice")
    with refused("malformed"):
        decrypt_backup(json.dumps({**json.loads(BACKUP["blob"]), "salt": "AA"}), "x", "alice")


# --- fresh round trips and the SDK's checks ----------------------------------------------------


def cast(
    peer_devices: int, own_devices: int
) -> tuple[Keyring, Keyring, KeyDirectory, KeyDirectory]:
    alice, bob = Keyring.generate(), Keyring.generate()
    for i in range(own_devices):
        alice.add_device(f"alice-device-{i:02d}")
    for i in range(peer_devices):
        bob.add_device(f"bob-device-{i:02d}")
    return alice, bob, alice.directory("alice"), bob.directory("bob")


def test_dm_round_trip_and_routing() -> None:
    alice, bob, own, peer = cast(2, 2)
    sender = alice.device("alice-device-00")
    envelope = seal_dm(
        "hi", sender="alice", sender_device_keys=sender, peer=peer, own=own, client_id="m-1"
    )
    assert [(k["user"], k["device"]) for k in envelope["keys"]] == [
        ("alice", "alice-device-00"),  # the sending device itself
        ("alice", "alice-device-01"),
        ("bob", "bob-device-00"),
        ("bob", "bob-device-01"),
    ]
    for user, ring in (("bob", bob), ("alice", alice)):
        for device_id in ring.devices:
            opened = open_envelope(
                envelope,
                expected_conv="dm:alice:bob",
                me_user=user,
                my_device_keys=ring.device(device_id),
                sender_keys=own,
            )
            assert opened.payload == {"type": "text", "text": "hi"}
    again = seal_dm(
        "hi", sender="alice", sender_device_keys=sender, peer=peer, own=own, client_id="m-1"
    )
    assert again["ct"] != envelope["ct"] and again["keys"] != envelope["keys"]


def test_sent_message_readable_from_the_restored_keyring() -> None:
    """alice's only device sends; its local copy is lost. The keyring restored from the
    backup (its JSON, as decrypt_backup returns it) reads the sent message through the
    sending device's own wrap."""
    alice, _bob, own, peer = cast(1, 1)
    laptop = alice.device("alice-device-00")
    envelope = seal_dm(
        "sent from the laptop",
        sender="alice",
        sender_device_keys=laptop,
        peer=peer,
        own=own,
        client_id="m-1",
    )
    assert [(k["user"], k["device"]) for k in envelope["keys"]] == [
        ("alice", "alice-device-00"),
        ("bob", "bob-device-00"),
    ]
    restored = Keyring.from_json(alice.export())
    restored.add_device("alice-browser-2")  # the new browser's own keys
    opened = open_envelope(
        envelope,
        expected_conv="dm:alice:bob",
        me_user="alice",
        my_device_keys=restored.device("alice-device-00"),
        sender_keys=own,
    )
    assert opened.payload == {"type": "text", "text": "sent from the laptop"}
    with refused("not_a_recipient"):  # sent before it existed: no wrap for the new browser
        open_envelope(
            envelope,
            expected_conv="dm:alice:bob",
            me_user="alice",
            my_device_keys=restored.device("alice-browser-2"),
            sender_keys=own,
        )


def test_seal_dm_needs_the_sending_device_in_the_own_directory() -> None:
    """Without it there is no self-wrap, and receivers would refuse the envelope."""
    alice, _bob, own, peer = cast(1, 1)
    unpublished = alice.add_device("alice-device-99")  # in the keyring, not in `own`
    with refused("unknown_sender_device"):
        seal_dm(
            "hi", sender="alice", sender_device_keys=unpublished, peer=peer, own=own, client_id="m"
        )
    with refused("unknown_sender_device"):
        e2ee.recipients_for("alice", unpublished.device_id, peer, own)
    # only the sender's own directory is checked: a peer's alone is fine
    assert len(e2ee.recipients_for("alice", unpublished.device_id, peer)) == 1
    # the directory lists the sending device's id with other keys than the ones held
    impostor = DeviceKeys.generate("alice-device-00")
    with refused("device_conflict"):
        seal_dm(
            "hi", sender="alice", sender_device_keys=impostor, peer=peer, own=own, client_id="m"
        )


def test_seal_refuses_bad_input() -> None:
    alice, _bob, own, peer = cast(1, 1)
    me = alice.device("alice-device-00")
    recipients = e2ee.recipients_for("alice", me.device_id, peer, own)

    def attempt(code: str, plaintext: bytes = b"{}", **changes: Any) -> None:
        args: dict[str, Any] = {
            "conv": "dm:alice:bob",
            "sender": "alice",
            "sender_device_keys": me,
            "client_id": "m-1",
            "recipients": recipients,
        }
        args.update(changes)
        with refused(code):
            seal(plaintext, **args)

    attempt("too_large", b"x" * (16 * 1024 + 1))
    seal(
        b"x" * (16 * 1024),
        conv="dm:alice:bob",
        sender="alice",
        sender_device_keys=me,
        client_id="m-1",
        recipients=recipients,
    )  # exactly the limit is fine
    attempt("no_recipients", recipients=[])
    many = [("bob", f"bob-device-{i:02d}", bytes(range(32))) for i in range(41)]
    attempt("too_many_recipients", recipients=many)
    assert ("alice", me.device_id, me.x25519_public) in recipients  # the self-wrap
    attempt("bad_recipient", recipients=[*recipients, ("alice", me.device_id, me.x25519_public)])
    attempt("bad_recipient", recipients=[*recipients, recipients[1]])
    attempt("bad_recipient", recipients=[("carol", "carol-device", bytes(range(32)))])
    attempt("bad_recipient", recipients=[("bob", "bob-device-00", bytes(32))])  # low order
    attempt("bad_recipient", recipients=[("bob", "bob-device-00", b"short")])
    attempt("wrong_sender", conv="dm:bob:carol")
    attempt("malformed", conv="dm:bob:alice")  # not sorted
    attempt("malformed", conv="room:1")
    attempt("malformed", client_id="")
    attempt("malformed", client_id="x" * 65)
    attempt("malformed", sender="Alice")


def test_envelope_limits_are_enforced_on_open() -> None:
    alice, bob, own, peer = cast(1, 1)
    envelope = seal_dm(
        "x",
        sender="alice",
        sender_device_keys=alice.device("alice-device-00"),
        peer=peer,
        own=own,
        client_id="m-1",
    )
    me = bob.device("bob-device-00")

    def attempt(changed: dict[str, Any]) -> None:
        with refused("malformed"):
            open_envelope(
                changed,
                expected_conv="dm:alice:bob",
                me_user="bob",
                my_device_keys=me,
                sender_keys=own,
            )

    attempt({**envelope, "keys": []})
    attempt({**envelope, "keys": envelope["keys"] * 41})  # the domain's too_many_wraps
    attempt({**envelope, "ct": "A" * e2ee.MAX_ENVELOPE_BYTES})  # ... and envelope_too_large
    attempt({**envelope, "client_id": "\udc00"})  # not well-formed Unicode
    attempt({**envelope, "ct": b64e(bytes(16 * 1024 + 17))})
    attempt({**envelope, "nonce": b64e(bytes(11))})
    attempt({**envelope, "v": True} | {"v": 1, "client_id": 5})
    with refused("unsupported_version"):
        open_envelope(
            {**envelope, "v": True},
            expected_conv="dm:alice:bob",
            me_user="bob",
            my_device_keys=me,
            sender_keys=own,
        )
    # the JSON number 1.0 is the number 1 (as in JavaScript)
    opened = open_envelope(
        {**envelope, "v": 1.0},
        expected_conv="dm:alice:bob",
        me_user="bob",
        my_device_keys=me,
        sender_keys=own,
    )
    assert opened.payload["text"] == "x"


def test_largest_envelope_fits_a_frame() -> None:
    """16 KiB of plaintext for 40 devices, with the longest usernames, device ids and
    client_id, stays under the envelope limit, itself under the 64 KiB frame."""
    sender, peer = "a" * 32, "b" * 32
    bob = Keyring.generate()
    me = Keyring.generate().add_device("a" * 64)
    recipients = []
    for i in range(40):
        device = bob.add_device(f"{i:02d}" + "b" * 62)
        recipients.append((peer, device.device_id, device.x25519_public))
    envelope = seal(
        b"x" * 16 * 1024,
        conv=e2ee.dm_conversation(sender, peer),
        sender=sender,
        sender_device_keys=me,
        client_id="\u00e9" * 64,
        recipients=recipients,
    )
    size = len(json.dumps(envelope, separators=(",", ":")).encode())
    assert 30_000 < size <= 34_000 < e2ee.MAX_ENVELOPE_BYTES < 64 * 1024


def test_verify_directory_flags_bad_devices() -> None:
    alice = Keyring.generate()
    good = alice.add_device("good-device")
    alice.add_device("other-device")
    devices = [d.to_json() for d in alice.directory("alice").devices]
    mallory = Keyring.generate()
    mallory.add_device("evil-device")
    devices.append(mallory.certify("alice", "evil-device").to_json())
    devices.append({**devices[0], "x25519": "not base64!"} | {"device_id": "broken-device"})
    devices.append(devices[1])  # listed twice
    # a certificate for another user does not certify the device for alice
    devices.append({**alice.certify("alice", good.device_id).to_json(), "device_id": "renamed-1"})
    verified = verify_directory("alice", alice.identity_key, devices)
    assert [d.device_id for d in verified.devices] == ["good-device"]
    assert sorted(verified.rejected) == sorted(
        [
            e2ee.RejectedDevice("evil-device", "bad_device_signature"),
            e2ee.RejectedDevice("broken-device", "malformed"),
            e2ee.RejectedDevice("other-device", "duplicate_device"),
            e2ee.RejectedDevice("renamed-1", "bad_device_signature"),
        ]
    )
    with refused("malformed"):
        verify_directory("alice", "short", [])


def test_keyring_export_import_merge() -> None:
    ring = Keyring.generate()
    first = ring.add_device("first-device")
    restored = Keyring.from_json(ring.export())
    assert restored.to_json() == ring.to_json()
    assert restored.device("first-device").same_keys(first)
    second = restored.add_device("second-device")
    assert ring.merge(restored) == ["second-device"]
    assert ring.device("second-device").same_keys(second)
    assert ring.merge(restored) == []
    with refused("identity_mismatch"):
        ring.merge(Keyring.generate())
    clash = Keyring.from_private_bytes(ring.identity_private_bytes())
    clash.add_device("first-device")  # same id, other keys
    with refused("device_conflict"):
        ring.merge(clash)
    with refused("unknown_device"):
        ring.device("nope-nope")
    text = repr(ring) + repr(first)
    assert b64e(ring.identity_private_bytes()) not in text
    assert b64e(first.x25519_private_bytes()) not in text
    with refused("malformed"):
        Keyring.from_json({"v": 1, "identity": "x", "devices": {}})
    with refused("unsupported_version"):
        Keyring.from_json({**ring.to_json(), "v": 2})


def test_dm_conversation_ids() -> None:
    assert e2ee.dm_conversation("Bob", "alice") == "dm:alice:bob"
    assert e2ee.dm_conversation("alice", "bob") == e2ee.dm_conversation("bob", "alice")
    with refused("malformed"):
        e2ee.dm_conversation("alice", "b:c")
    with refused("malformed"):  # the Kelvin sign lower-cases to an ASCII "k"
        e2ee.dm_conversation("alice", "\u212aate")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(max_size=300),
    peer_devices=st.integers(min_value=1, max_value=10),
    own_devices=st.integers(min_value=1, max_value=10),
)
def test_round_trip_property(text: str, peer_devices: int, own_devices: int) -> None:
    """Any Unicode text, 1-10 devices on each side: every recipient device reads it."""
    alice, bob, own, peer = cast(peer_devices, own_devices)
    sender = alice.device("alice-device-00")
    envelope = seal_dm(
        text, sender="alice", sender_device_keys=sender, peer=peer, own=own, client_id="prop"
    )
    assert len(envelope["keys"]) == peer_devices + own_devices  # the sending device included
    readers = [("bob", bob.device(d)) for d in bob.devices]
    readers += [("alice", alice.device(d)) for d in alice.devices]
    for user, device in readers:
        opened = open_envelope(
            envelope,
            expected_conv="dm:alice:bob",
            me_user=user,
            my_device_keys=device,
            sender_keys=own,
        )
        assert opened.payload == {"type": "text", "text": text}


# --- RFC 9180 against cryptography's HPKE ------------------------------------------------------


@pytest.fixture
def rfc9180() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RFC9180_A11.read_text())
    return data


def test_rfc9180_a11_key_schedule_through_the_public_api(rfc9180: dict[str, Any]) -> None:
    """The public single-shot API has no AAD, and A.1.1's encryptions all use one. So: take
    the vector's key and base nonce, encrypt the plaintext with an empty AAD, and let
    ``Suite.decrypt`` open enc || that with the vector's recipient key and info. It only
    succeeds if cryptography's DHKEM and key schedule derive exactly the RFC's key and base
    nonce (AES-128-GCM here; our suite differs only in the AEAD's key length)."""
    setup = rfc9180["setup"]
    first = rfc9180["encryptions"][0]
    private = X25519PrivateKey.from_private_bytes(h(setup["skRm"]))
    assert private.public_key().public_bytes_raw().hex() == setup["pkRm"]
    assert first["nonce"] == setup["base_nonce"] and first["sequence_number"] == "0"
    ct = AESGCM(h(setup["key"])).encrypt(h(setup["base_nonce"]), h(first["pt"]), b"")
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    assert suite.decrypt(h(setup["enc"]) + ct, private, h(setup["info"])) == h(first["pt"])
    # and the published ciphertext itself, with its AAD, through AESGCM and the RFC's key
    assert AESGCM(h(setup["key"])).decrypt(h(first["nonce"]), h(first["ct"]), h(first["aad"])) == h(
        first["pt"]
    )


def test_rfc9180_a11_published_ciphertext(rfc9180: dict[str, Any]) -> None:
    """cryptography keeps an AAD-taking variant private (``_decrypt_with_aad``); where it
    exists, it opens the RFC's first published ciphertext directly."""
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    decrypt_with_aad = getattr(rust_openssl.hpke, "_decrypt_with_aad", None)
    if decrypt_with_aad is None:
        # Justified skip: a private binding a future cryptography may drop. The key schedule
        # stays covered by test_rfc9180_a11_key_schedule_through_the_public_api above
        # and all six ciphertexts (with AAD) by tests/e2e/test_e2ee_browser.py.
        pytest.skip("this cryptography has no _decrypt_with_aad")
    setup = rfc9180["setup"]
    first = rfc9180["encryptions"][0]
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    private = X25519PrivateKey.from_private_bytes(h(setup["skRm"]))
    opened = decrypt_with_aad(
        suite, h(setup["enc"]) + h(first["ct"]), private, h(setup["info"]), h(first["aad"])
    )
    assert opened == h(first["pt"]) == b"Beauty is truth, truth beauty"


def test_our_suite_is_single_shot_with_empty_aad() -> None:
    """What the browser must mirror: enc (32) || AES-256-GCM ciphertext of K (48), opened
    with the same info; another info fails."""
    private = X25519PrivateKey.generate()
    key = bytes(range(32))
    wrap = SUITE.encrypt(key, private.public_key(), b"info")
    assert len(wrap) == 80 and hpke.KEM.X25519.enc_length() == 32
    assert SUITE.decrypt(wrap, private, b"info") == key
    with pytest.raises(InvalidTag):
        SUITE.decrypt(wrap, private, b"other info")
