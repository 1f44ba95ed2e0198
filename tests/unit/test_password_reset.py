"""Password reset over HTTP: the emailed link and the PIN bound to the browser that asked.

The console mail backend keeps every message in the outbox table; the tests read it there
after letting the background sends finish (``ctx.drain()``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from echochat.services.tokens import hash_secret
from echochat.store import users as user_store
from echochat.store.outbox import OutboxRow
from echochat.store.tables import password_resets
from tests.unit.test_auth_api import (
    API,
    NEW_PASSWORD,
    PASSWORD,
    MakeSettings,
    Site,
    bearer,
    expect_error,
    open_site,
    set_cookies,
)

EMAIL = "alice@example.org"
RESET_SUBJECT = "Reset your EchoChat password"
CHANGED_SUBJECT = "Your EchoChat password was changed"


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[Site]:
    async with open_site(make_settings) as started:
        yield started


class ResetMail:
    def __init__(self, row: OutboxRow, public_url: str) -> None:
        self.row = row
        links = re.findall(r"https?://\S+", row.body)
        resets = [link for link in links if "/reset?" in link]
        assert len(resets) == 1, row.body
        self.link = resets[0]
        query = parse_qs(urlsplit(self.link).query)
        (self.token,) = query["token"]
        pins = re.findall(r"^\s+(\d+)\s*$", row.body, flags=re.MULTILINE)
        assert len(pins) == 1, row.body
        self.pin = pins[0]
        self.public_url = public_url


async def forgot(
    site: Site, login: str, http: httpx.AsyncClient | None = None, **headers: str
) -> httpx.Response:
    http = http or site.client()
    response = await http.post(
        f"{API}/auth/password/forgot", json={"login": login}, headers=headers
    )
    return response


async def reset_mail(site: Site, to: str = EMAIL) -> ResetMail:
    mails = [m for m in await site.outbox(to=to) if m.subject == RESET_SUBJECT]
    assert mails, "no reset email in the outbox"
    return ResetMail(mails[0], site.settings.public_url)


async def reset_row(site: Site, token: str) -> Mapping[str, Any]:
    (row,) = await site.rows(
        select(password_resets).where(password_resets.c.token_hash == hash_secret(token))
    )
    return row


async def reset(site: Site, http: httpx.AsyncClient | None = None, **body: Any) -> httpx.Response:
    http = http or site.client()
    return await http.post(f"{API}/auth/password/reset", json=body)


async def login(site: Site, password: str) -> httpx.Response:
    return await site.client().post(
        f"{API}/auth/login", json={"username": "alice", "password": password}
    )


def wrong(pin: str) -> str:
    return pin[:-1] + str((int(pin[-1]) + 1) % 10)


# --- asking ----------------------------------------------------------------------------------


async def test_forgot_answers_the_same_for_existing_and_unknown_accounts(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    await site.register("noemail")
    answers = [
        await forgot(site, "alice"),
        await forgot(site, "nobody"),
        await forgot(site, "nobody@example.org"),
        await forgot(site, "noemail"),
    ]
    shapes = []
    for response in answers:
        assert response.status_code == 202, response.text
        body = response.json()
        assert set(body) == {"status", "reset_handle"}
        assert body["status"] == "sent_if_account_exists"
        assert len(body["reset_handle"]) == 43
        cookie = set_cookies(response)["echochat_reset"]
        assert cookie["value"] == body["reset_handle"]
        shapes.append({k: v for k, v in cookie.items() if k != "value"})
    assert all(shape == shapes[0] for shape in shapes)
    assert shapes[0]["httponly"] is True
    assert shapes[0]["path"] == "/api/v1/auth/password"
    assert shapes[0]["samesite"].lower() == "strict"
    assert int(shapes[0]["max-age"]) == 600

    mails = await site.outbox()
    assert [(m.to_addr, m.subject) for m in mails] == [(EMAIL, RESET_SUBJECT)]
    assert len(await site.rows(select(password_resets))) == 1


async def test_reset_email_link_comes_from_public_url_not_host_header(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    response = await forgot(site, EMAIL, Host="evil.example")
    assert response.status_code == 202, response.text
    mail = await reset_mail(site)
    assert mail.row.to_addr == EMAIL
    assert "evil.example" not in mail.row.body
    assert mail.link.startswith(f"{site.settings.public_url}/reset?token=")
    assert len(base64.urlsafe_b64decode(mail.token + "=")) == 32  # 256 bits
    assert re.fullmatch(r"\d{6}", mail.pin)
    assert "alice" in mail.row.body
    # the link opens the reset page of this server
    page = await site.client().get(mail.link.removeprefix(site.settings.public_url))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


async def test_pin_length_follows_the_setting(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, reset_pin_length=9) as site:
        await site.register("alice", email=EMAIL)
        await forgot(site, "alice")
        mail = await reset_mail(site)
        assert re.fullmatch(r"\d{9}", mail.pin)


async def test_reset_secrets_are_stored_hashed(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    handle = (await forgot(site, "alice")).json()["reset_handle"]
    mail = await reset_mail(site)
    row = await reset_row(site, mail.token)
    assert row["token_hash"] == hash_secret(mail.token)
    assert row["binding_hash"] == hash_secret(handle)
    assert re.fullmatch(r"[0-9a-f]{64}", row["pin_hash"])
    assert row["pin_hash"] not in (mail.pin, hash_secret(mail.pin))  # keyed, not a plain hash
    values = [str(v) for v in row.values()]
    for secret in (mail.token, mail.pin, handle):
        assert all(secret not in value for value in values)
    assert row["link_expires_at"] - row["created_at"] == timedelta(minutes=30)
    assert row["pin_expires_at"] - row["created_at"] == timedelta(minutes=10)
    assert row["pin_attempts"] == 0
    assert row["used_at"] is None


async def test_banned_account_gets_no_reset_email(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    await site.ban("alice", "spam")
    response = await forgot(site, "alice")
    assert response.status_code == 202
    assert await site.outbox() == []


# --- reset by link ---------------------------------------------------------------------------


async def test_reset_by_link_works_once_and_ends_every_session(site: Site) -> None:
    browser = await site.register("alice", email=EMAIL)
    api = await site.tokens("alice")
    await forgot(site, "alice")
    mail = await reset_mail(site)

    done = await reset(site, token=mail.token, password=NEW_PASSWORD)
    assert done.status_code == 204, done.text
    again = await reset(site, token=mail.token, password="yet another passphrase")
    expect_error(again, 401, "reset_invalid")

    # every session ended, at once
    expect_error(await browser.get(f"{API}/me"), 401, "session_revoked")
    expect_error(
        await site.client().get(f"{API}/me", headers=bearer(api["access_token"])),
        401,
        "session_revoked",
    )
    refreshed = await site.client().post(
        f"{API}/auth/refresh", json={"refresh_token": api["refresh_token"]}
    )
    expect_error(refreshed, 401, "session_revoked")
    sessions = await site.sessions_of("alice")
    assert len(sessions) == 2
    assert {s["revoked_reason"] for s in sessions} == {"password_reset"}

    # the new password works, the old does not
    expect_error(await login(site, PASSWORD), 401, "bad_credentials")
    assert (await login(site, NEW_PASSWORD)).status_code == 200

    (entry,) = await site.audit("auth.password_reset")
    assert entry["actor"] == "alice"
    assert entry["target"] == "alice"
    assert entry["details"] == {"via": "link", "sessions_ended": 2}
    row = await reset_row(site, mail.token)
    assert row["used_at"] is not None

    changed = [m for m in await site.outbox(to=EMAIL) if m.subject == CHANGED_SUBJECT]
    assert len(changed) == 1
    assert mail.token not in changed[0].body
    assert NEW_PASSWORD not in changed[0].body


async def test_expired_link_is_refused(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    await forgot(site, "alice")
    mail = await reset_mail(site)
    await site.execute(
        update(password_resets)
        .where(password_resets.c.token_hash == hash_secret(mail.token))
        .values(link_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    expect_error(await reset(site, token=mail.token, password=NEW_PASSWORD), 401, "reset_invalid")
    assert (await login(site, PASSWORD)).status_code == 200
    assert await site.audit("auth.password_reset") == []


async def test_link_survives_a_refused_weak_password(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    await forgot(site, "alice")
    mail = await reset_mail(site)
    for weak, code in (
        ("tiny", "password_too_short"),
        ("1234567890", "password_too_common"),
        ("x" * 1025, "password_too_long"),
    ):
        expect_error(await reset(site, token=mail.token, password=weak), 422, code)
    assert (await reset(site, token=mail.token, password=NEW_PASSWORD)).status_code == 204


async def test_a_successful_reset_ends_the_other_pending_resets(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    await forgot(site, "alice")
    first = await reset_mail(site)
    await forgot(site, "alice")
    second = await reset_mail(site)
    assert first.token != second.token
    assert (await reset(site, token=second.token, password=NEW_PASSWORD)).status_code == 204
    expect_error(
        await reset(site, token=first.token, password="yet another passphrase"),
        401,
        "reset_invalid",
    )


async def test_unknown_token_and_malformed_bodies(site: Site) -> None:
    expect_error(await reset(site, token="x" * 43, password=NEW_PASSWORD), 401, "reset_invalid")
    expect_error(await reset(site, password=NEW_PASSWORD), 422, "invalid_input")
    expect_error(await reset(site, token="x" * 201, password=NEW_PASSWORD), 422, "invalid_input")
    expect_error(await reset(site, pin="12ab56", password=NEW_PASSWORD), 422, "invalid_input")
    expect_error(await reset(site, pin="1" * 13, password=NEW_PASSWORD), 422, "invalid_input")
    expect_error(await reset(site, token=["x"], password=NEW_PASSWORD), 422, "invalid_input")
    forgot_bad = await site.client().post(f"{API}/auth/password/forgot", json={"login": ""})
    expect_error(forgot_bad, 422, "invalid_input")
    forgot_long = await site.client().post(
        f"{API}/auth/password/forgot", json={"login": "a" * 100_000}
    )
    expect_error(forgot_long, 422, "invalid_input")


# --- reset by PIN ----------------------------------------------------------------------------


async def test_pin_works_only_in_the_browser_that_asked(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    asking = site.client()
    handle = (await forgot(site, "alice", http=asking)).json()["reset_handle"]
    mail = await reset_mail(site)

    elsewhere = site.client()
    expect_error(
        await reset(site, http=elsewhere, pin=mail.pin, password=NEW_PASSWORD), 401, "reset_invalid"
    )
    expect_error(
        await reset(site, pin=mail.pin, password=NEW_PASSWORD, reset_handle="x" * 43),
        401,
        "reset_invalid",
    )
    # a handle of another pending reset (the attacker's own) does not take the victim's PIN
    attacker_handle = (await forgot(site, "alice")).json()["reset_handle"]
    attacker_mail = await reset_mail(site)
    if attacker_mail.pin != mail.pin:  # equal once in a million: nothing to show then
        refused = await reset(
            site, pin=mail.pin, password=NEW_PASSWORD, reset_handle=attacker_handle
        )
        expect_error(refused, 401, "pin_wrong")
    row = await reset_row(site, mail.token)
    assert row["pin_attempts"] == 0  # counted on the attacker's reset, not on the victim's
    assert (await login(site, PASSWORD)).status_code == 200

    done = await reset(site, http=asking, pin=f" {mail.pin} ", password=NEW_PASSWORD)
    assert done.status_code == 204, done.text
    cleared = set_cookies(done)["echochat_reset"]
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/api/v1/auth/password"
    assert "echochat_reset" not in asking.cookies
    (entry,) = await site.audit("auth.password_reset")
    assert entry["details"]["via"] == "pin"
    assert (await login(site, NEW_PASSWORD)).status_code == 200
    # single use
    again = await reset(site, pin=mail.pin, password="yet another passphrase", reset_handle=handle)
    expect_error(again, 401, "reset_invalid")
    expect_error(
        await reset(site, token=mail.token, password="yet another one!"), 401, "reset_invalid"
    )


async def test_api_client_sends_the_handle_in_the_body(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    handle = (await forgot(site, EMAIL)).json()["reset_handle"]
    mail = await reset_mail(site)
    done = await reset(site, pin=mail.pin, password=NEW_PASSWORD, reset_handle=handle)
    assert done.status_code == 204, done.text
    assert (await login(site, NEW_PASSWORD)).status_code == 200


async def test_wrong_pins_count_down_and_then_the_reset_dies(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    asking = site.client()
    await forgot(site, "alice", http=asking)
    mail = await reset_mail(site)
    bad = wrong(mail.pin)
    for left in (4, 3, 2, 1):
        response = await reset(site, http=asking, pin=bad, password=NEW_PASSWORD)
        error = expect_error(response, 401, "pin_wrong")
        assert error["details"] == {"tries_left": left}
    fifth = await reset(site, http=asking, pin=bad, password=NEW_PASSWORD)
    expect_error(fifth, 403, "reset_locked")
    sixth = await reset(site, http=asking, pin=mail.pin, password=NEW_PASSWORD)
    assert sixth.status_code in (401, 403), sixth.text
    assert (await reset_row(site, mail.token))["pin_attempts"] == 5
    # the password did not change, and the reset is dead for the link too
    assert (await login(site, PASSWORD)).status_code == 200
    expect_error(await reset(site, token=mail.token, password=NEW_PASSWORD), 401, "reset_invalid")
    assert await site.audit("auth.password_reset") == []


async def test_sixth_pin_try_is_locked_even_with_the_right_pin(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    asking = site.client()
    await forgot(site, "alice", http=asking)
    mail = await reset_mail(site)
    for _ in range(5):
        await reset(site, http=asking, pin=wrong(mail.pin), password=NEW_PASSWORD)
    sixth = await reset(site, http=asking, pin=mail.pin, password=NEW_PASSWORD)
    expect_error(sixth, 403, "reset_locked")


async def test_parallel_wrong_pins_get_no_more_than_five_tries(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight guesses at once. Each request is held, after it has read the reset and before it
    compares the PIN, until all eight got there (the worst interleaving, made deterministic);
    a correct design still lets at most five guesses be compared."""
    await site.register("alice", email=EMAIL)
    handle = (await forgot(site, "alice")).json()["reset_handle"]
    mail = await reset_mail(site)
    guesses = [p for p in (f"{n:06d}" for n in range(100)) if p != mail.pin][:8]
    arrived = 0
    everyone = asyncio.Event()
    original = user_store.by_id

    async def by_id_when_all_have_read(conn: Any, user_id: int) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived == len(guesses):
            everyone.set()
        with contextlib.suppress(TimeoutError):  # a fixed design may not get here 8 times
            async with asyncio.timeout(5):
                await everyone.wait()
        return await original(conn, user_id)

    monkeypatch.setattr(user_store, "by_id", by_id_when_all_have_read)
    responses = await asyncio.gather(
        *(reset(site, pin=p, password=NEW_PASSWORD, reset_handle=handle) for p in guesses)
    )
    assert all(r.status_code in (401, 403) for r in responses), [r.text for r in responses]
    assert (await reset_row(site, mail.token))["pin_attempts"] <= 5
    compared = [r for r in responses if r.json()["error"]["code"] == "pin_wrong"]
    assert len(compared) <= 4


