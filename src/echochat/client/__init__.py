"""The EchoChat Python SDK: an async client for the HTTP API and the realtime socket.

    async with EchoChatClient("http://127.0.0.1:8000") as chat:
        await chat.login("alice", "a long passphrase")
        async with await chat.connect() as rt:
            await rt.set_presence("busy", "writing docs")
            async for event in rt.events():
                print(event)

It stands alone: it imports nothing of the server (checked by import-linter). See
``docs/sdk.md``.
"""

from echochat.client._events import (
    BuddyRequestEvent,
    BuddyUpdateEvent,
    BuzzEvent,
    DmMessageEvent,
    DmReceiptEvent,
    Event,
    HelloEvent,
    KeysChangedEvent,
    KickedEvent,
    OfflineSummaryEvent,
    PresenceEvent,
    ResyncEvent,
    TypingEvent,
)
from echochat.client._realtime import RealtimeConnection
from echochat.client.errors import (
    AuthError,
    ConflictError,
    ConnectionLostError,
    DisconnectedError,
    EchoChatError,
    ForbiddenError,
    KickedError,
    NetworkError,
    NotFoundError,
    OpError,
    RateLimitedError,
    ValidationError,
)
from echochat.client.http import USER_AGENT, EchoChatClient
from echochat.client.messenger import (
    DecryptedHistory,
    DirectMessage,
    Messenger,
    UndecryptableMessage,
)
from echochat.client.models import (
    BlockedUser,
    Buddy,
    BuddyList,
    BuddyRequest,
    Conversation,
    DmMessage,
    DmReceipt,
    DmSent,
    HistoryPage,
    Me,
    OfflineSender,
    OfflineSummary,
    Presence,
    PresenceState,
    Session,
    User,
)

__all__ = [
    "USER_AGENT",
    "AuthError",
    "BlockedUser",
    "Buddy",
    "BuddyList",
    "BuddyRequest",
    "BuddyRequestEvent",
    "BuddyUpdateEvent",
    "BuzzEvent",
    "ConflictError",
    "ConnectionLostError",
    "Conversation",
    "DecryptedHistory",
    "DirectMessage",
    "DisconnectedError",
    "DmMessage",
    "DmMessageEvent",
    "DmReceipt",
    "DmReceiptEvent",
    "DmSent",
    "EchoChatClient",
    "EchoChatError",
    "Event",
    "ForbiddenError",
    "HelloEvent",
    "HistoryPage",
    "KeysChangedEvent",
    "KickedError",
    "KickedEvent",
    "Me",
    "Messenger",
    "NetworkError",
    "NotFoundError",
    "OfflineSender",
    "OfflineSummary",
    "OfflineSummaryEvent",
    "OpError",
    "Presence",
    "PresenceEvent",
    "PresenceState",
    "RateLimitedError",
    "RealtimeConnection",
    "ResyncEvent",
    "Session",
    "TypingEvent",
    "UndecryptableMessage",
    "User",
    "ValidationError",
]
