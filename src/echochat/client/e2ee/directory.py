"""The public key directory as clients see it: a user's identity key and the devices it
certified (:func:`verify_directory` drops any other), and the recipients of a message
(:func:`recipients_for`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from echochat.client.e2ee.encoding import (
    check_device_id,
    check_username,
    key_bytes,
    raw_field,
)
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.suite import KEY_SIZE, SIGNATURE_SIZE
from echochat.domain.e2ee import b64e, device_statement

__all__ = [
    "KeyDirectory",
    "PublicDevice",
    "Recipient",
    "RejectedDevice",
    "recipients_for",
    "verify_directory",
]


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
            device_id=check_device_id(data.get("device_id")),
            x25519=raw_field(data.get("x25519"), KEY_SIZE, "x25519"),
            ed25519=raw_field(data.get("ed25519"), KEY_SIZE, "ed25519"),
            signature=raw_field(data.get("signature"), SIGNATURE_SIZE, "signature"),
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
    user = check_username(username)
    identity = key_bytes(identity_key, "identity key")
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
    """Every device of every directory, the sending device included: for a DM, pass the
    peer's directory and the sender's own. The sending device gets a wrap of its own
    message, so that the user's keys (restored from the backup in a new browser) can read
    what they sent even when that device and its local copy are gone (docs/e2ee.md, 4.1).

    If the sender's directory is among ``directories``, it must list ``sender_device``
    (``unknown_sender_device`` otherwise: receivers would refuse the envelope, and the
    sending device would get no wrap)."""
    out: list[Recipient] = []
    for directory in directories:
        if directory.username == sender and directory.device(sender_device) is None:
            raise E2EEError(
                "unknown_sender_device",
                f"{sender_device!r} is not in {sender}'s directory: publish it (or fetch "
                "the directory again) before sending from it",
            )
        out.extend(directory.recipients())
    return out
