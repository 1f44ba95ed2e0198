"""Browser fixtures: one Playwright driver and one headless Chromium (Debian's, at
``tests.services.CHROMIUM``) per test session, and fresh browser contexts per test.

Every test under ``tests/e2e`` is marked ``e2e``. E2e tests use Playwright's async API:
they are ``async def`` and run on pytest-asyncio's *session* event loop, the loop the
browser was launched on, so every module here sets::

    pytestmark = pytest.mark.asyncio(loop_scope="session")

(the collection hook below refuses an e2e coroutine test without it, with that hint). The
other suites keep their per-test loops: the session loop only runs while an e2e test or
fixture is being run, so nothing else sees a running loop.

Fixtures: ``browser``; ``new_context(**options)`` and ``page`` (closed after the test);
``watch(page)`` (console errors, CSP violations, failed requests; see :class:`PageWatch`);
``shared_server``, one live server per module for tests that need no fresh server
(``live_server`` from ``tests/conftest.py`` gives each test its own: keep that for a test
that needs a pristine server, restarts it, or trips a limit that would reach other tests);
``people``, per-test usernames for tests that share a server.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Response,
    async_playwright,
)

from tests import services
from tests.conftest import OUTPUT, LiveServer
from tests.e2e.accounts import Cast, cast

__all__ = [
    "CHROMIUM_ARGS",
    "PHONE",
    "SHARED_LIMITS",
    "VIEWPORT",
    "NewContext",
    "PageWatch",
    "Watch",
]

HERE = Path(__file__).resolve().parent

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 1,
    "is_mobile": True,
    "has_touch": True,
}
DEFAULT_TIMEOUT_MS = 10_000

NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.e2e)
        marker = item.get_closest_marker("asyncio")
        if marker is not None and marker.kwargs.get("loop_scope") != "session":
            raise pytest.UsageError(
                f"{item.nodeid}: e2e tests run on the browser's session loop; add "
                'pytestmark = pytest.mark.asyncio(loop_scope="session") to the module'
            )


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    """Extra environment for the module's ``shared_server``; a module overrides this
    fixture to change its server's settings (e.g. :data:`SHARED_LIMITS`)."""
    return {}


# Every browser and HTTP client of a test run comes from 127.0.0.1, so on a server shared by
# a module's tests the per-IP limits count all their sign-ins and sign-ups together (the
# default is 10 registrations an hour). Modules whose tests each make their own users raise
# just these two; the per-IP limits themselves are tested in tests/unit/test_auth_api.py,
# and the per-account ones (failed logins, resets, backups) keep their defaults.
SHARED_LIMITS = {
    "ECHOCHAT_RATE_LIMIT_LOGIN_IP": "1000/minute",
    "ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1000/hour",
}


