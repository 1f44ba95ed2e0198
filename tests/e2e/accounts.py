"""Steps the account journeys share: filling the account forms, reading the server's
outbox (the console mail backend keeps every email in its database) and its log."""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

import httpx
from playwright.async_api import Page, expect

from tests.conftest import LiveServer

__all__ = [
    "ALICE",
    "BOB",
    "Account",
    "Cast",
    "cast",
    "claim_token",
    "register_over_http",
    "sign_in",
    "sign_up",
    "wait_for_email",
]

EMAIL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    email: str
    password: str


ALICE = Account("alice", "Alice Liddell", "alice@example.org", "down-the-rabbit-hole")
BOB = Account("bob", "Bob Builder", "bob@example.org", "can-we-fix-it-yes")
CAROL = Account("carol", "Carol Singer", "carol@example.org", "carol-sings-carols")
DAVE = Account("dave", "Dave Digger", "dave@example.org", "dave-digs-deeper")


def renamed(who: Account, suffix: str) -> Account:
    """``who`` as ``<username>-<suffix>`` (and that email), same display name and password."""
    username = f"{who.username}-{suffix}"
    return Account(username, who.display_name, f"{username}@example.org", who.password)


@dataclass(frozen=True)
class Cast:
    """The usual four people under one test's own usernames (``alice-3f9a0c``...)."""

    alice: Account
    bob: Account
    carol: Account
    dave: Account


def cast() -> Cast:
    """A fresh :class:`Cast`: tests sharing a server (``shared_server``) each take one, so
    that none meets another test's users, buddies, messages or per-account limits."""
    suffix = secrets.token_hex(3)
    return Cast(*(renamed(who, suffix) for who in (ALICE, BOB, CAROL, DAVE)))


async def sign_up(
    page: Page, server: LiveServer, who: Account, *, confirm: str | None = None
) -> None:
    """Fill and send the registration form (the caller checks where it lands)."""
    if not page.url.endswith("/register"):
        await page.goto(server.url + "/register")
    form = page.locator("#register-form")
    await form.get_by_label("Username", exact=True).fill(who.username)
    await form.get_by_label("Display name").fill(who.display_name)
    await form.get_by_label("Email").fill(who.email)
    await form.get_by_label("Password", exact=True).fill(who.password)
    await form.get_by_label("Type it again").fill(who.password if confirm is None else confirm)
    await form.get_by_role("button", name="Create account").click()


async def sign_in(
    page: Page, server: LiveServer, username: str, password: str, path: str | None = "/login"
) -> None:
    """Fill and send the sign-in form at ``path`` (the caller checks where it lands)."""
    if path is not None:
        await page.goto(server.url + path)
    form = page.locator("#login-form")
    await form.get_by_label("Username", exact=True).fill(username)
    await form.get_by_label("Password", exact=True).fill(password)
    await form.get_by_role("button", name="Sign In").click()


async def register_over_http(server: LiveServer, who: Account) -> None:
    """Create an account the way a script would (no browser, no cookies kept)."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/api/v1/auth/register",
            json={
                "username": who.username,
                "password": who.password,
                "email": who.email,
                "display_name": who.display_name,
                "token_response": True,
            },
        )
    assert response.status_code == 201, response.text


async def fail_logins(server: LiveServer, username: str, times: int) -> None:
    """Wrong passwords for ``username``, the way a guessing script would send them."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(times):
            response = await http.post(
                "/api/v1/auth/login", json={"username": username, "password": "guess-" * 3}
            )
            assert response.status_code == 401, response.text


def ban(server: LiveServer, username: str, reason: str) -> None:
    """Ban a user in the server's database (there is no ban API yet)."""
    path = server.data_dir / "echochat.sqlite3"
    with sqlite3.connect(path, timeout=10) as db:
        changed = db.execute(
            "UPDATE users SET banned_at = created_at, ban_reason = ? WHERE username = ?",
            (reason, username),
        ).rowcount
    assert changed == 1


def _outbox(server: LiveServer, to: str) -> list[tuple[str, str]]:
    path = server.data_dir / "echochat.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT subject, body FROM email_outbox WHERE to_addr = ? ORDER BY id", (to,)
        ).fetchall()
    return [(str(subject), str(body)) for subject, body in rows]


async def wait_for_email(server: LiveServer, to: str, subject: str) -> str:
    """The body of the newest email to ``to`` whose subject contains ``subject``. Email goes
    out in the background after the response, so this polls the outbox, for a bounded time."""
    deadline = time.monotonic() + EMAIL_TIMEOUT_S
    while True:
        found = [body for subj, body in _outbox(server, to) if subject in subj]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no email {subject!r} to {to} within {EMAIL_TIMEOUT_S} s")
        await asyncio.sleep(0.05)  # poll interval of the bounded wait above


def reset_link(body: str) -> str:
    match = re.search(r"(https?://\S+/reset\?token=[A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


def reset_pin(body: str) -> str:
    match = re.search(r"^\s+(\d{6,12})\s*$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


def claim_token(server: LiveServer) -> str:
    """The first-admin token from the claim link ``echochat serve`` printed last (the log
    file is appended to, so earlier runs' links may precede it)."""
    log = server.log_path.read_text()
    tokens: list[str] = re.findall(r"/claim#([A-Za-z0-9_-]+)", log)
    assert tokens, log[-2000:]
    return tokens[-1]


async def expect_status(page: Page, text: str | re.Pattern[str]) -> None:
    await expect(page.get_by_role("status").filter(has_text=text)).to_be_visible()
