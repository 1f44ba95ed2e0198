"""The admin panel and reports in a real browser against a live server (issue 8, items 3-5).

One journey on one shared server: Bob (a normal user) gets a page without any trace of the
panel (its script answers 403), reports Carol through the Report dialog from her buddy menu,
and reports a private message of hers from its PM window with the text included (it is
end-to-end encrypted: only then does the server see it); Alice (admin) opens the panel from
the Messenger menu, resolves both reports (Bob is told the outcome), sees new ones arrive
live (the Reports tab reloads itself; on another tab its badge counts them),
bans Carol with a reason (Carol's open page lands on the sign-in page, which shows the
reason), closes registration (the sign-up page then refuses) and finds her actions in the
audit log. Every tab is photographed, and the panel on a phone-sized window too.
Screenshots go to test-output/<test id>/.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import ALICE, BOB, Account, sign_up
from tests.e2e.buddylist import CAROL, Chat, befriend, open_chat, register
from tests.e2e.conftest import NewContext, Watch
from tests.e2e.pm import open_pm_chat

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAVE = Account("dave", "Dave Digger", "dave@example.org", "dave-digs-deeper")
PANEL_TRACES = ("/admin/assets", "admin-panel", "admin-pane", "Admin panel")


async def grant(server: LiveServer, username: str, role: str = "admin") -> None:
    """``echochat admin grant`` against the live server's database, as an operator would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "echochat",
        "admin",
        "grant",
        username,
        "--role",
        role,
        env=server.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def open_tab(page: Page, name: str) -> None:
    await page.locator("#admin-panel").get_by_role("tab", name=name, exact=True).click()
    await expect(page.locator(f'#admin-panel[data-tab="{name.split()[0].lower()}"]')).to_have_count(
        1
    )


async def report_buddy(chat: Chat, username: str, reason: str) -> None:
    """Report a buddy from their menu, as a user would."""
    menu = await chat.buddy_menu(username)
    await menu.locator('[data-command="report"]').click()
    dialog = chat.page.locator("#report-dialog")
    await dialog.get_by_label("What is wrong?").fill(reason)
    await dialog.get_by_role("button", name="Send report").click()
    await expect(dialog).to_be_hidden()


async def shoot(page: Page, path: Path) -> None:
    await page.screenshot(path=path)


# The pure parts, run in the admin's page (state.js is served to admins only).
PURE_CHECKS = """
async () => {
  const s = await import("/admin/assets/state.js");
  const r = await import("/static/js/ui/report.js");
  const out = {};
  out.moderator = s.visibleTabs(["admin:basic", "reports:review", "rooms:manage"]);
  out.nobody = s.visibleTabs([]);
  out.audit = [s.auditQuery({ action: " user.ban ", actor: "", target: "carol" }),
               s.auditQuery({}, { before: 42, limit: 50 }), s.auditQuery({})];
  const current = s.normalizeSettings({ settings: [
    { name: "registration_open", kind: "bool", value: true },
    { name: "room_capacity", kind: "int", value: 1000, minimum: 2, maximum: 100000 },
    { name: "rate_limit_dm_account", kind: "rate", value: "200/10seconds" },
    { name: "gif_api_key", kind: "secret", value: null, is_set: true },
  ] });
  out.unchanged = s.settingsChanges(current, { registration_open: "on", room_capacity: "1000",
    rate_limit_dm_account: "200/10seconds", gif_api_key: "" });
  out.changed = s.settingsChanges(current, { room_capacity: "2000",
    rate_limit_dm_account: "10 per minute", gif_api_key: "new-key" });
  out.refused = s.settingsChanges(current, { registration_open: "on", room_capacity: "1e3",
    rate_limit_dm_account: "often", gif_api_key: "" }).problems.map((p) => p.field);
  const dm = { kind: "dm", username: "carol", messageId: 7, text: "secret words" };
  out.bodies = [r.reportBody(dm, " spam ", false), r.reportBody(dm, "spam", true),
                r.reportBody({ kind: "user", username: "carol", text: "x" }, "rude", true)];
  out.empty = s.barChart([], { width: 200, height: 100 }).bars.length;
  return out;
}
"""


