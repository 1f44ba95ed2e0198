"""Private keys: one device's (:class:`DeviceKeys`) and a user's whole :class:`Keyring`
(the identity key and every device the user ever had), with the keyring's JSON form, the
plaintext of the key backup. ``repr()`` never shows a private key."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from echochat.client.e2ee.directory import KeyDirectory, PublicDevice
from echochat.client.e2ee.encoding import (
    check_device_id,
    check_username,
    is_json_one,
    raw_field,
)
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.suite import HPKE_SUITE, KEY_SIZE
from echochat.domain.e2ee import VERSION, b64e, device_statement

__all__ = ["DeviceKeys", "Keyring"]


class DeviceKeys:
    """One device's private keys: X25519 (receives wraps) and Ed25519 (signs envelopes)."""

    __slots__ = ("_ed25519", "_x25519", "device_id")

    def __init__(
        self, device_id: str, x25519: X25519PrivateKey, ed25519: Ed25519PrivateKey
    ) -> None:
        self.device_id = check_device_id(device_id)
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
        return HPKE_SUITE.decrypt(wrap, self._x25519, info)

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
            check_username(username), device_id, device.x25519_public, device.ed25519_public
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
        if not is_json_one(data["v"]):
            raise E2EEError("unsupported_version", "unsupported keyring version")
        devices = data["devices"]
        if not isinstance(devices, dict):
            raise E2EEError("malformed", "keyring devices must be an object")
        parsed: dict[str, tuple[bytes, bytes]] = {}
        for device_id, keys in devices.items():
            check_device_id(device_id)
            if not isinstance(keys, dict) or set(keys) != {"x25519", "ed25519"}:
                raise E2EEError("malformed", f"device {device_id!r} needs x25519 and ed25519")
            parsed[device_id] = (
                raw_field(keys["x25519"], KEY_SIZE, "x25519 private key"),
                raw_field(keys["ed25519"], KEY_SIZE, "ed25519 private key"),
            )
        return cls.from_private_bytes(raw_field(data["identity"], KEY_SIZE, "identity"), parsed)

    def __repr__(self) -> str:
        return f"<Keyring identity={b64e(self.identity_key)} devices={list(self._devices)}>"
