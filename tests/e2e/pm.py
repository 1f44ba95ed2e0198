"""Steps the private-message journeys share: a signed-in /chat page with E2EE keys set up,
and locators for the PM windows, their lines and the dock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import Account
from tests.e2e.buddylist import Chat, open_chat
from tests.e2e.conftest import NewContext, Watch

__all__ = ["PASSPHRASE", "Pm", "open_pm_chat", "set_up_keys"]

PASSPHRASE = "correct horse battery staple"

# The key session the page made (state/keysession.js), set up the way its first-run dialog
# does it: new keys, backed up under a passphrase, published.
_SET_UP = """
async (passphrase) => {
  const { currentSession } = await import("/static/js/state/keysession.js");
  const session = currentSession();
  for (let i = 0; i < 200 && session.phase === "starting"; i++) {
    await new Promise((resolve) => session.on("state", resolve));
  }
  if (session.phase === "setup") {
    await session.setUp(passphrase);
  } else if (session.phase === "restore") {
    await session.restore(passphrase);
  }
  return session.phase;
}
"""


async def set_up_keys(page: Page, passphrase: str = PASSPHRASE) -> None:
    """Give the signed-in user of ``page`` E2EE keys (or restore them from the backup),
    then close the key dialog the page opened for it, if any."""
    phase = await page.evaluate(_SET_UP, passphrase)
    assert phase == "unlocked", phase
    dialog = page.locator("dialog[open]")
    if await dialog.count():
        await page.keyboard.press("Escape")
        await expect(dialog).to_have_count(0)


@dataclass
class Pm:
    """One user's /chat page, seen through its PM windows."""

    chat: Chat

    @property
    def page(self) -> Page:
        return self.chat.page

    @property
    def who(self) -> Account:
        return self.chat.who

    @property
    def name(self) -> str:
        """The user's username."""
        return self.chat.who.username

    def window(self, peer: str) -> Locator:
        return self.page.locator(f'.pm[data-peer="{peer}"]')

    def messages(self, peer: str) -> Locator:
        """The message lines of a window (not the notes)."""
        return self.window(peer).locator(".pm-line:not(.pm-line--note)")

    def notes(self, peer: str) -> Locator:
        return self.window(peer).locator(".pm-line--note")

    def input(self, peer: str) -> Locator:
        return self.window(peer).locator(".pm__input")

    def dock_item(self, peer: str) -> Locator:
        return self.page.locator(f'#dock-items .dock__item[data-peer="{peer}"]')

    def badge(self, username: str) -> Locator:
        return self.chat.buddy(username).locator(".buddy__unread")

    async def open_from_list(self, peer: str) -> Locator:
        await self.chat.buddy(peer).dblclick()
        window = self.window(peer)
        await expect(window).to_be_visible()
        await expect(window).to_have_attribute("data-locked", "false")
        return window

    async def send(self, peer: str, text: str) -> None:
        box = self.input(peer)
        await box.fill(text)
        await box.press("Enter")
        await expect(box).to_have_value("")

    async def expect_text(self, peer: str, index: int, text: str | re.Pattern[str]) -> None:
        await expect(self.messages(peer).nth(index).locator(".pm-line__text")).to_have_text(text)

    async def ticks(self, peer: str) -> list[str]:
        return [
            str(t)
            for t in await self.messages(peer).evaluate_all(
                "(lines) => lines.map((l) => l.dataset.tick || '')"
            )
        ]

    async def record_ticks(self, peer: str) -> None:
        """Start recording every tick a line of ``peer``'s window shows (in order)."""
        await self.window(peer).evaluate(
            """(root) => {
              window.__ticks = [];
              new MutationObserver((changes) => {
                for (const change of changes) {
                  const nodes = change.type === "attributes"
                    ? [change.target] : [...change.addedNodes];
                  for (const node of nodes) {
                    if (node instanceof HTMLElement && node.dataset.tick) {
                      window.__ticks.push(node.dataset.tick);
                    }
                  }
                }
              }).observe(root, { subtree: true, childList: true, attributes: true,
                                 attributeFilter: ["data-tick"] });
            }"""
        )

    async def recorded_ticks(self) -> list[str]:
        ticks: list[Any] = await self.page.evaluate("window.__ticks || []")
        return [str(t) for t in ticks]


async def open_pm_chat(
    new_context: NewContext,
    watch: Watch,
    server: LiveServer,
    who: Account,
    *,
    keys: bool = True,
    **context_options: Any,
) -> Pm:
    """``who`` signed in on /chat in a fresh browser context, with keys set up (or, with
    ``keys=False``, with the page's own key dialog left open for the test)."""
    chat = await open_chat(new_context, watch, server, who, dismiss_keys=keys, **context_options)
    if keys:
        await set_up_keys(chat.page)
    return Pm(chat)
