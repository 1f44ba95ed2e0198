"""Bodies of /buddies and /blocks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from echochat.domain.events import BuddyPublic, BuddyRequestPublic

__all__ = [
    "BlockIn",
    "BlockedOut",
    "BuddyListOut",
    "BuddyRequestIn",
    "BuddyUpdateIn",
    "GroupIn",
    "GroupsOut",
    "RequestAcceptIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class BuddyRequestIn(_In):
    username: str = Field(min_length=1, max_length=64)
    message: str = Field(default="", max_length=1024)
    group: str | None = Field(default=None, max_length=200)


class RequestAcceptIn(_In):
    group: str | None = Field(default=None, max_length=200)


class BuddyUpdateIn(_In):
    group: str | None = Field(default=None, max_length=200)
    stealth: bool | None = None


class GroupIn(_In):
    name: str = Field(min_length=1, max_length=200)


class BlockIn(_In):
    username: str = Field(min_length=1, max_length=64)


class BuddyListOut(BaseModel):
    groups: list[str]
    buddies: list[BuddyPublic]
    incoming: list[BuddyRequestPublic]
    outgoing: list[BuddyRequestPublic]


class GroupsOut(BaseModel):
    groups: list[str]


class BlockedOut(BaseModel):
    username: str
    display_name: str
