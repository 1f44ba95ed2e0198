"""Steps the chat-room journeys share: a signed-in /chat page seen through its rooms (the
Rooms tab, the room browser, the open room beside the buddy list, the group dialogs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from playwright.async_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import Account
from tests.e2e.buddylist import Chat

__all__ = ["Rooms", "post_to_room"]


async def post_to_room(server: LiveServer, who: Account, room: int, texts: list[str]) -> None:
    """``who`` posts ``texts`` to ``room`` over HTTP, as a script would."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.post(
            "/api/v1/auth/login",
            json={"username": who.username, "password": who.password, "token_response": True},
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for n, text in enumerate(texts):
            sent = await http.post(
                f"/api/v1/rooms/{room}/messages",
                json={"client_id": f"script-{room}-{n}", "text": text},
                headers=auth,
            )
            assert sent.status_code == 201, sent.text


@dataclass
class Rooms:
    """One user's /chat page, seen through its rooms."""

    chat: Chat

    @property
    def page(self) -> Page:
        return self.chat.page

    @property
    def who(self) -> Account:
        return self.chat.who

    @property
    def pane(self) -> Locator:
        return self.page.locator("#room-pane")

    @property
    def typing(self) -> Locator:
        return self.page.locator("#room-typing")

    @property
    def input(self) -> Locator:
        return self.page.locator("#room-input")

    @property
    def status(self) -> Locator:
        """The rooms panel's notice line."""
        return self.page.locator("#rooms-status")

    def lines(self) -> Locator:
        """The open room's message lines (not the notes)."""
        return self.pane.locator(".room-line:not(.room-line--note)")

    def line(self, text: str) -> Locator:
        return self.lines().filter(has=self.page.locator(".room-line__text", has_text=text))

    def notes(self) -> Locator:
        return self.pane.locator(".room-line--note")

    def member(self, username: str) -> Locator:
        return self.pane.locator(f'.room-member[data-username="{username}"]')

    def room_item(self, name: str) -> Locator:
        return self.page.locator("#rooms-panel .room-item", has_text=name)

    async def show_rooms(self) -> None:
        await self.page.get_by_role("tab", name=re.compile(r"^Rooms")).click()
        await expect(self.page.locator("#rooms-panel")).to_be_visible()

    async def join_from_browser(
        self, category: str, room: str, counts: tuple[str, str] | None = None
    ) -> None:
        """Rooms tab › Browse rooms…, pick a category, join ``room``; it opens. ``counts``:
        the (people, online) the browser should show for it first."""
        await self.show_rooms()
        await self.page.get_by_role("button", name="Browse rooms…").click()
        browser = self.page.get_by_role("dialog", name="Chat rooms")
        await expect(browser).to_be_visible()
        await browser.get_by_role("button", name=re.compile(f"^{category}")).click()
        if counts:
            row = browser.locator(f'.room-table__row[data-name="{room}"]')
            await expect(row.locator(".room-table__members")).to_have_text(counts[0])
            await expect(row.locator(".room-table__online")).to_have_text(counts[1])
        await browser.get_by_role("button", name=f"Join {room}").click()
        await expect(browser).to_be_hidden()
        await self.expect_open(room)

    async def expect_open(self, room: str) -> None:
        await expect(self.pane).to_be_visible()
        await expect(self.pane.locator("#room-title")).to_have_text(room)

    async def send(self, text: str) -> None:
        await self.input.fill(text)
        await self.input.press("Enter")
        await expect(self.input).to_have_value("")
        await expect(self.lines().last).to_have_attribute("data-send", "sent")

    async def create_group(self, name: str, topic: str = "", *, encrypted: bool = False) -> int:
        """Rooms tab › New group…; the group opens. Returns its id."""
        await self.show_rooms()
        await self.page.get_by_role("button", name="New group…").click()
        dialog = self.page.get_by_role("dialog", name="New private group")
        await dialog.get_by_label("Name").fill(name)
        if topic:
            await dialog.get_by_label("Topic").fill(topic)
        if encrypted:
            await dialog.get_by_label("End-to-end encrypted").check()
        await dialog.get_by_role("button", name="Create").click()
        await expect(dialog).to_be_hidden()
        await self.expect_open(name)
        return int(await self.pane.get_attribute("data-room") or 0)

    async def accept_invitation(self, room: str) -> None:
        bar = self.page.locator("#invite-alert")
        await expect(bar).to_contain_text(f"“{room}”")
        await bar.get_by_role("button", name="Join").click()
        await self.expect_open(room)

    async def invite(self, username: str) -> None:
        await self.pane.get_by_role("button", name="Invite…").click()
        dialog = self.page.get_by_role("dialog", name="Invite to the group")
        await dialog.get_by_label("Buddy").fill(username)
        await dialog.get_by_role("button", name="Invite", exact=True).click()
        await expect(dialog).to_be_hidden()

    async def member_menu(self, username: str) -> Locator:
        await self.member(username).click()
        menu = self.page.get_by_role("menu")
        await expect(menu).to_be_visible()
        return menu

    async def line_menu(self, text: str) -> Locator:
        line = self.line(text)
        await line.hover()
        await line.locator(".room-line__more").click()
        menu = self.page.get_by_role("menu")
        await expect(menu).to_be_visible()
        return menu
