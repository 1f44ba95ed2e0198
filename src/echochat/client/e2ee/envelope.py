"""The envelope (docs/e2ee.md, section 4): :func:`seal` encrypts a message once under a
fresh content key, wraps that key with HPKE for each recipient device and signs the whole
with the sending device's Ed25519 key; :func:`open_envelope` checks, in the documented
order, everything a receiver must, and decrypts. The shape check (steps 1-3) is the
domain's :func:`~echochat.domain.e2ee.parse_envelope`, the one a server runs too."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from echochat.client.e2ee.directory import KeyDirectory, recipients_for
from echochat.client.e2ee.encoding import (
    check_client_id,
    check_conv,
    check_device_id,
    check_username,
    dm_conversation,
    dm_members,
    encode_payload,
)
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.keys import DeviceKeys
from echochat.client.e2ee.suite import (
    HPKE_SUITE,
    KEY_SIZE,
    MAX_ENVELOPE_BYTES,
    MAX_PLAINTEXT,
    MAX_RECIPIENTS,
    NONCE_SIZE,
    body_aad,
    signature_input,
    wrap_info,
)
from echochat.domain.e2ee import VERSION, EnvelopeParts, b64e, envelope_size, parse_envelope
from echochat.domain.errors import InvalidInput

__all__ = ["Opened", "open_envelope", "seal", "seal_dm"]


def seal(
    plaintext: bytes,
    *,
    conv: str,
    sender: str,
    sender_device_keys: DeviceKeys,
    client_id: str,
    recipients: Sequence[tuple[str, str, bytes]],
) -> dict[str, Any]:
    """Encrypt ``plaintext`` once under a fresh content key, wrap that key for each recipient
    device (user, device id, X25519 public key) with HPKE, and sign the envelope with the
    sending device's key. Recipients should be every device of the peer and every device of
    the sender, the sending one included (:func:`recipients_for`). Returns the envelope (a
    JSON object)."""
    return _seal(
        plaintext,
        conv=conv,
        sender=sender,
        sender_device_keys=sender_device_keys,
        client_id=client_id,
        recipients=recipients,
        content_key=AESGCM.generate_key(bit_length=256),
        nonce=secrets.token_bytes(NONCE_SIZE),
    )


def seal_dm(
    text: str,
    *,
    sender: str,
    sender_device_keys: DeviceKeys,
    peer: KeyDirectory,
    own: KeyDirectory,
    client_id: str,
) -> dict[str, Any]:
    """Seal the DM text ``{"type":"text","text":text}`` from ``sender`` to ``peer.username``
    for every device of the peer and every device of the sender, this one included (``own``
    is the sender's verified directory; it must list the sending device with its keys)."""
    if own.username != sender:
        raise E2EEError("bad_recipient", "own must be the sender's directory")
    recipients = recipients_for(sender, sender_device_keys.device_id, peer, own)
    listed = own.device(sender_device_keys.device_id)
    held = (sender_device_keys.x25519_public, sender_device_keys.ed25519_public)
    if listed is not None and (listed.x25519, listed.ed25519) != held:
        raise E2EEError(
            "device_conflict",
            f"{sender}'s directory lists {sender_device_keys.device_id!r} with other keys "
            "than the ones sending",
        )
    return seal(
        encode_payload({"type": "text", "text": text}),
        conv=dm_conversation(sender, peer.username),
        sender=sender,
        sender_device_keys=sender_device_keys,
        client_id=client_id,
        recipients=recipients,
    )


def _seal(
    plaintext: bytes,
    *,
    conv: str,
    sender: str,
    sender_device_keys: DeviceKeys,
    client_id: str,
    recipients: Sequence[tuple[str, str, bytes]],
    content_key: bytes,
    nonce: bytes,
    wraps: Mapping[tuple[str, str], bytes] | None = None,
) -> dict[str, Any]:
    """:func:`seal` with the content key and nonce given (test vectors only: never reuse a
    key). ``wraps`` may supply ready-made wraps by (user, device)."""
    check_conv(conv)
    check_username(sender, "sender")
    check_client_id(client_id)
    sender_device = sender_device_keys.device_id
    members = dm_members(conv)
    if members is not None and sender not in members:
        raise E2EEError("wrong_sender", f"{sender} is not a member of {conv}")
    if len(plaintext) > MAX_PLAINTEXT:
        raise E2EEError("too_large", f"the plaintext is larger than {MAX_PLAINTEXT} bytes")
    if len(content_key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise E2EEError("malformed", "the content key is 32 bytes and the nonce 12")
    if not recipients:
        raise E2EEError("no_recipients", "there is no device to encrypt for")
    if len(recipients) > MAX_RECIPIENTS:
        raise E2EEError("too_many_recipients", f"at most {MAX_RECIPIENTS} devices per message")
    ordered = sorted(recipients, key=lambda r: (r[0], r[1]))
    for index, (user, device, public) in enumerate(ordered):
        check_username(user, "recipient")
        check_device_id(device, "recipient device")
        if members is not None and user not in members:
            raise E2EEError("bad_recipient", f"{user} is not a member of {conv}")
        if index and (user, device) == (ordered[index - 1][0], ordered[index - 1][1]):
            raise E2EEError("bad_recipient", f"device {user}/{device} is listed twice")
        if len(public) != KEY_SIZE:
            raise E2EEError("bad_recipient", f"the key of {user}/{device} is not 32 bytes")

    ct = AESGCM(content_key).encrypt(
        nonce, plaintext, body_aad(conv, sender, sender_device, client_id)
    )
    keys: list[tuple[str, str, bytes]] = []
    for user, device, public in ordered:
        wrap = (wraps or {}).get((user, device))
        if wrap is None:
            info = wrap_info(conv, sender, sender_device, user, device, client_id)
            try:
                wrap = HPKE_SUITE.encrypt(
                    content_key, X25519PublicKey.from_public_bytes(public), info
                )
            except ValueError as exc:  # e.g. a low-order point
                raise E2EEError("bad_recipient", f"unusable key for {user}/{device}") from exc
        keys.append((user, device, wrap))
    sig = sender_device_keys._sign(
        signature_input(conv, sender, sender_device, client_id, nonce, ct, keys)
    )
    envelope: dict[str, Any] = {
        "v": VERSION,
        "conv": conv,
        "sender": sender,
        "sender_device": sender_device,
        "client_id": client_id,
        "nonce": b64e(nonce),
        "ct": b64e(ct),
        "keys": [{"user": u, "device": d, "wrap": b64e(w)} for u, d, w in keys],
        "sig": b64e(sig),
    }
    if envelope_size(envelope) > MAX_ENVELOPE_BYTES:
        raise E2EEError("too_large", f"the envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
    return envelope


# --- opening -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted message."""

    conv: str
    sender: str
    sender_device: str
    client_id: str
    payload: dict[str, Any]
    plaintext: bytes


def _parse(envelope: object) -> EnvelopeParts:
    """Steps 1-3 of opening (an object, version 1, the v1 shape), as the server checks
    them; every shape refusal but the version is ``malformed`` here."""
    try:
        return parse_envelope(envelope)
    except InvalidInput as exc:
        code = "unsupported_version" if exc.code == "unsupported_version" else "malformed"
        raise E2EEError(code, exc.message) from exc


def open_envelope(
    envelope: Mapping[str, Any],
    *,
    expected_conv: str,
    me_user: str,
    my_device_keys: DeviceKeys,
    sender_keys: KeyDirectory,
    trusted_identity: bytes | None = None,
) -> Opened:
    """Verify and decrypt an envelope received in ``expected_conv`` by ``me_user``'s device
    ``my_device_keys``. ``sender_keys`` is the directory of the envelope's sender (fetch it
    for ``envelope["sender"]``, ideally via :func:`fetch_keys` with a pinned identity);
    ``trusted_identity``, if given, must equal its identity key. The sender device's
    certificate is checked here again, whatever the directory's origin.

    Checks, in this order (docs/e2ee.md, "Opening"): version, shape, conversation, sender,
    identity, sender device, its certificate, the signature, a wrap for this device, the
    wrap, the body, the payload. Raises :class:`E2EEError` with the first failing step."""
    parsed = _parse(envelope)
    if parsed.conv != expected_conv:
        raise E2EEError(
            "wrong_conversation",
            f"this envelope belongs to {parsed.conv!r}, not {expected_conv!r} (replayed?)",
        )
    members = dm_members(parsed.conv)
    if members is not None and parsed.sender not in members:
        raise E2EEError("wrong_sender", f"{parsed.sender} is not a member of {parsed.conv}")
    if parsed.sender != sender_keys.username:
        raise E2EEError(
            "wrong_sender",
            f"sent by {parsed.sender!r}, but the keys given are for {sender_keys.username!r}",
        )
    if trusted_identity is not None and trusted_identity != sender_keys.identity_key:
        raise E2EEError(
            "identity_changed",
            f"{parsed.sender}'s identity key is not the one you trust; compare safety numbers",
        )
    device = sender_keys.device(parsed.sender_device)
    if device is None:
        raise E2EEError(
            "unknown_sender_device",
            f"{parsed.sender} has no published device {parsed.sender_device!r}",
        )
    if not device.certified_by(parsed.sender, sender_keys.identity_key):
        raise E2EEError(
            "bad_device_signature",
            f"device {parsed.sender_device!r} is not certified by {parsed.sender}'s identity key",
        )
    signed = signature_input(
        parsed.conv,
        parsed.sender,
        parsed.sender_device,
        parsed.client_id,
        parsed.nonce,
        parsed.ct,
        parsed.keys,
    )
    try:
        Ed25519PublicKey.from_public_bytes(device.ed25519).verify(parsed.sig, signed)
    except (InvalidSignature, ValueError) as exc:
        raise E2EEError("bad_signature", "the envelope's signature does not verify") from exc
    mine = my_device_keys.device_id
    wrap = next((w for u, d, w in parsed.keys if (u, d) == (me_user, mine)), None)
    if wrap is None:
        raise E2EEError("not_a_recipient", f"this message was not encrypted for {me_user}/{mine}")
    info = wrap_info(
        parsed.conv, parsed.sender, parsed.sender_device, me_user, mine, parsed.client_id
    )
    try:
        content_key = my_device_keys._unwrap(wrap, info)
    except (InvalidTag, ValueError) as exc:
        raise E2EEError("wrap_failed", "the content key could not be unwrapped") from exc
    if len(content_key) != KEY_SIZE:
        raise E2EEError("wrap_failed", "the unwrapped content key is not 32 bytes")
    aad = body_aad(parsed.conv, parsed.sender, parsed.sender_device, parsed.client_id)
    try:
        plaintext = AESGCM(content_key).decrypt(parsed.nonce, parsed.ct, aad)
    except InvalidTag as exc:
        raise E2EEError("decrypt_failed", "the message body does not decrypt") from exc
    try:
        payload = json.loads(plaintext.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise E2EEError("bad_payload", "the decrypted payload is not UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise E2EEError("bad_payload", "the decrypted payload is not a JSON object")
    return Opened(
        parsed.conv, parsed.sender, parsed.sender_device, parsed.client_id, payload, plaintext
    )