@pytest.fixture(scope="module")
def shared_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    shared_server_env: dict[str, str],
) -> Iterator[LiveServer]:
    """One live server for a whole module, for tests that need no server of their own
    (each uses other users: see ``people``); its log is test-output/<module>/server.log."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    logs = OUTPUT / name
    logs.mkdir(parents=True, exist_ok=True)
    server = LiveServer(
        tmp_path_factory.mktemp("shared") / "server", logs / "server.log", shared_server_env
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def people() -> Cast:
    """Alice, Bob, Carol and Dave under usernames (and emails) of this test's own, so that
    tests can share a module's server without meeting each other's users."""
    return cast()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (skipped loudly, or failed under ECHOCHAT_REQUIRE_SERVICES=1)."""
    services.need(
        "Chromium", Path(services.CHROMIUM).exists(), "install it: apt-get install -y chromium"
    )
    return services.CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """Headless Chromium, launched once per session on the session event loop."""
    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_context(browser: Browser) -> AsyncIterator[NewContext]:
    """A factory of fresh browser contexts (separate cookies and storage: one per user).

    Keyword arguments go to ``Browser.new_context``; the viewport defaults to 1280x800.
    Every context made is closed after the test.
    """
    contexts: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        options.setdefault("viewport", VIEWPORT)
        context = await browser.new_context(**options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        with contextlib.suppress(Error):
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(new_context: NewContext) -> Page:
    """One page in a fresh 1280x800 context."""
    context = await new_context()
    return await context.new_page()


# A listener in the page's main world, installed before any page script runs. Init
# scripts and bindings come in through the DevTools protocol, so the page's CSP does not
# block them. The binding hands each violation to Python at once, so violations survive
# the navigations of a journey; the array serves tests that wait for one in the page.
_CSP_BINDING = "__echochatReportCsp"
_CSP_LISTENER = f"""
window.__echochatCspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {{
  const text = `${{event.violatedDirective}} blocked ${{event.blockedURI || "inline"}}`
    + ` at ${{event.sourceFile || event.documentURI}}:${{event.lineNumber}}`;
  window.__echochatCspViolations.push(text);
  window.{_CSP_BINDING}?.(text);
}});
"""

# What Chromium logs to the console for every response of status >= 400.
_FAILED_RESOURCE = re.compile(r"status of (\d{3})")


class PageWatch:
    """Collects what should never happen on a page: console errors, uncaught exceptions,
    Content-Security-Policy violations and failed or erroring requests.

    A test that provokes a refusal on purpose says so first with :meth:`expect_refusal`;
    those responses (and the console line Chromium logs for each) are then not problems.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console_errors: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        self.failed_requests: list[str] = []
        self.bad_responses: list[tuple[str, int]] = []
        # A signed-in page's key session asks for the key backup; before the first one is
        # written the honest answer is 404 (state/keysession.js then offers the set-up).
        self.expected: list[tuple[str, int]] = [("/api/v1/keys/backup", 404)]
        self.csp_seen: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    async def start(self) -> PageWatch:
        await self.page.expose_binding(
            _CSP_BINDING, lambda _source, text: self.csp_seen.append(str(text))
        )
        await self.page.add_init_script(_CSP_LISTENER)
        return self

    def expect_refusal(self, path: str, status: int) -> None:
        """Responses with this status to URLs whose path ends with ``path`` are expected."""
        self.expected.append((path, status))

    def _is_expected(self, url: str, status: int) -> bool:
        path = url.split("?", 1)[0].split("#", 1)[0]
        return any(path.endswith(p) and status == s for p, s in self.expected)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def _on_request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # A navigation cancels what the page was still loading; that is not a fault.
        if "ERR_ABORTED" not in failure:
            self.failed_requests.append(f"{request.url}: {failure}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.bad_responses.append((response.url, response.status))

    async def csp_violations(self) -> list[str]:
        """Every violation reported so far, on this page and the pages before it."""
        try:
            in_page = await self.page.evaluate("window.__echochatCspViolations || []")
        except Error:  # the page is closed or navigating
            in_page = []
        return list(dict.fromkeys([*self.csp_seen, *in_page]))

    async def problems(self) -> list[str]:
        console = []
        for text, url in self.console_errors:
            status = _FAILED_RESOURCE.search(text)
            if status and self._is_expected(url, int(status.group(1))):
                continue
            console.append(f"{text} ({url})")
        return [
            *(f"console error: {m}" for m in console),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"CSP violation: {m}" for m in await self.csp_violations()),
            *(f"failed request: {m}" for m in self.failed_requests),
            *(
                f"bad response: {url}: HTTP {status}"
                for url, status in self.bad_responses
                if not self._is_expected(url, status)
            ),
        ]

    async def assert_clean(self) -> None:
        problems = await self.problems()
        assert not problems, "the page had problems:\n  " + "\n  ".join(problems)


Watch = Callable[[Page], Awaitable[PageWatch]]


@pytest.fixture
def watch() -> Watch:
    """``await watch(page)`` starts collecting a page's console errors, uncaught exceptions,
    CSP violations and failed requests; call it before the first ``goto``."""

    async def make(page: Page) -> PageWatch:
        return await PageWatch(page).start()

    return make
