"""Errors that services raise and every entry point (HTTP, WebSocket, CLI) shapes the same way.

Each error carries a stable machine-readable ``code`` and an HTTP ``status``; the message is
for people and says what to do next. Routers never invent codes of their own.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]


class DomainError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}


class InvalidInput(DomainError):
    status = 422
    default_code = "invalid_input"


class Unauthorized(DomainError):
    status = 401
    default_code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    default_code = "forbidden"


class NotFound(DomainError):
    status = 404
    default_code = "not_found"


class Conflict(DomainError):
    status = 409
    default_code = "conflict"


class RateLimited(DomainError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": retry_after})
        self.retry_after = retry_after


class Unavailable(DomainError):
    status = 503
    default_code = "unavailable"


def server_stopping() -> Unavailable:
    """What a caller still waiting gets when the server shuts down (503, retry)."""
    return Unavailable("the server is stopping; try again", code="unavailable")
