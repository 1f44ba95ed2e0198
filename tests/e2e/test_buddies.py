"""The buddy list in a real browser against a live server: requests with a message, live
presence (online, busy with a message, invisible, idle -> away, signed out), groups,
stealth, blocking, sounds, and reconnecting after a server restart without a reload.

Also the pure state modules (state/buddies.js, state/presence.js), run in Chromium.
Each journey uses two or three browser contexts as different users; every page must stay
free of console errors and CSP violations.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import ALICE, BOB, Cast
from tests.e2e.buddylist import (
    ask,
    befriend,
    open_chat,
    register,
    revoke_browser_sessions,
)
from tests.e2e.conftest import PHONE, SHARED_LIMITS, NewContext, Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    return SHARED_LIMITS


# --- the state modules, on their own -------------------------------------------------------

STATE_CHECKS = """
async () => {
  const b = await import("/static/js/state/buddies.js");
  const p = await import("/static/js/state/presence.js");
  const buddy = (username, display_name, group, state, status = "") =>
    ({ username, display_name, group, stealth: false, state, status });
  const list = {
    groups: ["Friends", "Work", "Empty"],
    buddies: [
      buddy("zed", "Zed", "Friends", "offline"),
      buddy("bob", "Bob", "Friends", "busy", "fixing it"),
      buddy("amy", "amy", "Friends", "offline"),
      buddy("carl", "Carl", "Friends", "online"),
      buddy("dora", "Dora", "Work", "away"),
      buddy("eve", "Eve", "Elsewhere", "online"),
    ],
    incoming: [{ id: 7, from_username: "fred", from_display_name: "Fred", to_username: "me",
                 message: "hi", created_at: "2026-01-01T00:00:00+00:00" }],
    outgoing: [],
  };
  const out = {};
  const start = b.emptyState("me", ["Work"]);
  const s = b.applyList(start, list);
  out.untouched = start.loaded === false && Object.keys(start.buddies).length === 0;
  out.groups = s.groups;
  out.views = b.groupViews(s).map((g) =>
    [g.name, g.folded, b.countText(g.online, g.total), g.buddies.map((x) => x.username)]);

  let r = b.applyPresence(s, { username: "amy", state: "online", status: "back" });
  out.signin = [r.change, r.state.buddies.amy.state, r.state.buddies.amy.status];
  r = b.applyPresence(r.state, { username: "amy", state: "away", status: "" });
  out.stillOnline = r.change;
  r = b.applyPresence(r.state, { username: "amy", state: "offline", status: "" });
  out.signout = r.change;
  out.stranger = b.applyPresence(s, { username: "nobody", state: "online" }).state === s;
  out.badState = b.applyPresence(s, { username: "carl", state: "weird" }).state.buddies.carl.state;

  const mine = { id: 9, from_username: "me", from_display_name: "Me", to_username: "gus",
                 message: "", created_at: "2026-01-01T00:00:00+00:00" };
  let t = b.applyRequest(s, mine);
  t = b.applyRequest(t, mine);
  out.requests = [t.incoming.map((x) => x.id), t.outgoing.map((x) => x.id)];
  t = b.applyUpdate(t, { action: "added", username: "fred", request_id: 7,
                         buddy: buddy("fred", "Fred", "New", "online") });
  out.added = [t.incoming.length, t.buddies.fred.group, t.groups.includes("New")];
  t = b.applyUpdate(t, { action: "request_declined", username: "gus", request_id: 9 });
  out.declined = t.outgoing.length;
  t = b.applyUpdate(t, { action: "changed", username: "bob",
                         buddy: { ...s.buddies.bob, stealth: true } });
  out.changed = t.buddies.bob.stealth;
  t = b.applyUpdate(t, { action: "removed", username: "bob" });
  out.removed = "bob" in t.buddies;
  const merged = b.mergeBuddy(s, { ...buddy("bob", "Bob", "Work", "offline"), stealth: true });
  out.merged = [merged.buddies.bob.group, merged.buddies.bob.state, merged.buddies.bob.stealth];
  out.forgot = b.forget(s, "fred").incoming.length;

  let g = b.renameGroup(b.toggleFolded(s, "Friends"), "Friends", "Pals", ["Pals", "Work", "Empty"]);
  out.renamed = [g.groups, g.buddies.bob.group, g.folded];
  g = b.deleteGroup(g, "Work", ["Pals", "Empty"]);
  out.deleted = [g.groups, g.buddies.dora.group, g.folded];
  const twice = b.toggleFolded(b.toggleFolded(s, "Work"), "Work");
  out.unfolded = [b.toggleFolded(s, "Work").folded, twice.folded];

  out.idle = (() => {
    let tr = p.createIdle(2000, 0);
    const steps = [];
    let n = p.checkIdle(tr, 1999); tr = n.tracker; steps.push([tr.idle, n.changed]);
    n = p.checkIdle(tr, 2000); tr = n.tracker; steps.push([tr.idle, n.changed]);
    n = p.checkIdle(tr, 9000); tr = n.tracker; steps.push([tr.idle, n.changed]);
    n = p.noteActivity(tr, 9500); tr = n.tracker; steps.push([tr.idle, n.changed]);
    n = p.checkIdle(tr, 11000); tr = n.tracker; steps.push([tr.idle, n.changed]);
    return steps;
  })();
  out.timeouts = [p.idleTimeoutFrom(""), p.idleTimeoutFrom("?idle=2"),
                  p.idleTimeoutFrom("?idle=-4"), p.idleTimeoutFrom("?idle=x")];
  out.status = [p.cleanStatus("  two\\nlines  "), p.statusProblem("x".repeat(140)),
                p.statusProblem("😀".repeat(140)), p.statusProblem("y".repeat(141))];
  out.shown = [p.shownSelf({ state: "online", status: "" }, true),
               p.shownSelf({ state: "busy", status: "" }, true),
               p.shownSelf({ state: "invisible", status: "" }, false)];
  const { backoffDelay } = await import("/static/js/net/socket.js");
  out.backoff = [0, 1, 2, 5, 6, 40].map((n) => backoffDelay(n, () => 0.999999));
  out.jitter = backoffDelay(3, () => 0);
  return out;
}
"""


async def test_state_modules_are_pure_functions(shared_server: LiveServer, page: Page) -> None:
    await page.goto(shared_server.url + "/login")
    out: dict[str, Any] = await page.evaluate(STATE_CHECKS)

    assert out["untouched"]
    # Groups keep the server's order; a buddy's unknown group is added after them.
    assert out["groups"] == ["Friends", "Work", "Empty", "Elsewhere"]
    # Online (busy and away too) first, then by name whatever the case; counts per group.
    assert out["views"] == [
        ["Friends", False, "2/4 online", ["bob", "carl", "amy", "zed"]],
        ["Work", True, "1/1 online", ["dora"]],
        ["Empty", False, "0/0 online", []],
        ["Elsewhere", False, "1/1 online", ["eve"]],
    ]
    assert out["signin"] == ["signin", "online", "back"]
    assert out["stillOnline"] is None  # online -> away is no sign-out
    assert out["signout"] == "signout"
    assert out["stranger"] is True  # presence of a non-buddy changes nothing
    assert out["badState"] == "offline"
    assert out["requests"] == [[7], [9]]  # mine go out, theirs come in, no duplicates
    assert out["added"] == [0, "New", True]
    assert out["declined"] == 0
    assert out["changed"] is True
    assert out["removed"] is False
    # An HTTP answer brings group and stealth, not (possibly older) presence.
    assert out["merged"] == ["Work", "busy", True]
    assert out["forgot"] == 0
    assert out["renamed"] == [["Pals", "Work", "Empty", "Elsewhere"], "Pals", ["Work", "Pals"]]
    assert out["deleted"] == [["Pals", "Empty", "Elsewhere"], "Pals", ["Pals"]]
    assert out["unfolded"] == [[], ["Work"]]
    assert out["idle"] == [
        [False, False],
        [True, True],
        [True, False],
        [False, True],
        [False, False],
    ]
    assert out["timeouts"] == [300_000, 2_000, 300_000, 300_000]
    assert out["status"][0] == "two lines"
    assert out["status"][1] == out["status"][2] == ""  # 140 characters, emoji count as one
    assert "at most 140" in out["status"][3]
    assert out["shown"] == [
        {"state": "away", "label": "Away (idle)"},
        {"state": "busy", "label": "Busy"},
        {"state": "invisible", "label": "Invisible"},
    ]
    # Exponential backoff with full jitter, capped at 30 s.
    assert out["backoff"] == [499, 999, 1999, 15999, 29999, 29999]
    assert out["jitter"] == 0


# --- journeys ----------------------------------------------------------------------------------


async def test_add_accept_and_live_presence(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(shared_server, people.alice, people.bob)
    alice = await open_chat(new_context, watch, shared_server, people.alice)
    bob = await open_chat(new_context, watch, shared_server, people.bob)
    await expect(alice.window).to_contain_text("No buddies yet")

    # Alice asks Bob, with a message.
    await alice.menu("Contacts", "add")
    add = alice.page.get_by_role("dialog", name="Add a buddy")
    await expect(add.get_by_label("Username")).to_be_focused()
    await add.get_by_label("Username").fill(bob.name)
    await add.get_by_label("Message").fill("Hi Bob, it's Alice from the tea party!")
    await expect(add.get_by_label("Add to group")).to_have_value("Buddies")
    # A modal: Tab stays inside it.
    await add.get_by_role("button", name="Send request").focus()
    await alice.page.keyboard.press("Tab")
    await expect(add.get_by_role("button", name="Close")).to_be_focused()
    await alice.page.keyboard.press("Shift+Tab")
    await expect(add.get_by_role("button", name="Send request")).to_be_focused()
    await alice.page.screenshot(path=output_dir / "add-buddy-dialog.png")
    await add.get_by_role("button", name="Send request").click()
    await expect(add).to_be_hidden()
    await expect(alice.notice).to_contain_text(f"Request sent to {bob.name}")

    # Bob sees it live, reads the message and accepts into a new group of his.
    alert = bob.window.locator("#request-alert")
    await expect(alert).to_contain_text("Alice Liddell wants to be your buddy.")
    await expect(bob.window.locator("#requests-count")).to_have_text("1")
    await alert.get_by_role("button", name="Review").click()
    requests = bob.page.get_by_role("dialog", name="Pending buddy requests")
    asking = requests.get_by_role("list", name="Asking to be your buddy").get_by_role("listitem")
    await expect(asking).to_have_count(1)
    await expect(asking).to_contain_text("Hi Bob, it's Alice from the tea party!")
    await expect(asking).to_contain_text(alice.name)
    await bob.page.screenshot(path=output_dir / "pending-requests.png")
    await asking.get_by_role("button", name="Accept").click()
    await expect(requests.get_by_text("Alice Liddell is now your buddy.")).to_be_visible()
    await expect(asking).to_have_count(0)
    await requests.get_by_role("button", name="Close").first.click()
    await expect(requests).to_be_hidden()
    await expect(alert).to_be_hidden()

    # Each sees the other online, without reloading.
    await alice.expect_state(bob.name, "online")
    await bob.expect_state(alice.name, "online")
    await expect(alice.group("Buddies")).to_contain_text("1/1 online")
    await expect(alice.buddy(bob.name).get_by_role("img", name="Online")).to_be_visible()
    await alice.window.get_by_role("menuitem", name="Contacts").click()
    await expect(alice.page.get_by_role("menuitem", name="Add a buddy…")).to_be_focused()
    await alice.page.keyboard.press("ArrowRight")  # the menu bar's next menu
    await expect(alice.page.get_by_role("menu", name="Actions")).to_be_visible()
    await alice.page.keyboard.press("ArrowLeft")
    await alice.page.screenshot(path=output_dir / "menu-contacts.png")
    await alice.page.keyboard.press("Escape")
    await expect(alice.page.get_by_role("menu")).to_have_count(0)

    # Busy with a custom message on Bob's side shows on Alice's.
    await bob.window.get_by_role("button", name="My status: Available").click()
    await expect(bob.page.get_by_role("menuitemradio", name="Available")).to_be_focused()
    await bob.page.screenshot(path=output_dir / "status-selector.png")
    await bob.page.get_by_role("menuitemradio", name="Busy").click()
    message = bob.window.get_by_label("Status message")
    await message.fill("Fixing the roof")
    await message.press("Enter")
    await alice.expect_state(bob.name, "busy")
    await expect(alice.buddy(bob.name).locator(".buddy__status")).to_have_text("Fixing the roof")
    await expect(bob.window.get_by_role("button", name="My status: Busy")).to_be_visible()

    # Invisible: Bob looks signed out to Alice (and she hears it), then comes back.
    await bob.menu("Actions", "status-invisible")
    await alice.expect_state(bob.name, "offline")
    await expect(alice.buddy(bob.name).locator(".buddy__status")).to_have_count(0)
    await expect(alice.window).to_have_attribute("data-sound-last", "signout")
    await expect(alice.window).to_have_attribute("data-sound-buddy", bob.name)
    await expect(alice.group("Buddies")).to_contain_text("0/1 online")
    await bob.window.get_by_role("button", name="My status: Invisible").click()
    await bob.page.get_by_role("menuitemradio", name="Available").click()
    await alice.expect_state(bob.name, "online")
    await expect(alice.buddy(bob.name).locator(".buddy__status")).to_have_text("Fixing the roof")
    await expect(alice.window).to_have_attribute("data-sound-last", "signin")
    await alice.page.screenshot(path=output_dir / "buddy-list-desktop.png")

    # Muted, Alice hears nothing more; the switch is remembered.
    await alice.menu("Messenger", "mute")
    await expect(alice.window.get_by_role("button", name="Mute")).to_have_attribute(
        "aria-pressed", "true"
    )
    count = await alice.window.get_attribute("data-sound-count")
    await bob.menu("Actions", "status-invisible")
    await alice.expect_state(bob.name, "offline")
    assert await alice.window.get_attribute("data-sound-count") == count
    assert await alice.page.evaluate("localStorage.getItem('echochat.sounds.muted')") == "1"

    await alice.assert_clean()
    await bob.assert_clean()


async def no_sideways_scroll(page: Page) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


async def test_groups_stealth_and_block(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(shared_server, people.alice, people.bob, people.carol, people.dave)
    await befriend(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.carol, people.alice)
    await befriend(shared_server, people.alice, people.dave)  # Dave never signs in
    await ask(shared_server, people.bob, people.carol.username, "Sing at my site opening?")
    alice = await open_chat(new_context, watch, shared_server, people.alice)
    bob = await open_chat(new_context, watch, shared_server, people.bob)
    carol = await open_chat(new_context, watch, shared_server, people.carol, **PHONE)
    await alice.expect_state(bob.name, "online")
    await alice.expect_state(carol.name, "online")

    # Groups: rename the default one, make another, move Bob there from his menu.
    await alice.menu("Contacts", "groups")
    groups = alice.page.get_by_role("dialog", name="Manage groups")
    await groups.get_by_role("button", name="Rename Buddies").click()
    await groups.get_by_label("New name for Buddies").fill("Friends")
    await groups.get_by_label("New name for Buddies").press("Enter")
    await expect(groups.get_by_role("status")).to_have_text("Renamed “Buddies” to “Friends”.")
    await groups.get_by_label("New group").fill("Work")
    await groups.get_by_role("button", name="Create").click()
    await expect(groups.get_by_role("listitem")).to_have_text(
        [re.compile("^Friends.*3 buddies"), re.compile("^Work.*0 buddies")]
    )
    await alice.page.screenshot(path=output_dir / "manage-groups.png")
    await alice.page.keyboard.press("Escape")
    await expect(groups).to_be_hidden()
    await expect(alice.group("Friends")).to_contain_text("2/3 online")

    menu = await alice.buddy_menu(bob.name)
    await expect(menu.get_by_role("menuitem", name="Send a message")).to_be_focused()
    await alice.page.screenshot(path=output_dir / "context-menu.png")
    await menu.get_by_role("menuitem", name="Move to group…").click()
    move = alice.page.get_by_role("dialog", name="Move to group")
    await move.get_by_label("Group", exact=True).select_option("Work")
    await move.get_by_role("button", name="Move").click()
    await expect(move).to_be_hidden()
    await expect(alice.group("Work").locator(".buddy")).to_have_attribute("data-username", bob.name)
    await expect(alice.group("Work")).to_contain_text("1/1 online")
    await expect(alice.group("Friends")).to_contain_text("1/2 online")
    rows = alice.group("Friends").locator(".buddy")
    assert await rows.evaluate_all("(rows) => rows.map((r) => r.dataset.state)") == [
        "online",
        "offline",
    ]

    # A group folds and unfolds.
    toggle = alice.group("Work").get_by_role("button", name=re.compile("^Work"))
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(alice.buddy(bob.name)).to_be_hidden()
    await toggle.click()
    await expect(alice.buddy(bob.name)).to_be_visible()

    # Stealth: Alice appears offline to Bob only; Carol still sees her.
    menu = await alice.buddy_menu(bob.name)
    await menu.get_by_role("menuitemcheckbox", name="Appear offline to Bob Builder").click()
    await bob.expect_state(alice.name, "offline")
    await expect(alice.buddy(bob.name)).to_have_attribute("data-stealth", "true")
    await expect(alice.buddy(bob.name).get_by_text("stealth")).to_be_visible()
    await carol.expect_state(alice.name, "online")
    await carol.window.get_by_role("button", name="My status: Available").click()
    await carol.page.get_by_role("menuitemradio", name="Busy").click()
    await carol.window.get_by_label("Status message").fill("Choir practice, back at 9")
    await carol.window.get_by_label("Status message").press("Enter")
    await alice.expect_state(carol.name, "busy")
    await expect(alice.buddy(carol.name)).to_contain_text("Choir practice, back at 9")
    await alice.page.screenshot(path=output_dir / "buddy-list-desktop.png")
    menu = await alice.buddy_menu(bob.name)
    await expect(
        menu.get_by_role("menuitemcheckbox", name="Appear offline to Bob Builder")
    ).to_have_attribute("aria-checked", "true")
    await menu.get_by_role("menuitemcheckbox", name="Appear offline to Bob Builder").click()
    await bob.expect_state(alice.name, "online")

    await expect(carol.buddy(alice.name)).to_be_visible()
    await no_sideways_scroll(carol.page)
    await carol.page.screenshot(path=output_dir / "buddy-list-phone.png")

    # Carol, on her phone, declines Bob's request; Bob is told at once.
    await carol.window.get_by_role("button", name="Review").click()
    requests = carol.page.get_by_role("dialog", name="Pending buddy requests")
    await expect(requests).to_contain_text("Sing at my site opening?")
    await no_sideways_scroll(carol.page)
    await carol.page.screenshot(path=output_dir / "pending-requests-phone.png")
    await requests.get_by_role("button", name="Decline").click()
    await expect(requests).to_contain_text("No one is waiting for your answer.")
    await carol.page.keyboard.press("Escape")
    await expect(bob.notice).to_have_text(f"Your buddy request to {carol.name} was declined.")

    await carol.menu("Contacts", "add")
    add = carol.page.get_by_role("dialog", name="Add a buddy")
    await expect(add.get_by_label("Username")).to_be_focused()
    await carol.page.screenshot(path=output_dir / "add-buddy-phone.png")
    await carol.page.keyboard.press("Escape")
    await expect(add).to_be_hidden()
    await expect(carol.window.get_by_role("menuitem", name="Contacts")).to_be_focused()

    # Bob blocks Alice from her context menu (a right-click): she leaves his list, he hers.
    await bob.buddy(alice.name).click(button="right")
    await bob.page.get_by_role("menuitem", name="Block Alice Liddell…").click()
    confirm = bob.page.get_by_role("dialog", name="Block user")
    await expect(confirm).to_contain_text("They are not told.")
    await confirm.get_by_role("button", name="Block").click()
    await expect(bob.buddy(alice.name)).to_have_count(0)
    await expect(alice.buddy(bob.name)).to_have_count(0)

    # A new request from Alice looks sent to her, and never reaches Bob.
    await alice.menu("Contacts", "add")
    add = alice.page.get_by_role("dialog", name="Add a buddy")
    await add.get_by_label("Username").fill(bob.name)
    await add.get_by_role("button", name="Send request").click()
    await expect(add).to_be_hidden()
    await alice.menu("Contacts", "requests")
    requests = alice.page.get_by_role("dialog", name="Pending buddy requests")
    waiting = requests.get_by_role("list", name="Waiting for their answer")
    await expect(waiting.get_by_role("listitem")).to_have_count(1)
    await requests.get_by_role("button", name="Close").first.click()
    await asyncio.sleep(1)  # what would have arrived live has had time to
    await expect(bob.window.locator("#request-alert")).to_be_hidden()
    await bob.page.reload()
    await bob.connected()
    await expect(bob.window.locator("#requests-count")).to_be_hidden()
    await expect(bob.buddy(alice.name)).to_have_count(0)
    await bob.menu("Contacts", "blocked")
    blocked = bob.page.get_by_role("dialog", name="Blocked users")
    await expect(blocked.get_by_role("listitem")).to_have_count(1)
    await expect(blocked.get_by_role("listitem")).to_contain_text("Alice Liddell")
    await bob.page.screenshot(path=output_dir / "blocked-users.png")

    # Alice withdraws her request and deletes the group that is now empty.
    await alice.menu("Contacts", "requests")
    await waiting.get_by_role("button", name="Cancel request").click()
    await expect(requests.get_by_text("You have no requests waiting.")).to_be_visible()
    await alice.page.keyboard.press("Escape")
    await alice.menu("Contacts", "groups")
    await groups.get_by_role("button", name="Delete Work").click()
    confirm = alice.page.get_by_role("dialog", name="Delete group")
    await expect(confirm).to_contain_text("Delete the empty group “Work”?")
    await confirm.get_by_role("button", name="Delete group").click()
    await expect(groups.get_by_role("listitem")).to_have_count(1)
    await alice.page.keyboard.press("Escape")
    await expect(alice.group("Work")).to_have_count(0)

    for chat in (alice, bob, carol):
        await chat.assert_clean()


# A server of its own: this journey stops and restarts the server.
async def test_idle_restart_and_sign_out(
    live_server: LiveServer, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(live_server, ALICE, BOB)
    await befriend(live_server, ALICE, BOB)
    bob = await open_chat(new_context, watch, live_server, BOB)
    alice = await open_chat(new_context, watch, live_server, ALICE, path="/chat?idle=2")

    # Two seconds without input: Alice turns away for Bob; any input brings her back.
    await bob.expect_state("alice", "away")
    await expect(alice.window.get_by_role("button", name="My status: Away (idle)")).to_be_visible()
    await expect(bob.window).to_have_attribute("data-sound-last", "signin")  # when she came
    await alice.page.mouse.move(200, 300)
    await alice.page.mouse.move(240, 320)
    await bob.expect_state("alice", "online")
    await bob.expect_state("alice", "away")  # and idle again

    # The server restarts: both reconnect by themselves, no reload, presence restored
    # (Alice's idleness included).
    for chat in (alice, bob):
        await chat.page.evaluate("window.__sameDocument = true")
    await asyncio.to_thread(live_server.stop)
    await expect(bob.window).not_to_have_attribute("data-connection", "online")
    lost = bob.window.get_by_role("status").filter(has_text="Connection lost")
    await expect(lost).to_be_visible()
    await asyncio.to_thread(live_server.start)
    await alice.connected(timeout=30_000)
    await bob.connected(timeout=30_000)
    await alice.expect_state("bob", "online")
    await bob.expect_state("alice", "away")
    for chat in (alice, bob):
        assert await chat.page.evaluate("window.__sameDocument === true")

    # Alice signs out: Bob sees her go within seconds, with the sign-out sound.
    await alice.window.get_by_role("button", name="Sign out").click()
    await alice.page.wait_for_url(live_server.url + "/login")
    await bob.expect_state("alice", "offline", timeout=5_000)
    await expect(bob.window).to_have_attribute("data-sound-last", "signout")
    await expect(bob.window).to_have_attribute("data-sound-buddy", "alice")

    # Bob's session is ended from another device: his page goes to sign in, and says why.
    await revoke_browser_sessions(live_server, BOB)
    await bob.page.wait_for_url(re.compile(r"/login\?next=%2Fchat$"))
    notice = bob.page.get_by_role("status").filter(has_text="signed out from another one")
    await expect(notice).to_have_text("This device was signed out from another one.")
    await bob.page.screenshot(path=output_dir / "signed-out-elsewhere.png")

    await alice.assert_clean(server_went_down=True)
    await bob.assert_clean(server_went_down=True)
