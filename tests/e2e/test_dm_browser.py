"""Private messages in a real browser against a live server: PM windows both ways with
receipts, typing, BUZZ! and emoticons; an offline message counted in the buddy list and
fetched when the window opens; the dock (minimize, restore, unread badge); windows
remembered across a reload; classic XSS payloads shown inert; a server restart resumed
with nothing missing or doubled. Also the pure parts (state/conversations.js ticks and
order, ui/emoticons.js segments), run in Chromium.

Two users in two browser contexts, each with E2EE keys set up by the page's own key
session (state/keysession.js). Every page must stay free of console errors and CSP
violations. Screenshots go to test-output/<test id>/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Dialog, Page, WebSocketRoute, expect

from echochat.client import e2ee
from echochat.client.e2ee import Keyring
from tests.conftest import LiveServer
from tests.dmutil import Person, person, post_message
from tests.e2e.accounts import Account, Cast
from tests.e2e.buddylist import befriend, register
from tests.e2e.conftest import PHONE, SHARED_LIMITS, NewContext, Watch
from tests.e2e.pm import PASSPHRASE, Pm, open_pm_chat
from tests.wsutil import PASSWORD

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    return SHARED_LIMITS


def sdk_account(carol: Person) -> Account:
    """An SDK user (tests/dmutil.py registers them with its password) as an Account."""
    return Account(carol.name, "Carol Singer", "", PASSWORD)


async def buddies_with_keys(
    new_context: NewContext, watch: Watch, server: LiveServer, people: Cast, **options: Any
) -> tuple[Pm, Pm]:
    await register(server, people.alice, people.bob)
    await befriend(server, people.alice, people.bob)
    alice = await open_pm_chat(new_context, watch, server, people.alice, **options)
    bob = await open_pm_chat(new_context, watch, server, people.bob, **options)
    await alice.chat.expect_state(bob.name, "online")
    await bob.chat.expect_state(alice.name, "online")
    return alice, bob


# --- the pure parts, on their own -----------------------------------------------------------------

PURE_CHECKS = """
async () => {
  const c = await import("/static/js/state/conversations.js");
  const e = await import("/static/js/ui/emoticons.js");
  const entry = (id, sender, send = null) => ({ key: id ? `i:${id}` : "c:x", id, clientId: "x",
    sender, time: 0, state: "open", text: "", problem: null, send, sendError: "",
    message: null, envelope: null });
  const marks = { peerDelivered: 7, peerRead: 5 };
  const out = {};
  out.ticks = [entry(4, "me"), entry(5, "me"), entry(6, "me"), entry(7, "me"), entry(8, "me"),
    entry(null, "me", "sending"), entry(null, "me", "failed")].map((x) => c.tickOf(x, marks));
  const conv = { byId: new Map([[9, entry(9, "bob")], [3, entry(3, "me")], [12, entry(12, "bob")]]),
    pending: [entry(null, "me", "sending")] };
  out.order = c.transcript(conv).map((x) => x.id);
  out.peer = [c.peerOf("alice", { sender: "alice", recipient: "bob" }),
              c.peerOf("alice", { sender: "bob", recipient: "alice" })];
  const ids = new Set(Array.from({ length: 50 }, () => c.newClientId()));
  out.clientIds = [ids.size, [...ids].every((id) => /^m-[0-9a-f]{24}$/.test(id))];
  const seg = (text) => e.segments(text).map((s) => s.kind === "text" ? s.text
    : s.kind === "emoji" ? `[${s.emoji}]` : `<${s.href}>`).join("|");
  out.segments = [
    "hi :) there", ":D", "x:)y", "a <3 b", ">:( :'( B) :* :| :P :O ;)",
    "see https://example.org/a_(b)). ok", "(https://x.org/y)", "mailto:bob@example.org,",
    "javascript:alert(1)", "https://ex.org/:)", "data:text/html,<b>x</b>", "HTTPS://EX.ORG",
  ].map(seg);
  out.hrefs = ["https://a.b/c", "http://a", "mailto:x@y.z", "javascript:alert(1)",
               "data:text/html,x", "https://", "vbscript:x", "file:///etc/passwd"].map(e.safeHref);
  return out;
}
"""


async def test_conversation_state_and_message_text(shared_server: LiveServer, page: Page) -> None:
    await page.goto(shared_server.url + "/login")
    out: dict[str, Any] = await page.evaluate(PURE_CHECKS)

    assert out["ticks"] == ["read", "read", "delivered", "delivered", "sent", "sending", "failed"]
    assert out["order"] == [3, 9, 12, None]  # by server id, then what is still being sent
    assert out["peer"] == ["bob", "bob"]
    assert out["clientIds"] == [50, True]
    assert out["segments"] == [
        "hi |[🙂]| there",
        "[😀]",
        "x:)y",  # not inside a word
        "a |[❤️]| b",
        "[😠]| |[😢]| |[😎]| |[😘]| |[😐]| |[😛]| |[😮]| |[😉]",
        "see |<https://example.org/a_(b)>|). ok",
        "(|<https://x.org/y>|)",
        "<mailto:bob@example.org>|,",
        "javascript:alert(1)",  # never a link
        "<https://ex.org/>|:)",  # not a smiley glued to a link
        "data:text/html,<b>x</b>",
        "<https://ex.org/>",
    ]
    assert out["hrefs"] == [
        "https://a.b/c",
        "http://a/",
        "mailto:x@y.z",
        None,
        None,
        None,
        None,
        None,
    ]


# --- two users talking ---------------------------------------------------------------------------


async def test_messages_both_ways_with_receipts_typing_buzz_and_emoticons(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob = await buddies_with_keys(new_context, watch, shared_server, people)

    # Alice opens the window from her list (double-click) and writes; Enter sends.
    window = await alice.open_from_list(bob.name)
    await expect(window.locator(".pm__title")).to_have_text(f"Bob Builder ({bob.name})")
    await expect(window).to_have_class(re.compile(r"\bpm--active\b"))
    await alice.send(bob.name, "Hi Bob :) are you there?")
    await alice.expect_text(bob.name, 0, "Hi Bob 🙂 are you there?")

    # Bob's window pops up without taking his keyboard: the message is delivered (his tab
    # opened it) but not read until he is in that window.
    await expect(bob.window(alice.name)).to_be_visible()
    await bob.expect_text(alice.name, 0, "Hi Bob 🙂 are you there?")
    smiley = bob.messages(alice.name).nth(0).locator(".emoticon")
    await expect(smiley).to_have_text("🙂")
    await expect(smiley).to_have_attribute("title", ":)")
    await expect(alice.messages(bob.name).nth(0)).to_have_attribute("data-tick", "delivered")
    await expect(bob.badge(alice.name)).to_have_text("1")
    await expect(bob.dock_item(alice.name).locator(".dock__badge")).to_have_text("1")
    await expect(bob.window(alice.name)).not_to_have_class(re.compile(r"\bpm--active\b"))
    await expect(bob.chat.window).to_have_attribute("data-sound-last", "message")

    # He clicks into it: read, and Alice sees it.
    await bob.window(alice.name).locator(".pm__transcript").click()
    await expect(alice.messages(bob.name).nth(0)).to_have_attribute("data-tick", "read")
    await expect(bob.badge(alice.name)).to_be_hidden()
    await expect(bob.dock_item(alice.name).locator(".dock__badge")).to_have_count(0)

    # Typing: Alice sees it while Bob types, and no more once he clears the box.
    await bob.input(alice.name).press_sequentially("Yes, ")
    await expect(alice.window(bob.name).locator(".pm__typing")).to_have_text(
        "Bob Builder is typing…"
    )
    await alice.page.screenshot(path=output_dir / "pm-typing.png")
    await bob.input(alice.name).fill("")
    await bob.input(alice.name).dispatch_event("input")
    await expect(alice.window(bob.name).locator(".pm__typing")).to_have_text("")

    # Shift+Enter is a new line, Enter sends; the line keeps both.
    box = bob.input(alice.name)
    await box.press_sequentially("Yes! <3")
    await box.press("Shift+Enter")
    await box.press_sequentially("Check https://example.org/docs.")
    await box.press("Enter")
    await alice.expect_text(bob.name, 1, "Yes! ❤️\nCheck https://example.org/docs.")
    link = alice.messages(bob.name).nth(1).locator("a.pm-link")
    await expect(link).to_have_attribute("href", "https://example.org/docs")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(bob.messages(alice.name).nth(1)).to_have_attribute("data-tick", "read")

    # The emoticon picker puts an emoji into the box.
    await alice.window(bob.name).get_by_role("button", name="Emoticons").click()
    picker = alice.page.get_by_role("dialog", name="Emoticons")
    await expect(picker).to_be_visible()
    await alice.page.screenshot(path=output_dir / "pm-emoticon-picker.png")
    await picker.get_by_role("button", name="😎").click()
    await expect(picker).to_have_count(0)
    await expect(alice.input(bob.name)).to_have_value("😎")
    await alice.input(bob.name).press("Enter")
    await bob.expect_text(alice.name, 2, "😎")

    # BUZZ!: Bob's window shakes and plays the buzz sound; the fourth in a row is refused,
    # politely.
    await alice.window(bob.name).get_by_role("button", name="BUZZ!").click()
    await expect(bob.window(alice.name)).to_have_attribute("data-buzzes", "1")
    await expect(bob.chat.window).to_have_attribute("data-sound-last", "buzz")
    animation = await bob.window(alice.name).evaluate(
        "(w) => w.classList.contains('pm--buzz') ? getComputedStyle(w).animationName : 'ended'"
    )
    assert animation in ("pm-shake", "ended")
    await expect(bob.notes(alice.name).last).to_have_text("Alice Liddell: BUZZ!!!")
    await expect(alice.notes(bob.name).last).to_have_text("You sent Bob Builder a BUZZ!!!")
    for _ in range(3):
        await alice.window(bob.name).get_by_role("button", name="BUZZ!").click()
    await expect(alice.notes(bob.name).last).to_have_text(
        "You buzzed Bob Builder a moment ago. Give them a few seconds before the next BUZZ!"
    )
    await expect(bob.window(alice.name)).to_have_attribute("data-buzzes", "3")

    await alice.page.screenshot(path=output_dir / "pm-alice.png")
    await bob.page.screenshot(path=output_dir / "pm-bob.png")
    assert await alice.ticks(bob.name) == ["read", "", "read"]
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


async def test_offline_message_is_counted_then_fetched_and_acknowledged(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    # Bob sets up his keys once, then leaves.
    bob = await open_pm_chat(new_context, watch, shared_server, people.bob)
    await bob.chat.page.context.close()

    alice = await open_pm_chat(new_context, watch, shared_server, people.alice)
    await alice.chat.expect_state(bob.name, "offline")
    await alice.open_from_list(bob.name)
    await alice.send(bob.name, "Call me when you are back :)")
    await alice.send(bob.name, "It is about the party")
    await expect(alice.messages(bob.name)).to_have_count(2)
    await expect(alice.messages(bob.name).nth(1)).to_have_attribute("data-tick", "sent")
    await alice.record_ticks(bob.name)

    # Bob signs in again, in a new browser: his key session restores his keys from the
    # backup (the message was sealed for his first browser's device, which the backup holds).
    bob = await open_pm_chat(new_context, watch, shared_server, people.bob)
    await expect(bob.badge(alice.name)).to_have_text("2")
    await expect(bob.badge(alice.name)).to_have_attribute("title", re.compile("2 unread messages"))
    await expect(bob.window(alice.name)).to_have_count(0)  # offline messages wait for him
    await bob.page.screenshot(path=output_dir / "offline-badge.png")

    await bob.chat.buddy(alice.name).focus()
    await bob.page.keyboard.press("Enter")
    await expect(bob.messages(alice.name)).to_have_count(2)
    await bob.expect_text(alice.name, 0, "Call me when you are back 🙂")
    await bob.expect_text(alice.name, 1, "It is about the party")
    await expect(bob.badge(alice.name)).to_be_hidden()
    await expect(alice.messages(bob.name).nth(1)).to_have_attribute("data-tick", "read")
    recorded = await alice.recorded_ticks()
    assert "delivered" in recorded, recorded
    assert recorded.index("delivered") < recorded.index("read"), recorded
    await bob.page.screenshot(path=output_dir / "offline-opened.png")

    # Bob answers; Alice, in a second browser (keys restored from her backup), has the
    # whole conversation: what she sent from the first one too.
    await bob.send(alice.name, "Sure, tonight!")
    await expect(alice.messages(bob.name)).to_have_count(3)
    second = await open_pm_chat(new_context, watch, shared_server, people.alice)
    await second.open_from_list(bob.name)
    await expect(second.messages(bob.name).locator(".pm-line__text")).to_have_text(
        ["Call me when you are back 🙂", "It is about the party", "Sure, tonight!"]
    )
    assert await second.ticks(bob.name) == ["read", "read", ""]
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()
    await second.chat.assert_clean()


async def test_dock_minimize_restore_and_windows_remembered_across_reload(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob = await buddies_with_keys(new_context, watch, shared_server, people)
    window = await alice.open_from_list(bob.name)

    # Drag it by its title bar, and make it bigger by its corner.
    box = await window.bounding_box()
    assert box is not None
    mouse = alice.page.mouse
    await mouse.move(box["x"] + 60, box["y"] + 10)
    await mouse.down()
    await mouse.move(box["x"] + 60 + 200, box["y"] + 10 + 40, steps=5)
    await mouse.up()
    moved = await window.bounding_box()
    assert moved is not None
    assert abs(moved["x"] - box["x"] - 200) <= 1 and abs(moved["y"] - box["y"] - 40) <= 1
    await mouse.move(moved["x"] + moved["width"] - 3, moved["y"] + moved["height"] - 3)
    await mouse.down()
    await mouse.move(moved["x"] + moved["width"] + 57, moved["y"] + moved["height"] + 37, steps=5)
    await mouse.up()
    bigger = await window.bounding_box()
    assert bigger is not None
    assert bigger["width"] - moved["width"] > 50 and bigger["height"] - moved["height"] > 30

    # Minimized, it waits in the dock; a message while it is there shows as a badge.
    await window.get_by_role("button", name="Minimize").click()
    await expect(window).to_be_hidden()
    await expect(alice.dock_item(bob.name)).to_have_class(re.compile(r"\bdock__item--min\b"))
    # Bob opens his from the buddy's menu.
    menu = await bob.chat.buddy_menu(alice.name)
    await menu.get_by_role("menuitem", name="Send a message").click()
    bob_window = bob.window(alice.name)
    await expect(bob_window).to_be_visible()
    await expect(bob_window).to_have_attribute("data-locked", "false")
    await expect(bob.input(alice.name)).to_be_focused()
    await bob.send(alice.name, "Knock knock")
    await expect(alice.dock_item(bob.name).locator(".dock__badge")).to_have_text("1")
    await expect(alice.badge(bob.name)).to_have_text("1")
    await expect(window).to_be_hidden()
    await expect(bob.messages(alice.name).nth(0)).to_have_attribute("data-tick", "delivered")
    await alice.page.screenshot(path=output_dir / "dock-badge.png")

    # Restored from the dock: the message is there, and read.
    await alice.dock_item(bob.name).click()
    await expect(window).to_be_visible()
    await alice.expect_text(bob.name, 0, "Knock knock")
    await expect(alice.dock_item(bob.name).locator(".dock__badge")).to_have_count(0)
    await expect(bob.messages(alice.name).nth(0)).to_have_attribute("data-tick", "read")
    geometry = await window.bounding_box()
    assert geometry is not None

    # A reload brings the window back where it was, with the conversation.
    await alice.page.reload()
    await alice.chat.connected()
    again = alice.window(bob.name)
    await expect(again).to_be_visible()
    await expect(again).to_have_attribute("data-locked", "false")
    await alice.expect_text(bob.name, 0, "Knock knock")
    after = await again.bounding_box()
    assert after is not None
    assert [round(after[k]) for k in ("x", "y", "width", "height")] == [
        round(geometry[k]) for k in ("x", "y", "width", "height")
    ]

    # Closed, it is forgotten.
    await again.get_by_role("button", name="Close").click()
    await expect(again).to_have_count(0)
    await expect(alice.dock_item(bob.name)).to_have_count(0)
    await alice.page.reload()
    await alice.chat.connected()
    await expect(alice.page.locator("#dock-empty")).to_be_visible()
    await expect(alice.window(bob.name)).to_have_count(0)
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


XSS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "<svg onload=window.__pwned=3>",
    "javascript:window.__pwned=4",
    '<a href="javascript:window.__pwned=5">click me</a>',
    "&lt;b&gt;not bold&lt;/b&gt; &amp; &#60;i&#62;",
    "\u202egnp.exe\u202c and \u200f RTL",
    '"><iframe src="javascript:alert(6)"></iframe>',
    "<style>body{display:none}</style>",
    "https://example.org/?q=<script>alert(7)</script>",
]


async def test_classic_xss_payloads_are_shown_inert(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob = await buddies_with_keys(new_context, watch, shared_server, people)
    dialogs: list[str] = []

    async def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    for pm in (alice, bob):
        pm.page.on("dialog", refuse)
    await alice.open_from_list(bob.name)
    for payload in XSS:
        await alice.send(bob.name, payload)
    await expect(bob.messages(alice.name)).to_have_count(len(XSS))
    await bob.window(alice.name).locator(".pm__transcript").click()

    for pm, peer in ((alice, bob.name), (bob, alice.name)):
        texts = await pm.messages(peer).locator(".pm-line__text").all_text_contents()
        assert texts == XSS
        injected = (
            await pm.window(peer)
            .locator(
                ".pm__lines script, .pm__lines img, .pm__lines svg, .pm__lines iframe, "
                ".pm__lines style, .pm__lines b, .pm__lines i"
            )
            .count()
        )
        assert injected == 0
        hrefs = (
            await pm.window(peer)
            .locator(".pm__lines a")
            .evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
        )
        assert hrefs == ["https://example.org/?q="]  # a link ends before "<"
        assert await pm.page.evaluate("window.__pwned ?? null") is None
        await expect(pm.page.locator("body")).to_be_visible()
    assert dialogs == []
    await bob.page.screenshot(path=output_dir / "xss-inert.png")
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


# A server of its own: this journey stops and restarts the server.
async def test_reconnect_resumes_with_the_cursor_nothing_missing_or_doubled(
    live_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    output_dir: Path,
) -> None:
    """Bob's socket goes through a gate: closing it cuts him off while Alice writes, so his
    reconnect must replay what he missed from his cursor; then the server itself restarts
    with Alice's sends in flight, which go out again with the same client ids."""
    gate = {"open": True}
    hellos: list[dict[str, Any]] = []
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    alice, bob = await buddies_with_keys(new_context, watch, live_server, people)

    async def through_gate(ws: WebSocketRoute) -> None:
        if not gate["open"]:
            await ws.close(code=1001, reason="gate closed")
            return
        server = ws.connect_to_server()
        routes.append((ws, server))

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("op") == "hello":
                hellos.append(json.loads(message)["data"])
            server.send(message)

        ws.on_message(to_server)

    await bob.page.route_web_socket(re.compile(r"/ws(\?.*)?$"), through_gate)
    await bob.page.reload()
    await bob.chat.connected()
    await alice.open_from_list(bob.name)
    await alice.send(bob.name, "before the cut")
    await expect(bob.messages(alice.name)).to_have_count(1)

    # Cut Bob off: the gate refuses his reconnects while Alice writes three messages.
    gate["open"] = False
    page_side, server_side = routes[-1]
    await server_side.close(code=1000, reason="cut")
    await page_side.close(code=1001, reason="cut")
    await expect(bob.chat.window).not_to_have_attribute("data-connection", "online")
    for n in range(1, 4):
        await alice.send(bob.name, f"while you were away {n}")
    await expect(alice.messages(bob.name)).to_have_count(4)
    # Carol (an SDK client) writes more than one replay page (100) meanwhile.
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        carol = await person(
            http, live_server.url, people.carol.username, display_name="Carol Singer"
        )
        try:
            for n in range(1, 151):
                sent = await post_message(
                    http, carol, bob.name, await carol.seal(bob.name, f"c{n}")
                )
                assert sent.status_code == 201, sent.text
        finally:
            await carol.aclose()
    cut = len(hellos)
    gate["open"] = True
    await bob.page.evaluate("() => window.dispatchEvent(new Event('online'))")
    await bob.chat.connected()
    await expect(bob.messages(alice.name)).to_have_count(4)
    await expect(bob.messages(carol.name)).to_have_count(150)
    # Resumed from his cursor, page after page while the server said there was more.
    cursors = [int(h["cursor"]) for h in hellos[cut:] if isinstance(h.get("cursor"), int)]
    assert len(cursors) == len(hellos[cut:]) >= 2 and all(c > 0 for c in cursors), hellos
    assert cursors == sorted(set(cursors)), cursors  # each page from where the last ended
    await expect(bob.messages(carol.name).locator(".pm-line__text")).to_have_text(
        [f"c{n}" for n in range(1, 151)]
    )

    # The server restarts; Alice sends while it is down: the line waits, then goes.
    live_server.stop()
    await expect(alice.chat.window).not_to_have_attribute("data-connection", "online")
    await alice.send(bob.name, "sent during the restart")
    await expect(alice.messages(bob.name).nth(4)).to_have_attribute("data-tick", "sending")
    live_server.start()
    await alice.chat.connected(timeout=40_000)
    await bob.chat.connected(timeout=40_000)
    await expect(alice.messages(bob.name).nth(4)).not_to_have_attribute("data-tick", "sending")
    await expect(bob.messages(alice.name)).to_have_count(5)

    expected = [
        "before the cut",
        "while you were away 1",
        "while you were away 2",
        "while you were away 3",
        "sent during the restart",
    ]
    for pm, peer in ((alice, bob.name), (bob, alice.name)):
        await expect(pm.messages(peer).locator(".pm-line__text")).to_have_text(expected)
        ids = await pm.messages(peer).evaluate_all("(ls) => ls.map((l) => Number(l.dataset.id))")
        assert ids == sorted(set(ids)) and len(ids) == 5
    await bob.page.screenshot(path=output_dir / "after-restart.png")
    for pm in (alice, bob):
        # Requests in flight when the server went down fail; the page fetched them again.
        pm.chat.problems.failed_requests = [
            r for r in pm.chat.problems.failed_requests if "ERR_CONNECTION_REFUSED" not in r
        ]
        await pm.chat.assert_clean(server_went_down=True)


