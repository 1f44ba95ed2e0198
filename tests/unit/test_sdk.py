"""The Python SDK (``echochat.client``) against the real app, in process (httpx.ASGITransport).

Time: access JWTs are checked against the real clock, and the server issues them at
``ctx.clock()``. To get an expired token honestly, the app's clock is set back while it
signs a user in ("that login happened two minutes ago") and then returned to now, so the
next request meets the server's real ``token_expired`` answer. No test sleeps.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from echochat import __version__
from echochat.app import create_app
from echochat.client import (
    USER_AGENT,
    AuthError,
    ConflictError,
    EchoChatClient,
    EchoChatError,
    ForbiddenError,
    Me,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    Session,
    User,
    ValidationError,
)
from echochat.config import ResolvedSettings
from echochat.services import Context
from echochat.store import outbox
from tests.apps import running

PASSWORD = "violet-kettle-harbour-42"
NEW_PASSWORD = "amber-lantern-orchard-77"
TTL = 60  # the shortest access-token lifetime the settings allow


class ServerClock:
    """The app's ``ctx.clock``: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the app and records (method, path, status); can hold the first
    ``count`` requests to a path until all of them have arrived (to force concurrency)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.log: list[tuple[str, str, int]] = []
        self._gate: tuple[str, int, asyncio.Event] | None = None
        self._held = 0

    def hold(self, path: str, count: int) -> None:
        self._gate, self._held = (path, count, asyncio.Event()), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        gate = self._gate
        if gate is not None and request.url.path == gate[0] and self._held < gate[1]:
            self._held += 1
            if self._held == gate[1]:
                gate[2].set()
            await asyncio.wait_for(gate[2].wait(), timeout=10)  # a safety net, not a sleep
        response = await self.inner.handle_async_request(request)
        self.log.append((request.method, request.url.path, response.status_code))
        return response

    def calls(self, path: str) -> list[tuple[str, str, int]]:
        return [entry for entry in self.log if entry[1] == "/api/v1" + path]


