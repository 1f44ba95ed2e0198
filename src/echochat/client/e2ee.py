"""End-to-end encryption, suite v1, for SDK users (the specification is ``docs/e2ee.md``).

Everything cryptographic is done by ``cryptography``: HPKE (RFC 9180) from
:mod:`cryptography.hazmat.primitives.hpke`, AES-256-GCM, Ed25519, X25519 and PBKDF2. This
module only fixes *what* is encrypted, bound and signed, and checks it on the way in. The
byte encodings it shares with the server and the browser (``lp``, base64url) live in
:mod:`echochat.domain.e2ee`.

Sending a direct message::

    keyring = Keyring.generate()
    me = keyring.add_device()
    await publish_device(chat, keyring, me.device_id)
    peer = await fetch_keys(chat, "bob")            # verified: bad devices are dropped
    own = await fetch_keys(chat, "alice")
    envelope = seal_dm("hello", sender="alice", sender_device_keys=me, peer=peer, own=own,
                       client_id="m-1")

Receiving one: fetch (and pin) the claimed sender's keys, then
``open_envelope(envelope, expected_conv=..., me_user=..., my_device_keys=...,
sender_keys=directory)``. Every refusal is an :class:`E2EEError` with a stable ``code``.

Private keys never leave a :class:`Keyring` except inside the encrypted key backup
(:func:`encrypt_backup`), and ``repr()`` never shows them.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from echochat.domain.e2ee import (
    DEVICE_ID_RE,
    MAX_DEVICES,
    VERSION,
    b64d,
    b64e,
    device_statement,
    lp,
)

if TYPE_CHECKING:
    from echochat.client.http import EchoChatClient

__all__ = [
    "BACKUP_KDF",
    "MAX_DEVICES",
    "MAX_ENVELOPE_BYTES",
    "MAX_PLAINTEXT",
    "MAX_RECIPIENTS",
    "MIN_ITERATIONS",
    "SUITE",
    "DeviceKeys",
    "E2EEError",
    "KeyDirectory",
    "Keyring",
    "Opened",
    "PublicDevice",
    "Recipient",
    "RejectedDevice",
    "RestoredBackup",
    "SafetyNumber",
    "backup_aad",
    "backup_secret",
    "body_aad",
    "decrypt_backup",
    "dm_conversation",
    "encode_payload",
    "encrypt_backup",
    "fetch_keys",
    "format_recovery_key",
    "load_backup",
    "new_recovery_key",
    "open_envelope",
    "parse_recovery_key",
    "publish_device",
    "recipients_for",
    "remove_device",
    "safety_number",
    "save_backup",
    "seal",
    "seal_dm",
    "signature_input",
    "verify_directory",
    "wrap_info",
]

# --- constants (docs/e2ee.md, "Limits") ---------------------------------------------------------

SUITE = "echochat/v1"  # HPKE: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode
MAX_RECIPIENTS = 40
MAX_PLAINTEXT = 16 * 1024
MAX_ENVELOPE_BYTES = 60 * 1024  # the envelope plus its frame must fit a 64 KiB WebSocket frame
MAX_CLIENT_ID = 64
MIN_ITERATIONS = 600_000
MAX_ITERATIONS = 10_000_000  # opening a blob asking for more is refused (denial of service)
BACKUP_KDF = "pbkdf2-sha256"
MIN_PASSPHRASE = 8

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SIGNATURE_SIZE = 64
WRAP_SIZE = 32 + KEY_SIZE + TAG_SIZE  # HPKE enc || AES-256-GCM(K)
SALT_SIZE = 16

_V = str(VERSION)
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
_CONV_RE = re.compile(r"dm:([a-z0-9_.-]{3,32}):([a-z0-9_.-]{3,32})|group:[A-Za-z0-9_-]{1,64}")
_ENVELOPE_FIELDS = frozenset(
    {"v", "conv", "sender", "sender_device", "client_id", "nonce", "ct", "keys", "sig"}
)
_BACKUP_FIELDS = frozenset({"v", "kdf", "iterations", "salt", "nonce", "ct"})

# Crockford's base32: no I, L, O, U. A recovery key is 32 bytes = 52 symbols, 13 groups of 4.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_SUBST = str.maketrans({"O": "0", "I": "1", "L": "1"})
RECOVERY_KEY_SYMBOLS = 52


class E2EEError(Exception):
    """Something could not be sealed, opened or restored. ``code`` is stable and meant for
    programs (``unsupported_version``, ``wrong_conversation``, ``wrong_sender``,
    ``identity_changed``, ``unknown_sender_device``, ``bad_device_signature``,
    ``bad_signature``, ``not_a_recipient``, ``wrap_failed``, ``decrypt_failed``,
    ``bad_payload``, ``malformed``, ``weak_kdf``, ``unsupported_kdf``, ...); ``message``
    is meant for people and never contains key material."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"E2EEError(code={self.code!r}, message={self.message!r})"


