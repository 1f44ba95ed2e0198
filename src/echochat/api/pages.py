"""Server-rendered page shells (Jinja). Pages carry no inline script: modules load from
/static and talk to the API. Each page makes sure the browser holds a CSRF token that is
valid for its session."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from echochat import __version__
from echochat.api.cookies import (
    CSRF_COOKIE,
    clear_session_cookies,
    read_access_cookie,
    set_csrf_cookie,
)
from echochat.api.deps import Ctx
from echochat.domain.errors import DomainError
from echochat.services.accounts import Principal, authenticate

__all__ = ["router", "templates"]

templates = Jinja2Templates(
    env=Environment(
        # web/admin/templates holds the admin panel's markup, which chat.html includes
        # only for users holding admin:basic (api/admin_assets.py serves its scripts).
        loader=ChoiceLoader(
            [
                PackageLoader("echochat.web", "templates"),
                PackageLoader("echochat.web", "admin/templates"),
            ]
        ),
        autoescape=select_autoescape(default=True),
    )
)

router = APIRouter(include_in_schema=False)


async def _viewer(request: Request, ctx: Ctx) -> Principal | None:
    """The signed-in user of this browser, if its session is still alive (an expired access
    token is fine here: the page's script refreshes it)."""
    token = read_access_cookie(request, ctx.settings)
    if not token:
        return None
    try:
        return await authenticate(ctx, token, allow_expired=True)
    except DomainError:
        return None


def _render(
    request: Request, ctx: Ctx, name: str, viewer: Principal | None, **extra: Any
) -> Response:
    response = templates.TemplateResponse(
        request, name, {"version": __version__, "viewer": viewer, **extra}
    )
    if viewer is None and read_access_cookie(request, ctx.settings):
        # The cookie names a session that has ended (signed out elsewhere, revoked): drop
        # it, so the page's CSRF token and the next sign-in agree on "no session".
        clear_session_cookies(response, ctx.settings)
    session_id = viewer.session_id if viewer else None
    try:
        ctx.keys.check_csrf(
            request.cookies.get(CSRF_COOKIE), request.cookies.get(CSRF_COOKIE), session_id
        )
    except DomainError:
        set_csrf_cookie(response, ctx.settings, ctx.keys.issue_csrf(session_id))
    return response


def _signed_in_only(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


@router.get("/", response_class=HTMLResponse)
@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, ctx: Ctx) -> Response:
    viewer = await _viewer(request, ctx)
    if viewer is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _render(request, ctx, "index.html", None)


def _safe_next(target: str | None) -> str:
    """Only a path on this site ("/devices"), never "//host" or "/\\host"."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/chat"


async def _page(request: Request, ctx: Ctx, name: str, **extra: Any) -> Response:
    """A page anyone may open (it still knows who is signed in)."""
    return _render(request, ctx, name, await _viewer(request, ctx), **extra)


async def _members_page(request: Request, ctx: Ctx, name: str) -> Response:
    """A page for signed-in users; others are sent to sign in and come back."""
    viewer = await _viewer(request, ctx)
    if viewer is None:
        return _signed_in_only(request)
    return _render(request, ctx, name, viewer)


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, ctx: Ctx) -> Response:
    return await _page(request, ctx, "register.html")


@router.get("/forgot", response_class=HTMLResponse)
async def forgot_page(request: Request, ctx: Ctx) -> Response:
    return await _page(request, ctx, "forgot.html", pin_length=ctx.settings.reset_pin_length)


@router.get("/reset", response_class=HTMLResponse)
async def reset_page(request: Request, ctx: Ctx) -> Response:
    return await _page(request, ctx, "reset.html", pin_length=ctx.settings.reset_pin_length)


@router.get("/claim", response_class=HTMLResponse)
async def claim_page(request: Request, ctx: Ctx) -> Response:
    return await _page(request, ctx, "claim.html")


@router.get("/devices", response_class=HTMLResponse)
async def devices_page(request: Request, ctx: Ctx) -> Response:
    return await _members_page(request, ctx, "devices.html")


@router.get("/chat", response_class=HTMLResponse)
async def chat_page(request: Request, ctx: Ctx) -> Response:
    return await _members_page(request, ctx, "chat.html")
