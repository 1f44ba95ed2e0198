"""/api/v1/auth and /api/v1/me: thin routes over services.accounts and services.recovery."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from echochat.api.cookies import (
    CSRF_COOKIE,
    RESET_COOKIE,
    clear_session_cookies,
    read_refresh_cookie,
    set_csrf_cookie,
    set_reset_cookie,
    set_session_cookies,
)
from echochat.api.csrf import session_id_from_cookie
from echochat.api.deps import ClientIP, Ctx, CurrentUser, UserAgent, bearer_token
from echochat.api.errors import error_body
from echochat.api.responses import JSON
from echochat.api.schemas.auth import (
    ClaimIn,
    CsrfOut,
    ForgotIn,
    ForgotOut,
    LoginIn,
    MeOut,
    MeUpdate,
    RefreshIn,
    RegisterIn,
    ResetIn,
    SessionOut,
    SignedInOut,
    TokensOut,
    UserPublic,
)
from echochat.domain.errors import DomainError, InvalidInput, Unauthorized
from echochat.services import accounts, profile, recovery
from echochat.services.accounts import SignedIn

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _signed_in(
    ctx: Ctx,
    response: Response,
    signed: SignedIn,
    token_response: bool,
    *,
    current_csrf: str | None = None,
) -> SignedInOut | TokensOut:
    """Answer a sign-in: tokens in the body, or cookies. ``current_csrf`` keeps the browser's
    CSRF token (a refresh keeps the session, so the token stays valid for every tab)."""
    user = UserPublic(id=signed.user_id, username=signed.username, display_name=signed.display_name)
    if token_response:
        return TokensOut(
            user=user,
            access_token=signed.access_token,
            refresh_token=signed.refresh_token,
            expires_in=signed.expires_in,
        )
    csrf = current_csrf or signed.csrf_token
    set_session_cookies(
        response,
        ctx.settings,
        access=signed.access_token,
        refresh=signed.refresh_token,
        csrf=None if current_csrf else csrf,
    )
    return SignedInOut(user=user, csrf_token=csrf, expires_in=signed.expires_in)


@router.post(
    "/auth/register", status_code=status.HTTP_201_CREATED, response_model=SignedInOut | TokensOut
)
async def register(
    body: RegisterIn, ctx: Ctx, response: Response, ip: ClientIP, ua: UserAgent
) -> SignedInOut | TokensOut:
    """Create an account and sign in (cookies, or tokens with ``token_response``)."""
    signed = await accounts.register(
        ctx,
        username=body.username,
        password=body.password,
        email=body.email,
        display_name=body.display_name,
        ip=ip,
        user_agent=ua,
    )
    return _signed_in(ctx, response, signed, body.token_response)


@router.post("/auth/login", response_model=SignedInOut | TokensOut)
async def login(
    body: LoginIn, ctx: Ctx, response: Response, ip: ClientIP, ua: UserAgent
) -> SignedInOut | TokensOut:
    """Sign in with username (or email) and password."""
    signed = await accounts.login(
        ctx, login=body.username, password=body.password, ip=ip, user_agent=ua
    )
    return _signed_in(ctx, response, signed, body.token_response)


@router.post("/auth/refresh", response_model=SignedInOut | TokensOut)
async def refresh(
    request: Request, ctx: Ctx, response: Response, ip: ClientIP, body: RefreshIn | None = None
) -> SignedInOut | TokensOut | Response:
    """Rotate the refresh token: from the body (API clients) or the refresh cookie."""
    token_in_body = body is not None and body.refresh_token is not None
    token = (
        body.refresh_token
        if body is not None and body.refresh_token
        else (read_refresh_cookie(request, ctx.settings))
    )
    if not token:
        raise Unauthorized("no refresh token: sign in again", code="refresh_invalid")
    try:
        signed = await accounts.refresh(ctx, token, ip=ip)
    except DomainError as exc:
        if exc.status != 401 or token_in_body:
            raise
        # The browser's session is gone: answer 401 and clear its session cookies too.
        failed = JSON(error_body(exc.code, exc.message), status_code=exc.status)
        clear_session_cookies(failed, ctx.settings)
        return failed
    return _signed_in(
        ctx, response, signed, token_in_body, current_csrf=request.cookies.get(CSRF_COOKIE)
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, ctx: Ctx) -> Response:
    """End this session (an expired access token still identifies it)."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    bearer = bearer_token(request)
    if bearer:
        claims = ctx.keys.verify_access(bearer, allow_expired=True)
        session_id: str | None = claims.session_id
    else:
        session_id = session_id_from_cookie(request, ctx)
    if session_id is None:
        raise Unauthorized("sign in first", code="not_authenticated")
    await accounts.logout(ctx, session_id)
    clear_session_cookies(response, ctx.settings)
    set_csrf_cookie(response, ctx.settings, ctx.keys.issue_csrf(None))
    return response


