"""Chat rooms and private groups in a real browser against a live server (issue #7, item 5
and its browser test), one journey of three users:

- a public room joined from the room browser (categories, search): talking, typing,
  presence in the member list, emoticons, links, markup shown as inert text;
- a private group: create, invite buddies, accept; a mention of Carol highlighted, counted
  in her rooms list and, while her tab is hidden, flashed in the title and notified;
- moderation by the owner: a message deleted for everyone, mute (Bob's send refused, then
  retried), name and topic, a ban (the group closes for Carol and says why); Bob ignores
  Carol (client-side, remembered), leaves the public room;
- an end-to-end encrypted group: envelopes only on the server, opened by the members;
  locked with an Unlock bar in a browser without keys, opened once they are restored; an
  invitation declined;
- resume: Carol cut off while Bob writes, nothing missing or doubled after the reconnect;
  the open room remembered across a reload; the room on a narrow window;
- the pure parts (state/roomlog.js) run in Chromium.

One shared server, three browser contexts (a fourth briefly). Every page must stay free
of console errors and CSP violations. Screenshots go to test-output/<test id>/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import WebSocketRoute, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import ALICE, BOB
from tests.e2e.buddylist import CAROL, befriend, open_chat, register
from tests.e2e.conftest import NewContext, Watch
from tests.e2e.pm import set_up_keys
from tests.e2e.rooms import Rooms, post_to_room

pytestmark = pytest.mark.asyncio(loop_scope="session")

PURE_CHECKS = """
async () => {
  const r = await import("/static/js/state/roomlog.js");
  const out = {};
  out.mentions = ["hi @bob", "@bob: look", "@bobby no", "mail bob@bob.org", "(@BOB)",
    "@bob.", "@bob.x", "x@bob"].map((t) => r.mentions(t, "bob"));
  out.split = r.splitMentions("hey @bob, and @bob!", "bob")
    .map((p) => (p.mention ? `[${p.text}]` : p.text)).join("");
  const log = r.emptyLog(7);
  const msg = (id, sender, text, extra = {}) => ({ id, room: 7, sender, client_id: `c${id}`,
    created_at: "2026-12-02T06:00:00Z", kind: "text", text, ...extra });
  r.merge(log, msg(5, "bob", "five"), "alice");
  r.merge(log, msg(3, "carol", "three"), "alice");
  const again = r.merge(log, msg(5, "bob", "five"), "alice");
  log.pending.push({ key: "c:x", id: null, clientId: "x", sender: "alice", name: "", time: 0,
    state: "open", text: "mine", problem: "", send: "sending", sendError: "", mention: false,
    message: null, envelope: null });
  out.twice = again.added;
  out.order = r.transcript(log).map((l) => l.id);
  r.merge(log, msg(9, "alice", "mine", { client_id: "x" }), "alice");
  out.acked = [log.pending.length, log.byId.get(9).key];
  r.remove(log, 5);
  out.late = r.merge(log, msg(5, "bob", "five"), "alice");
  out.afterDelete = r.transcript(log).map((l) => l.id);
  out.ignored = r.transcript(log, new Set(["carol"])).map((l) => l.id);
  out.deletedFlag = r.merge(log, msg(11, "bob", "", { deleted: true }), "alice");
  out.typing = [[], ["Bob"], ["Bob", "Carol"], ["a", "b", "c"]].map(r.typingText);
  return out;
}
"""


# Carol's tab as if she looked elsewhere (hidden, not focused), with desktop notifications
# recorded (tests/e2e/test_dm_browser.py does the same for private messages).
HIDE_TAB = """
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
SHOW_TAB = """
() => { window.__hidden = false; document.dispatchEvent(new Event("visibilitychange")); }
"""