async def test_admin_panel_journey(
    shared_server: LiveServer, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    server = shared_server
    await register(server, ALICE, BOB, CAROL)
    await befriend(server, BOB, CAROL)

    async def admin_page() -> Chat:
        await grant(server, ALICE.username)
        return await open_chat(new_context, watch, server, ALICE)

    # Three signed-in pages, opened side by side (the admin's once the CLI made her admin).
    bob_pm, carol_pm, alice = await asyncio.gather(
        open_pm_chat(new_context, watch, server, BOB),
        open_pm_chat(new_context, watch, server, CAROL),
        admin_page(),
    )

    # --- a normal user: no trace of the panel; reports Carol -----------------------------------
    bob: Chat = bob_pm.chat
    html = await bob.page.content()
    source = await (await bob.page.request.get(server.url + "/chat")).text()
    for trace in PANEL_TRACES:
        assert trace not in source, trace
        assert trace not in html, trace
    refused = await bob.page.request.get(server.url + "/admin/assets/panel.js")
    assert refused.status == 403
    await bob.window.get_by_role("menuitem", name="Messenger", exact=True).click()
    await expect(bob.page.locator('.menu [data-command="admin-panel"]')).to_have_count(0)
    await bob.page.keyboard.press("Escape")

    menu = await bob.buddy_menu(CAROL.username)
    await menu.locator('[data-command="report"]').click()
    dialog = bob.page.locator("#report-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#report-title")).to_have_text("Report Carol Singer")
    await expect(dialog.locator("#report-excerpt-box")).to_be_hidden()  # a user: no message
    await dialog.get_by_label("What is wrong?").fill("Sends me spam links every hour.")
    await shoot(bob.page, output_dir / "report-dialog.png")
    await dialog.get_by_role("button", name="Send report").click()
    await expect(dialog).to_be_hidden()
    await expect(bob.notice).to_contain_text("your report was sent")

    # Carol sends Bob a private message; Bob reports it with its text.
    carol = carol_pm.chat
    await carol_pm.open_from_list(BOB.username)
    await carol_pm.send(BOB.username, "Cheap pills at spam.example!")
    line = bob_pm.messages(CAROL.username).first
    await expect(line.locator(".pm-line__text")).to_have_text("Cheap pills at spam.example!")
    await line.hover()
    await shoot(bob.page, output_dir / "pm-report-button.png")
    await line.get_by_role("button", name="Report this message from Carol Singer").click()
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#report-title")).to_have_text("Report a message")
    await expect(dialog.locator("#report-quote")).to_have_text("Cheap pills at spam.example!")
    include = dialog.get_by_label("Include the message text")
    await expect(include).not_to_be_checked()  # the reporter chooses
    await include.check()
    await dialog.get_by_label("What is wrong?").fill("Spam in a private message.")
    await shoot(bob.page, output_dir / "report-message-dialog.png")
    await dialog.get_by_role("button", name="Send report").click()
    await expect(dialog).to_be_hidden()

    # --- the admin opens the panel from the Messenger menu --------------------------------------
    page = alice.page
    await alice.menu("Messenger", "admin-panel")
    panel = page.locator("#admin-panel")
    await expect(panel).to_be_visible()
    await expect(panel.get_by_role("tab")).to_have_text(
        ["Dashboard", "Users", "Settings", "Rooms", "Reports2", "Audit log"]  # 2 open reports
    )
    await expect(panel.locator("#admin-online")).to_have_text("3")
    await expect(panel.locator("#admin-chart-signups svg rect")).not_to_have_count(0)
    await expect(panel.locator("#admin-open-reports")).to_have_text("2")
    await shoot(page, output_dir / "tab-dashboard.png")

    # --- reports: resolve Bob's reports; Bob is told --------------------------------------------
    await panel.get_by_role("button", name="Review reports").click()
    await expect(panel.get_by_role("tab", name="Reports")).to_have_attribute(
        "aria-selected", "true"
    )
    reports = panel.locator(".admin-report")
    await expect(reports).to_have_count(2)
    message_report = reports.filter(has_text="Spam in a private message.")
    await expect(message_report.locator(".admin-report__excerpt")).to_have_text(
        "Cheap pills at spam.example!"
    )
    await shoot(page, output_dir / "tab-reports.png")
    await message_report.get_by_role("button", name="Delete message").click()
    await expect(reports).to_have_count(1)
    await expect(bob.notice).to_have_text(
        "A moderator reviewed your report and removed the message."
    )
    report = reports.first
    await expect(report).to_contain_text("Sends me spam links every hour.")
    await expect(report).to_contain_text("reported by bob")
    await report.get_by_placeholder("Resolution note").fill("Warned; muted for an hour.")
    await report.get_by_role("button", name="Mute user").click()
    await expect(panel.locator("#admin-reports-status")).to_contain_text("resolved")
    await expect(panel.locator("#admin-reports-empty")).to_be_visible()
    await expect(bob.notice).to_have_text("A moderator reviewed your report and muted the user.")
    badge = panel.locator("#admin-reports-badge")
    await expect(badge).to_be_hidden()  # none open

    # --- live: new reports reach the panel without Refresh (report.new) -------------------------
    await report_buddy(bob, CAROL.username, "Back at it: more spam links.")
    await expect(reports).to_have_count(1)  # the Reports tab is showing: it reloaded itself
    await expect(reports.first).to_contain_text("Back at it")
    await expect(badge).to_have_text("1")
    await open_tab(page, "Dashboard")
    await report_buddy(carol, BOB.username, "He reported me for nothing.")
    await expect(badge).to_have_text("2")  # on another tab: the count, marked new
    await expect(badge).to_have_class("admin-tab__badge admin-tab__badge--new")
    await expect(page.locator("#admin-dock .admin-dock__badge")).to_have_text("2")
    await expect(panel.locator("#admin-open-reports")).to_have_text("2")
    await shoot(page, output_dir / "reports-badge.png")

    # --- users: ban Carol with a reason; her page is sent to sign in ----------------------------
    await open_tab(page, "Users")
    await panel.get_by_label("Search users").fill("car")
    await panel.get_by_role("button", name="Search").click()
    await panel.locator('.admin-list__item[data-username="carol"]').click()
    await expect(panel.locator("#admin-user-name")).to_contain_text("carol")
    await expect(panel.locator("#admin-user-standing")).to_contain_text("Muted")
    await panel.get_by_label("Reason").fill("spam links")
    await shoot(page, output_dir / "tab-users.png")
    await panel.get_by_role("button", name="Ban user").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Ban").click()
    await expect(panel.locator("#admin-user-status")).to_have_text("Banned carol.")
    await expect(panel.locator("#admin-user-standing")).to_have_text("Banned")
    # Bob becomes a moderator (his page shows it once reloaded, at the end).
    await panel.get_by_label("Search users").fill("bob")
    await panel.get_by_role("button", name="Search").click()
    await panel.locator('.admin-list__item[data-username="bob"]').click()
    await expect(panel.locator("#admin-user-name")).to_contain_text("bob")
    await panel.get_by_label("Moderator").check()
    await panel.get_by_role("button", name="Save roles").click()
    await expect(panel.locator("#admin-user-status")).to_have_text("Saved the roles of bob.")
    await expect(panel.locator('.admin-list__item[data-username="bob"]')).to_contain_text(
        "Moderator"
    )
    await carol.page.wait_for_url("**/login**")
    await expect(carol.page.locator("#login-status")).to_contain_text("spam links")
    carol.problems.expect_refusal("/api/v1/auth/refresh", 403)

    # --- settings: close registration; the sign-up page refuses --------------------------------
    await open_tab(page, "Settings")
    registration = panel.get_by_label("Registration open")
    await expect(registration).to_be_checked()
    await registration.uncheck()
    await panel.get_by_label("Room capacity").fill("0")
    await panel.get_by_role("button", name="Save settings").click()
    await expect(panel.locator("#admin-set-room-capacity-error")).to_be_visible()
    await shoot(page, output_dir / "tab-settings-error.png")
    await panel.get_by_label("Room capacity").fill("500")
    # The page cannot know every rate the server accepts: the server's refusal goes next to
    # the field too, and nothing is saved (all or nothing).
    rate = panel.get_by_label("Direct messages per account")
    configured = await rate.input_value()
    await rate.fill("5/fortnight")
    alice.problems.expect_refusal("/api/v1/admin/settings", 422)
    await panel.get_by_role("button", name="Save settings").click()
    await expect(panel.locator("#admin-set-rl-dm-error")).to_be_visible()
    await expect(panel.locator("#admin-set-room-capacity-error")).to_be_hidden()
    await rate.fill(configured)
    await panel.get_by_role("button", name="Save settings").click()
    await expect(panel.locator("#admin-settings-status")).to_contain_text("Saved 2 settings")
    await shoot(page, output_dir / "tab-settings.png")
    # every rate limit has its field, the group-invite one included, with the server's value
    invites = panel.get_by_label("Group invites per account")
    await invites.scroll_into_view_if_needed()
    await expect(invites).to_have_value("30/hour")
    await shoot(page, output_dir / "tab-settings-limits.png")

    visitor = await (await new_context()).new_page()
    visitor_watch = await watch(visitor)
    visitor_watch.expect_refusal("/api/v1/auth/register", 403)
    await sign_up(visitor, server, DAVE)
    await expect(visitor.locator("#register-status")).to_contain_text("Registration is closed")
    await visitor_watch.assert_clean()

    # --- rooms and the audit log ---------------------------------------------------------------
    await open_tab(page, "Rooms")
    await expect(panel.locator("#admin-category-list li")).not_to_have_count(0)
    await panel.get_by_label("New category").fill("Staff corner")
    await panel.get_by_role("button", name="Add", exact=True).click()
    await expect(panel.locator("#admin-rooms-status")).to_contain_text("Staff corner")
    room_form = panel.locator("#admin-room-form")
    await room_form.get_by_label("Name").fill("Announcements")
    await room_form.get_by_label("Category").select_option(label="Staff corner")
    await room_form.get_by_role("button", name="Create room").click()
    room = panel.locator("#admin-room-list li", has_text="Announcements")
    await expect(room).to_contain_text("Staff corner")
    await shoot(page, output_dir / "tab-rooms.png")
    await room.get_by_role("button", name="Delete Announcements").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    await expect(room).to_have_count(0)
    await open_tab(page, "Audit log")
    rows = panel.locator("#admin-audit-rows tr")
    await expect(rows.filter(has_text="user.ban")).to_have_count(1)
    await expect(rows.filter(has_text="Announcements")).not_to_have_count(0)
    await expect(rows.filter(has_text="settings.update")).to_have_count(2)
    await expect(panel.locator("#admin-audit-csv")).to_have_attribute(
        "href", "/api/v1/admin/audit.csv"
    )
    await shoot(page, output_dir / "tab-audit.png")
    await panel.get_by_label("Action").fill("settings.update")
    await panel.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(panel.locator("#admin-audit-csv")).to_have_attribute(
        "href", "/api/v1/admin/audit.csv?action=settings.update"
    )
    href = await panel.locator("#admin-audit-csv").get_attribute("href")
    csv = await page.request.get(server.url + str(href))  # the link, with her cookies
    assert csv.status == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert (await csv.text()).count("settings.update") == 2

    # --- drag it by its title bar, minimize to the dock and back; a phone-sized window ----------
    before = await panel.bounding_box()
    assert before is not None
    await page.mouse.move(before["x"] + 200, before["y"] + 12)
    await page.mouse.down()
    await page.mouse.move(before["x"] + 120, before["y"] + 60, steps=4)
    await page.mouse.up()
    after = await panel.bounding_box()
    assert after is not None
    assert (round(after["x"] - before["x"]), round(after["y"] - before["y"])) == (-80, 48)
    await panel.get_by_role("button", name="Minimize").click()
    await expect(panel).to_be_hidden()
    dock = page.locator("#admin-dock")
    await expect(dock).to_be_visible()
    await expect(dock).to_have_attribute("title", "Admin panel, 2 open reports")
    await dock.click()
    await expect(panel).to_be_visible()
    await page.set_viewport_size({"width": 390, "height": 780})
    await open_tab(page, "Users")
    await shoot(page, output_dir / "narrow-users.png")
    await open_tab(page, "Settings")
    await shoot(page, output_dir / "narrow-settings.png")
    await open_tab(page, "Dashboard")
    await expect(panel.locator("#admin-chart-messages svg")).to_have_count(1)
    await shoot(page, output_dir / "narrow-dashboard.png")

    # --- Bob, made moderator in the Users tab: the panel with Dashboard, Rooms and Reports ------
    await bob.page.reload()
    await bob.connected()
    await bob.menu("Messenger", "admin-panel")
    mod_panel = bob.page.locator("#admin-panel")
    await expect(mod_panel.get_by_role("tab")).to_have_text(["Dashboard", "Rooms", "Reports2"])
    await expect(mod_panel.locator("#admin-open-reports")).to_have_text("2")
    await shoot(bob.page, output_dir / "moderator-dashboard.png")

    pure = await page.evaluate(PURE_CHECKS)
    assert pure["moderator"] == ["dashboard", "rooms", "reports"]
    assert pure["nobody"] == []
    assert pure["audit"] == ["?action=user.ban&target=carol", "?before=42&limit=50", ""]
    assert pure["unchanged"] == {"changes": {}, "problems": []}
    assert pure["changed"] == {
        "changes": {
            "registration_open": False,
            "room_capacity": 2000,
            "rate_limit_dm_account": "10 per minute",
            "gif_api_key": "new-key",
        },
        "problems": [],
    }
    assert pure["refused"] == ["room_capacity", "rate_limit_dm_account"]
    assert pure["bodies"] == [
        {"kind": "dm", "reason": "spam", "message_id": 7},  # no excerpt unless chosen
        {"kind": "dm", "reason": "spam", "message_id": 7, "excerpt": "secret words"},
        {"kind": "user", "reason": "rude", "username": "carol"},
    ]
    assert pure["empty"] == 0

    for chat in (alice, bob, carol):
        await chat.problems.assert_clean()
