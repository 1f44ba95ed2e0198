"""Access tokens, sessions and refresh rotation over HTTP (ARCHITECTURE section 12, RFC 9700
4.14.2): claims are checked, a session's revocation bites at once, and a reused refresh token
ends the whole session and is audited."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from echochat.services.tokens import AUDIENCE, TokenKeys, hash_secret
from echochat.store.tables import refresh_tokens, sessions
from tests.unit.test_auth_api import (
    API,
    PASSWORD,
    FakeClock,
    MakeSettings,
    Site,
    bearer,
    csrf,
    expect_error,
    open_site,
    set_cookies,
)


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[Site]:
    async with open_site(make_settings) as started:
        started.ctx.clock = FakeClock()
        yield started


@pytest.fixture
async def strict_site(make_settings: MakeSettings) -> AsyncIterator[Site]:
    """No grace window: any reuse of a rotated refresh token counts."""
    async with open_site(make_settings, refresh_grace=0) as started:
        started.ctx.clock = FakeClock()
        yield started


def clock(site: Site) -> FakeClock:
    fake = site.ctx.clock
    assert isinstance(fake, FakeClock)
    return fake


async def me(site: Site, access_token: str) -> Any:
    return await site.client().get(f"{API}/me", headers=bearer(access_token))


async def refresh(site: Site, refresh_token: str) -> Any:
    return await site.client().post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def access_key(site: Site) -> bytes:
    key: bytes = site.ctx.keys._access_key
    return key


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def signed_in(site: Site, username: str = "alice") -> dict[str, Any]:
    await site.register(username)
    return await site.tokens(username)


# --- access token checks -------------------------------------------------------------------


async def test_access_token_claims(site: Site) -> None:
    tokens = await signed_in(site)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "HS256"
    claims = claims_of(tokens["access_token"])
    assert claims["iss"] == site.settings.public_url
    assert claims["aud"] == AUDIENCE
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == site.settings.access_token_ttl == 600
    user = await site.user("alice")
    assert claims["sub"] == str(user["id"])
    sessions_ = await site.sessions_of("alice")
    assert claims["sid"] == sessions_[-1]["id"]
    assert (await me(site, tokens["access_token"])).status_code == 200


async def test_expired_access_token(site: Site) -> None:
    tokens = await signed_in(site)
    claims = claims_of(tokens["access_token"])
    old = site.ctx.keys.issue_access(
        int(claims["sub"]), claims["sid"], now=time.time() - site.settings.access_token_ttl - 60
    )
    expect_error(await me(site, old), 401, "token_expired")
    cookie = site.client()
    cookie.cookies.set("echochat_access", old)
    expect_error(await cookie.get(f"{API}/me"), 401, "token_expired")


def _tampered(site: Site, token: str) -> list[tuple[str, str]]:
    claims = claims_of(token)
    key = access_key(site)
    head, body, sig = token.split(".")
    flipped_sig = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    flipped_body = b64({**claims, "sub": "999"})
    other_issuer = TokenKeys(
        site.settings.secret(), issuer="https://evil.example", access_ttl=600
    ).issue_access(int(claims["sub"]), claims["sid"])
    other_secret = TokenKeys(
        "another server secret, long enough to use", issuer=site.settings.public_url, access_ttl=600
    ).issue_access(int(claims["sub"]), claims["sid"])
    without_sid = {k: v for k, v in claims.items() if k != "sid"}
    with warnings.catch_warnings():  # PyJWT warns that a 32-byte key is short for SHA-512
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims, key, algorithm="HS512")
    return [
        ("flipped signature", f"{head}.{body}.{flipped_sig}"),
        ("edited payload", f"{head}.{flipped_body}.{sig}"),
        ("alg none", f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}."),
        ("alg none signed", f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.{sig}"),
        ("HS512 same key", hs512),
        ("wrong iss", other_issuer),
        ("wrong secret", other_secret),
        ("wrong aud", jwt.encode({**claims, "aud": "someone-else"}, key, algorithm="HS256")),
        ("no aud", jwt.encode({k: v for k, v in claims.items() if k != "aud"}, key)),
        ("wrong typ", jwt.encode({**claims, "typ": "refresh"}, key, algorithm="HS256")),
        ("missing sid", jwt.encode(without_sid, key, algorithm="HS256")),
        ("unknown sid", jwt.encode({**claims, "sid": "x" * 43}, key, algorithm="HS256")),
        ("other user's sid", jwt.encode({**claims, "sub": "999"}, key, algorithm="HS256")),
        ("non-numeric sub", jwt.encode({**claims, "sub": "alice"}, key, algorithm="HS256")),
        ("not a JWT", "not.a.jwt"),
        ("empty segments", ".."),
    ]


async def test_tampered_and_foreign_tokens_are_invalid(site: Site) -> None:
    tokens = await signed_in(site)
    for name, token in _tampered(site, tokens["access_token"]):
        response = await me(site, token)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "token_invalid", name
    # the genuine token still works
    assert (await me(site, tokens["access_token"])).status_code == 200


async def test_token_issued_for_the_future_is_refused(site: Site) -> None:
    tokens = await signed_in(site)
    claims = claims_of(tokens["access_token"])
    future = {**claims, "iat": claims["iat"] + 3600, "exp": claims["exp"] + 3600}
    token = jwt.encode(future, access_key(site), algorithm="HS256")
    response = await me(site, token)
    expect_error(response, 401, "token_invalid")


# --- sessions ------------------------------------------------------------------------------


async def test_sessions_list_only_own_and_marks_current(site: Site) -> None:
    alice_browser = await site.register("alice")
    phone = site.client(
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Version/17 Safari/604.1"
    )
    assert (
        await phone.post(f"{API}/auth/login", json={"username": "alice", "password": PASSWORD})
    ).status_code == 200
    await site.register("bob")

    listed = await alice_browser.get(f"{API}/auth/sessions")
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    own = {s["id"] for s in await site.sessions_of("alice")}
    assert {row["id"] for row in rows} == own
    assert len(rows) == 2
    current = [row for row in rows if row["current"]]
    assert len(current) == 1
    assert current[0]["id"] == (await alice_browser.get(f"{API}/me")).json()["session_id"]
    labels = {row["device_label"] for row in rows}
    assert labels == {"Firefox on Linux", "Safari on iOS"}
    assert all(row["ip"] == "127.0.0.1" for row in rows)
    assert set(rows[0]) == {"id", "device_label", "ip", "created_at", "last_seen_at", "current"}

    from_phone = (await phone.get(f"{API}/auth/sessions")).json()
    assert [row["id"] for row in from_phone if row["current"]] == [
        (await phone.get(f"{API}/me")).json()["session_id"]
    ]


async def test_revoking_a_session_kills_its_tokens_at_once(site: Site) -> None:
    laptop = await site.register("alice")
    api = await site.tokens("alice")
    api_session = claims_of(api["access_token"])["sid"]

    response = await laptop.delete(f"{API}/auth/sessions/{api_session}", headers=csrf(laptop))
    assert response.status_code == 204, response.text
    expect_error(await me(site, api["access_token"]), 401, "session_revoked")
    expect_error(await refresh(site, api["refresh_token"]), 401, "session_revoked")
    (row,) = await site.rows(select(sessions).where(sessions.c.id == api_session))
    assert row["revoked_at"] is not None
    assert row["revoked_reason"] == "revoked_by_user"
    # the revoking session lives on, and the revoked one is no longer listed
    listed = (await laptop.get(f"{API}/auth/sessions")).json()
    assert [row["id"] for row in listed] == [(await laptop.get(f"{API}/me")).json()["session_id"]]
    # revoking it again is "not found"
    again = await laptop.delete(f"{API}/auth/sessions/{api_session}", headers=csrf(laptop))
    expect_error(again, 404, "session_not_found")


async def test_revoking_another_users_session_is_not_found(site: Site) -> None:
    alice = await signed_in(site, "alice")
    bob = await signed_in(site, "bob")
    bob_session = claims_of(bob["access_token"])["sid"]
    http = site.client()
    for target in (bob_session, "no-such-session", "x" * 500):
        response = await http.delete(
            f"{API}/auth/sessions/{target}", headers=bearer(alice["access_token"])
        )
        expect_error(response, 404, "session_not_found")
    assert (await me(site, bob["access_token"])).status_code == 200
    expect_error(await http.delete(f"{API}/auth/sessions/{bob_session}"), 401, "not_authenticated")


async def test_logout_revokes_the_session(site: Site) -> None:
    alice = await site.register("alice")
    access = alice.cookies["echochat_access"]
    refresh_cookie = alice.cookies["echochat_refresh"]
    response = await alice.post(f"{API}/auth/logout", headers=csrf(alice))
    assert response.status_code == 204, response.text
    cleared = set_cookies(response)
    assert cleared["echochat_access"]["max-age"] == "0"
    assert cleared["echochat_refresh"]["max-age"] == "0"
    assert cleared["echochat_refresh"]["path"] == "/api/v1/auth/refresh"
    assert cleared["echochat_csrf"]["value"]  # a fresh anonymous CSRF token
    assert "echochat_access" not in alice.cookies

    expect_error(await me(site, access), 401, "session_revoked")
    expect_error(await refresh(site, refresh_cookie), 401, "session_revoked")
    (row,) = await site.sessions_of("alice")
    assert row["revoked_reason"] == "logout"
    expect_error(
        await alice.post(f"{API}/auth/logout", headers=csrf(alice)), 401, "not_authenticated"
    )


async def test_logout_with_an_expired_access_token_still_ends_the_session(site: Site) -> None:
    tokens = await signed_in(site)
    claims = claims_of(tokens["access_token"])
    expired = site.ctx.keys.issue_access(int(claims["sub"]), claims["sid"], now=time.time() - 3600)
    response = await site.client().post(f"{API}/auth/logout", headers=bearer(expired))
    assert response.status_code == 204, response.text
    expect_error(await refresh(site, tokens["refresh_token"]), 401, "session_revoked")


# --- refresh rotation ----------------------------------------------------------------------


async def test_refresh_rotates_in_bearer_mode(site: Site) -> None:
    tokens = await signed_in(site)
    seen = {tokens["refresh_token"]}
    current = tokens
    for _ in range(3):
        response = await refresh(site, current["refresh_token"])
        assert response.status_code == 200, response.text
        fresh = response.json()
        assert fresh["token_type"] == "bearer"
        assert fresh["refresh_token"] not in seen
        assert "set-cookie" not in response.headers
        assert claims_of(fresh["access_token"])["sid"] == claims_of(tokens["access_token"])["sid"]
        assert (await me(site, fresh["access_token"])).status_code == 200
        seen.add(fresh["refresh_token"])
        current = fresh
    # stored hashed, never raw; only the newest is unused
    sid = claims_of(tokens["access_token"])["sid"]
    stored = await site.rows(select(refresh_tokens).where(refresh_tokens.c.session_id == sid))
    assert {row["token_hash"] for row in stored} == {hash_secret(t) for t in seen}
    unused = [row for row in stored if row["used_at"] is None]
    assert [row["token_hash"] for row in unused] == [hash_secret(current["refresh_token"])]


async def test_refresh_rotates_in_cookie_mode(site: Site) -> None:
    alice = await site.register("alice")
    first_refresh = alice.cookies["echochat_refresh"]
    csrf_before = alice.cookies["echochat_csrf"]
    response = await alice.post(f"{API}/auth/refresh", headers=csrf(alice))
    assert response.status_code == 200, response.text
    cookies = set_cookies(response)
    assert cookies["echochat_refresh"]["value"] != first_refresh
    assert cookies["echochat_refresh"]["path"] == "/api/v1/auth/refresh"
    assert cookies["echochat_refresh"]["httponly"] is True
    assert cookies["echochat_access"]["httponly"] is True
    assert "echochat_csrf" not in cookies  # the CSRF token stays valid for every tab
    assert response.json()["csrf_token"] == csrf_before
    assert "refresh_token" not in response.json()
    assert (await alice.get(f"{API}/me")).status_code == 200
    again = await alice.post(f"{API}/auth/refresh", headers=csrf(alice))
    assert again.status_code == 200, again.text


async def test_refresh_cookie_is_scoped_to_the_refresh_path(site: Site) -> None:
    alice = await site.register("alice")
    seen: list[str] = []

    async def record(request: Any) -> None:
        seen.append(request.headers.get("cookie", ""))

    alice.event_hooks["request"].append(record)
    await alice.get(f"{API}/me")
    await alice.post(f"{API}/auth/refresh", headers=csrf(alice))
    assert "echochat_refresh" not in seen[0]
    assert "echochat_refresh" in seen[1]


async def test_refresh_without_or_with_unknown_token(site: Site) -> None:
    expect_error(await site.client().post(f"{API}/auth/refresh"), 401, "refresh_invalid")
    expect_error(await refresh(site, "made-up-token"), 401, "refresh_invalid")
    response = await site.client().post(f"{API}/auth/refresh", json={"refresh_token": "x" * 201})
    expect_error(response, 422, "invalid_input")


async def test_refresh_reuse_outside_grace_kills_the_session(strict_site: Site) -> None:
    site = strict_site
    tokens = await signed_in(site)
    sid = claims_of(tokens["access_token"])["sid"]
    rotated = (await refresh(site, tokens["refresh_token"])).json()
    clock(site).advance(1)

    reused = await refresh(site, tokens["refresh_token"])
    expect_error(reused, 401, "refresh_reused")
    # every token of the session is dead: the newest refresh token and both access tokens
    expect_error(await refresh(site, rotated["refresh_token"]), 401, "session_revoked")
    expect_error(await me(site, rotated["access_token"]), 401, "session_revoked")
    expect_error(await me(site, tokens["access_token"]), 401, "session_revoked")
    (row,) = await site.rows(select(sessions).where(sessions.c.id == sid))
    assert row["revoked_reason"] == "refresh_reuse"
    (entry,) = await site.audit("auth.refresh_reuse")
    assert entry["actor"] == "alice"
    assert entry["actor_id"] == (await site.user("alice"))["id"]
    assert entry["target_type"] == "session"
    assert sid.startswith(entry["target"])
    assert entry["ip"] == "127.0.0.1"
    # other sessions of the user live on
    other = await site.tokens("alice")
    assert (await me(site, other["access_token"])).status_code == 200


async def test_refresh_reuse_in_cookie_mode_clears_the_cookies(strict_site: Site) -> None:
    site = strict_site
    alice = await site.register("alice")
    stolen = alice.cookies["echochat_refresh"]
    assert (await alice.post(f"{API}/auth/refresh", headers=csrf(alice))).status_code == 200
    clock(site).advance(1)
    expect_error(await refresh(site, stolen), 401, "refresh_reused")
    # the victim's browser is signed out: its next refresh fails and clears the cookies
    failed = await alice.post(f"{API}/auth/refresh", headers=csrf(alice))
    expect_error(failed, 401, "session_revoked")
    cleared = set_cookies(failed)
    assert cleared["echochat_access"]["max-age"] == "0"
    assert cleared["echochat_refresh"]["max-age"] == "0"
    expect_error(await alice.get(f"{API}/me"), 401, "not_authenticated")
    assert len(await site.audit("auth.refresh_reuse")) == 1


async def test_refresh_reuse_inside_grace_is_a_race_not_theft(site: Site) -> None:
    assert site.settings.refresh_grace == 10
    tokens = await signed_in(site)
    rotated = (await refresh(site, tokens["refresh_token"])).json()
    clock(site).advance(5)
    race = await refresh(site, tokens["refresh_token"])
    expect_error(race, 409, "refresh_race")
    # the session lives: the newest tokens work
    assert (await me(site, rotated["access_token"])).status_code == 200
    newer = await refresh(site, rotated["refresh_token"])
    assert newer.status_code == 200, newer.text
    assert await site.audit("auth.refresh_reuse") == []
    # once the grace window has passed, the same reuse is theft
    clock(site).advance(6)
    expect_error(await refresh(site, tokens["refresh_token"]), 401, "refresh_reused")
    expect_error(await refresh(site, newer.json()["refresh_token"]), 401, "session_revoked")


async def test_banned_user_cannot_refresh(site: Site) -> None:
    tokens = await signed_in(site)
    await site.ban("alice", "spam")
    expect_error(await refresh(site, tokens["refresh_token"]), 403, "banned")
    expect_error(await me(site, tokens["access_token"]), 403, "banned")


async def test_refresh_after_session_expiry_fails(site: Site) -> None:
    tokens = await signed_in(site)
    clock(site).advance(site.settings.session_ttl + 1)
    expect_error(await refresh(site, tokens["refresh_token"]), 401, "session_revoked")


async def test_refresh_extends_the_session(site: Site) -> None:
    tokens = await signed_in(site)
    sid = claims_of(tokens["access_token"])["sid"]
    (before,) = await site.rows(select(sessions).where(sessions.c.id == sid))
    clock(site).advance(2)
    assert (await refresh(site, tokens["refresh_token"])).status_code == 200
    (after,) = await site.rows(select(sessions).where(sessions.c.id == sid))
    assert after["expires_at"] > before["expires_at"]
    assert after["last_seen_at"] > before["last_seen_at"]


async def test_concurrent_refreshes_rotate_once(site: Site) -> None:
    """Two (here four) tabs refreshing with the same token at once: one rotation wins, the
    others are told to retry (409), and the session lives."""
    tokens = await signed_in(site)
    responses = await asyncio.gather(*(refresh(site, tokens["refresh_token"]) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409], [
        r.text for r in responses
    ]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await me(site, winner["access_token"])).status_code == 200
    assert (await refresh(site, winner["refresh_token"])).status_code == 200
    assert await site.audit("auth.refresh_reuse") == []
