"""The signed-in user's own profile."""

from __future__ import annotations

from echochat.domain import accounts as rules
from echochat.domain.errors import NotFound
from echochat.services.accounts import Principal
from echochat.services.context import Context
from echochat.store import users as user_store
from echochat.store.users import UserRow

__all__ = ["get", "update"]


async def get(ctx: Context, principal: Principal) -> UserRow:
    async with ctx.db.read() as conn:
        user = await user_store.by_id(conn, principal.user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return user


async def update(ctx: Context, principal: Principal, *, display_name: str) -> None:
    shown = rules.check_display_name(display_name, principal.username)
    async with ctx.db.transaction() as conn:
        await user_store.update_profile_txn(conn, principal.user_id, display_name=shown)
