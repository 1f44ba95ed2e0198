"""Bodies of /auth and /me."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClaimIn",
    "CsrfOut",
    "ForgotIn",
    "ForgotOut",
    "LoginIn",
    "MeOut",
    "MeUpdate",
    "RefreshIn",
    "RegisterIn",
    "ResetIn",
    "SessionOut",
    "SignedInOut",
    "TokensOut",
    "UserPublic",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class RegisterIn(_In):
    username: str = Field(max_length=64)
    password: str
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=200)
    token_response: bool = False


class LoginIn(_In):
    username: str = Field(max_length=320, description="Username or email address.")
    password: str
    token_response: bool = False


class RefreshIn(_In):
    refresh_token: str | None = Field(default=None, max_length=200)


class ForgotIn(_In):
    login: str = Field(min_length=1, max_length=320, description="Username or email address.")


class ResetIn(_In):
    password: str
    token: str | None = Field(default=None, max_length=200, description="From the email link.")
    pin: str | None = Field(default=None, max_length=12, pattern=r"^\s*\d{4,12}\s*$")
    reset_handle: str | None = Field(
        default=None,
        max_length=200,
        description="From POST /auth/password/forgot; browsers send it as a cookie instead.",
    )


class ClaimIn(_In):
    token: str = Field(max_length=200)
    username: str = Field(max_length=64)
    password: str
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=200)


class MeUpdate(_In):
    display_name: str | None = Field(default=None, max_length=200)


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str


class SignedInOut(BaseModel):
    user: UserPublic
    csrf_token: str
    expires_in: int


class TokensOut(BaseModel):
    user: UserPublic
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class CsrfOut(BaseModel):
    csrf_token: str


class ForgotOut(BaseModel):
    status: Literal["sent_if_account_exists"] = "sent_if_account_exists"
    reset_handle: str


class MeOut(BaseModel):
    user: UserPublic
    email: str | None
    roles: list[str]
    permissions: list[str]
    session_id: str


class SessionOut(BaseModel):
    id: str
    device_label: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool
