"""/api/v1/conversations and /api/v1/dm: thin routes over services.dm."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from echochat.api.deps import Ctx, CurrentUser
from echochat.api.schemas.dm import (
    ConversationOut,
    ConversationsOut,
    DmSendBody,
    HistoryOut,
    ReceiptIn,
    ReceiptOut,
)
from echochat.domain.events import DmMessage
from echochat.services import dm

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["messages"])

Username = Annotated[str, Path(min_length=1, max_length=64)]
MessageId = Annotated[int | None, Query(ge=0, le=2**62)]


@router.get("/conversations", response_model=ConversationsOut)
async def list_conversations(principal: CurrentUser, ctx: Ctx) -> ConversationsOut:
    """My conversations, newest activity first, with unread and offline counts."""
    found = await dm.conversations(ctx, principal)
    return ConversationsOut(conversations=[ConversationOut(**asdict(c)) for c in found])


@router.get("/dm/{username}/messages", response_model=HistoryOut)
async def get_history(
    username: Username,
    principal: CurrentUser,
    ctx: Ctx,
    before: MessageId = None,
    after: MessageId = None,
    limit: Annotated[int, Query(ge=1, le=dm.HISTORY_MAX)] = dm.HISTORY_LIMIT,
) -> HistoryOut:
    """A page of the conversation (ascending ids): below ``before`` (default: the newest),
    or above ``after``."""
    page = await dm.history(ctx, principal, username, before=before, after=after, limit=limit)
    return HistoryOut(
        messages=page.messages,
        has_more=page.has_more,
        peer_delivered_upto=page.peer_delivered_upto,
        peer_read_upto=page.peer_read_upto,
        my_read_upto=page.my_read_upto,
    )


@router.post(
    "/dm/{username}/messages", status_code=status.HTTP_201_CREATED, response_model=DmMessage
)
async def send_message(
    username: Username, body: DmSendBody, principal: CurrentUser, ctx: Ctx, response: Response
) -> DmMessage:
    """Send an E2EE envelope (as the ``dm.send`` op): 201, or 200 with the original message
    when (sender, client_id) was sent before."""
    sent = await dm.send(ctx, principal, username, body.envelope)
    if sent.duplicate:
        response.status_code = status.HTTP_200_OK
    return sent.message


@router.post("/dm/{username}/receipts", response_model=ReceiptOut)
async def post_receipt(
    username: Username, body: ReceiptIn, principal: CurrentUser, ctx: Ctx
) -> ReceiptOut:
    """Acknowledge the peer's messages up to ``upto`` (delivered or read)."""
    return ReceiptOut(upto=await dm.acknowledge(ctx, principal, username, body.kind, body.upto))
