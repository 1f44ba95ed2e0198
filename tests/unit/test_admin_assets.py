"""The admin panel is served only to users holding admin:basic (issue 8, item 3).

``GET /admin/assets/{path}`` (api/admin_assets.py): 401 without a session, 403 without the
permission, 404 for anything that is not one of the panel's files, ``no-store`` always.
The chat page (templates/chat.html) carries the panel's markup, stylesheet and script tag
only for such users, with only the tabs their permissions allow; a normal user's page and
the public static tree hold no trace of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.services import roles
from echochat.services.context import Context
from tests.apps import running
from tests.wsutil import API, PASSWORD

ADMIN_DIR = Path(str(resources.files("echochat.web").joinpath("admin")))
STATIC_DIR = Path(str(resources.files("echochat.web").joinpath("static")))
PANES = ("dashboard", "users", "settings", "rooms", "reports", "audit")
# What a normal user's page must not contain (markup ids, classes, paths, words).
TRACES = ("/admin/assets", "admin-panel", "admin-pane", "admin-tab", "Admin panel")


@dataclass
class Site:
    ctx: Context
    transport: httpx.ASGITransport
    base_url: str
    clients: list[httpx.AsyncClient]

    def client(self) -> httpx.AsyncClient:
        http = httpx.AsyncClient(transport=self.transport, base_url=self.base_url)
        self.clients.append(http)
        return http

    async def browser(self, username: str, role: str | None = None) -> httpx.AsyncClient:
        """A registered user's "browser": it holds the session cookies."""
        http = self.client()
        response = await http.post(
            f"{API}/auth/register", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        if role:
            assert await roles.grant_role(self.ctx.db, username, role, actor="test")
        return http


@pytest.fixture
async def site(settings: ResolvedSettings) -> AsyncIterator[Site]:
    app = create_app(settings.settings)
    async with running(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        site = Site(app.state.ctx, transport, settings.settings.public_url, [])
        yield site
        for http in site.clients:
            await http.aclose()


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["cache-control"] == "no-store"
    assert "javascript" not in response.headers["content-type"]


async def test_without_a_session_the_panel_is_401(site: Site) -> None:
    http = site.client()
    for path in ("panel.js", "panel.css", "tabs/users.js", "nope.js"):
        assert_refused(await http.get(f"/admin/assets/{path}"), 401, "not_authenticated")
    # A cookie naming no live session is no better.
    http.cookies.set("echochat_access", "not-a-token")
    response = await http.get("/admin/assets/panel.js")
    assert response.status_code == 401, response.text


async def test_a_normal_user_gets_403_and_a_page_without_any_trace(site: Site) -> None:
    bob = await site.browser("bob")
    for path in ("panel.js", "panel.css", "state.js", "tabs/settings.js", "nope.js"):
        assert_refused(await bob.get(f"/admin/assets/{path}"), 403, "permission_denied")
    page = await bob.get("/chat")
    assert page.status_code == 200
    html = page.text
    assert 'id="buddy-window"' in html  # the real page, not a redirect
    for trace in TRACES:
        assert trace not in html, trace
    # Everyone may report, though: the report dialog is there.
    assert 'id="report-dialog"' in html


async def test_an_admin_gets_every_file_with_its_type_and_no_store(site: Site) -> None:
    files = sorted(
        p.relative_to(ADMIN_DIR / "assets").as_posix()
        for p in (ADMIN_DIR / "assets").rglob("*")
        if p.is_file() and p.suffix in {".js", ".css", ".svg"}
    )
    assert {"panel.js", "panel.css", "state.js", "frame.js", "tabs/users.js"} <= set(files)
    alice = await site.browser("alice", "admin")
    for name in files:
        response = await alice.get(f"/admin/assets/{name}")
        assert response.status_code == 200, (name, response.text)
        assert response.headers["cache-control"] == "no-store"
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        assert response.headers["content-type"].startswith(expected), name
        assert response.content == (ADMIN_DIR / "assets" / name).read_bytes()


NOT_PANEL_FILES = [
    "../templates/_admin_panel.html",
    "..%2Ftemplates%2F_admin_panel.html",
    "tabs/%2e%2e/panel.js",
    "%2e/panel.js",
    "tabs//users.js",
    ".panel.js",
    "PANEL.JS",
    "panel.js.map",
    "panel",
    "missing.js",
    "tabs",
    "",
    "%2e%2e/%2e%2e/static/js/pages/chat.js",
    "/etc/passwd",
]


async def test_only_the_panels_own_files_are_served(site: Site) -> None:
    alice = await site.browser("alice", "admin")
    for path in NOT_PANEL_FILES:
        response = await alice.get(f"/admin/assets/{path}")
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"


async def test_an_admins_page_carries_the_panel_with_every_tab(site: Site) -> None:
    alice = await site.browser("alice", "admin")
    html = (await alice.get("/chat")).text
    assert '<script type="module" src="/admin/assets/panel.js"></script>' in html
    assert '<link rel="stylesheet" href="/admin/assets/panel.css">' in html
    assert 'id="admin-panel"' in html
    for pane in PANES:
        assert f'id="admin-pane-{pane}"' in html, pane
        assert f'id="admin-tab-{pane}"' in html, pane
    assert "style=" not in html  # the CSP forbids inline styles
    assert "<script>" not in html


async def test_a_moderator_sees_only_the_tabs_of_their_permissions(site: Site) -> None:
    mod = await site.browser("mod", "moderator")
    assert (await mod.get("/admin/assets/panel.js")).status_code == 200
    html = (await mod.get("/chat")).text
    for pane in ("dashboard", "rooms", "reports"):
        assert f'id="admin-pane-{pane}"' in html, pane
    for pane in ("users", "settings", "audit"):
        assert f'id="admin-pane-{pane}"' not in html, pane
        assert f'id="admin-tab-{pane}"' not in html, pane


async def test_losing_the_role_takes_the_panel_away_at_once(site: Site) -> None:
    alice = await site.browser("alice", "admin")
    await site.browser("carol")
    assert (await alice.get("/admin/assets/panel.js")).status_code == 200
    assert await roles.grant_role(site.ctx.db, "carol", "admin", actor="test")
    assert await roles.revoke_role(site.ctx.db, "alice", "admin", actor="test")
    assert_refused(await alice.get("/admin/assets/panel.js"), 403, "permission_denied")
    assert "/admin/assets" not in (await alice.get("/chat")).text


def test_the_public_static_tree_holds_no_trace_of_the_panel() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.is_file() and path.suffix in {".js", ".css", ".html", ".svg"}:
            text = path.read_text(encoding="utf-8")
            for trace in ("/admin/assets", "admin-panel", "admin-pane"):
                assert trace not in text, (path, trace)


async def test_a_banned_admin_and_an_ended_session_get_nothing(site: Site) -> None:
    alice = await site.browser("alice", "admin")
    carol = await site.browser("carol", "admin")
    assert (await alice.get("/admin/assets/panel.js")).status_code == 200
    csrf = {"X-CSRF-Token": carol.cookies["echochat_csrf"]}
    banned = await carol.patch(
        f"{API}/admin/users/alice", json={"banned": True, "ban_reason": "test"}, headers=csrf
    )
    assert banned.status_code == 200, banned.text
    refused = await alice.get("/admin/assets/panel.js")
    assert refused.status_code in {401, 403}, refused.text
    assert refused.headers["cache-control"] == "no-store"
    assert "javascript" not in refused.headers["content-type"]

    # Signed out: the old access cookie (still within its lifetime) no longer opens it.
    access = carol.cookies["echochat_access"]
    logout = await carol.post(f"{API}/auth/logout", json={}, headers=csrf)
    assert logout.status_code in {200, 204}, logout.text
    carol.cookies.clear()
    carol.cookies.set("echochat_access", access)
    ended = await carol.get("/admin/assets/panel.js")
    assert ended.status_code == 401, ended.text
    assert ended.json()["error"]["code"] == "session_revoked"
