"""Account journeys in a real browser against a live server: register, sign out and in,
refusals shown inline, password reset by link and by PIN, signed-in devices, and the
first-admin claim. Every page must stay free of console errors and CSP violations; the
refusals a test provokes on purpose are declared with ``expect_refusal``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.accounts import (
    Cast,
    ban,
    claim_token,
    expect_status,
    fail_logins,
    register_over_http,
    reset_link,
    reset_pin,
    sign_in,
    sign_up,
    wait_for_email,
)
from tests.e2e.buddylist import dismiss_key_setup
from tests.e2e.conftest import PHONE, SHARED_LIMITS, NewContext, Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

ANDROID_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Mobile Safari/537.36"
)
NEW_PASSWORD = "through-the-looking-glass"


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    return SHARED_LIMITS


async def no_sideways_scroll(page: Page) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


async def test_register_sign_out_and_sign_in_again(
    shared_server: LiveServer, people: Cast, page: Page, watch: Watch, output_dir: Path
) -> None:
    alice = people.alice
    url = shared_server.url
    problems = await watch(page)

    await page.goto(url + "/register")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Create your EchoChat account")
    username = page.get_by_label("Username", exact=True)
    await expect(username).to_have_attribute("autocomplete", "username")
    await expect(username).to_have_accessible_description(re.compile("3–32 characters"))
    await expect(page.get_by_label("Password", exact=True)).to_have_attribute(
        "autocomplete", "new-password"
    )
    await expect(page.get_by_label("Email")).to_have_attribute("autocomplete", "email")
    await page.screenshot(path=output_dir / "register-desktop.png", full_page=True)
    await sign_up(page, shared_server, alice)

    await page.wait_for_url(url + "/chat")
    await dismiss_key_setup(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hi, Alice Liddell!")
    buddies = page.get_by_role("region", name="EchoChat — Buddy list")
    await expect(buddies).to_contain_text("Alice Liddell")
    await expect(buddies).to_contain_text("send a private message")
    await expect(page.get_by_role("navigation", name="Open conversations")).to_be_visible()
    await page.screenshot(path=output_dir / "chat-desktop.png")

    await buddies.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(url + "/login")

    problems.expect_refusal("/api/v1/auth/login", 401)
    await sign_in(page, shared_server, alice.username, "not-her-password", path=None)
    await expect_status(page, "Wrong username or password.")
    await expect(page.get_by_label("Password", exact=True)).to_be_focused()
    await expect(page.get_by_label("Password", exact=True)).to_have_value("")
    await page.screenshot(path=output_dir / "login-wrong-password.png")

    # A `next` that leaves the site is ignored...
    await sign_in(page, shared_server, alice.username, alice.password, "/login?next=//example.org/")
    await page.wait_for_url(url + "/chat")
    await dismiss_key_setup(page)
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(url + "/login")

    # ...and a page that needs a session comes back after signing in.
    await page.goto(url + "/devices")
    await page.wait_for_url(re.compile(r"/login\?next=/devices$"))
    await sign_in(page, shared_server, alice.username, alice.password, path=None)
    await page.wait_for_url(url + "/devices")
    await expect(page.get_by_text("This device")).to_be_visible()
    await problems.assert_clean()


async def test_register_refusals_are_shown_inline(
    shared_server: LiveServer, people: Cast, page: Page, watch: Watch, output_dir: Path
) -> None:
    alice, bob = people.alice, people.bob
    await register_over_http(shared_server, bob)
    problems = await watch(page)
    form = page.locator("#register-form")
    username = form.get_by_label("Username", exact=True)
    password = form.get_by_label("Password", exact=True)
    confirm = form.get_by_label("Type it again")

    # Checked in the browser, nothing sent.
    await sign_up(page, shared_server, alice, confirm="something-else")
    await expect(confirm).to_have_attribute("aria-invalid", "true")
    await expect(confirm).to_have_accessible_description("The two passwords do not match.")
    await expect(confirm).to_be_focused()

    # Refused by the server, shown next to the field it is about.
    problems.expect_refusal("/api/v1/auth/register", 422)
    common = alice.__class__(alice.username, alice.display_name, alice.email, "password123")
    await sign_up(page, shared_server, common)
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(password).to_have_accessible_description(re.compile("most common"))
    await expect(confirm).not_to_have_attribute("aria-invalid", "true")
    await expect(password).to_be_focused()

    problems.expect_refusal("/api/v1/auth/register", 409)
    taken = alice.__class__(bob.username.upper(), alice.display_name, alice.email, alice.password)
    await sign_up(page, shared_server, taken)
    await expect(username).to_have_attribute("aria-invalid", "true")
    await expect(username).to_have_accessible_description(re.compile("username is taken"))
    await expect(form.get_by_role("status")).to_have_text("Please check the marked field.")
    await page.screenshot(path=output_dir / "register-refused.png", full_page=True)
    await expect(page).to_have_url(shared_server.url + "/register")
    await problems.assert_clean()


async def test_sign_in_refusals_say_why(
    shared_server: LiveServer, people: Cast, page: Page, watch: Watch, output_dir: Path
) -> None:
    alice, bob = people.alice, people.bob
    await register_over_http(shared_server, alice)
    await register_over_http(shared_server, bob)
    problems = await watch(page)

    ban(shared_server, bob.username, "spamming the lobby")
    problems.expect_refusal("/api/v1/auth/login", 403)
    await sign_in(page, shared_server, bob.username, bob.password)
    await expect_status(page, "This account is banned: spamming the lobby.")

    await fail_logins(shared_server, alice.username, 10)
    problems.expect_refusal("/api/v1/auth/login", 429)
    await sign_in(page, shared_server, alice.username, alice.password, path=None)
    await expect_status(
        page, re.compile(r"^Too many sign-in attempts; try again in \d+ (minutes|seconds)\.$")
    )
    await page.screenshot(path=output_dir / "login-rate-limited.png")
    await expect(page).to_have_url(shared_server.url + "/login")
    await problems.assert_clean()


async def test_forgot_password_then_reset_by_link(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice = people.alice
    url = shared_server.url
    await register_over_http(shared_server, alice)
    page = await (await new_context()).new_page()
    problems = await watch(page)

    await page.goto(url + "/login")
    await page.get_by_role("link", name="Forgot password?").click()
    await page.wait_for_url(url + "/forgot")
    await page.get_by_label("Username or email").fill(alice.email)
    await page.get_by_role("button", name="Send me a reset email").click()
    await expect_status(page, "If that account exists, we sent an email with a link and a PIN.")
    await expect(page.get_by_label("PIN", exact=True)).to_be_focused()
    await page.screenshot(path=output_dir / "forgot-desktop.png", full_page=True)

    link = reset_link(await wait_for_email(shared_server, alice.email, "Reset your"))
    assert link.startswith(url + "/reset?token=")
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    await expect(page.get_by_label("PIN", exact=True)).to_be_hidden()
    form = page.locator("#reset-form")
    await form.get_by_label("New password").fill(NEW_PASSWORD)
    await form.get_by_label("Type it again").fill(NEW_PASSWORD)
    await page.screenshot(path=output_dir / "reset-link-desktop.png", full_page=True)
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_text("Your password was changed.")).to_be_visible()
    await page.screenshot(path=output_dir / "reset-done-desktop.png", full_page=True)
    assert "just changed" in await wait_for_email(shared_server, alice.email, "was changed")

    # The link works once.
    problems.expect_refusal("/api/v1/auth/password/reset", 401)
    await page.goto(link)
    await form.get_by_label("New password").fill("another-new-password")
    await form.get_by_label("Type it again").fill("another-new-password")
    await page.get_by_role("button", name="Set new password").click()
    dead = page.get_by_text("This reset link does not work any more.")
    await expect(dead).to_be_visible()
    await expect(page.get_by_role("link", name="Ask for a new reset email")).to_be_visible()
    await page.screenshot(path=output_dir / "reset-link-used.png", full_page=True)

    problems.expect_refusal("/api/v1/auth/login", 401)
    await sign_in(page, shared_server, alice.username, alice.password)
    await expect_status(page, "Wrong username or password.")
    await sign_in(page, shared_server, alice.username, NEW_PASSWORD, path=None)
    await page.wait_for_url(url + "/chat")
    await dismiss_key_setup(page)
    await problems.assert_clean()


async def test_forgot_password_then_reset_by_pin(
    shared_server: LiveServer, people: Cast, page: Page, watch: Watch, output_dir: Path
) -> None:
    alice = people.alice
    url = shared_server.url
    await register_over_http(shared_server, alice)
    problems = await watch(page)

    await page.goto(url + "/forgot")
    await page.get_by_label("Username or email").fill(alice.username)
    await page.get_by_role("button", name="Send me a reset email").click()
    pin_field = page.get_by_label("PIN", exact=True)
    await expect(pin_field).to_be_focused()
    await expect(pin_field).to_have_attribute("inputmode", "numeric")
    await expect(pin_field).to_have_attribute("autocomplete", "one-time-code")
    pin = reset_pin(await wait_for_email(shared_server, alice.email, "Reset your"))
    wrong = "".join(str((int(d) + 1) % 10) for d in pin)

    problems.expect_refusal("/api/v1/auth/password/reset", 401)
    form = page.locator("#pin-form")
    await pin_field.fill(wrong)
    await form.get_by_label("New password").fill(NEW_PASSWORD)
    await form.get_by_label("Type it again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set new password").click()
    await expect(pin_field).to_have_accessible_description(re.compile("Wrong PIN; 4 tries left."))
    await expect(pin_field).to_be_focused()
    await page.screenshot(path=output_dir / "forgot-pin-wrong.png", full_page=True)

    # Coming back later in the same browser: /reset without a link token asks for the PIN.
    await page.goto(url + "/reset")
    await expect(page.locator("#reset-form")).to_be_hidden()
    await pin_field.fill(pin)
    await form.get_by_label("New password").fill(NEW_PASSWORD)
    await form.get_by_label("Type it again").fill(NEW_PASSWORD)
    await page.screenshot(path=output_dir / "reset-pin-desktop.png", full_page=True)
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_text("Your password was changed.")).to_be_visible()
    await page.get_by_role("link", name="Sign in with your new password").click()
    await page.wait_for_url(url + "/login")
    await sign_in(page, shared_server, alice.username, NEW_PASSWORD, path=None)
    await page.wait_for_url(url + "/chat")
    await dismiss_key_setup(page)
    await problems.assert_clean()


async def test_signed_in_devices(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice = people.alice
    url = shared_server.url
    laptop = await (await new_context()).new_page()
    phone = await (await new_context(**PHONE, user_agent=ANDROID_UA)).new_page()
    laptop_problems = await watch(laptop)
    phone_problems = await watch(phone)

    await sign_up(laptop, shared_server, alice)
    await laptop.wait_for_url(url + "/chat")
    await dismiss_key_setup(laptop)
    await sign_in(phone, shared_server, alice.username, alice.password)
    await phone.wait_for_url(url + "/chat")
    await dismiss_key_setup(phone)
    await phone.screenshot(path=output_dir / "chat-phone.png", full_page=True)
    await no_sideways_scroll(phone)

    await laptop.get_by_role("link", name="Signed-in devices").click()
    await laptop.wait_for_url(url + "/devices")
    devices = laptop.get_by_role("list", name="Signed-in devices").get_by_role("listitem")
    await expect(devices).to_have_count(2)
    this_one = devices.filter(has_text="This device")
    other = devices.filter(has_text="Chrome on Android")
    await expect(this_one).to_have_count(1)
    await expect(other).to_contain_text("127.0.0.1")
    await expect(other.get_by_text("This device")).to_have_count(0)
    await expect(other.locator("time").first).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    await laptop.screenshot(path=output_dir / "devices-desktop.png", full_page=True)
    await phone.goto(url + "/devices")
    await expect(phone.get_by_text("This device")).to_be_visible()
    await phone.screenshot(path=output_dir / "devices-phone.png", full_page=True)
    await no_sideways_scroll(phone)

    await other.get_by_role("button", name="Sign out").click()
    await expect(laptop.get_by_role("status")).to_have_text(
        re.compile("Signed out Chrome on Android")
    )
    await expect(devices).to_have_count(1)

    # The phone's session is over: its next API call fails, and a reload asks to sign in.
    phone_problems.expect_refusal("/api/v1/me", 401)
    status = await phone.evaluate("fetch('/api/v1/me').then((r) => r.status)")
    assert status == 401
    await phone.reload()
    await phone.wait_for_url(re.compile(r"/login\?next=/devices$"))
    # Signing in again works at the first try: the sign-in page dropped the dead session's
    # cookie, so its CSRF token and the server agree on "no session" (no 403 on the way).
    await sign_in(phone, shared_server, alice.username, alice.password, path=None)
    await phone.wait_for_url(url + "/devices")
    await expect(phone.get_by_text("This device")).to_be_visible()

    await this_one.get_by_role("button", name="Sign out").click()
    await laptop.wait_for_url(url + "/login")
    await laptop.goto(url + "/chat")
    await laptop.wait_for_url(re.compile(r"/login\?next=/chat$"))
    await laptop_problems.assert_clean()
    await phone_problems.assert_clean()


# A server of its own: the claim link works only on a server without an admin, once, and
# the admin it makes would be every later test's admin too.
async def test_first_admin_claims_the_server(
    live_server: LiveServer, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    url = live_server.url
    link = f"{url}/claim#{claim_token(live_server)}"
    page = await (await new_context()).new_page()
    problems = await watch(page)

    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Create the admin account")
    await page.get_by_label("Username", exact=True).fill("root-admin")
    await page.get_by_label("Display name").fill("The Admin")
    await page.get_by_label("Password", exact=True).fill("keys-to-the-kingdom")
    await page.get_by_label("Type it again").fill("keys-to-the-kingdom")
    await page.screenshot(path=output_dir / "claim-desktop.png", full_page=True)
    await page.get_by_role("button", name="Create admin account").click()
    await page.wait_for_url(url + "/chat")
    await dismiss_key_setup(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hi, The Admin!")
    # The badge in the buddy list (the admin panel has an "Admin" role box too).
    await expect(page.locator("#buddy-window").get_by_text("Admin", exact=True)).to_be_visible()
    assert "#" not in page.url
    await page.screenshot(path=output_dir / "chat-admin-desktop.png")
    await problems.assert_clean()

    # Without its token the page explains; and the link works once.
    context = await new_context()
    bare = await context.new_page()
    bare_problems = await watch(bare)
    await bare.goto(url + "/claim")
    await expect(bare.get_by_text("This page needs the whole claim link.")).to_be_visible()
    await expect(bare.get_by_role("button", name="Create admin account")).to_be_hidden()
    await bare_problems.assert_clean()
    again = await context.new_page()
    again_problems = await watch(again)
    again_problems.expect_refusal("/api/v1/auth/claim", 401)
    await again.goto(link)
    await again.get_by_label("Username", exact=True).fill("mallory")
    await again.get_by_label("Password", exact=True).fill("i-want-to-be-admin")
    await again.get_by_label("Type it again").fill("i-want-to-be-admin")
    await again.get_by_role("button", name="Create admin account").click()
    await expect(again.get_by_text("This claim link is invalid, used or expired.")).to_be_visible()
    await expect(again.get_by_text("echochat admin create USERNAME")).to_be_visible()
    await again.screenshot(path=output_dir / "claim-used.png", full_page=True)
    await again_problems.assert_clean()


async def test_register_on_a_phone(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    alice = people.alice
    page = await (await new_context(**PHONE)).new_page()
    problems = await watch(page)

    await page.goto(shared_server.url + "/register")
    await no_sideways_scroll(page)
    await page.screenshot(path=output_dir / "register-phone.png", full_page=True)
    await sign_up(page, shared_server, alice)
    await page.wait_for_url(shared_server.url + "/chat")
    await dismiss_key_setup(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hi, Alice Liddell!")
    dock = page.get_by_role("navigation", name="Open conversations")
    await expect(dock).to_be_in_viewport()
    await no_sideways_scroll(page)
    await page.screenshot(path=output_dir / "chat-phone.png")
    await problems.assert_clean()