async def test_expired_pin_is_refused_but_the_link_still_works(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    asking = site.client()
    await forgot(site, "alice", http=asking)
    mail = await reset_mail(site)
    await site.execute(
        update(password_resets)
        .where(password_resets.c.token_hash == hash_secret(mail.token))
        .values(pin_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    expired = await reset(site, http=asking, pin=mail.pin, password=NEW_PASSWORD)
    expect_error(expired, 401, "reset_invalid")
    assert (await login(site, PASSWORD)).status_code == 200
    assert (await reset(site, token=mail.token, password=NEW_PASSWORD)).status_code == 204


async def test_weak_password_with_pin_does_not_spend_a_try(site: Site) -> None:
    await site.register("alice", email=EMAIL)
    asking = site.client()
    await forgot(site, "alice", http=asking)
    mail = await reset_mail(site)
    weak = await reset(site, http=asking, pin=mail.pin, password="tiny")
    expect_error(weak, 422, "password_too_short")
    assert (await reset_row(site, mail.token))["pin_attempts"] == 0
    assert (await reset(site, http=asking, pin=mail.pin, password=NEW_PASSWORD)).status_code == 204


# --- rate limits -----------------------------------------------------------------------------


async def test_reset_requests_are_limited_per_account(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, rate_limit_reset_account="2/hour") as site:
        await site.register("alice", email=EMAIL)
        for n in range(2):
            assert (
                await forgot(site, "alice", http=site.client(ip=f"198.51.100.{n}"))
            ).status_code == 202
        limited = await forgot(site, "ALICE", http=site.client(ip="198.51.100.9"))
        error = expect_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 3600
        assert error["details"] == {"retry_after": int(limited.headers["retry-after"])}
        assert len(await site.outbox()) == 2
        # unknown accounts are limited the same way (no oracle), other accounts are not
        for _ in range(2):
            assert (await forgot(site, "nobody")).status_code == 202
        expect_error(await forgot(site, "nobody"), 429, "rate_limited")
        assert (await forgot(site, "bob")).status_code == 202


async def test_reset_requests_are_limited_per_ip(make_settings: MakeSettings) -> None:
    async with open_site(make_settings, rate_limit_reset_ip="2/hour") as site:
        http = site.client(ip="203.0.113.7")
        assert (await forgot(site, "one", http=http)).status_code == 202
        assert (await forgot(site, "two", http=http)).status_code == 202
        limited = await forgot(site, "three", http=http)
        expect_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        other = await forgot(site, "three", http=site.client(ip="203.0.113.8"))
        assert other.status_code == 202


async def test_reset_limit_counts_per_account_not_per_login_text(
    make_settings: MakeSettings,
) -> None:
    async with open_site(make_settings, rate_limit_reset_account="2/hour") as site:
        await site.register("alice", email=EMAIL)
        assert (await forgot(site, "alice")).status_code == 202
        assert (await forgot(site, "alice")).status_code == 202
        expect_error(await forgot(site, EMAIL), 429, "rate_limited")


# --- logs ------------------------------------------------------------------------------------


async def test_logs_never_carry_passwords_tokens_or_pins(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="echochat"):
        await site.register("alice", email=EMAIL)
        expect_error(await login(site, "not the password"), 401, "bad_credentials")
        tokens = await site.tokens("alice")
        asking = site.client()
        handle = (await forgot(site, "alice", http=asking)).json()["reset_handle"]
        mail = await reset_mail(site)
        await reset(site, http=asking, pin=wrong(mail.pin), password=NEW_PASSWORD)
        assert (await reset(site, token=mail.token, password=NEW_PASSWORD)).status_code == 204
        await site.ctx.drain()
    text = caplog.text
    secrets = {
        "password": PASSWORD,
        "new password": NEW_PASSWORD,
        "wrong password": "not the password",
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "reset token": mail.token,
        "reset handle": handle,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == [], text
    assert not re.search(rf"(?<!\d){mail.pin}(?!\d)", text), text
    # but the events themselves are recorded
    assert "auth failure" in text
    assert "password reset" in text
    assert "wrong reset PIN" in text