@dataclass
class Server:
    app: FastAPI
    ctx: Context
    settings: ResolvedSettings
    clock: ServerClock
    transport: Recorder
    clients: list[EchoChatClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.settings.settings.public_url

    def client(self, **options: Any) -> EchoChatClient:
        sdk = EchoChatClient(self.url, transport=self.transport, **options)
        self.clients.append(sdk)
        return sdk

    def raw(self) -> httpx.AsyncClient:
        """A plain HTTP client (no SDK), e.g. someone who stole a token."""
        return httpx.AsyncClient(transport=self.transport, base_url=self.url)

    @asynccontextmanager
    async def in_the_past(self, seconds: int = TTL + 60) -> AsyncIterator[None]:
        """Tokens issued inside this block were issued ``seconds`` ago."""
        self.clock.offset = -timedelta(seconds=seconds)
        try:
            yield
        finally:
            self.clock.offset = timedelta(0)

    async def last_email(self, to: str) -> str:
        await self.ctx.drain()
        async with self.ctx.db.read() as conn:
            rows = await outbox.latest(conn, to=to, limit=1)
        assert rows, f"no email to {to}"
        return rows[0].body


Start = Callable[..., AbstractAsyncContextManager[Server]]


@pytest.fixture
def start(make_settings: Callable[..., ResolvedSettings]) -> Start:
    """Start the app with settings overrides; yields a :class:`Server`."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Server]:
        overrides.setdefault("access_token_ttl", TTL)
        resolved = make_settings(**overrides)
        app = create_app(resolved.settings)
        ctx: Context = app.state.ctx
        clock = ServerClock()
        ctx.clock = clock
        async with running(app) as manager:
            server = Server(
                app, ctx, resolved, clock, Recorder(httpx.ASGITransport(app=manager.app))
            )
            try:
                yield server
            finally:
                for sdk in server.clients:
                    await sdk.aclose()

    return run


@pytest.fixture
async def server(start: Start) -> AsyncIterator[Server]:
    async with start() as running:
        yield running


def pin_in(mail: str) -> str:
    found = re.search(r"^\s+(\d{6,12})\s*$", mail, re.MULTILINE)
    assert found, mail
    return found.group(1)


def link_token_in(mail: str) -> str:
    found = re.search(r"/reset\?token=([A-Za-z0-9_-]+)", mail)
    assert found, mail
    return found.group(1)


async def refresh_raw(server: Server, refresh_token: str) -> httpx.Response:
    async with server.raw() as http:
        return await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def me_raw(server: Server, access_token: str) -> httpx.Response:
    async with server.raw() as http:
        return await http.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})


def signed_in(sdk: EchoChatClient) -> bool:
    return sdk.is_authenticated  # a call, so type checkers do not narrow it across awaits


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- the happy path -------------------------------------------------------------------------


async def test_register_me_sessions_logout(server: Server) -> None:
    async with server.client() as chat:
        user = await chat.register(
            "alice", PASSWORD, email="alice@example.com", display_name="Alice A."
        )
        assert user == User(id=user.id, username="alice", display_name="Alice A.")
        assert signed_in(chat)
        assert [chat.user] == [user]
        access, refresh = chat.access_token, chat.refresh_token
        assert access and refresh

        me = await chat.me()
        assert isinstance(me, Me)
        assert me.user == user
        assert me.email == "alice@example.com"
        assert "user" in me.roles
        assert not me.can("admin:basic")

        sessions = await chat.sessions()
        assert len(sessions) == 1
        (session,) = sessions
        assert isinstance(session, Session)
        assert session.current
        assert session.id == me.session_id
        assert session.device_label == "EchoChat SDK"
        assert session.created_at <= session.last_seen_at

        await chat.logout()
        assert not signed_in(chat)
        assert (chat.access_token, chat.refresh_token, chat.user) == (None, None, None)
        with pytest.raises(AuthError) as caught:
            await chat.me()
        assert caught.value.status == 401
        assert caught.value.code == "not_authenticated"
    sdk_requests = list(server.transport.requests)

    # The session really ended on the server: the old tokens are useless at once.
    assert error_code(await me_raw(server, access)) == "session_revoked"
    assert (await refresh_raw(server, refresh)).status_code == 401

    # What went over the wire: our User-Agent, the bearer token, never a cookie.
    for request in sdk_requests:
        assert request.headers["user-agent"] == USER_AGENT == f"echochat-sdk/{__version__}"
        assert "cookie" not in request.headers
        assert "x-csrf-token" not in request.headers
    me_request = next(r for r in sdk_requests if r.url.path == "/api/v1/me")
    assert me_request.headers["authorization"] == f"Bearer {access}"


async def test_sign_in_again_on_the_same_client_after_logout(server: Server) -> None:
    """The server sets cookies on logout and forgot-password; the SDK keeps none, so its
    next requests stay bearer/cookie-less and need no CSRF token."""
    async with server.client() as chat:
        await chat.register("bob", PASSWORD, email="bob@example.com")
        first = (await chat.me()).session_id
        await chat.logout()
        await chat.logout()  # signed out already: nothing to do
        await chat.forgot_password("bob")
        await chat.login("bob", PASSWORD)
        assert (await chat.me()).session_id != first
        assert len(await chat.sessions()) == 1


async def test_login_by_email_and_update_me(server: Server) -> None:
    async with server.client() as first:
        await first.register("carol", PASSWORD, email="carol@example.com")
    async with server.client() as chat:
        user = await chat.login("carol@example.com", PASSWORD)
        assert user.username == "carol"
        me = await chat.update_me(display_name="Carol C.")
        assert me.display_name == "Carol C."
        assert chat.user is not None and chat.user.display_name == "Carol C."
        assert (await chat.me()).display_name == "Carol C."
        unchanged = await chat.update_me()
        assert unchanged.display_name == "Carol C."


async def test_revoke_another_session(server: Server) -> None:
    async with server.client() as laptop, server.client() as phone:
        await laptop.register("dave", PASSWORD)
        await phone.login("dave", PASSWORD)
        phone_session = (await phone.me()).session_id
        listed = await laptop.sessions()
        assert {s.id for s in listed} == {phone_session, (await laptop.me()).session_id}
        assert [s.current for s in listed if s.id == phone_session] == [False]

        await laptop.revoke_session(phone_session)
        with pytest.raises(AuthError) as caught:
            await phone.me()
        assert caught.value.code == "session_revoked"
        assert len(await laptop.sessions()) == 1

        with pytest.raises(NotFoundError) as missing:
            await laptop.revoke_session(phone_session)
        assert missing.value.code == "session_not_found"
        with pytest.raises(NotFoundError):
            await laptop.revoke_session("no/such session")


# --- refusals ---------------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_get_the_same_answer(server: Server) -> None:
    async with server.client() as chat:
        await chat.register("erin", PASSWORD)
        await chat.logout()
        with pytest.raises(AuthError) as wrong:
            await chat.login("erin", "not-the-password-at-all")
        with pytest.raises(AuthError) as unknown:
            await chat.login("nobody-here", "not-the-password-at-all")
        assert not chat.is_authenticated
    for caught in (wrong.value, unknown.value):
        assert caught.status == 401
        assert caught.code == "bad_credentials"
        assert caught.retry_after is None
        assert "not-the-password" not in str(caught) + repr(caught)
    assert wrong.value.message == unknown.value.message


async def test_invalid_fields_and_taken_names(server: Server) -> None:
    async with server.client() as chat:
        with pytest.raises(ValidationError) as short:
            await chat.register("frank", "short")
        assert short.value.status == 422
        assert short.value.code == "password_too_short"
        with pytest.raises(ValidationError) as malformed:
            await chat.register("x" * 100, PASSWORD)
        assert malformed.value.code == "invalid_input"
        assert malformed.value.details["fields"][0]["field"] == "username"

        await chat.register("frank", PASSWORD)
    async with server.client() as other:
        with pytest.raises(ConflictError) as taken:
            await other.register("Frank", PASSWORD)
        assert taken.value.status == 409
        assert taken.value.code == "username_taken"


async def test_rate_limited_login_says_when_to_retry(start: Start) -> None:
    async with start(rate_limit_login_ip="2/minute") as server, server.client() as chat:
        await chat.register("grace", PASSWORD)
        await chat.login("grace", PASSWORD)
        with pytest.raises(AuthError):
            await chat.login("grace", "wrong-password-123")
        with pytest.raises(RateLimitedError) as caught:
            await chat.login("grace", PASSWORD)
    error = caught.value
    assert error.status == 429
    assert error.code == "rate_limited"
    assert isinstance(error.retry_after, int)
    assert 1 <= error.retry_after <= 60
    assert str(error.retry_after) in error.message
    assert isinstance(error, EchoChatError)


# --- automatic refresh ---------------------------------------------------------------------


async def test_expired_access_token_is_refreshed_transparently(server: Server) -> None:
    async with server.client() as chat:
        async with server.in_the_past():
            await chat.register("heidi", PASSWORD)
        old_access, old_refresh = chat.access_token, chat.refresh_token
        assert old_access is not None and old_refresh is not None
        assert error_code(await me_raw(server, old_access)) == "token_expired"

        me = await chat.me()  # 401 token_expired -> refresh -> retry, unseen by the caller
        assert me.username == "heidi"
        assert server.transport.calls("/me")[-2:] == [
            ("GET", "/api/v1/me", 401),
            ("GET", "/api/v1/me", 200),
        ]
        assert server.transport.calls("/auth/refresh")[-1] == ("POST", "/api/v1/auth/refresh", 200)
        assert chat.access_token not in (None, old_access)
        assert chat.refresh_token not in (None, old_refresh)
        assert (await chat.me()).session_id == me.session_id  # the same session goes on

        # The old refresh token is dead: within the grace window it only says "race" and
        # mints nothing; after it, presenting it again ends the session (reuse detection).
        raced = await refresh_raw(server, old_refresh)
        assert raced.status_code == 409
        assert error_code(raced) == "refresh_race"
        assert "access_token" not in raced.text
        server.clock.offset = timedelta(seconds=server.settings.settings.refresh_grace + 1)
        reused = await refresh_raw(server, old_refresh)
        assert reused.status_code == 401
        assert error_code(reused) == "refresh_reused"
        with pytest.raises(AuthError) as caught:
            await chat.me()
        assert caught.value.code == "session_revoked"


async def test_concurrent_requests_share_one_refresh(server: Server) -> None:
    async with server.client() as chat:
        async with server.in_the_past():
            await chat.register("ivan", PASSWORD)
        # All five requests reach the server with the expired token before any answer.
        server.transport.hold("/api/v1/me", 5)
        results = await asyncio.gather(*(chat.me() for _ in range(5)))
        assert {me.username for me in results} == {"ivan"}
        assert [status for *_, status in server.transport.calls("/me")] == [401] * 5 + [200] * 5
        assert len(server.transport.calls("/auth/refresh")) == 1


async def test_refreshes_ahead_of_expiry(server: Server) -> None:
    now = [1000.0]
    async with server.client(clock=lambda: now[0], refresh_margin=10) as chat:
        await chat.register("judy", PASSWORD)
        first = chat.refresh_token
        await chat.me()
        assert server.transport.calls("/auth/refresh") == []

        now[0] += TTL - 10  # ten seconds before the token runs out
        token = await chat.valid_access_token()
        assert token == chat.access_token
        assert chat.refresh_token != first
        assert len(server.transport.calls("/auth/refresh")) == 1
        await asyncio.gather(chat.me(), chat.sessions())
        assert len(server.transport.calls("/auth/refresh")) == 1
        assert [status for *_, status in server.transport.calls("/me")] == [200, 200]

        now[0] += TTL
        await asyncio.gather(chat.me(), chat.me(), chat.sessions())
        assert len(server.transport.calls("/auth/refresh")) == 2
        assert all(status < 400 for *_, status in server.transport.log)


async def test_explicit_refresh_rotates(server: Server) -> None:
    async with server.client() as chat:
        with pytest.raises(AuthError) as signed_out:
            await chat.refresh()
        assert signed_out.value.code == "not_authenticated"
        await chat.register("karl", PASSWORD)
        before = chat.refresh_token
        await chat.refresh()
        assert chat.refresh_token != before
        assert (await chat.me()).username == "karl"


async def test_logout_with_an_expired_token_needs_no_refresh(server: Server) -> None:
    async with server.client() as chat:
        async with server.in_the_past():
            await chat.register("laura", PASSWORD)
        refresh = chat.refresh_token
        assert refresh is not None
        await chat.logout()
        assert server.transport.calls("/auth/refresh") == []
        assert server.transport.calls("/auth/logout") == [("POST", "/api/v1/auth/logout", 204)]
        assert error_code(await refresh_raw(server, refresh)) == "session_revoked"


async def test_reused_refresh_token_ends_the_session(start: Start) -> None:
    """Someone copies the refresh token and rotates it first; when the SDK then presents its
    (now used) copy, the server ends the whole session, the thief's tokens included."""
    async with start(refresh_grace=0) as server, server.client() as chat:
        async with server.in_the_past():
            await chat.register("mallory-victim", PASSWORD)
        stolen = chat.refresh_token
        assert stolen is not None
        thief = await refresh_raw(server, stolen)
        assert thief.status_code == 200
        thief_access = thief.json()["access_token"]
        assert (await me_raw(server, thief_access)).status_code == 200

        server.clock.offset = timedelta(seconds=1)
        with pytest.raises(AuthError) as caught:
            await chat.me()  # expired -> refresh with the used token -> reuse detected
        assert caught.value.code == "refresh_reused"
        assert not chat.is_authenticated  # the SDK forgot the dead tokens
        assert error_code(await me_raw(server, thief_access)) == "session_revoked"
        with pytest.raises(AuthError) as again:
            await chat.me()
        assert again.value.code == "not_authenticated"


async def test_refresh_race_with_another_holder_is_reported(server: Server) -> None:
    """Another holder of the same refresh token rotated it a moment ago (within the grace
    window): the SDK retries with the token it has, and since that one has expired it
    reports the 409 ``refresh_race`` rather than a bare "expired"."""
    async with server.client() as chat:
        async with server.in_the_past():
            await chat.register("niaj", PASSWORD)
        assert chat.refresh_token is not None
        assert (await refresh_raw(server, chat.refresh_token)).status_code == 200
        with pytest.raises(ConflictError) as caught:
            await chat.me()
        assert caught.value.code == "refresh_race"
        assert chat.is_authenticated  # not the SDK's call to make: the session lives on
        assert [status for *_, status in server.transport.calls("/me")] == [401, 401]


# --- password reset --------------------------------------------------------------------------


async def test_reset_by_pin_needs_the_right_handle(server: Server) -> None:
    async with server.client() as signed_in, server.client() as chat:
        await signed_in.register("olivia", PASSWORD, email="olivia@example.com")
        handle = await chat.forgot_password("olivia@example.com")
        assert isinstance(handle, str) and len(handle) >= 32
        pin = pin_in(await server.last_email("olivia@example.com"))
        assert len(pin) == 6

        with pytest.raises(AuthError) as wrong:
            await chat.reset_password(NEW_PASSWORD, pin=pin, reset_handle="A" * 43)
        assert wrong.value.code == "reset_invalid"

        await chat.reset_password(NEW_PASSWORD, pin=pin, reset_handle=handle)
        with pytest.raises(AuthError) as used:
            await chat.reset_password(NEW_PASSWORD, pin=pin, reset_handle=handle)
        assert used.value.code == "reset_invalid"

        with pytest.raises(AuthError) as old:
            await chat.login("olivia", PASSWORD)
        assert old.value.code == "bad_credentials"
        assert (await chat.login("olivia", NEW_PASSWORD)).username == "olivia"
        with pytest.raises(AuthError) as ended:  # a reset ends every other session
            await signed_in.me()
        assert ended.value.code == "session_revoked"


async def test_reset_by_pin_with_the_remembered_handle(server: Server) -> None:
    async with server.client() as chat:
        await chat.register("peggy", PASSWORD, email="peggy@example.com")
        await chat.forgot_password("peggy")
        pin = pin_in(await server.last_email("peggy@example.com"))
        wrong_pin = "0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin)
        with pytest.raises(AuthError) as wrong:
            await chat.reset_password(NEW_PASSWORD, pin=wrong_pin)
        assert wrong.value.code == "pin_wrong"
        assert wrong.value.details["tries_left"] == 4
        await chat.reset_password(NEW_PASSWORD, pin=pin)
        with pytest.raises(ValueError, match="forgot_password"):
            await chat.reset_password(NEW_PASSWORD, pin=pin)  # the handle was spent
        await chat.login("peggy", NEW_PASSWORD)


async def test_reset_by_link_token(server: Server) -> None:
    async with server.client() as chat:
        await chat.register("quentin", PASSWORD, email="quentin@example.com")
        await chat.forgot_password("quentin")
        token = link_token_in(await server.last_email("quentin@example.com"))
        await chat.reset_password(NEW_PASSWORD, token=token)
        with pytest.raises(AuthError) as again:
            await chat.reset_password(PASSWORD + "-x", token=token)
        assert again.value.code == "reset_invalid"
        await chat.login("quentin", NEW_PASSWORD)


async def test_forgot_password_answers_the_same_for_unknown_accounts(server: Server) -> None:
    async with server.client() as chat:
        handle = await chat.forgot_password("nobody@example.com")
        assert isinstance(handle, str) and len(handle) >= 32
        with pytest.raises(AuthError) as caught:
            await chat.reset_password(NEW_PASSWORD, pin="123456")
        assert caught.value.code == "reset_invalid"


async def test_reset_password_needs_token_or_pin() -> None:
    async with EchoChatClient("http://echochat.invalid") as chat:
        with pytest.raises(ValueError, match="either"):
            await chat.reset_password(NEW_PASSWORD)
        with pytest.raises(ValueError, match="either"):
            await chat.reset_password(NEW_PASSWORD, token="t", pin="123456")
        with pytest.raises(ValueError, match="forgot_password"):
            await chat.reset_password(NEW_PASSWORD, pin="123456")


# --- errors and secrets without a server ---------------------------------------------------


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> EchoChatClient:
    return EchoChatClient("http://echochat.test/", transport=httpx.MockTransport(handler))


async def test_error_bodies_are_parsed_into_classes() -> None:
    answers = {
        "/api/v1/me": httpx.Response(
            403, json={"error": {"code": "banned", "message": "this account is banned"}}
        ),
        "/api/v1/auth/login": httpx.Response(
            429,
            headers={"Retry-After": "17"},
            json={"error": {"code": "rate_limited", "message": "slow down"}},
        ),
        "/api/v1/auth/sessions": httpx.Response(502, text="<html>Bad Gateway</html>"),
        "/api/v1/auth/password/forgot": httpx.Response(200, text="not json"),
    }
    async with mock(lambda request: answers[request.url.path]) as chat:
        with pytest.raises(ForbiddenError) as forbidden:
            await chat.me()
        assert (forbidden.value.status, forbidden.value.code) == (403, "banned")
        assert str(forbidden.value) == "banned (HTTP 403): this account is banned"

        with pytest.raises(RateLimitedError) as limited:
            await chat.login("someone", PASSWORD)
        assert limited.value.retry_after == 17

        with pytest.raises(EchoChatError) as gateway:
            await chat.sessions()
        assert type(gateway.value) is EchoChatError
        assert (gateway.value.status, gateway.value.code) == (502, "http_502")

        with pytest.raises(EchoChatError) as garbled:
            await chat.forgot_password("someone")
        assert garbled.value.code == "bad_response"


async def test_malformed_success_body_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"user": {"id": "1"}, "access_token": "x"})

    async with mock(handler) as chat:
        with pytest.raises(EchoChatError) as caught:
            await chat.login("someone", PASSWORD)
        assert caught.value.code == "bad_response"
        assert not chat.is_authenticated


