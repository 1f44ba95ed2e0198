"""/api/v1/rooms and /api/v1/invites: thin routes over the room services.

Message routes (``/rooms/{id}/messages``, ``/rooms/{id}/read``) are in api/room_messages.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from echochat.api.deps import ClientIP, Ctx, CurrentUser
from echochat.api.schemas.rooms import (
    BanIn,
    BanOut,
    BansOut,
    CategoriesOut,
    InvitesOut,
    MembersOut,
    MuteIn,
    MuteOut,
    MyRoomsOut,
    RoleIn,
    RoleOut,
    RoomCreateIn,
    RoomsOut,
    RoomUpdateIn,
    UsernameIn,
)
from echochat.domain.events_rooms import RoomDetail, RoomInvitePublic
from echochat.services import room_invites, room_moderation, room_roles, rooms

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rooms"])

RoomId = Annotated[int, Path(ge=1, le=2**62)]
InviteId = Annotated[int, Path(ge=1, le=2**62)]
Username = Annotated[str, Path(min_length=1, max_length=64)]
NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.get("/rooms/categories", response_model=CategoriesOut)
async def list_categories(_: CurrentUser, ctx: Ctx) -> CategoriesOut:
    return CategoriesOut(categories=await rooms.categories(ctx))


@router.get("/rooms", response_model=RoomsOut)
async def browse(
    principal: CurrentUser,
    ctx: Ctx,
    category: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=60)] = None,
) -> RoomsOut:
    """Public rooms (of a category, by id or slug; names containing ``q``) with their
    member and online counts."""
    return RoomsOut(rooms=await rooms.browse(ctx, principal, category=category, q=q))


@router.get("/rooms/mine", response_model=MyRoomsOut)
async def my_rooms(principal: CurrentUser, ctx: Ctx) -> MyRoomsOut:
    """My rooms and groups with my role, the newest message id and my unread count."""
    return MyRoomsOut(rooms=await rooms.my_rooms(ctx, principal))


@router.post("/rooms", status_code=status.HTTP_201_CREATED, response_model=RoomDetail)
async def create_group(body: RoomCreateIn, principal: CurrentUser, ctx: Ctx) -> RoomDetail:
    """A private group: I am its owner and only member; I invite the others."""
    return await rooms.create_group(
        ctx, principal, name=body.name, topic=body.topic, encrypted=body.encrypted
    )


@router.get("/rooms/{room_id}", response_model=RoomDetail)
async def get_room(room_id: RoomId, principal: CurrentUser, ctx: Ctx) -> RoomDetail:
    return await rooms.get(ctx, principal, room_id)


@router.patch("/rooms/{room_id}", response_model=RoomDetail)
async def update_room(
    room_id: RoomId, body: RoomUpdateIn, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> RoomDetail:
    return await rooms.update(ctx, principal, room_id, name=body.name, topic=body.topic, ip=ip)


@router.delete("/rooms/{room_id}", status_code=NO_CONTENT)
async def delete_room(room_id: RoomId, principal: CurrentUser, ctx: Ctx, ip: ClientIP) -> Response:
    await rooms.delete(ctx, principal, room_id, ip=ip)
    return Response(status_code=NO_CONTENT)


@router.post("/rooms/{room_id}/join", response_model=RoomDetail)
async def join(room_id: RoomId, principal: CurrentUser, ctx: Ctx) -> RoomDetail:
    return await rooms.join(ctx, principal, room_id)


@router.post("/rooms/{room_id}/leave", status_code=NO_CONTENT)
async def leave(room_id: RoomId, principal: CurrentUser, ctx: Ctx, ip: ClientIP) -> Response:
    await rooms.leave(ctx, principal, room_id, ip=ip)
    return Response(status_code=NO_CONTENT)


@router.get("/rooms/{room_id}/members", response_model=MembersOut)
async def members(room_id: RoomId, principal: CurrentUser, ctx: Ctx) -> MembersOut:
    return MembersOut(members=await rooms.members(ctx, principal, room_id))


@router.post("/rooms/{room_id}/owner", response_model=RoomDetail)
async def transfer(
    room_id: RoomId, body: UsernameIn, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> RoomDetail:
    """Hand the group over to another member; I stay on as a moderator."""
    return await room_roles.transfer(ctx, principal, room_id, body.username, ip=ip)


@router.patch("/rooms/{room_id}/members/{username}", response_model=RoleOut)
async def set_role(
    room_id: RoomId,
    username: Username,
    body: RoleIn,
    principal: CurrentUser,
    ctx: Ctx,
    ip: ClientIP,
) -> RoleOut:
    role = await room_roles.set_role(ctx, principal, room_id, username, body.role, ip=ip)
    return RoleOut(username=username, role=role)


@router.post(
    "/rooms/{room_id}/invites", status_code=status.HTTP_201_CREATED, response_model=RoomInvitePublic
)
async def invite(
    room_id: RoomId, body: UsernameIn, principal: CurrentUser, ctx: Ctx
) -> RoomInvitePublic:
    return await room_invites.invite(ctx, principal, room_id, body.username)


@router.get("/invites", response_model=InvitesOut)
async def list_invites(principal: CurrentUser, ctx: Ctx) -> InvitesOut:
    return InvitesOut(invites=await room_invites.pending(ctx, principal))


@router.post("/invites/{invite_id}/accept", response_model=RoomDetail)
async def accept_invite(invite_id: InviteId, principal: CurrentUser, ctx: Ctx) -> RoomDetail:
    return await room_invites.accept(ctx, principal, invite_id)


@router.post("/invites/{invite_id}/decline", status_code=NO_CONTENT)
async def decline_invite(invite_id: InviteId, principal: CurrentUser, ctx: Ctx) -> Response:
    await room_invites.decline(ctx, principal, invite_id)
    return Response(status_code=NO_CONTENT)


# moderation -------------------------------------------------------------------------------


@router.post("/rooms/{room_id}/mutes", response_model=MuteOut)
async def mute(
    room_id: RoomId, body: MuteIn, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> MuteOut:
    """Mute a member for ``minutes`` (0 lifts the mute)."""
    until = await room_moderation.mute(
        ctx, principal, room_id, body.username, minutes=body.minutes, ip=ip
    )
    return MuteOut(username=body.username, muted_until=rooms.iso(until))


@router.post("/rooms/{room_id}/kick", status_code=NO_CONTENT)
async def kick(
    room_id: RoomId, body: UsernameIn, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> Response:
    await room_moderation.kick(ctx, principal, room_id, body.username, ip=ip)
    return Response(status_code=NO_CONTENT)


@router.post("/rooms/{room_id}/bans", status_code=status.HTTP_201_CREATED, response_model=BanOut)
async def ban(
    room_id: RoomId, body: BanIn, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> BanOut:
    until = await room_moderation.ban(
        ctx, principal, room_id, body.username, reason=body.reason, minutes=body.minutes, ip=ip
    )
    return BanOut(username=body.username, until=rooms.iso(until))


@router.get("/rooms/{room_id}/bans", response_model=BansOut)
async def list_bans(room_id: RoomId, principal: CurrentUser, ctx: Ctx) -> BansOut:
    """The bans in force (owner, moderators, staff), newest first."""
    return BansOut(bans=await room_moderation.bans(ctx, principal, room_id))


@router.delete("/rooms/{room_id}/bans/{username}", status_code=NO_CONTENT)
async def unban(
    room_id: RoomId, username: Username, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> Response:
    await room_moderation.unban(ctx, principal, room_id, username, ip=ip)
    return Response(status_code=NO_CONTENT)
