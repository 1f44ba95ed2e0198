"""The E2EE helpers on top of :class:`~echochat.client.http.EchoChatClient`: publish and
remove devices, fetch (and verify) a user's keys, save and load the key backup. PBKDF2
runs in a worker thread. HTTP failures stay the SDK's usual ``EchoChatError`` subclasses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from echochat.client.e2ee.backup import decrypt_backup, encrypt_backup
from echochat.client.e2ee.directory import KeyDirectory, verify_directory
from echochat.client.e2ee.encoding import canonical_username
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.keys import Keyring
from echochat.client.e2ee.suite import MIN_ITERATIONS

if TYPE_CHECKING:
    from echochat.client.http import EchoChatClient

__all__ = [
    "RestoredBackup",
    "fetch_keys",
    "load_backup",
    "publish_device",
    "remove_device",
    "save_backup",
]


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
    name = canonical_username(username)
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
