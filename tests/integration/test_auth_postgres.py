"""Accounts on PostgreSQL: register, log in, refresh with rotation, reuse detection, password
reset by link and by PIN, and the refresh race between two tabs, over HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from echochat.services.tokens import hash_secret
from echochat.store.tables import password_resets, refresh_tokens
from tests.unit.test_auth_api import (
    API,
    NEW_PASSWORD,
    PASSWORD,
    FakeClock,
    MakeSettings,
    Site,
    bearer,
    csrf,
    expect_error,
    open_site,
)

pytestmark = pytest.mark.integration

EMAIL = "alice@example.org"


@pytest.fixture
async def site(make_settings: MakeSettings, pg_url: str) -> AsyncIterator[Site]:
    async with open_site(make_settings, database_url=pg_url, auto_migrate=True) as started:
        assert started.ctx.db.dialect == "postgresql"
        started.ctx.clock = FakeClock()
        yield started


def advance(site: Site, seconds: float) -> None:
    clock = site.ctx.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)


async def refresh(site: Site, token: str) -> httpx.Response:
    return await site.client().post(f"{API}/auth/refresh", json={"refresh_token": token})


async def me(site: Site, access_token: str) -> httpx.Response:
    return await site.client().get(f"{API}/me", headers=bearer(access_token))


def mail_secrets(body: str) -> tuple[str, str]:
    token = re.search(r"/reset\?token=(\S+)", body)
    pin = re.search(r"^\s+(\d+)\s*$", body, flags=re.MULTILINE)
    assert token and pin, body
    return token.group(1), pin.group(1)


async def test_register_login_refresh_reuse_on_postgres(site: Site) -> None:
    browser = await site.register("Alice", email="Alice@Example.org")
    assert (await browser.get(f"{API}/me")).json()["user"]["username"] == "alice"
    taken = await site.client().post(
        f"{API}/auth/register", json={"username": "ALICE", "password": PASSWORD}
    )
    expect_error(taken, 409, "username_taken")
    mail_taken = await site.client().post(
        f"{API}/auth/register",
        json={"username": "bob", "password": PASSWORD, "email": "alice@EXAMPLE.org"},
    )
    expect_error(mail_taken, 409, "email_taken")

    wrong = await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": "not the password"}
    )
    unknown = await site.client().post(
        f"{API}/auth/login", json={"username": "nobody", "password": "not the password"}
    )
    assert expect_error(wrong, 401, "bad_credentials") == expect_error(
        unknown, 401, "bad_credentials"
    )

    tokens = await site.tokens("ALICE@example.org")
    assert (await me(site, tokens["access_token"])).status_code == 200
    rotated = await refresh(site, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]

    # within the grace window a second use is a race; after it, theft
    expect_error(await refresh(site, tokens["refresh_token"]), 409, "refresh_race")
    advance(site, site.settings.refresh_grace + 1)
    expect_error(await refresh(site, tokens["refresh_token"]), 401, "refresh_reused")
    expect_error(await refresh(site, fresh["refresh_token"]), 401, "session_revoked")
    expect_error(await me(site, fresh["access_token"]), 401, "session_revoked")
    (entry,) = await site.audit("auth.refresh_reuse")
    assert entry["actor"] == "alice"
    # the browser's own session is untouched
    assert (await browser.get(f"{API}/me")).status_code == 200
    assert (await browser.post(f"{API}/auth/refresh", headers=csrf(browser))).status_code == 200


async def test_concurrent_refreshes_rotate_once(site: Site) -> None:
    await site.register("alice")
    tokens = await site.tokens("alice")
    responses = await asyncio.gather(*(refresh(site, tokens["refresh_token"]) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await me(site, winner["access_token"])).status_code == 200
    sid = jwt.decode(winner["access_token"], options={"verify_signature": False})["sid"]
    unused = await site.rows(
        select(refresh_tokens).where(
            refresh_tokens.c.session_id == sid, refresh_tokens.c.used_at.is_(None)
        )
    )
    assert [row["token_hash"] for row in unused] == [hash_secret(winner["refresh_token"])]


async def test_password_reset_by_link_and_pin_on_postgres(site: Site) -> None:
    browser = await site.register("alice", email=EMAIL)
    asking = site.client()
    handle = (await asking.post(f"{API}/auth/password/forgot", json={"login": "alice"})).json()[
        "reset_handle"
    ]
    (mail,) = await site.outbox(to=EMAIL)
    token, pin = mail_secrets(mail.body)
    assert mail.body.count(site.settings.public_url + "/reset?token=") == 1
    (row,) = await site.rows(select(password_resets))
    assert row["token_hash"] == hash_secret(token)
    assert row["binding_hash"] == hash_secret(handle)
    assert pin not in row["pin_hash"]

    # PIN: wrong tries are counted atomically, then the right PIN in the asking browser works
    bad = pin[:-1] + str((int(pin[-1]) + 1) % 10)
    for left in (4, 3):
        response = await asking.post(
            f"{API}/auth/password/reset", json={"pin": bad, "password": NEW_PASSWORD}
        )
        assert expect_error(response, 401, "pin_wrong")["details"] == {"tries_left": left}
    elsewhere = await site.client().post(
        f"{API}/auth/password/reset", json={"pin": pin, "password": NEW_PASSWORD}
    )
    expect_error(elsewhere, 401, "reset_invalid")
    done = await asking.post(
        f"{API}/auth/password/reset", json={"pin": pin, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text
    expect_error(await browser.get(f"{API}/me"), 401, "session_revoked")
    # the link of the same reset is spent too
    used = await site.client().post(
        f"{API}/auth/password/reset", json={"token": token, "password": "another passphrase!"}
    )
    expect_error(used, 401, "reset_invalid")

    # and a second reset, by link this time
    await site.client().post(f"{API}/auth/password/forgot", json={"login": EMAIL})
    resets = [m for m in await site.outbox(to=EMAIL) if m.subject.startswith("Reset")]
    link_token, _ = mail_secrets(resets[0].body)
    final = "the final passphrase"
    by_link = await site.client().post(
        f"{API}/auth/password/reset", json={"token": link_token, "password": final}
    )
    assert by_link.status_code == 204, by_link.text
    again = await site.client().post(
        f"{API}/auth/password/reset", json={"token": link_token, "password": final}
    )
    expect_error(again, 401, "reset_invalid")
    entries = await site.audit("auth.password_reset")
    assert [e["details"]["via"] for e in entries] == ["pin", "link"]
    changed = [m for m in await site.outbox(to=EMAIL) if "changed" in m.subject]
    assert len(changed) == 2

    login: dict[str, Any] = {"username": "alice", "password": final}
    assert (await site.client().post(f"{API}/auth/login", json=login)).status_code == 200
    old = {"username": "alice", "password": NEW_PASSWORD}
    expect_error(await site.client().post(f"{API}/auth/login", json=old), 401, "bad_credentials")
