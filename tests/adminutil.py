"""The admin suites' harness: a started app on SQLite with bearer clients, users with roles,
and the admin endpoints' helpers (tests/unit/test_admin_*.py, tests/admin_table/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from echochat.app import create_app
from echochat.config import ResolvedSettings
from echochat.services import roles
from echochat.services.context import Context
from echochat.store import audit
from echochat.store.audit import AuditRow
from tests.apps import running
from tests.wsutil import API, PASSWORD, User, bearer

ADMIN = f"{API}/admin"
MakeSettings = Callable[..., ResolvedSettings]


@dataclass
class AdminSite:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    async def user(self, username: str, role: str | None = None, **body: Any) -> User:
        """Register ``username`` (bearer tokens) and grant ``role`` as the CLI would."""
        response = await self.http.post(
            f"{API}/auth/register",
            json={"username": username, "password": PASSWORD, "token_response": True, **body},
        )
        assert response.status_code == 201, response.text
        data = response.json()
        if role is not None:
            assert await roles.grant_role(self.ctx.db, username, role, actor="tests")
        return User(
            id=data["user"]["id"],
            username=data["user"]["username"],
            token=data["access_token"],
            refresh_token=data["refresh_token"],
        )

    async def login(self, username: str) -> httpx.Response:
        return await self.http.post(
            f"{API}/auth/login",
            json={"username": username, "password": PASSWORD, "token_response": True},
        )

    async def call(
        self, method: str, path: str, who: User | None, json: Any = None
    ) -> httpx.Response:
        headers = bearer(who.token) if who is not None else {}
        return await self.http.request(method, path, json=json, headers=headers)

    async def audit(self, action: str = "", target: str = "") -> list[AuditRow]:
        """Audit rows, oldest first."""
        async with self.ctx.db.read() as conn:
            rows = await audit.page(conn, action=action, target=target, limit=1000)
        return list(reversed(rows))


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` on this process's state, bounded by ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - state of another app object, no event
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


@asynccontextmanager
async def open_admin_site(
    make_settings: MakeSettings, *, ip: str = "203.0.113.7", **overrides: Any
) -> AsyncIterator[AdminSite]:
    """A started app (lifespan run); its client presents itself from ``ip``."""
    overrides.setdefault("rate_limit_register_ip", "1000/hour")
    settings = make_settings(**overrides).settings
    app = create_app(settings)
    async with running(app) as manager:
        transport = httpx.ASGITransport(
            app=manager.app, raise_app_exceptions=False, client=(ip, 40000)
        )
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
            yield AdminSite(app=app, http=http)