async def test_rooms_groups_and_moderation(
    shared_server: LiveServer, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    server = shared_server
    await register(server, ALICE, BOB, CAROL)
    await befriend(server, ALICE, BOB)
    await befriend(server, ALICE, CAROL)
    alice = Rooms(await open_chat(new_context, watch, server, ALICE))
    bob = Rooms(await open_chat(new_context, watch, server, BOB))
    carol = Rooms(await open_chat(new_context, watch, server, CAROL, permissions=["notifications"]))

    # The pure parts, in Alice's page.
    out: dict[str, Any] = await alice.page.evaluate(PURE_CHECKS)
    assert out["mentions"] == [True, True, False, False, True, True, False, False]
    assert out["split"] == "hey [@bob], and [@bob]!"
    assert out["twice"] is False
    assert out["order"] == [3, 5, None]
    assert out["acked"] == [0, "c:x"]  # my pending send became the acknowledged line
    assert out["late"] is None  # a deleted message does not come back
    assert out["afterDelete"] == [3, 9]
    assert out["ignored"] == [9]
    assert out["deletedFlag"] is None
    assert out["typing"] == [
        "",
        "Bob is typing…",
        "Bob and Carol are typing…",
        "Several people are typing…",
    ]

    # --- a public room ---------------------------------------------------------------------
    await alice.show_rooms()
    await alice.page.get_by_role("button", name="Browse rooms…").click()
    browser = alice.page.get_by_role("dialog", name="Chat rooms")
    await expect(browser.locator(".room-table__row")).to_have_count(10)
    await browser.get_by_role("button", name=re.compile("^Technology")).click()
    await expect(browser.locator(".room-table__row")).to_have_count(2)
    await browser.get_by_label("Search rooms by name").fill("pyth")
    await expect(browser.locator(".room-table__row")).to_have_count(1)
    await alice.page.screenshot(path=output_dir / "room-browser.png")
    await browser.get_by_role("button", name="Join Python").click()
    await alice.expect_open("Python")
    python = int(await alice.pane.get_attribute("data-room") or 0)
    await bob.join_from_browser("Technology", "Python", counts=("1", "1"))
    await carol.join_from_browser("Technology", "Python", counts=("2", "2"))

    # Presence in the member list; typing; talking.
    await expect(alice.member("bob")).to_have_attribute("data-state", "online")
    await expect(alice.member("carol")).to_have_attribute("data-state", "online")
    await alice.send("Hello Pythonistas :)")
    await expect(bob.line("Hello Pythonistas").locator(".emoticon")).to_have_text("🙂")
    await bob.input.press_sequentially("import ")
    await expect(alice.typing).to_have_text("Bob Builder is typing…")
    await bob.input.press_sequentially("this")
    await bob.input.press("Enter")
    await expect(alice.line("import this")).to_have_count(1)
    await expect(alice.typing).to_have_text("")
    await carol.send("Hi all, see https://docs.python.org/3/")
    link = alice.line("Hi all").locator("a.pm-link")
    await expect(link).to_have_attribute("href", "https://docs.python.org/3/")
    payload = '<img src=x onerror="window.__xss=1"> <b>bold</b> javascript:alert(1)'
    await carol.send(payload)
    inert = alice.line("<b>bold</b>")
    await expect(inert.locator(".room-line__text")).to_have_text(payload)
    assert await inert.locator("img, b, a").count() == 0
    assert await alice.page.evaluate("window.__xss") is None
    await alice.page.screenshot(path=output_dir / "public-room.png")

    # --- a private group: create, invite, accept, talk, mention ------------------------------
    await alice.create_group("Book club", "Novels, once a month")
    await expect(alice.member("alice")).to_contain_text("Owner")
    await alice.invite("bob")
    await alice.invite("carol")
    bar = bob.page.locator("#invite-alert")
    await expect(bar).to_contain_text("Alice Liddell invites you to the group “Book club”.")
    await bob.page.screenshot(path=output_dir / "group-invitation.png")
    await bob.accept_invitation("Book club")
    await carol.accept_invitation("Book club")
    await expect(alice.member("carol")).to_have_attribute("data-state", "online")
    await expect(alice.notes().last).to_have_text("Carol Singer joined.")
    await bob.send("Has everyone read it?")
    await alice.send("Almost! @carol what about you?")
    mention = carol.line("Almost!")
    await expect(mention).to_have_class(re.compile(r"\broom-line--mention\b"))
    await expect(mention.locator("mark")).to_have_text("@carol")
    await expect(bob.line("Almost!")).not_to_have_class(re.compile(r"\broom-line--mention\b"))

    # Carol goes back to Python; a mention in the group is counted in her rooms list.
    await carol.show_rooms()
    await carol.room_item("Python").click()
    await carol.expect_open("Python")
    await bob.send("@carol chapter 3 is the best")
    group = carol.room_item("Book club")
    await expect(group.locator(".room-item__unread")).to_have_text("1")
    await expect(group.locator(".room-item__mention")).to_have_text("@")
    await expect(carol.page.get_by_role("tab", name="Rooms, 1 unread")).to_be_visible()
    await carol.page.screenshot(path=output_dir / "unread-mention.png")
    await group.click()
    await carol.expect_open("Book club")
    await expect(group.locator(".room-item__unread")).to_have_count(0)

    # A mention while Carol looks elsewhere: the title flashes, a desktop notification shows,
    # and the room counts as read once she is back.
    book = int(await carol.pane.get_attribute("data-room") or 0)
    title = await carol.page.title()
    await carol.page.evaluate(HIDE_TAB)
    await bob.send("@carol are you there?")
    await expect(carol.page.locator("html")).to_have_attribute(
        "data-title-flash", "Bob Builder in Book club says…"
    )
    shown = await carol.page.evaluate("window.__shown")
    assert shown == [
        {
            "title": "Bob Builder in Book club — EchoChat",
            "body": "@carol are you there?",
            "tag": f"echochat-pm-room-{book}",
        }
    ]
    await expect(group.locator(".room-item__unread")).to_have_text("1")
    await carol.page.evaluate(SHOW_TAB)
    await expect(carol.page).to_have_title(title)
    await expect(group.locator(".room-item__unread")).to_have_count(0)

    # --- moderation: the owner deletes a message; it disappears for everyone ------------------
    await bob.send("Spoiler: the butler did it")
    await expect(carol.line("Spoiler")).to_have_count(1)
    menu = await alice.line_menu("Spoiler")
    await alice.page.screenshot(path=output_dir / "moderator-line-menu.png")
    await menu.get_by_role("menuitem", name=re.compile("^Delete message")).click()
    for who in (alice, bob, carol):
        await expect(who.line("Spoiler")).to_have_count(0)
    await expect(carol.line("chapter 3")).to_have_count(1)
    # The owner's menu on a member offers mute, kick and ban; a member's does not.
    menu = await alice.member_menu("bob")
    for item in ("Mute for 5 minutes", "Kick out…", "Ban…", "Make a moderator"):
        await expect(menu.get_by_role("menuitem", name=item)).to_be_visible()
    await alice.page.screenshot(path=output_dir / "moderator-member-menu.png")
    await alice.page.keyboard.press("Escape")
    menu = await bob.member_menu("carol")
    await expect(menu.get_by_role("menuitem", name="Kick out…")).to_have_count(0)
    # Bob ignores Carol: her lines go away for him only (remembered in his browser).
    await menu.get_by_role("menuitem", name="Ignore Carol Singer").click()
    await expect(bob.line("chapter 3")).to_have_count(1)
    await expect(bob.lines().filter(has_text="Almost!")).to_have_count(1)
    await carol.send("Bob, are you ignoring me?")
    await expect(alice.line("ignoring me")).to_have_count(1)
    await expect(bob.line("ignoring me")).to_have_count(0)
    await expect(bob.member("carol")).to_contain_text("ignored")
    assert await bob.page.evaluate("localStorage.getItem('echochat.ignored.bob')") == '["carol"]'
    # Alice mutes Bob for 5 minutes: his next message is refused, and says why.
    menu = await alice.member_menu("bob")
    await menu.get_by_role("menuitem", name="Mute for 5 minutes").click()
    await expect(alice.member("bob")).to_contain_text("muted")
    await bob.input.fill("Can I still talk?")
    await bob.input.press("Enter")
    await expect(bob.lines().last).to_have_attribute("data-send", "failed")
    await expect(bob.lines().last.locator(".room-line__failed")).to_contain_text("Not sent")
    await bob.page.screenshot(path=output_dir / "muted.png")
    menu = await alice.member_menu("bob")
    await menu.get_by_role("menuitem", name="Lift the mute").click()
    await expect(alice.member("bob")).not_to_contain_text("muted")
    await expect(bob.member("bob")).not_to_contain_text("muted")
    await bob.lines().last.get_by_role("button", name="Retry").click()
    await expect(alice.line("Can I still talk?")).to_have_count(1)
    await expect(bob.lines().last).to_have_attribute("data-send", "sent")

    # --- an end-to-end encrypted group: sealed for every member device, opened on arrival ----
    await set_up_keys(alice.page)
    await set_up_keys(bob.page)
    secret = await alice.create_group("Secret plans", encrypted=True)
    await expect(alice.pane).to_have_attribute("data-locked", "false")
    await alice.invite("bob")
    await bob.accept_invitation("Secret plans")
    await expect(alice.member("bob")).to_be_visible()
    await alice.send("Only we can read this")
    await expect(bob.line("Only we can read this")).to_have_attribute("data-state", "open")
    await bob.send("Indeed, nobody else :)")
    await expect(alice.line("Indeed, nobody else")).to_have_attribute("data-state", "open")
    stored = await alice.page.evaluate(
        "async (id) => (await (await fetch(`/api/v1/rooms/${id}/messages`)).json()).messages",
        secret,
    )
    assert len(stored) == 2
    for message in stored:  # the server holds envelopes, never the text
        assert message["text"] is None and message["kind"] == "e2ee", message
        assert message["envelope"]["conv"] == f"group:{secret}"
        assert {k["user"] for k in message["envelope"]["keys"]} == {"alice", "bob"}
    await bob.page.screenshot(path=output_dir / "encrypted-group.png")
    # Bob in a second browser without his keys: the group is locked with the same Unlock bar
    # as a PM window; restoring his keys from the backup opens its messages.
    elsewhere = Rooms(await open_chat(new_context, watch, server, BOB))
    await elsewhere.show_rooms()
    await elsewhere.room_item("Secret plans").click()
    await elsewhere.expect_open("Secret plans")
    await expect(elsewhere.pane).to_have_attribute("data-locked", "true")
    await expect(elsewhere.pane.get_by_role("button", name="Unlock")).to_be_visible()
    await expect(elsewhere.line("Only we can read this")).to_have_count(0)
    await expect(elsewhere.lines().first).to_have_attribute("data-state", "locked")
    await elsewhere.page.screenshot(path=output_dir / "encrypted-group-locked.png")
    await set_up_keys(elsewhere.page)
    await expect(elsewhere.pane).to_have_attribute("data-locked", "false")
    await expect(elsewhere.line("Only we can read this")).to_have_attribute("data-state", "open")
    await elsewhere.chat.assert_clean()
    await elsewhere.page.context.close()
    # Carol is invited too, and declines.
    await alice.invite("carol")
    bar = carol.page.locator("#invite-alert")
    await expect(bar).to_contain_text("invites you to the encrypted group “Secret plans”.")
    await bar.get_by_role("button", name="Decline").click()
    await expect(bar).to_be_hidden()
    await expect(carol.status).to_have_text("You declined the invitation to Secret plans.")
    await expect(carol.room_item("Secret plans")).to_have_count(0)
    await bob.room_item("Book club").click()
    await bob.expect_open("Book club")

    # Earlier talk in Python, for a page that opens it fresh (Carol's, after her reload).
    # (Two posters: the room send limit is 60 per 10 s per account.)
    await post_to_room(server, ALICE, python, [f"history {n}" for n in range(1, 36)])
    await post_to_room(server, BOB, python, [f"history {n}" for n in range(36, 71)])

    # --- resume: Carol is cut off while Bob writes; nothing missing or doubled ----------------
    gate = {"open": True}
    hellos: list[dict[str, Any]] = []
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    async def through_gate(ws: WebSocketRoute) -> None:
        if not gate["open"]:
            await ws.close(code=1001, reason="gate closed")
            return
        server_side = ws.connect_to_server()
        routes.append((ws, server_side))

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("op") == "hello":
                hellos.append(json.loads(message)["data"])
            server_side.send(message)

        ws.on_message(to_server)

    await carol.page.route_web_socket(re.compile(r"/ws(\?.*)?$"), through_gate)
    await carol.page.reload()
    await carol.chat.connected()
    await carol.expect_open("Book club")  # the open room is remembered across a reload
    await expect(carol.line("chapter 3")).to_have_count(1)
    gate["open"] = False
    page_side, server_side = routes[-1]
    await server_side.close(code=1000, reason="cut")
    await page_side.close(code=1001, reason="cut")
    await expect(carol.chat.window).not_to_have_attribute("data-connection", "online")
    for n in range(1, 4):
        await bob.send(f"while you were away {n}")
    cut = len(hellos)
    gate["open"] = True
    await carol.page.evaluate("() => window.dispatchEvent(new Event('online'))")
    await carol.chat.connected()
    for n in range(1, 4):
        await expect(carol.line(f"while you were away {n}")).to_have_count(1)
    rooms = [h.get("rooms") for h in hellos[cut:]]
    assert rooms and all(isinstance(r, dict) and r for r in rooms), hellos
    await bob.send("and one more, live")
    await expect(carol.line("and one more, live")).to_have_count(1)
    texts = await carol.lines().locator(".room-line__text").all_text_contents()
    assert len(texts) == len(set(texts)), texts  # nothing doubled
    assert [t for t in texts if t.startswith("while you were away")] == [
        f"while you were away {n}" for n in range(1, 4)
    ]

    # History both ways: Python opens on its newest page; scrolling up brings the rest, once.
    await carol.show_rooms()
    await carol.room_item("Python").click()
    await carol.expect_open("Python")
    await expect(carol.line("history 70")).to_have_count(1)
    await expect(carol.lines()).to_have_count(50)
    await carol.pane.locator("#room-transcript").evaluate("(t) => { t.scrollTop = 0; }")
    await expect(carol.lines()).to_have_count(74)  # 70 + the 4 from before
    texts = await carol.lines().locator(".room-line__text").all_text_contents()
    history = [t for t in texts if t.startswith("history ")]
    assert history == [f"history {n}" for n in range(1, 71)], history
    await carol.room_item("Book club").click()
    await carol.expect_open("Book club")

    # --- a narrow window: the room takes the whole window; ‹ goes back to the list ------------
    await carol.page.set_viewport_size({"width": 390, "height": 760})
    await expect(carol.pane).to_be_visible()
    box = await carol.pane.bounding_box()
    assert box is not None and box["width"] > 360, box
    await carol.page.screenshot(path=output_dir / "narrow-room.png")
    await carol.pane.get_by_role("button", name="Back to the buddy list").click()
    await expect(carol.pane).to_be_hidden()
    await expect(carol.room_item("Book club")).to_be_visible()
    await carol.page.screenshot(path=output_dir / "narrow-rooms-list.png")

    # The owner bans Carol from the group: it closes for her and says why.
    await carol.room_item("Book club").click()
    await carol.expect_open("Book club")
    await alice.room_item("Book club").click()
    await alice.expect_open("Book club")
    # The owner changes the topic: everyone in the group sees it.
    await alice.pane.get_by_role("button", name="Room menu").click()
    await alice.page.get_by_role("menuitem", name="Name and topic…").click()
    edit = alice.page.get_by_role("dialog", name="Name and topic")
    await edit.get_by_label("Topic").fill("Novels and short stories")
    await edit.get_by_role("button", name="Save").click()
    await expect(bob.pane.locator("#room-topic")).to_have_text("Novels and short stories")
    menu = await alice.member_menu("carol")
    await menu.get_by_role("menuitem", name="Ban…").click()
    ban = alice.page.get_by_role("dialog", name="Ban from the room")
    await ban.get_by_label("Reason").fill("Spoilers, again")
    await ban.get_by_label("For how long").select_option(label="1 day")
    await alice.page.screenshot(path=output_dir / "ban-dialog.png")
    await ban.get_by_role("button", name="Ban").click()
    await expect(ban).to_be_hidden()
    await expect(alice.member("carol")).to_have_count(0)
    await expect(carol.pane).to_be_hidden()
    await expect(carol.room_item("Book club")).to_have_count(0)
    await expect(carol.status).to_have_text("You were banned from Book club.")

    # Bob leaves the public room from its menu.
    await bob.room_item("Python").click()
    await bob.expect_open("Python")
    await bob.pane.get_by_role("button", name="Room menu").click()
    await bob.page.get_by_role("menuitem", name="Leave room").click()
    await (
        bob.page.get_by_role("dialog", name="Leave room")
        .get_by_role("button", name="Leave")
        .click()
    )
    await expect(bob.pane).to_be_hidden()
    await expect(bob.room_item("Python")).to_have_count(0)
    await expect(bob.status).to_have_text("You left Python.")

    await alice.page.screenshot(path=output_dir / "group-owner.png")
    await bob.page.screenshot(path=output_dir / "group-bob.png")
    await alice.chat.assert_clean()
    await carol.chat.assert_clean()
    await bob.chat.assert_clean()
