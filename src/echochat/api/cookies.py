"""The cookies a browser session lives in (ARCHITECTURE section 12).

Over https the access cookie gets the ``__Host-`` prefix and the refresh cookie
``__Secure-`` (it cannot be ``__Host-``: it is path-scoped to the refresh endpoint). The
access cookie outlives its JWT (it lasts as long as the session) so the CSRF token can stay
bound to the session across access-token refreshes.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from echochat.config import Settings

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "REFRESH_PATH",
    "RESET_COOKIE",
    "access_cookie_name",
    "clear_session_cookies",
    "read_access_cookie",
    "read_refresh_cookie",
    "refresh_cookie_name",
    "set_csrf_cookie",
    "set_session_cookies",
]

CSRF_COOKIE = "echochat_csrf"
CSRF_HEADER = "x-csrf-token"
RESET_COOKIE = "echochat_reset"
REFRESH_PATH = "/api/v1/auth/refresh"
RESET_PATH = "/api/v1/auth/password"


def access_cookie_name(settings: Settings) -> str:
    return "__Host-echochat_access" if settings.secure_cookies else "echochat_access"


def refresh_cookie_name(settings: Settings) -> str:
    return "__Secure-echochat_refresh" if settings.secure_cookies else "echochat_refresh"


def read_access_cookie(conn: HTTPConnection, settings: Settings) -> str | None:
    return conn.cookies.get(access_cookie_name(settings))


def read_refresh_cookie(conn: HTTPConnection, settings: Settings) -> str | None:
    return conn.cookies.get(refresh_cookie_name(settings))


def set_csrf_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        token,
        max_age=settings.session_ttl,
        path="/",
        secure=settings.secure_cookies,
        httponly=False,  # the page reads it and echoes it in X-CSRF-Token
        samesite="lax",
    )


def set_session_cookies(
    response: Response, settings: Settings, *, access: str, refresh: str, csrf: str | None
) -> None:
    response.set_cookie(
        access_cookie_name(settings),
        access,
        max_age=settings.session_ttl,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        refresh_cookie_name(settings),
        refresh,
        max_age=settings.session_ttl,
        path=REFRESH_PATH,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    if csrf is not None:
        set_csrf_cookie(response, settings, csrf)


def clear_session_cookies(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        access_cookie_name(settings),
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(
        refresh_cookie_name(settings),
        path=REFRESH_PATH,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def set_reset_cookie(response: Response, settings: Settings, handle: str) -> None:
    response.set_cookie(
        RESET_COOKIE,
        handle,
        max_age=600,
        path=RESET_PATH,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="strict",
    )
