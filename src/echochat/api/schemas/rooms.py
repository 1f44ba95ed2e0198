"""Bodies and answers of /rooms, /invites and /admin/categories, /admin/rooms."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from echochat.domain.events_rooms import (
    CategoryPublic,
    MyRoom,
    RoomBanPublic,
    RoomInvitePublic,
    RoomListing,
    RoomMemberPublic,
)

__all__ = [
    "BanIn",
    "BanOut",
    "BansOut",
    "CategoriesOut",
    "CategoryCreateIn",
    "CategoryUpdateIn",
    "InvitesOut",
    "MembersOut",
    "MuteIn",
    "MuteOut",
    "MyRoomsOut",
    "RoleIn",
    "RoleOut",
    "RoomAdminCreateIn",
    "RoomAdminUpdateIn",
    "RoomCreateIn",
    "RoomUpdateIn",
    "RoomsOut",
    "UsernameIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class RoomCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    topic: str = Field(default="", max_length=1024)
    encrypted: bool = False


class RoomUpdateIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=1024)


class UsernameIn(_In):
    username: str = Field(min_length=1, max_length=64)


class RoleIn(_In):
    role: Literal["moderator", "member"]


class RoleOut(BaseModel):
    username: str
    role: str


class MuteIn(_In):
    username: str = Field(min_length=1, max_length=64)
    minutes: int = Field(ge=0, le=10**7)


class MuteOut(BaseModel):
    username: str
    muted_until: str | None


class BanIn(_In):
    username: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=1024)
    minutes: int | None = Field(default=None, ge=0, le=10**7)


class BanOut(BaseModel):
    username: str
    until: str | None


class BansOut(BaseModel):
    bans: list[RoomBanPublic]


class RoomsOut(BaseModel):
    rooms: list[RoomListing]


class MyRoomsOut(BaseModel):
    rooms: list[MyRoom]


class MembersOut(BaseModel):
    members: list[RoomMemberPublic]


class InvitesOut(BaseModel):
    invites: list[RoomInvitePublic]


class CategoriesOut(BaseModel):
    categories: list[CategoryPublic]


class CategoryCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, max_length=64)
    position: int | None = Field(default=None, ge=0, le=10_000)


class CategoryUpdateIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = Field(default=None, min_length=1, max_length=64)
    position: int | None = Field(default=None, ge=0, le=10_000)


class RoomAdminCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    topic: str = Field(default="", max_length=1024)
    category_id: int | None = Field(default=None, ge=1, le=2**62)
    capacity: int | None = Field(default=None, ge=2, le=100_000)


class RoomAdminUpdateIn(_In):
    """Only the fields given change; ``capacity: null`` goes back to the server setting,
    ``category_id: null`` leaves the room uncategorised."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=1024)
    category_id: int | None = Field(default=None, ge=1, le=2**62)
    capacity: int | None = Field(default=None, ge=2, le=100_000)