async def test_pm_window_on_a_phone(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice, bob = await buddies_with_keys(new_context, watch, shared_server, people, **PHONE)
    await alice.chat.buddy(bob.name).dblclick()
    window = alice.window(bob.name)
    await expect(window).to_be_visible()
    await alice.send(bob.name, "Hello from my phone :D")
    await expect(bob.badge(alice.name)).to_have_text("1")  # his window waits in the dock
    await expect(bob.dock_item(alice.name)).to_be_visible()
    await bob.dock_item(alice.name).click()
    await bob.expect_text(alice.name, 0, "Hello from my phone 😀")
    box = await bob.window(alice.name).bounding_box()
    assert box is not None and round(box["width"]) == 390
    await bob.page.screenshot(path=output_dir / "phone-pm.png")
    await alice.page.screenshot(path=output_dir / "phone-pm-alice.png")
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


async def test_history_scrolls_up_page_by_page_keeping_the_view(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    """Carol (an SDK client with her own keys) sent Bob 120 messages while he was away;
    his window shows the newest page, and scrolling up brings the rest, in order, once."""
    await register(shared_server, people.bob)
    async with httpx.AsyncClient(base_url=shared_server.url) as http:
        carol = await person(
            http, shared_server.url, people.carol.username, display_name="Carol Singer"
        )
        try:
            first = await open_pm_chat(new_context, watch, shared_server, people.bob)  # his keys
            await first.chat.assert_clean()
            await first.page.context.close()
            await befriend(shared_server, sdk_account(carol), people.bob)
            for n in range(1, 121):
                envelope = await carol.seal(people.bob.username, f"message {n}")
                sent = await post_message(http, carol, people.bob.username, envelope)
                assert sent.status_code == 201, sent.text
        finally:
            await carol.aclose()
    bob = await open_pm_chat(new_context, watch, shared_server, people.bob)  # a new browser
    await expect(bob.badge(carol.name)).to_have_text("120")

    window = await bob.open_from_list(carol.name)
    lines = bob.messages(carol.name)
    await expect(lines).to_have_count(50)
    await expect(lines.last.locator(".pm-line__text")).to_have_text("message 120")
    await expect(bob.badge(carol.name)).to_be_hidden()
    transcript = window.locator(".pm__transcript")
    for count in (100, 120):
        top_id = await lines.first.get_attribute("data-id")
        await transcript.evaluate("(t) => { t.scrollTop = 0; }")
        await expect(lines).to_have_count(count)
        # The line that was at the top is still at the top of the view: the new ones are
        # above it, out of view until scrolled to.
        kept = await window.locator(f'.pm-line[data-id="{top_id}"]').bounding_box()
        view = await transcript.bounding_box()
        assert kept is not None and view is not None
        assert view["y"] <= kept["y"] <= view["y"] + 60, (view, kept)
        assert await transcript.evaluate("(t) => t.scrollTop") > 200
    await expect(window).to_have_attribute("data-has-more", "false")
    texts = await lines.locator(".pm-line__text").all_text_contents()
    assert texts == [f"message {n}" for n in range(1, 121)]
    await bob.page.screenshot(path=output_dir / "history.png")
    await bob.chat.assert_clean()


async def test_locked_window_unlocks_and_an_unverifiable_message_says_why(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    first = await open_pm_chat(new_context, watch, shared_server, people.bob)  # his keys, backed up
    await first.chat.assert_clean()
    await first.page.context.close()
    alice = await open_pm_chat(new_context, watch, shared_server, people.alice)

    # Bob in a new browser says "Not now" to unlocking: his windows are locked.
    bob = await open_pm_chat(new_context, watch, shared_server, people.bob, keys=False)
    restore = bob.page.locator("#keys-restore-dialog")
    await expect(restore).to_be_visible()
    await restore.get_by_role("button", name="Not now").click()
    await expect(restore).to_be_hidden()
    await alice.open_from_list(bob.name)
    await alice.send(bob.name, "Are you there? ;)")
    window = bob.window(alice.name)
    await expect(window).to_be_visible()  # it pops up all the same, locked
    await expect(window).to_have_attribute("data-locked", "true")
    await expect(window.locator(".pm__locked")).to_contain_text("encryption keys are locked")
    await expect(bob.messages(alice.name).nth(0)).to_have_text(
        re.compile("unlock your keys to read")
    )
    await expect(bob.input(alice.name)).to_be_disabled()
    await expect(window.locator(".pm__send")).to_be_disabled()
    await expect(alice.messages(bob.name).nth(0)).to_have_attribute("data-tick", "sent")
    await bob.page.screenshot(path=output_dir / "locked.png")

    # Unlock from the window: the key dialog, the passphrase, and the message opens.
    await window.get_by_role("button", name="Unlock").click()
    await expect(restore).to_be_visible()
    await restore.get_by_label("Recovery key or passphrase").fill(PASSPHRASE)
    await restore.get_by_role("button", name="Unlock").click()
    await expect(restore).to_be_hidden(timeout=20_000)
    await expect(window).to_have_attribute("data-locked", "false")
    await bob.expect_text(alice.name, 0, "Are you there? 😉")
    await expect(bob.input(alice.name)).to_be_enabled()
    await expect(alice.messages(bob.name).nth(0)).not_to_have_attribute("data-tick", "sent")
    note = alice.notes(bob.name).last
    await expect(note.locator(".pm-line__text")).to_have_text("Bob Builder added a device.")
    await note.get_by_role("button", name="Safety number").click()
    safety = alice.page.get_by_role("dialog", name=f"Safety number with {bob.name}")
    await expect(safety).to_be_visible()
    await alice.page.screenshot(path=output_dir / "safety-from-window.png")
    await alice.page.keyboard.press("Escape")
    await expect(safety).to_be_hidden()

    # A message changed on the way (its body bytes flipped after sealing) is shown with
    # the reason it cannot be trusted, never silently dropped or shown as text.
    async with httpx.AsyncClient(base_url=shared_server.url) as http:
        carol = await person(
            http, shared_server.url, people.carol.username, display_name="Carol Singer"
        )
        try:
            envelope = await carol.seal(bob.name, "you will never see this text")
            body = envelope["ct"]
            envelope["ct"] = ("A" if body[0] != "A" else "B") + body[1:]
            sent = await post_message(http, carol, bob.name, envelope)
            assert sent.status_code == 201, sent.text
        finally:
            await carol.aclose()
    odd = bob.messages(carol.name).nth(0)
    await expect(odd).to_have_attribute("data-state", "failed")
    await expect(odd.locator(".pm-line__text")).to_have_text(
        re.compile(r"^⚠This message could not be verified: .*signature check")
    )
    await expect(bob.window(carol.name)).not_to_contain_text("you will never see this text")
    await bob.page.screenshot(path=output_dir / "unverifiable.png")
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


# The tab "goes to the background": what the browser reports when the user switches away
# (Playwright's pages always report visible and focused), and a record of each desktop
# notification the page makes, around the real Notification.
_HIDE_TAB = """
() => {
  window.__hidden = true;
  Object.defineProperty(Document.prototype, "visibilityState",
    { configurable: true, get: () => (window.__hidden ? "hidden" : "visible") });
  Object.defineProperty(Document.prototype, "hidden",
    { configurable: true, get: () => window.__hidden });
  Document.prototype.hasFocus = () => !window.__hidden;
  window.__shown = [];
  const Real = window.Notification;
  class Recorded extends Real {
    constructor(title, options = {}) {
      super(title, options);
      window.__shown.push({ title, body: options.body, tag: options.tag });
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  window.Notification = Recorded;
  document.dispatchEvent(new Event("visibilitychange"));
}
"""


async def test_a_message_to_a_hidden_tab_flashes_the_title_and_notifies(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    alice = await open_pm_chat(
        new_context, watch, shared_server, people.alice, permissions=["notifications"]
    )
    bob = await open_pm_chat(new_context, watch, shared_server, people.bob)
    await alice.chat.expect_state(bob.name, "online")

    # Permission is asked only from the dock's button; once decided, the button goes.
    await expect(alice.page.get_by_role("button", name="Desktop alerts")).to_be_hidden()
    ask = bob.page.get_by_role("button", name="Desktop alerts")
    await expect(ask).to_be_visible()
    await ask.click()
    await expect(ask).to_be_hidden()

    title = await alice.page.title()
    await alice.page.evaluate(_HIDE_TAB)
    await bob.open_from_list(alice.name)
    await bob.send(alice.name, "Ping <b>from</b> Bob :)")
    await expect(alice.page.locator("html")).to_have_attribute(
        "data-title-flash", "Bob Builder says…"
    )
    await expect(alice.page).to_have_title("Bob Builder says…")
    shown = await alice.page.evaluate("window.__shown")
    assert shown == [
        {
            "title": "Bob Builder — EchoChat",
            "body": "Ping <b>from</b> Bob :)",
            "tag": f"echochat-pm-{bob.name}",
        }
    ]
    await expect(alice.badge(bob.name)).to_have_text("1")  # not read while away

    # Back to the tab: the title is itself again.
    await alice.page.evaluate(
        "() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }"
    )
    await expect(alice.page.locator("html")).not_to_have_attribute(
        "data-title-flash", re.compile("")
    )
    await expect(alice.page).to_have_title(title)
    await alice.chat.assert_clean()
    await bob.chat.assert_clean()


async def test_a_buddys_changed_keys_are_a_warning_in_the_window(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    """Carol (SDK) starts fresh with new keys: Bob's window with her says so, offers the
    safety number, and does not show her next message as if nothing had happened."""
    await register(shared_server, people.bob)
    async with httpx.AsyncClient(base_url=shared_server.url) as http:
        carol = await person(
            http, shared_server.url, people.carol.username, display_name="Carol Singer"
        )
        try:
            bob = await open_pm_chat(new_context, watch, shared_server, people.bob)
            await befriend(shared_server, sdk_account(carol), people.bob)
            await expect(bob.chat.buddy(carol.name)).to_be_visible()
            sent = await post_message(http, carol, bob.name, await carol.seal(bob.name, "hello :)"))
            assert sent.status_code == 201, sent.text
            await bob.expect_text(carol.name, 0, "hello 🙂")  # her keys are pinned now

            ring = Keyring.generate()
            device = ring.add_device("carol-new-device")
            await e2ee.publish_device(carol.sdk, ring, device.device_id, reset_identity=True)
            carol.ring, carol.device = ring, device
            carol.directories.clear()
            warning = bob.window(carol.name).locator('.pm-line--note[data-note="warning"]')
            await expect(warning).to_contain_text("Carol Singer's security keys changed")
            sent = await post_message(
                http, carol, bob.name, await carol.seal(bob.name, "it is me, honest")
            )
            assert sent.status_code == 201, sent.text
        finally:
            await carol.aclose()
    second = bob.messages(carol.name).nth(1)
    await expect(second).to_have_attribute("data-state", "failed")
    await expect(second).to_contain_text("This message could not be verified: ")
    await expect(bob.window(carol.name)).not_to_contain_text("it is me, honest")
    await bob.page.screenshot(path=output_dir / "keys-changed.png")
    await warning.get_by_role("button", name="Safety number").click()
    await expect(
        bob.page.get_by_role("dialog", name=f"Safety number with {carol.name}")
    ).to_be_visible()
    await bob.chat.assert_clean()
