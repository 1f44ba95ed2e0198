"""Direct-message helpers shared by the suites: a user with real E2EE keys (published through
the API) who seals real envelopes with ``echochat.client.e2ee``, and small wrappers for the
DM ops and endpoints.

    alice = await person(server.http, server.url, "alice")
    bob = await person(server.http, server.url, "bob")
    envelope = await alice.seal("bob", "hi")            # sealed for bob's and alice's devices
    sock = await server.connect(alice.user)
    reply = await sock.call("dm.send", {"to": "bob", "envelope": envelope})

``transport`` (an ``httpx.ASGITransport``) lets the same helpers run against an in-process
app instead of a real server.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from echochat.client import EchoChatClient, e2ee
from echochat.client.e2ee import DeviceKeys, KeyDirectory, Keyring
from tests.wsutil import API, PASSWORD, Frame, Server, Socket, User

_ids = itertools.count(1)


@dataclass
class Person:
    """A signed-in user with one published device; ``user`` carries a bearer token for
    sockets and raw HTTP, ``sdk`` is an SDK client of the same account."""

    user: User
    sdk: EchoChatClient
    ring: Keyring
    device: DeviceKeys
    directories: dict[str, KeyDirectory] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def headers(self) -> dict[str, str]:
        return self.user.headers

    async def keys_of(self, username: str, *, fresh: bool = False) -> KeyDirectory:
        """``username``'s verified directory (cached unless ``fresh``)."""
        if fresh or username not in self.directories:
            self.directories[username] = await e2ee.fetch_keys(self.sdk, username)
        return self.directories[username]

    async def seal(self, to: str, text: str, client_id: str | None = None) -> dict[str, Any]:
        """A real envelope with the DM ``text`` to ``to``, for every device of both users."""
        return e2ee.seal_dm(
            text,
            sender=self.name,
            sender_device_keys=self.device,
            peer=await self.keys_of(to),
            own=await self.keys_of(self.name),
            client_id=client_id or f"m-{next(_ids)}",
        )

    async def open(self, message: Frame) -> str:
        """The text of a Message (``dm.message`` data, or a history entry) sent to or by
        this user, opened and verified with this device's keys."""
        envelope = message["envelope"]
        opened = e2ee.open_envelope(
            envelope,
            expected_conv=message["conv"],
            me_user=self.name,
            my_device_keys=self.device,
            sender_keys=await self.keys_of(envelope["sender"], fresh=True),
        )
        text: str = opened.payload["text"]
        return text

    async def reconnect(
        self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Sign in again on (another process or a restarted) server at ``base_url``: a new
        session, fresh tokens for ``user``, the same keys."""
        await self.sdk.aclose()
        self.sdk = EchoChatClient(base_url, transport=transport)
        await self.sdk.login(self.name, PASSWORD)
        assert self.sdk.access_token and self.sdk.refresh_token
        self.user.token, self.user.refresh_token = self.sdk.access_token, self.sdk.refresh_token

    async def aclose(self) -> None:
        await self.sdk.aclose()


async def person(
    http: httpx.AsyncClient,
    base_url: str,
    username: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    device_id: str | None = None,
    display_name: str | None = None,
) -> Person:
    """Register ``username`` through the SDK, publish one device, and return them. ``http``
    is only used to check the account works with the bearer token."""
    sdk = EchoChatClient(base_url, transport=transport)
    await sdk.register(username, PASSWORD, display_name=display_name)
    assert sdk.user is not None and sdk.access_token and sdk.refresh_token
    ring = Keyring.generate()
    device = ring.add_device(device_id or f"{username}-dev-{next(_ids):04d}")
    await e2ee.publish_device(sdk, ring, device.device_id, label="test device")
    user = User(
        id=sdk.user.id,
        username=sdk.user.username,
        token=sdk.access_token,
        refresh_token=sdk.refresh_token,
    )
    me = await http.get(f"{API}/me", headers=user.headers)
    assert me.status_code == 200, me.text
    return Person(user=user, sdk=sdk, ring=ring, device=device)


async def send(sock: Socket, to: str, envelope: dict[str, Any]) -> Frame:
    """``dm.send`` that must succeed: its reply data ``{"message", "duplicate"}``."""
    return await sock.call("dm.send", {"to": to, "envelope": envelope})


async def send_refused(sock: Socket, to: str, envelope: Any) -> Frame:
    """``dm.send`` that must be refused: the error object."""
    return await sock.error("dm.send", {"to": to, "envelope": envelope})


async def dm_event(sock: Socket, message_id: int | None = None) -> Frame:
    """The next ``dm.message`` (with ``id`` if given): its Message."""
    if message_id is None:
        frame = await sock.event("dm.message")
    else:
        frame = await sock.event("dm.message", id=message_id)
    data: Frame = frame["data"]
    return data


async def post_message(
    http: httpx.AsyncClient, who: Person | User, to: str, envelope: Any
) -> httpx.Response:
    return await http.post(
        f"{API}/dm/{to}/messages", json={"envelope": envelope}, headers=who.headers
    )


async def get_history(
    http: httpx.AsyncClient, who: Person | User, peer: str, **params: Any
) -> httpx.Response:
    return await http.get(f"{API}/dm/{peer}/messages", params=params, headers=who.headers)


async def get_conversations(http: httpx.AsyncClient, who: Person | User) -> list[Frame]:
    response = await http.get(f"{API}/conversations", headers=who.headers)
    assert response.status_code == 200, response.text
    conversations: list[Frame] = response.json()["conversations"]
    return conversations


@asynccontextmanager
async def alice_and_bob(server: Server) -> AsyncIterator[tuple[Person, Person]]:
    """Two people on ``server`` (see :func:`person`), their SDK clients closed afterwards."""
    alice = await person(server.http, server.url, "alice")
    bob = await person(server.http, server.url, "bob")
    try:
        yield alice, bob
    finally:
        await alice.aclose()
        await bob.aclose()
