"""/api/v1/buddies and /api/v1/blocks: thin routes over services.buddies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from echochat.api.deps import Ctx, CurrentUser
from echochat.api.schemas.buddies import (
    BlockedOut,
    BlockIn,
    BuddyListOut,
    BuddyRequestIn,
    BuddyUpdateIn,
    GroupIn,
    GroupsOut,
    RequestAcceptIn,
)
from echochat.domain.events import BuddyPublic, BuddyRequestPublic
from echochat.services import buddies

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["buddies"])

Username = Annotated[str, Path(min_length=1, max_length=64)]
GroupName = Annotated[str, Path(min_length=1, max_length=200)]
RequestId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/buddies", response_model=BuddyListOut)
async def list_buddies(principal: CurrentUser, ctx: Ctx) -> BuddyListOut:
    """My groups, buddies with the presence I may see, and pending requests both ways."""
    result = await buddies.list_buddies(ctx, principal)
    return BuddyListOut(
        groups=result.groups,
        buddies=result.buddies,
        incoming=result.incoming,
        outgoing=result.outgoing,
    )


@router.post(
    "/buddies/requests", status_code=status.HTTP_201_CREATED, response_model=BuddyRequestPublic
)
async def request_buddy(
    body: BuddyRequestIn, principal: CurrentUser, ctx: Ctx
) -> BuddyRequestPublic:
    """Ask someone to be buddies, with an optional message (Yahoo's "add buddy")."""
    return await buddies.send_request(
        ctx, principal, body.username, message=body.message, group=body.group
    )


@router.post("/buddies/requests/{request_id}/accept", response_model=BuddyPublic)
async def accept_request(
    request_id: RequestId,
    principal: CurrentUser,
    ctx: Ctx,
    body: Annotated[RequestAcceptIn | None, Body()] = None,
) -> BuddyPublic:
    return await buddies.accept(ctx, principal, request_id, group=body.group if body else None)


@router.post("/buddies/requests/{request_id}/decline", status_code=status.HTTP_204_NO_CONTENT)
async def decline_request(request_id: RequestId, principal: CurrentUser, ctx: Ctx) -> Response:
    await buddies.decline(ctx, principal, request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/buddies/requests/{request_id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_request(request_id: RequestId, principal: CurrentUser, ctx: Ctx) -> Response:
    """Withdraw a request I sent."""
    await buddies.cancel(ctx, principal, request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/buddies/{username}", response_model=BuddyPublic)
async def update_buddy(
    username: Username, body: BuddyUpdateIn, principal: CurrentUser, ctx: Ctx
) -> BuddyPublic:
    """Move a buddy to a group; stealth: appear offline to this buddy."""
    return await buddies.update(ctx, principal, username, group=body.group, stealth=body.stealth)


@router.delete("/buddies/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_buddy(username: Username, principal: CurrentUser, ctx: Ctx) -> Response:
    await buddies.remove(ctx, principal, username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/buddies/groups", status_code=status.HTTP_201_CREATED, response_model=GroupsOut)
async def create_group(body: GroupIn, principal: CurrentUser, ctx: Ctx) -> GroupsOut:
    return GroupsOut(groups=await buddies.create_group(ctx, principal, body.name))


@router.patch("/buddies/groups/{name}", response_model=GroupsOut)
async def rename_group(
    name: GroupName, body: GroupIn, principal: CurrentUser, ctx: Ctx
) -> GroupsOut:
    return GroupsOut(groups=await buddies.rename_group(ctx, principal, name, body.name))


@router.delete("/buddies/groups/{name}", response_model=GroupsOut)
async def delete_group(name: GroupName, principal: CurrentUser, ctx: Ctx) -> GroupsOut:
    """Delete a group; its buddies move to the first remaining group."""
    return GroupsOut(groups=await buddies.delete_group(ctx, principal, name))


@router.get("/blocks", response_model=list[BlockedOut])
async def list_blocks(principal: CurrentUser, ctx: Ctx) -> list[BlockedOut]:
    return [BlockedOut(username=u, display_name=d) for u, d in await buddies.blocks(ctx, principal)]


@router.post("/blocks", status_code=status.HTTP_204_NO_CONTENT)
async def block(body: BlockIn, principal: CurrentUser, ctx: Ctx) -> Response:
    """Block a user: they can no longer reach you or see you, and are not told."""
    await buddies.block(ctx, principal, body.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/blocks/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def unblock(username: Username, principal: CurrentUser, ctx: Ctx) -> Response:
    await buddies.unblock(ctx, principal, username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