# --- small helpers -----------------------------------------------------------------------------


def _raw(value: Any, size: int | None, what: str, code: str = "malformed") -> bytes:
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


def _key_bytes(value: str | bytes, what: str) -> bytes:
    raw = value if isinstance(value, bytes) else _raw(value, KEY_SIZE, what)
    if len(raw) != KEY_SIZE:
        raise E2EEError("malformed", f"{what} must be {KEY_SIZE} bytes")
    return raw


def _is_one(value: Any) -> bool:
    """The JSON number 1 (JavaScript's ``value === 1``: ``true`` is not 1, ``1.0`` is)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 1


def _json_int(value: Any) -> int | None:
    """A JSON integer (JavaScript's ``Number.isInteger``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _check_username(name: Any, what: str = "username") -> str:
    if not isinstance(name, str) or not _USERNAME_RE.fullmatch(name):
        raise E2EEError("malformed", f"{what} must be a canonical (lower-case) username")
    return name


def _canonical_username(name: str) -> str:
    """A username as typed -> canonical (the server's rule: ASCII only, then lower-cased;
    "\u212a".lower() is an ASCII "k", so non-ASCII is refused first)."""
    text = name.strip()
    if not text.isascii():
        raise E2EEError("malformed", "usernames are ASCII")
    return _check_username(text.lower())


def _check_device_id(device_id: Any, what: str = "device id") -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise E2EEError("malformed", f"{what} must be 8-64 characters of A-Z a-z 0-9 _ -")
    return device_id


def _check_client_id(client_id: Any) -> str:
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID:
        raise E2EEError("malformed", f"client_id must be 1-{MAX_CLIENT_ID} characters")
    return client_id


def _check_conv(conv: Any) -> str:
    if not isinstance(conv, str) or not _CONV_RE.fullmatch(conv):
        raise E2EEError("malformed", "conv must be 'dm:<a>:<b>' or 'group:<id>'")
    members = _dm_members(conv)
    if members is not None and members[0] > members[1]:
        raise E2EEError("malformed", "the usernames of a dm conversation must be sorted")
    return conv


def _dm_members(conv: str) -> tuple[str, str] | None:
    found = _CONV_RE.fullmatch(conv)
    if found is None or found.group(1) is None:
        return None
    return found.group(1), found.group(2)


def dm_conversation(user_a: str, user_b: str) -> str:
    """The conversation id of the direct messages between two users: ``dm:<a>:<b>`` with the
    two lower-case usernames sorted."""
    a, b = sorted((_canonical_username(user_a), _canonical_username(user_b)))
    return f"dm:{a}:{b}"


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The plaintext of a message: its payload as compact UTF-8 JSON (for a DM text,
    ``{"type":"text","text":...}``)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --- keys --------------------------------------------------------------------------------------


class DeviceKeys:
    """One device's private keys: X25519 (receives wraps) and Ed25519 (signs envelopes)."""

    __slots__ = ("_ed25519", "_x25519", "device_id")

    def __init__(
        self, device_id: str, x25519: X25519PrivateKey, ed25519: Ed25519PrivateKey
    ) -> None:
        self.device_id = _check_device_id(device_id)
        self._x25519 = x25519
        self._ed25519 = ed25519

    @classmethod
    def generate(cls, device_id: str | None = None) -> DeviceKeys:
        """New random keys; a random 22-character id unless ``device_id`` is given."""
        return cls(
            device_id or b64e(secrets.token_bytes(16)),
            X25519PrivateKey.generate(),
            Ed25519PrivateKey.generate(),
        )

    @classmethod
    def from_private_bytes(cls, device_id: str, x25519: bytes, ed25519: bytes) -> DeviceKeys:
        """Keys from their raw 32-byte private values (as in the key backup)."""
        try:
            return cls(
                device_id,
                X25519PrivateKey.from_private_bytes(x25519),
                Ed25519PrivateKey.from_private_bytes(ed25519),
            )
        except ValueError as exc:
            raise E2EEError("malformed", f"device {device_id!r}: {exc}") from exc

    @property
    def x25519_public(self) -> bytes:
        return self._x25519.public_key().public_bytes_raw()

    @property
    def ed25519_public(self) -> bytes:
        return self._ed25519.public_key().public_bytes_raw()

    def x25519_private_bytes(self) -> bytes:
        return self._x25519.private_bytes_raw()

    def ed25519_private_bytes(self) -> bytes:
        return self._ed25519.private_bytes_raw()

    def same_keys(self, other: DeviceKeys) -> bool:
        return (self.device_id, self.x25519_public, self.ed25519_public) == (
            other.device_id,
            other.x25519_public,
            other.ed25519_public,
        )

    def _sign(self, data: bytes) -> bytes:
        return self._ed25519.sign(data)

    def _unwrap(self, wrap: bytes, info: bytes) -> bytes:
        return _HPKE.decrypt(wrap, self._x25519, info)

    def __repr__(self) -> str:
        return f"<DeviceKeys {self.device_id} x25519={b64e(self.x25519_public)}>"


class Keyring:
    """A user's private keys: the identity key (Ed25519, vouches for devices) and the keys of
    every device the user has had, so that a browser restoring the backup can read the whole
    history. Devices are added, never replaced (new keys get a new device id)."""

    __slots__ = ("_devices", "_identity")

    def __init__(self, identity: Ed25519PrivateKey, devices: Iterable[DeviceKeys] = ()) -> None:
        self._identity = identity
        self._devices: dict[str, DeviceKeys] = {}
        for device in devices:
            self.add(device)

    @classmethod
    def generate(cls) -> Keyring:
        """A new identity key and no device yet."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(
        cls, identity: bytes, devices: Mapping[str, tuple[bytes, bytes]] | None = None
    ) -> Keyring:
        """From raw private keys: ``devices`` maps an id to ``(x25519, ed25519)``."""
        try:
            key = Ed25519PrivateKey.from_private_bytes(identity)
        except ValueError as exc:
            raise E2EEError("malformed", f"identity key: {exc}") from exc
        return cls(
            key,
            (DeviceKeys.from_private_bytes(i, x, e) for i, (x, e) in (devices or {}).items()),
        )

    @property
    def identity_key(self) -> bytes:
        """The public identity key (32 bytes), what safety numbers are made of."""
        return self._identity.public_key().public_bytes_raw()

    def identity_private_bytes(self) -> bytes:
        return self._identity.private_bytes_raw()

    @property
    def devices(self) -> dict[str, DeviceKeys]:
        """A copy of the device map (id -> keys), in the order devices were added."""
        return dict(self._devices)

    def device(self, device_id: str) -> DeviceKeys:
        try:
            return self._devices[device_id]
        except KeyError:
            raise E2EEError("unknown_device", f"no device {device_id!r} in this keyring") from None

    def add_device(self, device_id: str | None = None) -> DeviceKeys:
        """Generate keys for a new device of this user and keep them."""
        device = DeviceKeys.generate(device_id)
        self.add(device)
        return device

    def add(self, device: DeviceKeys) -> None:
        """Keep an existing device's keys (same id and keys again: no-op)."""
        known = self._devices.get(device.device_id)
        if known is not None:
            if not known.same_keys(device):
                raise E2EEError(
                    "device_conflict", f"device {device.device_id!r} already has other keys"
                )
            return
        self._devices[device.device_id] = device

    def merge(self, other: Keyring) -> list[str]:
        """Add the devices of ``other`` (e.g. a backup written meanwhile by another browser);
        the ids added. Both must hold the same identity key."""
        if other.identity_key != self.identity_key:
            raise E2EEError("identity_mismatch", "the keyrings hold different identity keys")
        added = [d for d in other._devices if d not in self._devices]
        for device in other._devices.values():
            self.add(device)
        return added

    def certify(self, username: str, device_id: str) -> PublicDevice:
        """The public half of a device with the identity key's signature on
        ``device_statement(username, device_id, x25519, ed25519)``."""
        device = self.device(device_id)
        statement = device_statement(
            _check_username(username), device_id, device.x25519_public, device.ed25519_public
        )
        return PublicDevice(
            device_id=device_id,
            x25519=device.x25519_public,
            ed25519=device.ed25519_public,
            signature=self._identity.sign(statement),
        )

    def published_device(self, username: str, device_id: str) -> dict[str, str]:
        """The body of ``PUT /api/v1/keys/devices/{device_id}`` for one of these devices."""
        public = self.certify(username, device_id)
        return {
            "identity_key": b64e(self.identity_key),
            "x25519": b64e(public.x25519),
            "ed25519": b64e(public.ed25519),
            "signature": b64e(public.signature),
        }

    def directory(self, username: str) -> KeyDirectory:
        """This user's own directory as it should be published (every device certified)."""
        return KeyDirectory(
            username, self.identity_key, tuple(self.certify(username, d) for d in self._devices)
        )

    def to_json(self) -> dict[str, Any]:
        """The keyring as the backup stores it (private keys: handle with care)."""
        return {
            "v": VERSION,
            "identity": b64e(self.identity_private_bytes()),
            "devices": {
                device_id: {
                    "x25519": b64e(device.x25519_private_bytes()),
                    "ed25519": b64e(device.ed25519_private_bytes()),
                }
                for device_id, device in sorted(self._devices.items())
            },
        }

    def export(self) -> bytes:
        """:meth:`to_json` as compact UTF-8 JSON: the backup's plaintext."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any) -> Keyring:
        """The inverse of :meth:`to_json` (also accepts the UTF-8 JSON text as bytes)."""
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise E2EEError("malformed", "the keyring is not JSON") from exc
        if not isinstance(data, dict) or set(data) != {"v", "identity", "devices"}:
            raise E2EEError("malformed", "a keyring has exactly v, identity and devices")
        if not _is_one(data["v"]):
            raise E2EEError("unsupported_version", "unsupported keyring version")
        devices = data["devices"]
        if not isinstance(devices, dict):
            raise E2EEError("malformed", "keyring devices must be an object")
        parsed: dict[str, tuple[bytes, bytes]] = {}
        for device_id, keys in devices.items():
            _check_device_id(device_id)
            if not isinstance(keys, dict) or set(keys) != {"x25519", "ed25519"}:
                raise E2EEError("malformed", f"device {device_id!r} needs x25519 and ed25519")
            parsed[device_id] = (
                _raw(keys["x25519"], KEY_SIZE, "x25519 private key"),
                _raw(keys["ed25519"], KEY_SIZE, "ed25519 private key"),
            )
        return cls.from_private_bytes(_raw(data["identity"], KEY_SIZE, "identity"), parsed)

    def __repr__(self) -> str:
        return f"<Keyring identity={b64e(self.identity_key)} devices={list(self._devices)}>"


# --- the public key directory ------------------------------------------------------------------


@dataclass(frozen=True)
class PublicDevice:
    """A device as the key directory publishes it (raw bytes; JSON fields are base64url)."""

    device_id: str
    x25519: bytes
    ed25519: bytes
    signature: bytes
    label: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PublicDevice:
        """From the server's JSON (``device_id``, ``x25519``, ``ed25519``, ``signature``;
        ``label`` and other fields are optional/ignored). Refuses malformed values."""
        if not isinstance(data, Mapping):
            raise E2EEError("malformed", "a device must be an object")
        label = data.get("label", "")
        return cls(
            device_id=_check_device_id(data.get("device_id")),
            x25519=_raw(data.get("x25519"), KEY_SIZE, "x25519"),
            ed25519=_raw(data.get("ed25519"), KEY_SIZE, "ed25519"),
            signature=_raw(data.get("signature"), SIGNATURE_SIZE, "signature"),
            label=label if isinstance(label, str) else "",
        )

    def to_json(self) -> dict[str, str]:
        return {
            "device_id": self.device_id,
            "x25519": b64e(self.x25519),
            "ed25519": b64e(self.ed25519),
            "signature": b64e(self.signature),
            "label": self.label,
        }

    def certified_by(self, username: str, identity_key: bytes) -> bool:
        """Whether ``identity_key`` signed this device for ``username``."""
        statement = device_statement(username, self.device_id, self.x25519, self.ed25519)
        try:
            Ed25519PublicKey.from_public_bytes(identity_key).verify(self.signature, statement)
        except (InvalidSignature, ValueError):
            return False
        return True


class RejectedDevice(NamedTuple):
    """A device :func:`verify_directory` left out, and why (``malformed``,
    ``bad_device_signature``, ``duplicate_device``)."""

    device_id: str
    code: str


class Recipient(NamedTuple):
    """One device a content key is wrapped for: user, device id, X25519 public key."""

    user: str
    device: str
    x25519: bytes


@dataclass(frozen=True)
class KeyDirectory:
    """A user's identity key and devices. From :func:`verify_directory` (or
    :func:`fetch_keys`), ``devices`` holds only devices the identity key certified and
    ``rejected`` the others. Trusting ``identity_key`` itself is up to the caller: pin it
    on first use and compare safety numbers (:func:`safety_number`)."""

    username: str
    identity_key: bytes
    devices: tuple[PublicDevice, ...]
    rejected: tuple[RejectedDevice, ...] = ()

    def device(self, device_id: str) -> PublicDevice | None:
        for device in self.devices:
            if device.device_id == device_id:
                return device
        return None

    def recipients(self, *, exclude: str | None = None) -> list[Recipient]:
        """Every device as a :class:`Recipient`, except the device id ``exclude``."""
        return [
            Recipient(self.username, d.device_id, d.x25519)
            for d in self.devices
            if d.device_id != exclude
        ]


def verify_directory(
    username: str,
    identity_key: str | bytes,
    devices: Iterable[PublicDevice | Mapping[str, Any]],
) -> KeyDirectory:
    """Check every device's certificate (the identity key's signature on its statement).
    Devices that are malformed, not certified or listed twice are left out and reported in
    ``rejected``: a server cannot add a device to someone's directory."""
    user = _check_username(username)
    identity = _key_bytes(identity_key, "identity key")
    good: list[PublicDevice] = []
    rejected: list[RejectedDevice] = []
    seen: set[str] = set()
    for item in devices:
        try:
            device = item if isinstance(item, PublicDevice) else PublicDevice.from_json(item)
        except E2EEError:
            raw_id = item.get("device_id") if isinstance(item, Mapping) else None
            rejected.append(RejectedDevice(str(raw_id), "malformed"))
            continue
        if device.device_id in seen:
            rejected.append(RejectedDevice(device.device_id, "duplicate_device"))
            good = [d for d in good if d.device_id != device.device_id]
            continue
        seen.add(device.device_id)
        if device.certified_by(user, identity):
            good.append(device)
        else:
            rejected.append(RejectedDevice(device.device_id, "bad_device_signature"))
    return KeyDirectory(user, identity, tuple(good), tuple(rejected))


