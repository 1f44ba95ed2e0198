"""Suite v1's fixed choices: the HPKE suite, the sizes and limits (docs/e2ee.md, "Limits";
those a server checks too come from :mod:`echochat.domain.e2ee`), and the byte strings
that are bound and signed: the body's AAD, each wrap's HPKE ``info``, the signature input.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import hpke

from echochat.domain.e2ee import (
    KEY_SIZE,
    MAX_CLIENT_ID,
    MAX_ENVELOPE_BYTES,
    MAX_PLAINTEXT,
    MAX_RECIPIENTS,
    NONCE_SIZE,
    SIGNATURE_SIZE,
    TAG_SIZE,
    VERSION,
    WRAP_SIZE,
    lp,
)

__all__ = [
    "BACKUP_KDF",
    "HPKE_SUITE",
    "KEY_SIZE",
    "MAX_CLIENT_ID",
    "MAX_ENVELOPE_BYTES",
    "MAX_ITERATIONS",
    "MAX_PLAINTEXT",
    "MAX_RECIPIENTS",
    "MIN_ITERATIONS",
    "MIN_PASSPHRASE",
    "NONCE_SIZE",
    "SALT_SIZE",
    "SIGNATURE_SIZE",
    "SUITE",
    "TAG_SIZE",
    "WRAP_SIZE",
    "body_aad",
    "signature_input",
    "wrap_info",
]

SUITE = "echochat/v1"  # HPKE: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode
HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
MIN_ITERATIONS = 600_000
MAX_ITERATIONS = 10_000_000  # opening a blob asking for more is refused (denial of service)
BACKUP_KDF = "pbkdf2-sha256"
MIN_PASSPHRASE = 8
SALT_SIZE = 16

_V = str(VERSION)


def body_aad(conv: str, sender: str, sender_device: str, client_id: str) -> bytes:
    """The associated data of the body's AES-256-GCM."""
    return lp("echochat/v1/body", _V, conv, sender, sender_device, client_id)


def wrap_info(
    conv: str,
    sender: str,
    sender_device: str,
    recipient_user: str,
    recipient_device: str,
    client_id: str,
) -> bytes:
    """HPKE ``info`` of the wrap for one recipient device (HPKE's own AAD is empty)."""
    return lp(
        "echochat/v1/wrap",
        _V,
        conv,
        sender,
        sender_device,
        recipient_user,
        recipient_device,
        client_id,
    )


def signature_input(
    conv: str,
    sender: str,
    sender_device: str,
    client_id: str,
    nonce: bytes,
    ct: bytes,
    keys: Sequence[tuple[str, str, bytes]],
) -> bytes:
    """What the sender device's Ed25519 key signs; ``keys`` are (user, device, wrap) in the
    envelope's (sorted) order."""
    fields: list[str | bytes] = [
        "echochat/v1/sig",
        _V,
        conv,
        sender,
        sender_device,
        client_id,
        nonce,
        ct,
    ]
    for user, device, wrap in keys:
        fields += [user, device, wrap]
    return lp(*fields)
