"""Steps the buddy-list journeys share: accounts and buddies made over HTTP (fast, no
browser), a signed-in /chat page per user, and locators for the buddy-list window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from playwright.async_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import CAROL, DAVE, Account, register_over_http, sign_in
from tests.e2e.conftest import NewContext, PageWatch, Watch

__all__ = [
    "CAROL",
    "DAVE",
    "Chat",
    "ask",
    "befriend",
    "open_chat",
    "register",
    "revoke_browser_sessions",
]


# A socket that cannot connect while the server is down makes Chromium log the failed
# upgrade, and the client's refresh attempt fails too: expected during a restart only.
_DOWN_CONSOLE = re.compile(
    r"WebSocket connection to '.*/ws(\?[^']*)?' failed"
    r"|Failed to load resource: net::ERR_CONNECTION_REFUSED"
)
_DOWN_REQUEST = re.compile(r"/api/v1/auth/refresh: net::ERR_CONNECTION_REFUSED")


async def register(server: LiveServer, *accounts: Account) -> None:
    for who in accounts:
        await register_over_http(server, who)


async def _token(http: httpx.AsyncClient, who: Account) -> str:
    response = await http.post(
        "/api/v1/auth/login",
        json={"username": who.username, "password": who.password, "token_response": True},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def ask(server: LiveServer, asker: Account, username: str, message: str = "") -> int:
    """``asker`` sends a buddy request over HTTP; returns its id."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {await _token(http, asker)}"}
        sent = await http.post(
            "/api/v1/buddies/requests",
            json={"username": username, "message": message},
            headers=auth,
        )
    assert sent.status_code == 201, sent.text
    return int(sent.json()["id"])


async def befriend(server: LiveServer, asker: Account, answerer: Account) -> None:
    """Make two registered users buddies the way the SDK would: request, then accept."""
    request_id = await ask(server, asker, answerer.username)
    async with httpx.AsyncClient(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {await _token(http, answerer)}"}
        accepted = await http.post(
            f"/api/v1/buddies/requests/{request_id}/accept", json={}, headers=auth
        )
    assert accepted.status_code == 200, accepted.text


async def revoke_browser_sessions(server: LiveServer, who: Account) -> None:
    """End ``who``'s other sessions from a new one, as "sign out that device" would."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {await _token(http, who)}"}
        sessions = await http.get("/api/v1/auth/sessions", headers=auth)
        assert sessions.status_code == 200, sessions.text
        for session in sessions.json():
            if not session["current"]:
                ended = await http.delete(f"/api/v1/auth/sessions/{session['id']}", headers=auth)
                assert ended.status_code == 204, ended.text


@dataclass
class Chat:
    """One user's signed-in /chat page."""

    who: Account
    page: Page
    problems: PageWatch

    @property
    def name(self) -> str:
        """The user's username."""
        return self.who.username

    @property
    def window(self) -> Locator:
        return self.page.get_by_role("region", name="EchoChat — Buddy list")

    @property
    def notice(self) -> Locator:
        """The buddy list's notice line (what an action did, what went wrong)."""
        return self.window.locator("#buddy-notice")

    def buddy(self, username: str) -> Locator:
        return self.window.locator(f'.buddy[data-username="{username}"]')

    def group(self, name: str) -> Locator:
        return self.window.locator(f'.buddy-group[data-group="{name}"]')

    async def expect_state(self, username: str, state: str, timeout: float = 10_000) -> None:
        await expect(self.buddy(username)).to_have_attribute("data-state", state, timeout=timeout)

    async def menu(self, name: str, command: str) -> None:
        """Choose an item of the menu bar (``name`` is Messenger, Contacts, Actions, Help)."""
        await self.window.get_by_role("menuitem", name=name, exact=True).click()
        await self.page.locator(f'.menu [data-command="{command}"]').click()

    async def buddy_menu(self, username: str) -> Locator:
        """Open a buddy's context menu with its ⋯ button; returns the menu."""
        await self.buddy(username).locator(".buddy__more").click()
        menu = self.page.get_by_role("menu")
        await expect(menu).to_be_visible()
        return menu

    async def connected(self, timeout: float = 10_000) -> None:
        await expect(self.window).to_have_attribute("data-connection", "online", timeout=timeout)

    async def assert_clean(self, *, server_went_down: bool = False) -> None:
        """No problems on the page; a deliberate restart excuses the failures it causes."""
        if server_went_down:
            self.problems.console_errors = [
                (text, url)
                for text, url in self.problems.console_errors
                if not _DOWN_CONSOLE.search(text)
            ]
            self.problems.failed_requests = [
                r for r in self.problems.failed_requests if not _DOWN_REQUEST.search(r)
            ]
        await self.problems.assert_clean()


async def open_chat(
    new_context: NewContext,
    watch: Watch,
    server: LiveServer,
    who: Account,
    path: str = "/chat",
    *,
    dismiss_keys: bool = True,
    **context_options: Any,
) -> Chat:
    """A fresh browser context where ``who`` signs in and lands on ``path`` (/chat...),
    connected to the realtime socket; the encryption set-up dialog is answered with "Not
    now" unless ``dismiss_keys`` is false (for the journeys about encryption itself)."""
    context = await new_context(**context_options)
    page = await context.new_page()
    problems = await watch(page)
    await sign_in(page, server, who.username, who.password, f"/login?next={quote(path)}")
    await page.wait_for_url(server.url + path)
    chat = Chat(who, page, problems)
    await chat.connected()
    if dismiss_keys:
        await dismiss_key_setup(page)
    return chat


# Waits until the page's key session (state/keysession.js) has looked for keys; then says
# whether its set-up dialog is due: not when the user put it off in this tab already.
_KEYS_SETTLED = """
async () => {
  const { currentSession } = await import("/static/js/state/keysession.js");
  const session = currentSession();
  while (session && session.phase === "starting") {
    await new Promise((resolve) => session.on("state", resolve));
  }
  const phase = session ? session.phase : null;
  const later = sessionStorage.getItem(`echochat.keys.later:${session?.me}`) === "1";
  return ["setup", "restore", "no_backup"].includes(phase) && !later;
}
"""


async def dismiss_key_setup(page: Page) -> None:
    """Let the key session settle; a journey that is not about encryption then answers the
    set-up dialog of a first sign-in with "Not now", as a user who only wants the buddy list
    would (the dialog then stays away for the rest of the tab's session)."""
    if await page.evaluate(_KEYS_SETTLED):
        dialog = page.locator("dialog[open]")
        await expect(dialog).to_have_count(1)
        await dialog.get_by_role("button", name="Not now").click()
        await expect(dialog).to_have_count(0)
