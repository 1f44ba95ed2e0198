"""E2EE key directory: identity keys, device keys and passphrase-encrypted backups.

The server stores public keys and opaque backups only; it never sees a private key or a
passphrase. It checks what it can (sizes, the identity key's signature on each device) so
junk is refused early, but clients verify everything themselves: the server is not trusted
(docs/e2ee.md). Policy: a user's identity key is set by their first device and changes only
by an explicit reset ("start fresh"), which removes every device and warns their buddies;
at most ``MAX_DEVICES`` devices; a device's keys never change (new keys = new device).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from echochat.domain.e2ee import (
    DEVICE_ID_RE,
    MAX_DEVICES,
    device_statement,
    key_field,
)
from echochat.domain.errors import Conflict, InvalidInput, NotFound
from echochat.domain.events import KeysChangedData, KeysChangedEvent
from echochat.services import notify
from echochat.services.accounts import Principal, limit
from echochat.services.context import Context
from echochat.store import audit
from echochat.store import buddies as buddy_store
from echochat.store import keys as store
from echochat.store import users as user_store
from echochat.store.keys import BackupRow, DeviceRow

__all__ = [
    "BACKUP_MAX",
    "UserKeys",
    "get_backup",
    "put_backup",
    "register_device",
    "remove_device",
    "user_keys",
]

log = logging.getLogger("echochat.keys")

BACKUP_MAX = 256 * 1024


@dataclass(frozen=True)
class UserKeys:
    username: str
    identity_key: str | None
    devices: list[DeviceRow]


async def _announce(ctx: Context, principal: Principal, reason: str, device_id: str | None) -> None:
    async with ctx.db.read() as conn:
        watchers = [b for b, _ in await buddy_store.watchers(conn, principal.user_id)]
    event = KeysChangedEvent(
        data=KeysChangedData(username=principal.username, reason=reason, device_id=device_id)
    )
    await notify.to_users(ctx, [*watchers, principal.user_id], event)


async def register_device(
    ctx: Context,
    principal: Principal,
    device_id: str,
    *,
    identity_key: str,
    x25519: str,
    ed25519: str,
    signature: str,
    label: str = "",
    reset_identity: bool = False,
) -> bool:
    """Publish a device's public keys, vouched for by the user's identity key. True if new."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise InvalidInput(
            "device id must be 8-64 characters of A-Z a-z 0-9 _ -", code="invalid_device_id"
        )
    identity_raw = key_field(identity_key, "identity_key", 32)
    x_raw = key_field(x25519, "x25519", 32)
    ed_raw = key_field(ed25519, "ed25519", 32)
    sig_raw = key_field(signature, "signature", 64)
    statement = device_statement(principal.username, device_id, x_raw, ed_raw)
    try:
        Ed25519PublicKey.from_public_bytes(identity_raw).verify(sig_raw, statement)
    except (InvalidSignature, ValueError) as exc:
        raise InvalidInput(
            "the identity key's signature on this device does not verify",
            code="bad_signature",
            details={"field": "signature"},
        ) from exc
    async with ctx.db.transaction() as conn:
        current = await store.identity(conn, principal.user_id)
        if current is not None and current != identity_key:
            if not reset_identity:
                raise Conflict(
                    "these keys belong to another identity; restore your key backup, or start "
                    "fresh with reset_identity (old messages become unreadable)",
                    code="identity_mismatch",
                )
            await store.delete_devices_txn(conn, principal.user_id)
            await audit.append_txn(
                conn,
                actor=principal.username,
                actor_id=principal.user_id,
                action="keys.identity_reset",
                target_type="user",
                target=principal.username,
            )
        reset = current is not None and current != identity_key
        if current is None or reset:
            await store.set_identity_txn(conn, principal.user_id, identity_key)
        existing = {d.device_id: d for d in await store.devices(conn, principal.user_id)}
        same = existing.get(device_id)
        if same is not None:
            if (same.x25519, same.ed25519, same.signature) != (x25519, ed25519, signature):
                raise Conflict(
                    "this device id already has other keys; use a new device id",
                    code="device_exists",
                )
            return False
        if len(existing) >= MAX_DEVICES:
            raise Conflict(
                f"at most {MAX_DEVICES} devices; remove an old one first", code="too_many_devices"
            )
        await store.put_device_txn(
            conn,
            principal.user_id,
            device_id=device_id,
            x25519=x25519,
            ed25519=ed25519,
            signature=signature,
            label=label,
        )
    log.info("device keys registered user=%s reset=%s", principal.username, reset)
    await _announce(ctx, principal, "identity_reset" if reset else "device_added", device_id)
    return True


async def remove_device(ctx: Context, principal: Principal, device_id: str) -> None:
    async with ctx.db.transaction() as conn:
        if not await store.delete_device_txn(conn, principal.user_id, device_id[:64]):
            raise NotFound("no such device", code="device_not_found")
    await _announce(ctx, principal, "device_removed", device_id)


async def user_keys(ctx: Context, principal: Principal, username: str) -> UserKeys:
    """A user's identity key and devices (not to someone they blocked: "not found")."""
    async with ctx.db.read() as conn:
        user = await user_store.by_username(conn, username.strip())
        if user is not None and user.id != principal.user_id:
            blocked_by_them, _ = await buddy_store.blocked_between(conn, user.id, principal.user_id)
            if blocked_by_them:
                user = None
        if user is None:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        return UserKeys(
            user.username, await store.identity(conn, user.id), await store.devices(conn, user.id)
        )


async def put_backup(
    ctx: Context, principal: Principal, blob: str, expected_version: int | None
) -> int:
    if len(blob) > BACKUP_MAX:
        raise InvalidInput(f"backup larger than {BACKUP_MAX} bytes", code="backup_too_large")
    async with ctx.db.transaction() as conn:
        version = await store.put_backup_txn(conn, principal.user_id, blob, expected_version)
        current = None if version is not None else await store.backup(conn, principal.user_id)
    if version is None:
        raise Conflict(
            "the backup changed since you read it; download it, merge, and retry",
            code="backup_conflict",
            details={"version": current.version if current else None},
        )
    return version


async def get_backup(ctx: Context, principal: Principal) -> BackupRow:
    """The encrypted backup; downloads are rate-limited, since each one allows offline
    passphrase guessing only as fast as PBKDF2 lets, but online guessing is ours to slow."""
    await limit(ctx, ctx.settings.rate_limit_backup_account, "backup", str(principal.user_id))
    async with ctx.db.read() as conn:
        row = await store.backup(conn, principal.user_id)
    if row is None:
        raise NotFound("no key backup yet", code="no_backup")
    return row