@router.get("/auth/csrf", response_model=CsrfOut)
async def csrf(request: Request, ctx: Ctx, response: Response) -> CsrfOut:
    """A CSRF token for this browser (bound to its session, if any), also set as cookie."""
    token = ctx.keys.issue_csrf(session_id_from_cookie(request, ctx))
    set_csrf_cookie(response, ctx.settings, token)
    return CsrfOut(csrf_token=token)


@router.get("/auth/sessions", response_model=list[SessionOut])
async def sessions(principal: CurrentUser, ctx: Ctx) -> list[SessionOut]:
    """The caller's signed-in devices."""
    rows = await accounts.list_sessions(ctx, principal)
    return [
        SessionOut(
            id=row.id,
            device_label=row.device_label,
            ip=row.ip,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            current=row.id == principal.session_id,
        )
        for row in rows
    ]


@router.delete("/auth/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(session_id: str, principal: CurrentUser, ctx: Ctx) -> Response:
    """Sign out one of the caller's devices."""
    await accounts.revoke_session(ctx, principal, session_id[:64])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password/forgot", status_code=status.HTTP_202_ACCEPTED, response_model=ForgotOut
)
async def forgot(body: ForgotIn, ctx: Ctx, response: Response, ip: ClientIP) -> ForgotOut:
    """Email a reset link and PIN if the account exists; the answer is the same if not."""
    handle = await recovery.forgot(ctx, body.login, ip=ip)
    set_reset_cookie(response, ctx.settings, handle)
    return ForgotOut(reset_handle=handle)


@router.post("/auth/password/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset(body: ResetIn, request: Request, ctx: Ctx, ip: ClientIP) -> Response:
    """Set a new password with the emailed link's token, or with the PIN in the browser
    that asked (its reset cookie, or ``reset_handle``). Ends every session of the user."""
    if body.token:
        await recovery.reset_with_token(ctx, body.token, body.password, ip=ip)
    elif body.pin:
        handle = body.reset_handle or request.cookies.get(RESET_COOKIE)
        if not handle:
            raise Unauthorized(
                "this browser did not ask for a reset, or it expired; ask again",
                code="reset_invalid",
            )
        await recovery.reset_with_pin(ctx, handle, body.pin, body.password, ip=ip)
    else:
        raise InvalidInput("send either the link's token or the PIN", code="invalid_input")
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(RESET_COOKIE, path="/api/v1/auth/password")
    return response


@router.post("/auth/claim", status_code=status.HTTP_201_CREATED, response_model=SignedInOut)
async def claim(
    body: ClaimIn, ctx: Ctx, response: Response, ip: ClientIP, ua: UserAgent
) -> SignedInOut | TokensOut:
    """Create the first admin account with the one-time link printed by ``echochat serve``."""
    signed = await recovery.claim_admin(
        ctx,
        body.token,
        username=body.username,
        password=body.password,
        email=body.email,
        display_name=body.display_name,
        ip=ip,
        user_agent=ua,
    )
    return _signed_in(ctx, response, signed, False)


@router.get("/me", response_model=MeOut, tags=["me"])
async def me(principal: CurrentUser, ctx: Ctx) -> MeOut:
    """Who am I: user, roles, permissions."""
    info = await profile.get(ctx, principal)
    return MeOut(
        user=UserPublic(
            id=principal.user_id, username=principal.username, display_name=info.display_name
        ),
        email=info.email,
        roles=sorted(principal.roles),
        permissions=sorted(principal.permissions),
        session_id=principal.session_id,
    )


@router.patch("/me", response_model=MeOut, tags=["me"])
async def update_me(body: MeUpdate, principal: CurrentUser, ctx: Ctx) -> MeOut:
    """Change my display name."""
    if body.display_name is not None:
        await profile.update(ctx, principal, display_name=body.display_name)
    return await me(principal, ctx)
