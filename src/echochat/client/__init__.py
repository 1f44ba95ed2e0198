"""The EchoChat Python SDK: an async client for the HTTP API (WebSocket and DMs: planned).

    async with EchoChatClient("http://127.0.0.1:8000") as chat:
        await chat.login("alice", "a long passphrase")
        print((await chat.me()).display_name)

It stands alone: it imports nothing of the server (checked by import-linter). See
``docs/sdk.md``.
"""

from echochat.client.errors import (
    AuthError,
    ConflictError,
    EchoChatError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from echochat.client.http import USER_AGENT, EchoChatClient
from echochat.client.models import Me, Session, User

__all__ = [
    "USER_AGENT",
    "AuthError",
    "ConflictError",
    "EchoChatClient",
    "EchoChatError",
    "ForbiddenError",
    "Me",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "Session",
    "User",
    "ValidationError",
]
