"""Every error leaves as ``{"error": {"code", "message"}}`` with a fitting status.

Framework errors (404 for unknown paths, 405, 422 from validation) are reshaped too, and an
unexpected exception becomes a 500 with a request id and no stack trace
(:class:`UnexpectedErrorMiddleware`); the trace goes to the log only.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echochat.api.responses import JSON
from echochat.bus import BusUnavailable
from echochat.domain.errors import DomainError, RateLimited

__all__ = ["BUS_DOWN", "UnexpectedErrorMiddleware", "error_body", "install_error_handlers"]

log = logging.getLogger("echochat.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    503: "unavailable",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    error.update(extra)
    return {"error": error}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _domain_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, DomainError)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    extra = {"details": exc.details} if exc.details else {}
    return JSON(error_body(exc.code, exc.message, **extra), status_code=exc.status, headers=headers)


async def _http_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such resource"
    return JSON(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"field": _field_path(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]
    first = fields[0] if fields else {"field": "request", "message": "invalid"}
    return JSON(
        error_body("invalid_input", f"{first['field']}: {first['message']}", fields=fields),
        status_code=422,
    )


def _internal_error(method: str, path: str) -> JSON:
    request_id = secrets.token_hex(6)
    log.exception("unhandled error %s on %s %s", request_id, method, path)
    return JSON(
        error_body("internal", f"unexpected server error; quote {request_id} when reporting it"),
        status_code=500,
    )


class UnexpectedErrorMiddleware:
    """Turns an unexpected exception into the JSON 500 *inside* the other middleware, so the
    answer still gets the security headers (Starlette's own handler sits outside them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:
                raise
            await _internal_error(scope["method"], scope["path"])(scope, receive, send)


# What a client is told when Redis (the bus) cannot be reached: what it asked may or may not
# have been done (a publish after a commit); every operation is safe to repeat.
BUS_DOWN = "the server cannot reach its message bus right now; try again in a moment"


async def _bus_unavailable(request: Request, exc: Exception) -> JSON:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSON(error_body("unavailable", BUS_DOWN), status_code=503, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BusUnavailable, _bus_unavailable)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
