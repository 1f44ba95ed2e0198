"""/api/v1/keys: the E2EE key directory and key backup (services.keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from echochat.api.deps import Ctx, CurrentUser
from echochat.api.schemas.keys import (
    BackupIn,
    BackupOut,
    BackupSaved,
    DeviceIn,
    DeviceOut,
    UserKeysOut,
)
from echochat.services import keys

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

DeviceId = Annotated[str, Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Username = Annotated[str, Path(min_length=1, max_length=64)]


@router.put("/devices/{device_id}", response_model=UserKeysOut)
async def put_device(
    device_id: DeviceId, body: DeviceIn, principal: CurrentUser, ctx: Ctx, response: Response
) -> UserKeysOut:
    """Publish this device's public keys, signed by the user's identity key (201 if new)."""
    created = await keys.register_device(
        ctx,
        principal,
        device_id,
        identity_key=body.identity_key,
        x25519=body.x25519,
        ed25519=body.ed25519,
        signature=body.signature,
        label=body.label,
        reset_identity=body.reset_identity,
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return await get_user_keys(principal.username, principal, ctx)


@router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(device_id: DeviceId, principal: CurrentUser, ctx: Ctx) -> Response:
    await keys.remove_device(ctx, principal, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/{username}", response_model=UserKeysOut)
async def get_user_keys(username: Username, principal: CurrentUser, ctx: Ctx) -> UserKeysOut:
    """A user's identity key and devices. Verify the signatures yourself (docs/e2ee.md)."""
    found = await keys.user_keys(ctx, principal, username)
    return UserKeysOut(
        username=found.username,
        identity_key=found.identity_key,
        devices=[
            DeviceOut(
                device_id=d.device_id,
                x25519=d.x25519,
                ed25519=d.ed25519,
                signature=d.signature,
                label=d.label,
                created_at=d.created_at,
            )
            for d in found.devices
        ],
    )


@router.put("/backup", response_model=BackupSaved)
async def put_backup(body: BackupIn, principal: CurrentUser, ctx: Ctx) -> BackupSaved:
    """Store the passphrase-encrypted key backup (compare-and-set on ``expected_version``)."""
    return BackupSaved(
        version=await keys.put_backup(ctx, principal, body.blob, body.expected_version)
    )


@router.get("/backup", response_model=BackupOut)
async def get_backup(principal: CurrentUser, ctx: Ctx) -> BackupOut:
    """The encrypted key backup (rate-limited per account)."""
    row = await keys.get_backup(ctx, principal)
    return BackupOut(blob=row.blob, version=row.version, updated_at=row.updated_at)
