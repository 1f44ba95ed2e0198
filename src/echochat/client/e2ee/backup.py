"""The key backup (docs/e2ee.md, section 8): the keyring encrypted under a key derived with
PBKDF2-SHA256 from a passphrase or a generated recovery key, and the recovery keys
themselves (Crockford base32). A blob asking for fewer than 600,000 iterations is refused
before any key is derived: a server could otherwise make guessing cheap."""

from __future__ import annotations

import json
import re
import secrets
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from echochat.client.e2ee.encoding import check_username, is_json_one, json_int, raw_field
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.keys import Keyring
from echochat.client.e2ee.suite import (
    BACKUP_KDF,
    KEY_SIZE,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    MIN_PASSPHRASE,
    NONCE_SIZE,
    SALT_SIZE,
    TAG_SIZE,
)
from echochat.domain.e2ee import VERSION, b64e, lp

__all__ = [
    "CROCKFORD",
    "RECOVERY_KEY_SYMBOLS",
    "backup_aad",
    "backup_secret",
    "decrypt_backup",
    "encrypt_backup",
    "format_recovery_key",
    "new_recovery_key",
    "parse_recovery_key",
]

# Crockford's base32: no I, L, O, U. A recovery key is 32 bytes = 52 symbols, 13 groups of 4.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_SUBST = str.maketrans({"O": "0", "I": "1", "L": "1"})
RECOVERY_KEY_SYMBOLS = 52
_BACKUP_FIELDS = frozenset({"v", "kdf", "iterations", "salt", "nonce", "ct"})


def format_recovery_key(raw: bytes) -> str:
    """32 bytes as 52 Crockford base32 symbols (big-endian bits, 4 zero bits of padding at
    the end) in 13 groups of 4 joined by '-'."""
    if len(raw) != KEY_SIZE:
        raise E2EEError("malformed", "a recovery key is 32 bytes")
    number = int.from_bytes(raw, "big") << 4  # 256 bits + 4 padding bits = 52 * 5
    symbols = "".join(
        CROCKFORD[(number >> (5 * (RECOVERY_KEY_SYMBOLS - 1 - i))) & 31]
        for i in range(RECOVERY_KEY_SYMBOLS)
    )
    return "-".join(symbols[i : i + 4] for i in range(0, RECOVERY_KEY_SYMBOLS, 4))


def parse_recovery_key(text: str) -> bytes | None:
    """The 32 bytes of a recovery key as typed (upper-cased; spaces and '-' dropped;
    O read as 0, I and L as 1), or None if ``text`` is not one."""
    symbols = re.sub(r"[\s-]", "", text).upper().translate(_CROCKFORD_SUBST)
    if len(symbols) != RECOVERY_KEY_SYMBOLS or any(c not in CROCKFORD for c in symbols):
        return None
    number = 0
    for c in symbols:
        number = number << 5 | CROCKFORD.index(c)
    if number & 0xF:
        return None  # the padding bits must be zero
    return (number >> 4).to_bytes(KEY_SIZE, "big")


def new_recovery_key() -> str:
    """A fresh random recovery key, formatted to be shown once and written down."""
    return format_recovery_key(secrets.token_bytes(KEY_SIZE))


def backup_secret(secret: str | bytes) -> bytes:
    """The PBKDF2 password for a backup secret: a recovery key's 32 bytes if ``secret``
    parses as one (:func:`parse_recovery_key`), else the passphrase in Unicode NFC as
    UTF-8. Bytes are taken as they are."""
    if isinstance(secret, bytes):
        return secret
    recovery = parse_recovery_key(secret)
    if recovery is not None:
        return recovery
    return unicodedata.normalize("NFC", secret).encode()


def backup_aad(username: str) -> bytes:
    """The associated data of a backup: binds it to its owner."""
    return lp("echochat/v1/backup", username)


def _derive(secret: bytes, salt: bytes, iterations: int) -> bytes:
    return PBKDF2HMAC(hashes.SHA256(), KEY_SIZE, salt, iterations).derive(secret)


