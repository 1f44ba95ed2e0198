"""Unsafe requests from browsers: origin checks, double-submit CSRF token, JSON only.

Applies to POST/PUT/PATCH/DELETE under ``/api/``:

- the body must be JSON (415 otherwise);
- ``Authorization: Bearer`` requests use no cookies, so nothing more is checked;
- a foreign ``Origin`` or a cross-site ``Sec-Fetch-Site`` is refused (403 ``bad_origin``);
- browser requests (they always send ``Origin`` or ``Sec-Fetch-Site`` on unsafe methods) and
  any request carrying our cookies need the double-submit token: the ``echochat_csrf``
  cookie echoed in ``X-CSRF-Token``, bound by HMAC to the session named by the access cookie
  (or to "no session"), see :class:`echochat.services.tokens.TokenKeys`;
- a request with none of these (a script or bot without cookies) cannot be forged by a
  third-party page, so it passes.
"""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from echochat.api.cookies import CSRF_COOKIE, CSRF_HEADER, read_access_cookie
from echochat.api.deps import bearer_token
from echochat.api.errors import error_body
from echochat.api.responses import JSON
from echochat.domain.errors import DomainError, Forbidden
from echochat.services import Context

__all__ = ["CsrfMiddleware", "session_id_from_cookie"]

log = logging.getLogger("echochat.auth")

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_EXEMPT_PREFIXES = ("/api/v1/files",)  # streamed uploads (later issue)


def session_id_from_cookie(conn: HTTPConnection, ctx: Context) -> str | None:
    """The session the browser's access cookie names (even if its JWT has expired)."""
    token = read_access_cookie(conn, ctx.settings)
    if not token:
        return None
    try:
        return ctx.keys.verify_access(token, allow_expired=True).session_id
    except DomainError:
        return None


class CsrfMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        ctx: Context = scope["app"].state.ctx
        try:
            self._check(conn, ctx)
        except DomainError as exc:
            log.warning("refused unsafe request code=%s path=%s", exc.code, scope["path"])
            response = JSON(error_body(exc.code, exc.message), status_code=exc.status)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, conn: HTTPConnection, ctx: Context) -> None:
        path = conn.url.path
        if not path.startswith(JSON_EXEMPT_PREFIXES) and _has_body(conn):
            content_type = conn.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise _UnsupportedMedia()
        if bearer_token(conn):
            return
        origin = conn.headers.get("origin")
        if origin is not None and origin not in ctx.settings.origins:
            raise Forbidden(f"requests from {origin} are not allowed", code="bad_origin")
        site = conn.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden("cross-site requests are not allowed", code="bad_origin")
        if origin is None and site is None and not _has_session_cookies(conn, ctx):
            # Not a browser (browsers send Origin or Sec-Fetch-Site on every unsafe request)
            # and no cookies to abuse: nothing a forged request could ride on.
            return
        ctx.keys.check_csrf(
            conn.cookies.get(CSRF_COOKIE),
            conn.headers.get(CSRF_HEADER),
            session_id_from_cookie(conn, ctx),
        )


class _UnsupportedMedia(DomainError):
    status = 415
    default_code = "unsupported_media_type"

    def __init__(self) -> None:
        super().__init__("send the body as JSON (Content-Type: application/json)")


def _has_session_cookies(conn: HTTPConnection, ctx: Context) -> bool:
    return bool(read_access_cookie(conn, ctx.settings) or conn.cookies.get(CSRF_COOKIE))


def _has_body(conn: HTTPConnection) -> bool:
    length = conn.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in conn.headers
