"""Dependency aliases shared by the routers: the context, the caller, permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from echochat.api.cookies import read_access_cookie
from echochat.domain.clients import client_ip
from echochat.domain.errors import Forbidden, Unauthorized
from echochat.services import Context
from echochat.services.accounts import Principal, authenticate

__all__ = [
    "ClientIP",
    "Ctx",
    "CurrentUser",
    "UserAgent",
    "bearer_token",
    "get_context",
    "require",
]


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(get_context)]


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def request_token(conn: HTTPConnection, ctx: Context) -> str | None:
    """A bearer header wins; only without one does the access cookie count."""
    return bearer_token(conn) or read_access_cookie(conn, ctx.settings)


async def current_principal(request: Request, ctx: Ctx) -> Principal:
    token = request_token(request, ctx)
    if not token:
        raise Unauthorized("sign in first", code="not_authenticated")
    principal = await authenticate(ctx, token)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through only callers holding ``permission``."""

    async def check(principal: CurrentUser) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"you need the permission {permission}", code="permission_denied")
        return principal

    return check


def get_client_ip(request: Request, ctx: Ctx) -> str:
    peer = request.client.host if request.client else ""
    return client_ip(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_proxies)


def get_user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:512]


ClientIP = Annotated[str, Depends(get_client_ip)]
UserAgent = Annotated[str, Depends(get_user_agent)]