async def test_network_failure_is_an_echochat_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with mock(handler) as chat:
        with pytest.raises(NetworkError) as caught:
            await chat.login("someone", PASSWORD)
    assert caught.value.status == 0
    assert caught.value.code == "network_error"
    assert "connection refused" in caught.value.message
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_base_url_with_a_path_prefix() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(202, json={"reset_handle": "h" * 43})

    async with EchoChatClient(
        "https://example.test/chat/", transport=httpx.MockTransport(handler)
    ) as chat:
        await chat.forgot_password("someone")
    assert seen == ["https://example.test/chat/api/v1/auth/password/forgot"]


async def test_tokens_never_show_in_reprs_or_errors(server: Server) -> None:
    async with server.client() as chat:
        assert repr(chat) == f"<EchoChatClient {server.url} signed out>"
        await chat.register("rupert", PASSWORD)
        secrets = [chat.access_token, chat.refresh_token, PASSWORD]
        with pytest.raises(NotFoundError) as caught:
            await chat.revoke_session("nope")
        me = await chat.me()
        shown = " ".join(
            [repr(chat), str(chat), repr(caught.value), str(caught.value), repr(me)]
            + [repr(s) for s in await chat.sessions()]
        )
        assert "rupert" in repr(chat)
        for secret in secrets:
            assert secret and secret not in shown


def test_the_sdk_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, echochat.client\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'fastapi' or m.startswith(("
        "'echochat.services', 'echochat.store', 'echochat.api', 'echochat.app', "
        "'echochat.bus', 'echochat.realtime', 'sqlalchemy')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_public_names() -> None:
    import echochat.client as sdk

    assert sorted(sdk.__all__) == sorted(
        name
        for name, value in vars(sdk).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    )
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


async def test_revoked_session_with_an_expired_token_signs_the_client_out(server: Server) -> None:
    async with server.client() as laptop, server.client() as phone:
        await laptop.register("sybil", PASSWORD)
        async with server.in_the_past():
            await phone.login("sybil", PASSWORD)
        await laptop.revoke_session(next(s.id for s in await laptop.sessions() if not s.current))
        with pytest.raises(AuthError) as caught:
            await phone.me()  # 401 token_expired -> refresh -> 401 session_revoked
        assert caught.value.code == "session_revoked"
        assert not phone.is_authenticated
        assert laptop.is_authenticated
