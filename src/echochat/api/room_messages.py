"""/api/v1/rooms/{id}/messages and /rooms/{id}/read: thin routes over services.room_messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from echochat.api.deps import ClientIP, Ctx, CurrentUser
from echochat.api.schemas.room_messages import ReadIn, ReadOut, RoomHistoryOut, RoomSendBody
from echochat.domain.events_room_messages import RoomMessage
from echochat.services import room_messages

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rooms"])

RoomId = Annotated[int, Path(ge=1, le=2**62)]
MessageId = Annotated[int, Path(ge=1, le=2**62)]
Cursor = Annotated[int | None, Query(ge=0, le=2**62)]


@router.get("/rooms/{room_id}/messages", response_model=RoomHistoryOut)
async def get_messages(
    room_id: RoomId,
    principal: CurrentUser,
    ctx: Ctx,
    before: Cursor = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=room_messages.HISTORY_MAX)] = room_messages.HISTORY_LIMIT,
) -> RoomHistoryOut:
    """A page of the room (ascending ids, only from my join on): below ``before`` (default:
    the newest), or above ``after``."""
    page = await room_messages.history(
        ctx, principal, room_id, before=before, after=after, limit=limit
    )
    return RoomHistoryOut(
        messages=page.messages,
        has_more=page.has_more,
        read_upto=page.read_upto,
        first_message_id=page.first_message_id,
    )


@router.post(
    "/rooms/{room_id}/messages", status_code=status.HTTP_201_CREATED, response_model=RoomMessage
)
async def post_message(
    room_id: RoomId, body: RoomSendBody, principal: CurrentUser, ctx: Ctx, response: Response
) -> RoomMessage:
    """Post (as the ``room.send`` op): 201, or 200 with the original message when (sender,
    client_id) was sent before."""
    sent = await room_messages.send(
        ctx,
        principal,
        room_id,
        client_id=body.client_id,
        text=body.text,
        envelope=body.envelope,
    )
    if sent.duplicate:
        response.status_code = status.HTTP_200_OK
    return sent.message


@router.delete("/rooms/{room_id}/messages/{message_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_message(
    room_id: RoomId, message_id: MessageId, principal: CurrentUser, ctx: Ctx, ip: ClientIP
) -> Response:
    """Delete a message (its author, the room's owner or moderators, rooms:manage)."""
    await room_messages.delete_message(ctx, principal, message_id, ip=ip, room_id=room_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rooms/{room_id}/read", response_model=ReadOut)
async def post_read(room_id: RoomId, body: ReadIn, principal: CurrentUser, ctx: Ctx) -> ReadOut:
    """I have seen the room's messages up to ``upto`` (forward only; clamped)."""
    return ReadOut(upto=await room_messages.mark_read(ctx, principal, room_id, body.upto))
