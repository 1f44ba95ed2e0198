"""Room and group events (``room.member``, ``room.invite``, ``room.update``) and the public
shapes of rooms, members and invites that the REST answers share with them.

Documented in ``docs/protocol.md``, "Rooms and groups". Only services create events.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CategoryPublic",
    "MemberAction",
    "MyRoom",
    "RoomBanPublic",
    "RoomDetail",
    "RoomInviteData",
    "RoomInviteEvent",
    "RoomInvitePublic",
    "RoomListing",
    "RoomMemberData",
    "RoomMemberEvent",
    "RoomMemberPublic",
    "RoomPublic",
    "RoomUpdateData",
    "RoomUpdateEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoomPublic(_Model):
    """What anyone who may see the room sees of it."""

    id: int
    kind: Literal["public", "group"]
    name: str
    topic: str
    category_id: int | None
    category: str | None  # the category's slug
    encrypted: bool
    owner: str | None  # username; public rooms have none
    capacity: int  # the effective capacity (room's own, or the server setting)
    capacity_own: int | None = None  # a public room's own capacity; None: the setting applies
    member_count: int
    created_at: str


class RoomMemberPublic(_Model):
    username: str
    display_name: str
    role: Literal["owner", "moderator", "member"]
    state: Literal["online", "away", "busy", "offline"] = "offline"
    status: str = ""
    muted_until: str | None = None
    joined_at: str


MemberAction = Literal["join", "leave", "kick", "ban", "role", "mute"]


class RoomMemberData(_Model):
    room: int
    user: str  # the member concerned (username)
    action: MemberAction
    by: str | None = None  # who did it, for kick, ban, role and mute
    role: Literal["owner", "moderator", "member"] | None = None  # after join and role
    muted_until: str | None = None  # after mute (None: the mute was lifted)
    member: RoomMemberPublic | None = None  # after join, role and mute
    member_count: int


class RoomMemberEvent(_Model):
    """To the room's members (and the member removed by leave, kick or ban)."""

    type: Literal["room.member"] = "room.member"
    data: RoomMemberData


class RoomInvitePublic(_Model):
    id: int
    room: RoomPublic
    from_username: str
    from_display_name: str
    to_username: str
    status: Literal["pending", "accepted", "declined", "cancelled"]
    created_at: str


class RoomInviteData(_Model):
    invite: RoomInvitePublic


class RoomInviteEvent(_Model):
    """To the invitee when invited; to the invitee and the inviter when the invite is
    accepted or declined (so every tab updates)."""

    type: Literal["room.invite"] = "room.invite"
    data: RoomInviteData


class RoomUpdateData(_Model):
    action: Literal["changed", "deleted"]
    room: RoomPublic


class RoomUpdateEvent(_Model):
    """To the room's members: its name, topic or settings changed, or it was deleted."""

    type: Literal["room.update"] = "room.update"
    data: RoomUpdateData


class RoomListing(RoomPublic):
    """A public room in the room browser."""

    online_count: int
    joined: bool  # whether the caller is a member


class RoomDetail(RoomPublic):
    """One room as the caller sees it: with their role (None: not a member)."""

    role: Literal["owner", "moderator", "member"] | None
    muted_until: str | None


class MyRoom(RoomPublic):
    """One of the caller's rooms: role, the newest message id they may see (0: none), their
    read watermark and the number of others' messages above it (at most 1000)."""

    role: Literal["owner", "moderator", "member"]
    muted_until: str | None
    first_message_id: int
    read_upto: int
    last_message_id: int
    unread: int


class CategoryPublic(_Model):
    id: int
    slug: str
    name: str
    position: int
    room_count: int


class RoomBanPublic(_Model):
    """A ban in force, as the room's moderators see it."""

    username: str
    display_name: str
    by: str | None
    reason: str
    created_at: str
    until: str | None  # None: until lifted
