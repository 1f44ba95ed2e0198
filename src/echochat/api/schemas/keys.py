"""Bodies of /keys (public E2EE keys and the encrypted key backup)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BackupIn", "BackupOut", "BackupSaved", "DeviceIn", "DeviceOut", "UserKeysOut"]

B64 = r"^[A-Za-z0-9_-]+$"


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity_key: str = Field(max_length=64, pattern=B64, description="Ed25519, 32 bytes")
    x25519: str = Field(max_length=64, pattern=B64, description="X25519 public key, 32 bytes")
    ed25519: str = Field(max_length=64, pattern=B64, description="Ed25519 public key, 32 bytes")
    signature: str = Field(
        max_length=128, pattern=B64, description="identity key's signature, 64 bytes"
    )
    label: str = Field(default="", max_length=120)
    reset_identity: bool = False


class DeviceOut(BaseModel):
    device_id: str
    x25519: str
    ed25519: str
    signature: str
    label: str
    created_at: datetime


class UserKeysOut(BaseModel):
    username: str
    identity_key: str | None
    devices: list[DeviceOut]


class BackupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blob: str = Field(min_length=1, max_length=256 * 1024)
    expected_version: int | None = Field(default=None, ge=1)


class BackupSaved(BaseModel):
    version: int


class BackupOut(BaseModel):
    blob: str
    version: int
    updated_at: datetime
