"""The landing page in a real browser: brand, sign-in form, security headers, no console
errors or CSP violations, and a layout that fits a desktop and a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from echochat import __version__
from tests.conftest import LiveServer
from tests.e2e.conftest import PHONE, NewContext, Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The landing page changes nothing on the server: the tests share one.


async def test_landing_page_on_desktop(
    shared_server: LiveServer, page: Page, watch: Watch, output_dir: Path
) -> None:
    problems = await watch(page)

    response = await page.goto(shared_server.url + "/")

    assert response is not None
    assert response.status == 200
    csp = await response.header_value("content-security-policy") or ""
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert await response.header_value("x-content-type-options") == "nosniff"

    await expect(page).to_have_title(re.compile("EchoChat"))
    await expect(page.get_by_role("banner").get_by_role("link", name="EchoChat")).to_be_visible()
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    await expect(page.get_by_role("main")).to_be_visible()
    await expect(page.get_by_role("contentinfo")).to_contain_text(__version__)

    login = page.get_by_role("region", name="Sign in to EchoChat")
    await expect(login).to_be_visible()
    form = page.locator("form#login-form")
    await expect(form).to_have_attribute("method", "post")
    await expect(form).to_have_attribute("action", "/login")
    username = login.get_by_label("Username", exact=True)
    password = login.get_by_label("Password", exact=True)
    await expect(username).to_have_attribute("name", "username")
    await expect(username).to_have_attribute("autocomplete", "username")
    await expect(password).to_have_attribute("name", "password")
    await expect(password).to_have_attribute("type", "password")
    await expect(password).to_have_attribute("autocomplete", "current-password")
    await expect(login.get_by_role("button", name="Sign In")).to_be_visible()
    await expect(login.get_by_role("link", name="Create an account")).to_have_attribute(
        "href", "/register"
    )
    await expect(login.get_by_role("link", name="Forgot password?")).to_have_attribute(
        "href", "/forgot"
    )

    features = page.get_by_role("region", name=re.compile("messenger", re.IGNORECASE))
    for name in ("presence", "encrypted", "rooms", "Voice", "File transfer", "BUZZ!"):
        heading = features.get_by_role("heading", name=re.compile(re.escape(name)))
        await expect(heading).to_be_visible()

    await page.screenshot(path=output_dir / "landing-desktop.png")
    await page.screenshot(path=output_dir / "landing-desktop-full.png", full_page=True)

    # Keyboard users see where they are.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await username.focus()
    assert await username.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    await problems.assert_clean()


async def test_landing_page_on_a_phone(
    shared_server: LiveServer, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    page = await (await new_context(**PHONE)).new_page()
    problems = await watch(page)

    await page.goto(shared_server.url + "/")

    await expect(page.get_by_label("Username", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Sign In")).to_be_visible()
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    # The sign-in form comes before the feature list on a narrow screen.
    login_box = await page.locator("#sign-in").bounding_box()
    features_box = await page.locator(".features").bounding_box()
    assert login_box is not None
    assert features_box is not None
    assert login_box["y"] < features_box["y"]

    await page.screenshot(path=output_dir / "landing-phone.png")
    await page.screenshot(path=output_dir / "landing-phone-full.png", full_page=True)
    await problems.assert_clean()


async def test_watch_reports_a_csp_violation(
    shared_server: LiveServer, page: Page, watch: Watch
) -> None:
    """The harness itself: an inline style attribute is refused and reported."""
    problems = await watch(page)
    await page.goto(shared_server.url + "/")

    await page.evaluate("document.body.setAttribute('style', 'color: red')")

    await page.wait_for_function("window.__echochatCspViolations.length > 0")
    violations = await problems.csp_violations()
    assert any("style-src" in v for v in violations), violations
    assert any("style-src" in p for p in await problems.problems())