def _seal_backup(
    plaintext: bytes, secret: bytes, username: str, iterations: int, salt: bytes, nonce: bytes
) -> str:
    """The backup blob with everything given (test vectors; no minimum enforced here)."""
    ct = AESGCM(_derive(secret, salt, iterations)).encrypt(nonce, plaintext, backup_aad(username))
    blob = {
        "v": VERSION,
        "kdf": BACKUP_KDF,
        "iterations": iterations,
        "salt": b64e(salt),
        "nonce": b64e(nonce),
        "ct": b64e(ct),
    }
    return json.dumps(blob, separators=(",", ":"))


def encrypt_backup(
    keyring: Keyring, secret: str | bytes, username: str, *, iterations: int = MIN_ITERATIONS
) -> str:
    """The key backup blob (UTF-8 JSON text) of ``keyring``, encrypted for ``username`` under
    a passphrase or recovery key (:func:`backup_secret`). Takes about a second (PBKDF2)."""
    check_username(username)
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise E2EEError("weak_kdf", f"iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    is_passphrase = isinstance(secret, str) and parse_recovery_key(secret) is None
    if is_passphrase and len(unicodedata.normalize("NFC", str(secret))) < MIN_PASSPHRASE:
        raise E2EEError(
            "weak_passphrase", f"the passphrase needs at least {MIN_PASSPHRASE} characters"
        )
    return _seal_backup(
        keyring.export(),
        backup_secret(secret),
        username,
        iterations,
        secrets.token_bytes(SALT_SIZE),
        secrets.token_bytes(NONCE_SIZE),
    )


def _open_backup_json(blob: str | bytes) -> tuple[int, bytes, bytes, bytes]:
    """Parse and check a blob before any key derivation: (iterations, salt, nonce, ct)."""
    try:
        data = json.loads(blob)
    except ValueError as exc:
        raise E2EEError("malformed", "the key backup is not JSON") from exc
    if not isinstance(data, dict):
        raise E2EEError("malformed", "the key backup is a JSON object")
    if not is_json_one(data.get("v")):
        raise E2EEError("unsupported_version", f"unsupported key backup version {data.get('v')!r}")
    if set(data) != _BACKUP_FIELDS:
        raise E2EEError("malformed", f"a key backup has exactly {sorted(_BACKUP_FIELDS)}")
    if data["kdf"] != BACKUP_KDF:
        raise E2EEError("unsupported_kdf", f"unsupported key derivation {data['kdf']!r}")
    iterations = json_int(data["iterations"])
    if iterations is None:
        raise E2EEError("malformed", "iterations must be an integer")
    if iterations < MIN_ITERATIONS:
        raise E2EEError(
            "weak_kdf",
            f"the backup asks for {iterations} PBKDF2 iterations; at least {MIN_ITERATIONS} "
            "are required (refused: a downgrade would make guessing the passphrase cheap)",
        )
    if iterations > MAX_ITERATIONS:
        raise E2EEError("unsupported_kdf", f"more than {MAX_ITERATIONS} iterations")
    salt = raw_field(data["salt"], SALT_SIZE, "salt")
    nonce = raw_field(data["nonce"], NONCE_SIZE, "nonce")
    ct = raw_field(data["ct"], None, "ct")
    if len(ct) < TAG_SIZE:
        raise E2EEError("malformed", "ct is too short")
    return iterations, salt, nonce, ct


def decrypt_backup(blob: str | bytes, secret: str | bytes, username: str) -> Keyring:
    """The keyring inside a backup blob. ``decrypt_failed`` means a wrong passphrase or
    recovery key (or a blob of another user, or a corrupted one); ``weak_kdf`` a blob
    asking for fewer than 600,000 iterations, which is refused before trying."""
    check_username(username)
    iterations, salt, nonce, ct = _open_backup_json(blob)
    key = _derive(backup_secret(secret), salt, iterations)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ct, backup_aad(username))
    except InvalidTag as exc:
        raise E2EEError(
            "decrypt_failed", "wrong passphrase or recovery key (the backup does not decrypt)"
        ) from exc
    return Keyring.from_json(plaintext)
