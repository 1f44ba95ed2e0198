"""The browser's API client (/static/js/net/api.js) in Chromium: the CSRF retry, one shared
refresh for concurrent callers, the refresh race between tabs, and the `next` filter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Page, Route

from tests.conftest import LiveServer
from tests.e2e.accounts import Account, sign_up
from tests.e2e.conftest import Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/static/js/net/api.js"

# The tests share one server; each signs up a user of its own.
CAROL = Account("carol", "Carol", "carol@example.org", "carol-sings-carols")
DAVE = Account("dave", "Dave", "dave@example.org", "dave-digs-deeper")
ERIN = Account("erin", "Erin", "erin@example.org", "erin-errs-rarely")


def _error(status: int, code: str) -> dict[str, Any]:
    body = {"error": {"code": code, "message": code.replace("_", " ")}}
    return {"status": status, "content_type": "application/json", "body": json.dumps(body)}


async def _signed_in(page: Page, server: LiveServer, who: Account) -> None:
    await sign_up(page, server, who)
    await page.wait_for_url(server.url + "/chat")


async def test_a_refused_csrf_token_is_renewed_once_and_the_request_retried(
    shared_server: LiveServer, page: Page, watch: Watch
) -> None:
    problems = await watch(page)
    await _signed_in(page, shared_server, CAROL)
    problems.expect_refusal("/api/v1/me", 403)
    await page.evaluate("document.cookie = 'echochat_csrf=forged.value; path=/'")

    me = await page.evaluate(
        """async (api) => {
            const { api: call } = await import(api);
            return call("PATCH", "/me", { display_name: "Carol C." });
        }""",
        API,
    )

    assert me["user"]["display_name"] == "Carol C."
    assert "forged" not in await page.evaluate("document.cookie")
    await problems.assert_clean()


async def test_concurrent_callers_share_one_refresh(
    shared_server: LiveServer, page: Page, watch: Watch
) -> None:
    problems = await watch(page)
    await _signed_in(page, shared_server, DAVE)
    expired = {"left": 2}
    refreshes: list[int] = []

    async def me(route: Route) -> None:
        if expired["left"]:
            expired["left"] -= 1
            await route.fulfill(**_error(401, "token_expired"))
        else:
            await route.continue_()

    async def refresh(route: Route) -> None:
        response = await route.fetch()
        refreshes.append(response.status)
        await route.fulfill(response=response)

    await page.route("**/api/v1/me", me)
    await page.route("**/api/v1/auth/refresh", refresh)
    problems.expect_refusal("/api/v1/me", 401)

    answers = await page.evaluate(
        """async (api) => {
            const { api: call } = await import(api);
            const both = await Promise.all([call("GET", "/me"), call("GET", "/me")]);
            return both.map((me) => me.user.username);
        }""",
        API,
    )

    assert answers == ["dave", "dave"]
    assert refreshes == [200]
    await problems.assert_clean()


async def test_a_refresh_race_lost_to_another_tab_just_retries(
    shared_server: LiveServer, page: Page, watch: Watch
) -> None:
    problems = await watch(page)
    await _signed_in(page, shared_server, ERIN)
    calls: list[str] = []

    async def me(route: Route) -> None:
        calls.append("me")
        if calls.count("me") == 1:
            await route.fulfill(**_error(401, "token_expired"))
        else:
            await route.continue_()

    async def refresh(route: Route) -> None:
        calls.append("refresh")
        await route.fulfill(**_error(409, "refresh_race"))

    await page.route("**/api/v1/me", me)
    await page.route("**/api/v1/auth/refresh", refresh)
    problems.expect_refusal("/api/v1/me", 401)
    problems.expect_refusal("/api/v1/auth/refresh", 409)

    username = await page.evaluate(
        """async (api) => {
            const { api: call } = await import(api);
            return (await call("GET", "/me")).user.username;
        }""",
        API,
    )

    assert username == "erin"
    assert calls == ["me", "refresh", "me"]
    await problems.assert_clean()


async def test_api_errors_carry_status_code_fields_and_retry_after(
    shared_server: LiveServer, page: Page, watch: Watch
) -> None:
    problems = await watch(page)
    await page.goto(shared_server.url + "/register")
    problems.expect_refusal("/api/v1/auth/register", 422)

    error = await page.evaluate(
        """async (api) => {
            const { api: call, ApiError } = await import(api);
            try {
                await call("POST", "/auth/register", { username: "frank", password: 12 });
            } catch (e) {
                return { isApiError: e instanceof ApiError, status: e.status, code: e.code,
                         fields: e.fields.map((f) => f.field), retryAfter: e.retryAfter };
            }
            return null;
        }""",
        API,
    )

    assert error == {
        "isApiError": True,
        "status": 422,
        "code": "invalid_input",
        "fields": ["password"],
        "retryAfter": None,
    }
    await problems.assert_clean()


NEXT_VALUES = {
    "/devices": "/devices",
    "/chat?room=1#top": "/chat?room=1#top",
    "//example.org/x": None,
    "/\\example.org": None,
    "https://example.org/": None,
    "javascript:alert(1)": None,
    "/\tdevices": None,
    "": None,
}


async def test_next_accepts_only_paths_of_this_site(shared_server: LiveServer, page: Page) -> None:
    await page.goto(shared_server.url + "/login")
    results = await page.evaluate(
        """async (values) => {
            const { safeNext } = await import("/static/js/ui/navigate.js");
            return values.map((raw) => safeNext(raw, location.origin));
        }""",
        list(NEXT_VALUES),
    )
    assert dict(zip(NEXT_VALUES, results, strict=True)) == NEXT_VALUES
