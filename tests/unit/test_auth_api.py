"""Accounts over HTTP against the real app: registration, login, CSRF, security headers,
/me, /metrics, the first-admin claim and the rate limits on login and registration.

The helpers at the top (:func:`open_site`, :class:`Site`, :func:`expect_error`, ...) are shared
by the other account suites (tokens, password reset, PostgreSQL, Redis, SMTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.sql import Executable

from echochat.app import create_app
from echochat.config import ResolvedSettings, Settings
from echochat.services import recovery, roles, server_settings
from echochat.services.context import Context
from echochat.store import outbox
from echochat.store.outbox import OutboxRow
from echochat.store.tables import audit_log, sessions, users
from tests.apps import running

API = "/api/v1"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a completely new passphrase"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

MakeSettings = Callable[..., ResolvedSettings]


# --- shared helpers ------------------------------------------------------------------------


class FakeClock:
    """The services' clock: the real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class Site:
    """A started app plus HTTP clients talking to it (each with its own cookie jar)."""

    def __init__(self, app: FastAPI, asgi: Any, settings: Settings) -> None:
        self.app = app
        self.asgi = asgi
        self.settings = settings
        self.clients: list[httpx.AsyncClient] = []

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    def client(
        self, *, ip: str = "127.0.0.1", user_agent: str = FIREFOX, base_url: str | None = None
    ) -> httpx.AsyncClient:
        """A new "browser" or API client: own cookie jar, own peer address."""
        transport = httpx.ASGITransport(
            app=self.asgi, raise_app_exceptions=False, client=(ip, 40000)
        )
        http = httpx.AsyncClient(
            transport=transport,
            base_url=base_url or self.settings.public_url,
            headers={"User-Agent": user_agent},
        )
        self.clients.append(http)
        return http

    async def register(
        self,
        username: str,
        *,
        email: str | None = None,
        password: str = PASSWORD,
        ip: str = "127.0.0.1",
        **fields: Any,
    ) -> httpx.AsyncClient:
        """Register over HTTP; the returned client holds the session cookies."""
        http = self.client(ip=ip)
        body = {"username": username, "password": password, "email": email, **fields}
        response = await http.post(f"{API}/auth/register", json=body)
        assert response.status_code == 201, response.text
        return http

    async def tokens(
        self, login: str, *, password: str = PASSWORD, ip: str = "127.0.0.1"
    ) -> dict[str, Any]:
        """Sign in in bearer mode; the token response body."""
        response = await self.client(ip=ip).post(
            f"{API}/auth/login",
            json={"username": login, "password": password, "token_response": True},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def execute(self, statement: Executable) -> None:
        async with self.ctx.db.transaction() as conn:
            await conn.execute(statement)

    async def rows(self, statement: Executable) -> list[Mapping[str, Any]]:
        async with self.ctx.db.read() as conn:
            return [row._mapping for row in await conn.execute(statement)]

    async def user(self, username: str) -> Mapping[str, Any]:
        found = await self.rows(select(users).where(users.c.username == username))
        assert len(found) == 1, found
        return found[0]

    async def user_count(self) -> int:
        (row,) = await self.rows(select(func.count().label("n")).select_from(users))
        return int(row["n"])

    async def audit(self, action: str) -> list[Mapping[str, Any]]:
        return await self.rows(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        )

    async def sessions_of(self, username: str) -> list[Mapping[str, Any]]:
        user = await self.user(username)
        return await self.rows(
            select(sessions).where(sessions.c.user_id == user["id"]).order_by(sessions.c.created_at)
        )

    async def ban(self, username: str, reason: str | None) -> None:
        await self.execute(
            update(users)
            .where(users.c.username == username)
            .values(banned_at=datetime.now(UTC), ban_reason=reason)
        )

    async def outbox(self, to: str | None = None) -> list[OutboxRow]:
        """The console mailer's outbox, newest first, after background sends finished."""
        await self.ctx.drain()
        async with self.ctx.db.read() as conn:
            return await outbox.latest(conn, to=to)

    async def close(self) -> None:
        for http in self.clients:
            await http.aclose()


@asynccontextmanager
async def open_site(make_settings: MakeSettings, **overrides: Any) -> AsyncIterator[Site]:
    """Start an app on settings ``overrides`` (lifespan run) and hand out a :class:`Site`."""
    settings = make_settings(**overrides).settings
    app = create_app(settings)
    async with running(app) as manager:
        site = Site(app, manager.app, settings)
        try:
            yield site
        finally:
            await site.close()


def expect_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``{"error": {"code", "message"}}`` with ``status`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def csrf(http: httpx.AsyncClient) -> dict[str, str]:
    """The double-submit header a page sends: its CSRF cookie echoed in X-CSRF-Token."""
    token = http.cookies.get("echochat_csrf")
    assert token, "no CSRF cookie in this client"
    return {"X-CSRF-Token": token}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_cookies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Set-Cookie headers by cookie name: ``value`` plus lower-cased attributes (flags True)."""
    out: dict[str, dict[str, Any]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        parsed: dict[str, Any] = {"value": value.strip('"')}
        for attribute in attributes:
            key, has_value, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value if has_value else True
        out[name] = parsed
    return out


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    csp = response.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.split()}
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[Site]:
    async with open_site(make_settings) as started:
        yield started


# --- registration --------------------------------------------------------------------------


async def test_register_signs_in_with_cookies(site: Site) -> None:
    http = site.client()
    response = await http.post(
        f"{API}/auth/register",
        json={
            "username": "Alice",
            "password": PASSWORD,
            "email": "Alice@Example.org",
            "display_name": "Alice Liddell",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["username"] == "alice"
    assert body["user"]["display_name"] == "Alice Liddell"
    assert body["expires_in"] == site.settings.access_token_ttl
    assert "access_token" not in body
    assert "refresh_token" not in body

    cookies = set_cookies(response)
    access = cookies["echochat_access"]
    assert access["httponly"] is True
    assert access["samesite"].lower() == "lax"
    assert access["path"] == "/"
    assert "secure" not in access  # http public URL
    refresh = cookies["echochat_refresh"]
    assert refresh["httponly"] is True
    assert refresh["samesite"].lower() == "lax"
    assert refresh["path"] == "/api/v1/auth/refresh"
    csrf_cookie = cookies["echochat_csrf"]
    assert "httponly" not in csrf_cookie  # the page reads it
    assert csrf_cookie["path"] == "/"
    assert csrf_cookie["value"] == body["csrf_token"]

    me = await http.get(f"{API}/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == "alice"
    assert me.json()["email"] == "Alice@Example.org"

    user = await site.user("alice")
    assert user["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in user["password_hash"]
    (session,) = await site.sessions_of("alice")
    assert session["device_label"] == "Firefox on Linux"
    assert session["ip"] == "127.0.0.1"
    assert session["revoked_at"] is None


@pytest.mark.parametrize(
    ("username", "status", "code"),
    [
        ("ab", 422, "invalid_username"),
        ("bad name", 422, "invalid_username"),
        ("bad!chars", 422, "invalid_username"),
        ("ädmin", 422, "invalid_username"),
        ("al\x00ice", 422, "invalid_username"),
        ("x" * 33, 422, "invalid_username"),
        ("", 422, "invalid_username"),
        ("x" * 65, 422, "invalid_input"),  # over the schema's limit
    ],
)
async def test_register_refuses_bad_usernames(
    site: Site, username: str, status: int, code: str
) -> None:
    response = await site.client().post(
        f"{API}/auth/register", json={"username": username, "password": PASSWORD}
    )
    expect_error(response, status, code)
    assert "set-cookie" not in response.headers
    assert await site.user_count() == 0


async def test_register_username_limits_are_inclusive(site: Site) -> None:
    await site.register("abc")
    await site.register("a" * 32)
    await site.register("Mixed.Case_name-1")
    assert {(await site.user(name))["username"] for name in ("abc", "a" * 32)} == {"abc", "a" * 32}
    assert (await site.user("mixed.case_name-1"))["username"] == "mixed.case_name-1"


async def test_register_duplicates_are_case_insensitive(site: Site) -> None:
    await site.register("alice", email="alice@example.org")
    again = await site.client().post(
        f"{API}/auth/register", json={"username": " ALICE ", "password": PASSWORD}
    )
    expect_error(again, 409, "username_taken")
    same_mail = await site.client().post(
        f"{API}/auth/register",
        json={"username": "bob", "password": PASSWORD, "email": "ALICE@Example.ORG"},
    )
    expect_error(same_mail, 409, "email_taken")
    assert await site.user_count() == 1


async def test_concurrent_registrations_of_one_name_create_one_account(site: Site) -> None:
    responses = await asyncio.gather(
        *(
            site.client().post(
                f"{API}/auth/register", json={"username": name, "password": PASSWORD}
            )
            for name in ("alice", "ALICE", "Alice")
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            expect_error(response, 409, "username_taken")
    assert await site.user_count() == 1


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@b", "two@@example.org", "spaces in@example.org", "x" * 250 + "@a.io"],
)
async def test_register_refuses_invalid_email(site: Site, email: str) -> None:
    response = await site.client().post(
        f"{API}/auth/register", json={"username": "alice", "password": PASSWORD, "email": email}
    )
    expect_error(response, 422, "invalid_email")
    assert await site.user_count() == 0


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("alice", "tiny-pw", "password_too_short"),
        ("alice", "123456789", "password_too_short"),
        ("alice", "x" * 1025, "password_too_long"),
        ("alice", "1234567890", "password_too_common"),
        ("alice", "Password123", "password_too_common"),
        ("charlie.brown", "Charlie.Brown", "password_is_username"),
    ],
)
async def test_register_refuses_weak_passwords(
    site: Site, username: str, password: str, code: str
) -> None:
    response = await site.client().post(
        f"{API}/auth/register", json={"username": username, "password": password}
    )
    error = expect_error(response, 422, code)
    assert error["details"] == {"field": "password"}
    assert password not in response.text
    assert await site.user_count() == 0


async def test_register_accepts_longest_password(site: Site) -> None:
    long_password = "p" * 1023 + "!"
    await site.register("alice", password=long_password)
    response = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": long_password}
    )
    assert response.status_code == 200, response.text


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


MALFORMED: list[tuple[str, bytes, str, set[int]]] = [
    ("text body", b"username=alice", "text/plain", {415}),
    ("form body", b"username=alice&password=x", "application/x-www-form-urlencoded", {415}),
    ("not JSON", b"{username: alice", "application/json", {422}),
    ("JSON array", b'["alice", "pw"]', "application/json", {422}),
    ("JSON string", b'"alice"', "application/json", {422}),
    ("JSON null", b"null", "application/json", {422}),
    ("empty object", b"{}", "application/json", {422}),
    (
        "number username",
        b'{"username": 12345, "password": "long enough pw"}',
        "application/json",
        {422},
    ),
    ("null password", b'{"username": "alice", "password": null}', "application/json", {422}),
    ("object password", b'{"username": "alice", "password": {"a": 1}}', "application/json", {422}),
    (
        "list flag",
        b'{"username": "alice", "password": "long enough pw", "token_response": [1]}',
        "application/json",
        {422},
    ),
    (
        "extra field",
        b'{"username": "alice", "password": "long enough pw", "is_admin": true}',
        "application/json",
        {422},
    ),
    (
        "100 KB username",
        b'{"username": "' + b"a" * 100_000 + b'", "password": "long enough pw"}',
        "application/json",
        {413, 422},
    ),
    (
        "1 MB password",
        b'{"username": "alice", "password": "' + b"p" * 1_000_000 + b'"}',
        "application/json",
        {413, 422},
    ),
    ("deep nesting", _deep(100_000), "application/json", {400, 413, 422}),
    (
        "not UTF-8",
        b'{"username": "\xff\xfe", "password": "long enough pw"}',
        "application/json",
        {400, 422},
    ),
]


@pytest.mark.parametrize(
    ("content", "content_type", "statuses"),
    [pytest.param(c, t, s, id=name) for name, c, t, s in MALFORMED],
)
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
async def test_malformed_bodies_are_refused_never_500(
    site: Site, path: str, content: bytes, content_type: str, statuses: set[int]
) -> None:
    response = await site.client().post(
        API + path, content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] in {
        "invalid_input",
        "unsupported_media_type",
        "too_large",
        "bad_request",
    }
    assert "Traceback" not in response.text
    assert len(response.content) < 10_000  # the input is not echoed back
    assert await site.user_count() == 0


async def test_validation_error_names_the_field(site: Site) -> None:
    response = await site.client().post(
        f"{API}/auth/register", json={"username": "alice", "password": 5}
    )
    error = expect_error(response, 422, "invalid_input")
    assert [f["field"] for f in error["fields"]] == ["password"]


async def test_registration_closed_by_admin_setting(site: Site) -> None:
    await server_settings.update(
        site.ctx, {"registration_open": False}, actor="tests", actor_id=None
    )
    response = await site.client().post(
        f"{API}/auth/register", json={"username": "alice", "password": PASSWORD}
    )
    expect_error(response, 403, "registration_closed")
    assert "set-cookie" not in response.headers
    assert await site.user_count() == 0
    (entry,) = await site.audit("settings.update")
    assert entry["target"] == "registration_open"

    await server_settings.update(
        site.ctx, {"registration_open": True}, actor="tests", actor_id=None
    )
    await site.register("alice")


async def test_email_required_by_admin_setting(site: Site) -> None:
    await server_settings.update(site.ctx, {"email_required": True}, actor="tests", actor_id=None)
    for email in (None, "", "   "):
        response = await site.client().post(
            f"{API}/auth/register", json={"username": "alice", "password": PASSWORD, "email": email}
        )
        error = expect_error(response, 422, "email_required")
        assert error["details"] == {"field": "email"}
    assert await site.user_count() == 0
    await site.register("alice", email="alice@example.org")
    assert (await site.user("alice"))["email"] == "alice@example.org"


async def test_register_with_token_response_sets_no_cookies(site: Site) -> None:
    http = site.client()
    response = await http.post(
        f"{API}/auth/register",
        json={"username": "botty", "password": PASSWORD, "token_response": True},
    )
    assert response.status_code == 201, response.text
    assert "set-cookie" not in response.headers
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == site.settings.access_token_ttl
    assert body["user"]["username"] == "botty"
    assert body["access_token"].count(".") == 2
    assert len(body["refresh_token"]) >= 43
    assert not http.cookies
    me = await http.get(f"{API}/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == "botty"


# --- login ---------------------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_look_the_same(site: Site) -> None:
    await site.register("alice")
    http = site.client()
    wrong = await http.post(
        f"{API}/auth/login", json={"username": "alice", "password": "not the password"}
    )
    unknown = await http.post(
        f"{API}/auth/login", json={"username": "nobody", "password": "not the password"}
    )
    first = expect_error(wrong, 401, "bad_credentials")
    second = expect_error(unknown, 401, "bad_credentials")
    assert first == second
    assert "set-cookie" not in wrong.headers
    assert "set-cookie" not in unknown.headers
    assert len(await site.sessions_of("alice")) == 1  # only the registration's


async def test_login_by_username_or_email_case_insensitively(site: Site) -> None:
    await site.register("alice", email="Alice@Example.org")
    for login in ("alice", "ALICE", " Alice ", "alice@example.org", "ALICE@EXAMPLE.ORG"):
        http = site.client()
        response = await http.post(
            f"{API}/auth/login", json={"username": login, "password": PASSWORD}
        )
        assert response.status_code == 200, (login, response.text)
        assert response.json()["user"]["username"] == "alice"
        assert {"echochat_access", "echochat_refresh", "echochat_csrf"} <= set(
            set_cookies(response)
        )
        assert (await http.get(f"{API}/me")).status_code == 200
    assert len(await site.sessions_of("alice")) == 6


async def test_banned_user_learns_the_reason_only_with_the_right_password(site: Site) -> None:
    alice = await site.register("alice")
    await site.ban("alice", "spamming the lobby")
    right = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    error = expect_error(right, 403, "banned")
    assert "spamming the lobby" in error["message"]
    assert "set-cookie" not in right.headers

    wrong = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": "not the password"}
    )
    error = expect_error(wrong, 401, "bad_credentials")
    assert "spamming" not in wrong.text
    # the session opened before the ban stops working too
    expect_error(await alice.get(f"{API}/me"), 403, "banned")
    assert len(await site.sessions_of("alice")) == 1


async def test_login_rehashes_when_parameters_change(site: Site) -> None:
    await site.register("alice")
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    old_hash = weak.hash(PASSWORD)
    await site.execute(
        update(users).where(users.c.username == "alice").values(password_hash=old_hash)
    )
    response = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    new_hash = (await site.user("alice"))["password_hash"]
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in new_hash
    assert not site.ctx.hasher.needs_rehash(new_hash)
    # and the password still works with the new hash, which is not rehashed again
    again = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert again.status_code == 200, again.text
    assert (await site.user("alice"))["password_hash"] == new_hash


async def test_https_public_url_gives_secure_prefixed_cookies(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, public_url="https://chat.example.org") as site:
        http = site.client()
        response = await http.post(
            f"{API}/auth/register", json={"username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        assert response.headers["strict-transport-security"].startswith("max-age=")
        cookies = set_cookies(response)
        assert set(cookies) == {
            "__Host-echochat_access",
            "__Secure-echochat_refresh",
            "echochat_csrf",
        }
        access = cookies["__Host-echochat_access"]
        assert access["secure"] is True
        assert access["httponly"] is True
        assert access["path"] == "/"
        assert "domain" not in access  # __Host- forbids it
        refresh = cookies["__Secure-echochat_refresh"]
        assert refresh["secure"] is True
        assert refresh["httponly"] is True
        assert refresh["path"] == "/api/v1/auth/refresh"
        assert cookies["echochat_csrf"]["secure"] is True

        assert (await http.get(f"{API}/me")).status_code == 200
        rotated = await http.post(f"{API}/auth/refresh", headers=csrf(http))
        assert rotated.status_code == 200, rotated.text
        assert set_cookies(rotated)["__Secure-echochat_refresh"]["secure"] is True
        # the plain cookie names mean nothing on an https deployment
        plain = site.client()
        plain.cookies.set("echochat_access", http.cookies["__Host-echochat_access"])
        expect_error(await plain.get(f"{API}/me"), 401, "not_authenticated")


# --- CSRF and origin checks ----------------------------------------------------------------


async def test_cookie_post_without_csrf_token_is_refused(site: Site) -> None:
    alice = await site.register("alice")
    response = await alice.post(f"{API}/auth/logout")
    expect_error(response, 403, "csrf_missing")
    assert (await alice.get(f"{API}/me")).status_code == 200  # nothing happened
    (session,) = await site.sessions_of("alice")
    assert session["revoked_at"] is None
    done = await alice.post(f"{API}/auth/logout", headers=csrf(alice))
    assert done.status_code == 204, done.text


async def test_wrong_csrf_token_is_refused(site: Site) -> None:
    alice = await site.register("alice")
    good = alice.cookies["echochat_csrf"]
    mismatch = await alice.post(f"{API}/auth/logout", headers={"X-CSRF-Token": good + "x"})
    expect_error(mismatch, 403, "csrf_invalid")
    # a forged pair (cookie and header equal, but not made by the server)
    nonce, _, mac = good.partition(".")
    forged = f"{nonce}.{mac[::-1]}"
    alice.cookies.set("echochat_csrf", forged)
    expect_error(
        await alice.post(f"{API}/auth/logout", headers={"X-CSRF-Token": forged}),
        403,
        "csrf_invalid",
    )
    no_mac = "just-a-nonce"
    alice.cookies.set("echochat_csrf", no_mac)
    expect_error(
        await alice.post(f"{API}/auth/logout", headers={"X-CSRF-Token": no_mac}),
        403,
        "csrf_invalid",
    )
    (session,) = await site.sessions_of("alice")
    assert session["revoked_at"] is None


async def test_csrf_token_of_another_session_is_refused(site: Site) -> None:
    alice = await site.register("alice")
    mallory = await site.register("mallory")
    stolen = mallory.cookies["echochat_csrf"]
    alice.cookies.set("echochat_csrf", stolen)
    response = await alice.post(f"{API}/auth/logout", headers={"X-CSRF-Token": stolen})
    expect_error(response, 403, "csrf_invalid")
    # an anonymous token (from GET /auth/csrf without a session) is not valid for a session
    anon = (await site.client().get(f"{API}/auth/csrf")).json()["csrf_token"]
    alice.cookies.set("echochat_csrf", anon)
    expect_error(
        await alice.post(f"{API}/auth/logout", headers={"X-CSRF-Token": anon}),
        403,
        "csrf_invalid",
    )
    assert all(s["revoked_at"] is None for s in await site.sessions_of("alice"))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:8001"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_foreign_origin_is_refused_even_with_a_valid_token(
    site: Site, headers: dict[str, str]
) -> None:
    alice = await site.register("alice")
    response = await alice.post(f"{API}/auth/logout", headers={**csrf(alice), **headers})
    expect_error(response, 403, "bad_origin")
    # and a cookie-less cross-site login attempt too
    login = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    expect_error(login, 403, "bad_origin")
    (session,) = await site.sessions_of("alice")
    assert session["revoked_at"] is None


async def test_same_origin_browser_request_with_token_passes(site: Site) -> None:
    alice = await site.register("alice")
    same = {"Origin": site.settings.public_url, "Sec-Fetch-Site": "same-origin"}
    response = await alice.patch(
        f"{API}/me", json={"display_name": "Alice"}, headers={**csrf(alice), **same}
    )
    assert response.status_code == 200, response.text
    refused = await alice.patch(f"{API}/me", json={"display_name": "Mallory"}, headers=same)
    expect_error(refused, 403, "csrf_missing")
    assert (await site.user("alice"))["display_name"] == "Alice"


async def test_browser_login_needs_the_anonymous_csrf_token(site: Site) -> None:
    await site.register("alice")
    browser = site.client()
    page = {"Origin": site.settings.public_url, "Sec-Fetch-Site": "same-origin"}
    body = {"username": "alice", "password": PASSWORD}
    # a browser (Origin header) without the token is refused
    expect_error(
        await browser.post(f"{API}/auth/login", json=body, headers=page), 403, "csrf_missing"
    )
    issued = await browser.get(f"{API}/auth/csrf")
    assert issued.status_code == 200
    anon = issued.json()["csrf_token"]
    assert set_cookies(issued)["echochat_csrf"]["value"] == anon
    response = await browser.post(
        f"{API}/auth/login", json=body, headers={**page, "X-CSRF-Token": anon}
    )
    assert response.status_code == 200, response.text
    bound = response.json()["csrf_token"]
    assert bound != anon
    assert browser.cookies["echochat_csrf"] == bound
    # the anonymous token does not carry over to the session
    stale = await browser.patch(
        f"{API}/me", json={"display_name": "x"}, headers={**page, "X-CSRF-Token": anon}
    )
    expect_error(stale, 403, "csrf_invalid")
    # GET /auth/csrf in a signed-in browser gives a token bound to its session
    fresh = (await browser.get(f"{API}/auth/csrf")).json()["csrf_token"]
    ok = await browser.patch(
        f"{API}/me", json={"display_name": "Alice"}, headers={**page, "X-CSRF-Token": fresh}
    )
    assert ok.status_code == 200, ok.text


async def test_bearer_requests_need_no_csrf_token(site: Site) -> None:
    await site.register("alice")
    tokens = await site.tokens("alice")
    http = site.client()
    patched = await http.patch(
        f"{API}/me", json={"display_name": "Bot Alice"}, headers=bearer(tokens["access_token"])
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["user"]["display_name"] == "Bot Alice"
    out = await http.post(f"{API}/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 204, out.text
    expect_error(
        await http.get(f"{API}/me", headers=bearer(tokens["access_token"])),
        401,
        "session_revoked",
    )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_non_json_bodies_are_refused_with_415(site: Site, content_type: str) -> None:
    alice = await site.register("alice")
    tokens = await site.tokens("alice")
    payload = b'{"display_name": "Mallory"}'
    for http, headers in (
        (alice, csrf(alice)),
        (site.client(), bearer(tokens["access_token"])),
        (site.client(), {}),
    ):
        response = await http.patch(
            f"{API}/me", content=payload, headers={**headers, "Content-Type": content_type}
        )
        expect_error(response, 415, "unsupported_media_type")
    assert (await site.user("alice"))["display_name"] == "alice"


async def test_non_ascii_csrf_token_is_refused_not_500(site: Site) -> None:
    alice = await site.register("alice")
    access = alice.cookies["echochat_access"]
    response = await site.client().post(
        f"{API}/auth/logout",
        headers={
            "X-CSRF-Token": b"nonce.\xe9t\xe9",
            "Cookie": b"echochat_access=" + access.encode() + b"; echochat_csrf=nonce.\xe9t\xe9",
        },
    )
    expect_error(response, 403, "csrf_invalid")


# --- security headers ----------------------------------------------------------------------


async def test_security_headers_on_csrf_endpoint(site: Site) -> None:
    response = await site.client().get(f"{API}/auth/csrf")
    assert response.status_code == 200
    assert_security_headers(response)
    assert "strict-transport-security" not in response.headers  # http deployment


async def test_security_headers_on_error_responses(site: Site) -> None:
    http = site.client()
    unauthenticated = await http.get(f"{API}/me")
    expect_error(unauthenticated, 401, "not_authenticated")
    assert_security_headers(unauthenticated)
    refused = await http.post(
        f"{API}/auth/login", content=b"x", headers={"Content-Type": "text/plain"}
    )
    expect_error(refused, 415, "unsupported_media_type")
    assert_security_headers(refused)
    invalid = await http.post(f"{API}/auth/login", json={"username": "a"})
    expect_error(invalid, 422, "invalid_input")
    assert_security_headers(invalid)


# --- /me -----------------------------------------------------------------------------------


async def test_me_shows_roles_and_permissions(site: Site) -> None:
    alice = await site.register("alice", email="alice@example.org")
    me = await alice.get(f"{API}/me")
    assert me.status_code == 200
    body = me.json()
    assert body["roles"] == ["user"]
    assert body["permissions"] == []
    assert body["email"] == "alice@example.org"
    (session,) = await site.sessions_of("alice")
    assert body["session_id"] == session["id"]

    await roles.grant_role(site.ctx.db, "alice", "moderator", actor="tests")
    body = (await alice.get(f"{API}/me")).json()
    assert body["roles"] == ["moderator", "user"]
    assert body["permissions"] == ["admin:basic", "reports:review", "rooms:manage"]


async def test_me_requires_a_session(site: Site) -> None:
    expect_error(await site.client().get(f"{API}/me"), 401, "not_authenticated")
    garbage = site.client()
    garbage.cookies.set("echochat_access", "not-a-jwt")
    expect_error(await garbage.get(f"{API}/me"), 401, "token_invalid")


async def test_patch_me_updates_display_name(site: Site) -> None:
    alice = await site.register("alice")
    response = await alice.patch(
        f"{API}/me", json={"display_name": "  Ada Lovelace  "}, headers=csrf(alice)
    )
    assert response.status_code == 200, response.text
    assert response.json()["user"]["display_name"] == "Ada Lovelace"
    assert (await site.user("alice"))["display_name"] == "Ada Lovelace"

    cleaned = await alice.patch(
        f"{API}/me", json={"display_name": "Ada\u202e\u0000 L."}, headers=csrf(alice)
    )
    assert cleaned.status_code == 200, cleaned.text
    assert cleaned.json()["user"]["display_name"] == "Ada L."

    unchanged = await alice.patch(f"{API}/me", json={}, headers=csrf(alice))
    assert unchanged.json()["user"]["display_name"] == "Ada L."

    blank = await alice.patch(f"{API}/me", json={"display_name": "   "}, headers=csrf(alice))
    assert blank.json()["user"]["display_name"] == "alice"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"display_name": "x" * 65}, "invalid_display_name"),
        ({"display_name": "x" * 201}, "invalid_input"),
        ({"display_name": 42}, "invalid_input"),
        ({"display_name": ["a"]}, "invalid_input"),
        ({"username": "root"}, "invalid_input"),
    ],
)
async def test_patch_me_validates(site: Site, payload: dict[str, Any], code: str) -> None:
    alice = await site.register("alice")
    response = await alice.patch(f"{API}/me", json=payload, headers=csrf(alice))
    expect_error(response, 422, code)
    assert (await site.user("alice"))["display_name"] == "alice"


# --- metrics -------------------------------------------------------------------------------


async def test_metrics_for_admins_only(site: Site) -> None:
    expect_error(await site.client().get("/metrics"), 401, "not_authenticated")
    alice = await site.register("alice")
    expect_error(await alice.get("/metrics"), 403, "permission_denied")
    assert await roles.grant_role(site.ctx.db, "alice", "admin", actor="tests")
    response = await alice.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "echochat_http_requests_total" in response.text
    assert 'route="/api/v1/auth/register"' in response.text


# --- first admin ---------------------------------------------------------------------------


async def test_first_admin_claim(site: Site) -> None:
    token = await recovery.new_admin_claim(site.ctx)
    assert token is not None
    assert len(token) >= 43
    body = {"token": token, "username": "root.admin", "password": PASSWORD}

    bogus = await site.client().post(f"{API}/auth/claim", json={**body, "token": "x" * 43})
    expect_error(bogus, 401, "claim_invalid")
    assert await site.user_count() == 0

    http = site.client()
    response = await http.post(f"{API}/auth/claim", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["user"]["username"] == "root.admin"
    me = (await http.get(f"{API}/me")).json()
    assert "admin" in me["roles"]
    assert "admin:basic" in me["permissions"]
    assert "users:manage" in me["permissions"]
    (entry,) = await site.audit("admin.claimed")
    assert entry["actor"] == "root.admin"
    assert entry["target"] == "root.admin"

    again = await site.client().post(f"{API}/auth/claim", json={**body, "username": "second.admin"})
    expect_error(again, 401, "claim_invalid")
    assert await site.user_count() == 1
    assert await recovery.new_admin_claim(site.ctx) is None


async def test_admin_claim_tokens_all_die_when_one_is_used(site: Site) -> None:
    first = await recovery.new_admin_claim(site.ctx)
    second = await recovery.new_admin_claim(site.ctx)
    assert first and second and first != second
    used = await site.client().post(
        f"{API}/auth/claim", json={"token": second, "username": "admin", "password": PASSWORD}
    )
    assert used.status_code == 201, used.text
    other = await site.client().post(
        f"{API}/auth/claim", json={"token": first, "username": "admin2", "password": PASSWORD}
    )
    expect_error(other, 401, "claim_invalid")


async def test_admin_claim_checks_fields_before_spending_the_token(site: Site) -> None:
    token = await recovery.new_admin_claim(site.ctx)
    assert token is not None
    weak = await site.client().post(
        f"{API}/auth/claim", json={"token": token, "username": "admin", "password": "1234567890"}
    )
    expect_error(weak, 422, "password_too_common")
    bad_name = await site.client().post(
        f"{API}/auth/claim", json={"token": token, "username": "a", "password": PASSWORD}
    )
    expect_error(bad_name, 422, "invalid_username")
    assert await site.user_count() == 0
    ok = await site.client().post(
        f"{API}/auth/claim", json={"token": token, "username": "admin", "password": PASSWORD}
    )
    assert ok.status_code == 201, ok.text


async def test_admin_claim_expires(site: Site) -> None:
    clock = FakeClock()
    site.ctx.clock = clock
    token = await recovery.new_admin_claim(site.ctx)
    assert token is not None
    assert await recovery.claim_is_valid(site.ctx, token)
    clock.advance(site.settings.admin_claim_ttl + 1)
    assert not await recovery.claim_is_valid(site.ctx, token)
    late = await site.client().post(
        f"{API}/auth/claim", json={"token": token, "username": "admin", "password": PASSWORD}
    )
    expect_error(late, 401, "claim_invalid")
    assert await site.user_count() == 0


async def test_admin_claim_refused_once_an_admin_exists_otherwise(site: Site) -> None:
    token = await recovery.new_admin_claim(site.ctx)
    assert token is not None
    await site.register("alice")
    await roles.grant_role(site.ctx.db, "alice", "admin", actor="cli")
    assert await recovery.new_admin_claim(site.ctx) is None
    late = await site.client().post(
        f"{API}/auth/claim", json={"token": token, "username": "mallory", "password": PASSWORD}
    )
    assert late.status_code in (401, 409), late.text
    assert late.json()["error"]["code"] in ("claim_invalid", "admin_exists")
    assert await site.user_count() == 1
    assert await site.audit("admin.claimed") == []


# --- rate limits on login and registration -------------------------------------------------


def assert_rate_limited(response: httpx.Response, window: int) -> None:
    error = expect_error(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert error["details"] == {"retry_after": retry_after}


async def test_login_rate_limit_per_ip(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, rate_limit_login_ip="3/minute") as site:
        http = site.client(ip="203.0.113.7")
        body = {"username": "nobody", "password": "not the password"}
        for _ in range(3):
            expect_error(await http.post(f"{API}/auth/login", json=body), 401, "bad_credentials")
        assert_rate_limited(await http.post(f"{API}/auth/login", json=body), 60)
        # another address is not affected
        other = site.client(ip="203.0.113.8")
        expect_error(await other.post(f"{API}/auth/login", json=body), 401, "bad_credentials")


async def test_spoofed_forwarded_for_does_not_evade_the_ip_limit(
    make_settings: MakeSettings,
) -> None:
    async with open_site(make_settings, rate_limit_login_ip="2/minute") as site:
        http = site.client(ip="203.0.113.7")
        body = {"username": "nobody", "password": "not the password"}
        for n in range(2):
            response = await http.post(
                f"{API}/auth/login", json=body, headers={"X-Forwarded-For": f"198.51.100.{n}"}
            )
            expect_error(response, 401, "bad_credentials")
        spoofed = await http.post(
            f"{API}/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.99"}
        )
        assert_rate_limited(spoofed, 60)


async def test_ip_limit_behind_a_trusted_proxy_counts_each_client(
    make_settings: MakeSettings,
) -> None:
    async with open_site(
        make_settings, rate_limit_login_ip="2/minute", trusted_proxies=["10.0.0.0/8"]
    ) as site:
        proxy = site.client(ip="10.0.0.2")
        body = {"username": "nobody", "password": "not the password"}
        first = {"X-Forwarded-For": "198.51.100.1"}
        for _ in range(2):
            expect_error(
                await proxy.post(f"{API}/auth/login", json=body, headers=first),
                401,
                "bad_credentials",
            )
        assert_rate_limited(await proxy.post(f"{API}/auth/login", json=body, headers=first), 60)
        second = {"X-Forwarded-For": "198.51.100.2, 10.0.0.3"}
        expect_error(
            await proxy.post(f"{API}/auth/login", json=body, headers=second),
            401,
            "bad_credentials",
        )


async def test_failed_logins_per_account_lock_even_the_right_password(
    make_settings: MakeSettings,
) -> None:
    async with open_site(make_settings, rate_limit_login_account="3/minute") as site:
        await site.register("alice", email="alice@example.org")
        wrong = {"username": "alice", "password": "not the password"}
        # a success clears the count of failures
        for _ in range(2):
            expect_error(
                await site.client().post(f"{API}/auth/login", json=wrong), 401, "bad_credentials"
            )
        assert (
            await site.client().post(
                f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
            )
        ).status_code == 200
        # failures from several addresses all count against the account
        for n in range(3):
            http = site.client(ip=f"198.51.100.{n}")
            expect_error(await http.post(f"{API}/auth/login", json=wrong), 401, "bad_credentials")
        right = await site.client(ip="198.51.100.50").post(
            f"{API}/auth/login", json={"username": "Alice", "password": PASSWORD}
        )
        assert_rate_limited(right, 60)
        assert "set-cookie" not in right.headers
        # another account is not affected
        expect_error(
            await site.client().post(
                f"{API}/auth/login", json={"username": "bob", "password": "not the password"}
            ),
            401,
            "bad_credentials",
        )


async def test_failed_logins_count_per_account_not_per_login_text(
    make_settings: MakeSettings,
) -> None:
    async with open_site(make_settings, rate_limit_login_account="3/minute") as site:
        await site.register("alice", email="alice@example.org")
        for _ in range(3):
            expect_error(
                await site.client().post(
                    f"{API}/auth/login", json={"username": "alice", "password": "not it at all"}
                ),
                401,
                "bad_credentials",
            )
        by_email = await site.client().post(
            f"{API}/auth/login", json={"username": "alice@example.org", "password": PASSWORD}
        )
        assert_rate_limited(by_email, 60)


async def test_registration_rate_limit_per_ip(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, rate_limit_register_ip="2/hour") as site:
        await site.register("alice", ip="203.0.113.7")
        await site.register("bob", ip="203.0.113.7")
        third = await site.client(ip="203.0.113.7").post(
            f"{API}/auth/register", json={"username": "carol", "password": PASSWORD}
        )
        assert_rate_limited(third, 3600)
        assert await site.user_count() == 2
        await site.register("carol", ip="203.0.113.8")
        assert await site.user_count() == 3


def test_helpers_parse_set_cookie() -> None:
    response = httpx.Response(
        200,
        headers=[
            ("set-cookie", "a=1; HttpOnly; Path=/; SameSite=lax"),
            ("set-cookie", 'b="two"; Max-Age=5; Secure'),
        ],
    )
    assert set_cookies(response) == {
        "a": {"value": "1", "httponly": True, "path": "/", "samesite": "lax"},
        "b": {"value": "two", "max-age": "5", "secure": True},
    }
