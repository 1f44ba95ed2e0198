"""Errors raised by the SDK: one class per HTTP status, parsed from the server's error body.

The server always answers failures as ``{"error": {"code": "...", "message": "..."}}``
(ARCHITECTURE section 4); ``code`` is stable and meant for programs, ``message`` is meant for
people. Nothing here ever holds a token or a password.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = [
    "AuthError",
    "ConflictError",
    "ConnectionLostError",
    "DisconnectedError",
    "EchoChatError",
    "ForbiddenError",
    "KickedError",
    "NetworkError",
    "NotFoundError",
    "OpError",
    "RateLimitedError",
    "ValidationError",
    "error_from_response",
]


class EchoChatError(Exception):
    """A request failed. ``status`` is the HTTP status (0 when no answer arrived), ``code`` the
    server's machine-readable code, ``retry_after`` the seconds to wait (429 only), and
    ``details`` any further fields of the error body (e.g. ``fields`` of a 422)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, retry_after)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details: Mapping[str, Any] = dict(details or {})

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"{self.code} ({status}): {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, retry_after={self.retry_after!r})"
        )


class AuthError(EchoChatError):
    """401: not signed in, bad credentials, expired or revoked session, reused refresh token."""


class ForbiddenError(EchoChatError):
    """403: signed in but not allowed (banned, missing permission, registration closed)."""


class NotFoundError(EchoChatError):
    """404: no such resource (or one you may not know exists)."""


class ConflictError(EchoChatError):
    """409: e.g. the username is taken, or ``refresh_race``."""


class ValidationError(EchoChatError):
    """422: a field was refused; ``details["fields"]`` lists them when the server says."""


class RateLimitedError(EchoChatError):
    """429: too many attempts; wait ``retry_after`` seconds."""


class NetworkError(EchoChatError):
    """No answer: the connection failed or timed out (``status`` is 0)."""


class ConnectionLostError(NetworkError):
    """The WebSocket dropped while a request was waiting for its answer: the server may or
    may not have carried it out (code ``connection_lost``). The connection reconnects by
    itself; repeat the request if it is safe to."""


class OpError(EchoChatError):
    """The server refused an op sent on the WebSocket (an ``err`` reply): ``code`` is the
    server's code (e.g. ``unknown_op``, ``invalid_input``, ``not_a_buddy``,
    ``rate_limited``), ``op`` the op that was refused. ``status`` is 0: there is no HTTP
    status on a socket."""

    def __init__(self, op: str, code: str, message: str) -> None:
        super().__init__(0, code, message)
        self.op = op

    def __str__(self) -> str:
        return f"{self.code} (op {self.op!r}): {self.message}"

    def __repr__(self) -> str:
        return f"OpError(op={self.op!r}, code={self.code!r}, message={self.message!r})"


class DisconnectedError(EchoChatError):
    """The realtime connection ended for good and will not reconnect. ``code`` says why:
    ``closed`` (you closed it), ``policy_violation`` (the server closed it with 1008, e.g.
    too many bad frames), ``reconnect_failed`` (gave up after ``max_reconnect_attempts``).
    ``close_code`` is the WebSocket close code when one was received."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(0, code, message)
        self.close_code = close_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class KickedError(DisconnectedError):
    """The server ended the connection with a ``kicked`` event: the session was revoked,
    signed out or the user banned. ``code`` is the event's reason (``logged_out``,
    ``session_revoked``, ``banned``, ``password_reset``); sign in again (if allowed)."""


_BY_STATUS: dict[int, type[EchoChatError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
}


def _retry_after(response: httpx.Response, details: Mapping[str, Any]) -> int | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), else the body's hint."""
    raw = response.headers.get("retry-after", "").strip()
    if raw.isdigit():
        return int(raw)
    if raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0, math.ceil(when.timestamp() - time.time()))
    hint = details.get("retry_after")
    if isinstance(hint, int) and not isinstance(hint, bool):
        return hint
    return None


def error_from_response(response: httpx.Response) -> EchoChatError:
    """The exception for a failed response (``{"error": {...}}`` or anything else)."""
    status = response.status_code
    code = f"http_{status}"
    message = response.reason_phrase or "request failed"
    details: dict[str, Any] = {}
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("code"), str) and error["code"]:
            code = error["code"]
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        nested = details.pop("details", None)
        if isinstance(nested, dict):  # the server puts extra facts under "details"
            details = {**nested, **details}
    cls = _BY_STATUS.get(status, EchoChatError)
    retry_after = _retry_after(response, details) if status in (429, 503) else None
    return cls(status, code, message, retry_after, details=details)
