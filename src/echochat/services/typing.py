"""Typing indicators: ephemeral, only between buddies, never to someone who blocked you."""

from __future__ import annotations

from echochat.domain.errors import NotFound
from echochat.domain.events import TypingData, TypingEvent
from echochat.services import notify
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import buddies as buddy_store
from echochat.store import users as user_store

__all__ = ["typing"]


async def typing(ctx: Context, principal: Principal, to_username: str, active: bool) -> None:
    async with ctx.db.read() as conn:
        target = await user_store.by_username(conn, to_username)
        buddy = await buddy_store.buddy_of(conn, principal.user_id, target.id) if target else None
    if target is None or buddy is None:
        raise NotFound(f"{to_username} is not your buddy", code="not_a_buddy")
    event = TypingEvent(data=TypingData(username=principal.username, active=active))
    await notify.to_user(ctx, target.id, event)