def recipients_for(sender: str, sender_device: str, *directories: KeyDirectory) -> list[Recipient]:
    """Every device of every directory except the sending device itself: for a DM, pass the
    peer's directory and the sender's own."""
    out: list[Recipient] = []
    for directory in directories:
        exclude = sender_device if directory.username == sender else None
        out.extend(directory.recipients(exclude=exclude))
    return out


# --- the byte strings that are bound and signed ------------------------------------------------


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


# --- sealing -----------------------------------------------------------------------------------


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
    sending device's key. Recipients should be every device of the peer and every *other*
    device of the sender (:func:`recipients_for`). Returns the envelope (a JSON object)."""
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
    for every device of the peer and every other device of the sender (``own`` is the
    sender's verified directory)."""
    if own.username != sender:
        raise E2EEError("bad_recipient", "own must be the sender's directory")
    return seal(
        encode_payload({"type": "text", "text": text}),
        conv=dm_conversation(sender, peer.username),
        sender=sender,
        sender_device_keys=sender_device_keys,
        client_id=client_id,
        recipients=recipients_for(sender, sender_device_keys.device_id, peer, own),
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
    _check_conv(conv)
    _check_username(sender, "sender")
    _check_client_id(client_id)
    sender_device = sender_device_keys.device_id
    members = _dm_members(conv)
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
        _check_username(user, "recipient")
        _check_device_id(device, "recipient device")
        if members is not None and user not in members:
            raise E2EEError("bad_recipient", f"{user} is not a member of {conv}")
        if (user, device) == (sender, sender_device):
            raise E2EEError("bad_recipient", "the sending device is not one of its recipients")
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
                wrap = _HPKE.encrypt(content_key, X25519PublicKey.from_public_bytes(public), info)
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
    if len(json.dumps(envelope, separators=(",", ":")).encode()) > MAX_ENVELOPE_BYTES:
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


@dataclass(frozen=True)
class _Parsed:
    conv: str
    sender: str
    sender_device: str
    client_id: str
    nonce: bytes
    ct: bytes
    keys: tuple[tuple[str, str, bytes], ...]
    sig: bytes


def _parse(envelope: Any) -> _Parsed:
    """Steps 1-3 of opening: an object, version 1, exactly the v1 fields, well-formed."""
    if not isinstance(envelope, Mapping):
        raise E2EEError("malformed", "an envelope is a JSON object")
    if not _is_one(envelope.get("v")):
        raise E2EEError(
            "unsupported_version",
            f"unsupported envelope version {envelope.get('v')!r}; this client reads version 1",
        )
    if set(envelope) != _ENVELOPE_FIELDS:
        missing = sorted(_ENVELOPE_FIELDS - set(envelope))
        extra = sorted(str(k) for k in set(envelope) - _ENVELOPE_FIELDS)
        raise E2EEError("malformed", f"envelope fields: missing {missing}, unknown {extra}")
    conv = _check_conv(envelope["conv"])
    sender = _check_username(envelope["sender"], "sender")
    sender_device = _check_device_id(envelope["sender_device"], "sender_device")
    client_id = _check_client_id(envelope["client_id"])
    nonce = _raw(envelope["nonce"], NONCE_SIZE, "nonce")
    ct = _raw(envelope["ct"], None, "ct")
    if not TAG_SIZE <= len(ct) <= MAX_PLAINTEXT + TAG_SIZE:
        raise E2EEError("malformed", "ct has an impossible length")
    entries = envelope["keys"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_RECIPIENTS:
        raise E2EEError("malformed", f"keys must be a list of 1-{MAX_RECIPIENTS} wraps")
    keys: list[tuple[str, str, bytes]] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or set(entry) != {"user", "device", "wrap"}:
            raise E2EEError("malformed", "each key entry has exactly user, device and wrap")
        user = _check_username(entry["user"], "key user")
        device = _check_device_id(entry["device"], "key device")
        if keys and (keys[-1][0], keys[-1][1]) >= (user, device):
            raise E2EEError("malformed", "key entries must be sorted by (user, device), unique")
        keys.append((user, device, _raw(entry["wrap"], WRAP_SIZE, "wrap")))
    sig = _raw(envelope["sig"], SIGNATURE_SIZE, "sig")
    return _Parsed(conv, sender, sender_device, client_id, nonce, ct, tuple(keys), sig)


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
    members = _dm_members(parsed.conv)
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


# --- safety numbers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SafetyNumber:
    """The fingerprint of two users' identity keys, the same on both sides."""

    digest: bytes

    @property
    def digits(self) -> str:
        """60 decimal digits: the digest as a big-endian integer modulo 10**60."""
        return str(int.from_bytes(self.digest, "big") % 10**60).zfill(60)

    @property
    def groups(self) -> tuple[str, ...]:
        """12 groups of 5 digits, as shown."""
        digits = self.digits
        return tuple(digits[i : i + 5] for i in range(0, 60, 5))

    @property
    def qr_payload(self) -> str:
        """What the QR code encodes: ``echochat-safety:1:<hex digest>``."""
        return f"echochat-safety:{VERSION}:{self.digest.hex()}"

    def matches_qr(self, payload: str) -> bool:
        return secrets.compare_digest(payload.strip().lower(), self.qr_payload)

    def __str__(self) -> str:
        return " ".join(self.groups)


def safety_number(
    user_a: str, identity_a: str | bytes, user_b: str, identity_b: str | bytes
) -> SafetyNumber:
    """SHA-256 of lp("echochat/v1/safety", first user, first key, second user, second key),
    the pair ordered by username, so both users compute the same number."""
    pair = sorted(
        [
            (_check_username(user_a), _key_bytes(identity_a, "identity key")),
            (_check_username(user_b), _key_bytes(identity_b, "identity key")),
        ]
    )
    (first, first_key), (second, second_key) = pair
    return SafetyNumber(
        sha256(lp("echochat/v1/safety", first, first_key, second, second_key)).digest()
    )


# --- recovery keys and the key backup ----------------------------------------------------------


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
    _check_username(username)
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
    if not _is_one(data.get("v")):
        raise E2EEError("unsupported_version", f"unsupported key backup version {data.get('v')!r}")
    if set(data) != _BACKUP_FIELDS:
        raise E2EEError("malformed", f"a key backup has exactly {sorted(_BACKUP_FIELDS)}")
    if data["kdf"] != BACKUP_KDF:
        raise E2EEError("unsupported_kdf", f"unsupported key derivation {data['kdf']!r}")
    iterations = _json_int(data["iterations"])
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
    salt = _raw(data["salt"], SALT_SIZE, "salt")
    nonce = _raw(data["nonce"], NONCE_SIZE, "nonce")
    ct = _raw(data["ct"], None, "ct")
    if len(ct) < TAG_SIZE:
        raise E2EEError("malformed", "ct is too short")
    return iterations, salt, nonce, ct


def decrypt_backup(blob: str | bytes, secret: str | bytes, username: str) -> Keyring:
    """The keyring inside a backup blob. ``decrypt_failed`` means a wrong passphrase or
    recovery key (or a blob of another user, or a corrupted one); ``weak_kdf`` a blob
    asking for fewer than 600,000 iterations, which is refused before trying."""
    _check_username(username)
    iterations, salt, nonce, ct = _open_backup_json(blob)
    key = _derive(backup_secret(secret), salt, iterations)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ct, backup_aad(username))
    except InvalidTag as exc:
        raise E2EEError(
            "decrypt_failed", "wrong passphrase or recovery key (the backup does not decrypt)"
        ) from exc
    return Keyring.from_json(plaintext)


# --- on top of EchoChatClient ------------------------------------------------------------------


def _me(client: EchoChatClient) -> str:
    user = client.user
    if user is None:
        raise E2EEError("not_signed_in", "sign in first")
    return user.username


def _directory_from_json(data: Any, username: str) -> KeyDirectory:
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise E2EEError("malformed", "the server's key directory is not understood")
    if data.get("username") != username:
        raise E2EEError("malformed", f"asked for {username!r}, got {data.get('username')!r}")
    identity = data.get("identity_key")
    if identity is None:
        raise E2EEError("no_keys", f"{username} has not set up encryption yet")
    if not isinstance(identity, str):
        raise E2EEError("malformed", "identity_key must be a string")
    return verify_directory(username, identity, data["devices"])


async def publish_device(
    client: EchoChatClient,
    keyring: Keyring,
    device_id: str,
    *,
    label: str = "",
    reset_identity: bool = False,
) -> KeyDirectory:
    """Publish one device of ``keyring`` (``PUT /keys/devices/{id}``, signed by the identity
    key); the user's directory as the server now has it, verified. ``reset_identity``
    replaces a different identity key on the server and removes all its devices (old
    messages become unreadable for the new keys; buddies are warned)."""
    username = _me(client)
    body: dict[str, Any] = dict(keyring.published_device(username, device_id))
    body["label"] = label
    body["reset_identity"] = reset_identity
    response = await client._request("PUT", f"/keys/devices/{quote(device_id, safe='')}", json=body)
    return _directory_from_json(response.json(), username)


async def fetch_keys(
    client: EchoChatClient, username: str, *, trusted_identity: bytes | None = None
) -> KeyDirectory:
    """A user's verified directory (devices not certified by the identity key are left out
    and listed in ``rejected``). With ``trusted_identity`` (the key pinned earlier), a
    different identity key raises ``identity_changed``: show it, never accept it silently."""
    name = _canonical_username(username)
    response = await client._request("GET", f"/keys/users/{quote(name, safe='')}")
    directory = _directory_from_json(response.json(), name)
    if trusted_identity is not None and directory.identity_key != trusted_identity:
        raise E2EEError(
            "identity_changed",
            f"{name}'s identity key changed; compare safety numbers before trusting it",
        )
    return directory


async def remove_device(client: EchoChatClient, device_id: str) -> None:
    """Unpublish one of the user's devices (its private keys stay in the keyring, so the
    history it received stays readable)."""
    await client._request("DELETE", f"/keys/devices/{quote(device_id, safe='')}")


@dataclass(frozen=True)
class RestoredBackup:
    keyring: Keyring
    version: int


async def save_backup(
    client: EchoChatClient,
    keyring: Keyring,
    secret: str | bytes,
    *,
    expected_version: int | None = None,
    iterations: int = MIN_ITERATIONS,
) -> int:
    """Encrypt ``keyring`` and store it (``PUT /keys/backup``); the new version. The write is
    a compare-and-set: pass the version you read (None for the first backup). Another
    browser having written first raises ConflictError ``backup_conflict``: load, merge
    (:meth:`Keyring.merge`) and retry."""
    username = _me(client)
    blob = await asyncio.to_thread(encrypt_backup, keyring, secret, username, iterations=iterations)
    response = await client._request(
        "PUT", "/keys/backup", json={"blob": blob, "expected_version": expected_version}
    )
    version = response.json().get("version")
    if not isinstance(version, int):
        raise E2EEError("malformed", "the server did not answer with a version")
    return version


async def load_backup(client: EchoChatClient, secret: str | bytes) -> RestoredBackup:
    """Download (rate-limited per account) and decrypt the user's key backup."""
    username = _me(client)
    response = await client._request("GET", "/keys/backup")
    data = response.json()
    if not isinstance(data, dict) or not isinstance(data.get("blob"), str):
        raise E2EEError("malformed", "the server's backup answer is not understood")
    version = data.get("version")
    if not isinstance(version, int):
        raise E2EEError("malformed", "the server's backup answer has no version")
    keyring = await asyncio.to_thread(decrypt_backup, data["blob"], secret, username)
    return RestoredBackup(keyring, version)
