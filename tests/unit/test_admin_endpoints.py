"""Every admin endpoint checks who may call it, driven by one table (tests/admin_table/).

The app's routes under ``/api/v1/admin`` are walked: a route without a row fails, so a new
endpoint cannot be forgotten; a row without a route fails too (stale rows). Each row is
called three ways: without a session (401), by a signed-in user lacking the permission
(403; also the moderator when the permission is not a moderator's), and by a holder of the
permission (the moderator when moderators hold it, else the admin), which gets ``ok``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi.routing import APIRoute

from echochat.app import create_app
from echochat.domain.roles import PERMISSIONS, ROLE_PERMISSIONS
from tests.admin_table import Row
from tests.adminutil import AdminSite, MakeSettings, open_admin_site
from tests.wsutil import User, expect_error

AREAS = ("users", "reports", "rooms")
PREFIX = "/api/v1/admin"


def _area(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"tests.admin_table.{name}")
    except ModuleNotFoundError:
        return None


def all_rows() -> list[Row]:
    rows: list[Row] = []
    for name in AREAS:
        module = _area(name)
        if module is not None:
            rows += module.ROWS
    return rows


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every API route, inside included routers too (FastAPI 0.165 keeps
    an included router as one entry that points at the original router)."""
    for route in routes:
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD", "OPTIONS"}:
                yield method, prefix + route.path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))


def admin_routes(make_settings: MakeSettings) -> set[tuple[str, str]]:
    """Every route under the admin prefix: walked, and from the OpenAPI schema (each catches
    what the other might miss: hidden routes, a walker that no longer fits FastAPI)."""
    app = create_app(make_settings().settings)
    found = {(m, p) for m, p in _walk(list(app.routes)) if p.startswith(PREFIX)}
    for path, operations in app.openapi()["paths"].items():
        if path.startswith(PREFIX):
            found |= {(method.upper(), path) for method in operations}
    assert found, "no admin routes found: the walk no longer fits FastAPI"
    return found


def test_every_area_has_its_table_module() -> None:
    missing = [name for name in AREAS if _area(name) is None]
    assert not missing, f"tests/admin_table/ lacks {missing}: each area lists its endpoints"


def test_every_admin_route_has_a_row(make_settings: MakeSettings) -> None:
    covered = {(row.method, row.route_path) for row in all_rows()}
    missing = sorted(admin_routes(make_settings) - covered)
    assert not missing, f"admin endpoints without a row in tests/admin_table/: {missing}"


def test_every_row_names_a_route_and_a_known_permission(make_settings: MakeSettings) -> None:
    routes = admin_routes(make_settings)
    for row in all_rows():
        assert (row.method, row.route_path) in routes, f"no such admin route: {row}"
        assert row.permission is None or row.permission in PERMISSIONS, row
        assert 200 <= row.ok < 300, row


OPEN_TO_ANY_USER = {("GET", f"{PREFIX}/whoami")}  # so a user can learn why they have no panel


def test_only_whoami_is_open_to_every_signed_in_user() -> None:
    """Every other admin endpoint names a permission: a row cannot wave one through."""
    open_rows = {(row.method, row.route_path) for row in all_rows() if row.permission is None}
    assert open_rows == OPEN_TO_ANY_USER


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[AdminSite]:
    async with open_admin_site(make_settings) as started:
        yield started


async def _filled(site: AdminSite, row: Row) -> tuple[str, Any]:
    values = await row.setup(site.ctx) if row.setup is not None else {}
    path = row.path.format(**values) if values else row.path

    def fill(value: Any) -> Any:
        if isinstance(value, str) and values:
            return value.format(**values)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return path, fill(row.json)


async def test_each_row_refuses_strangers_and_serves_holders(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    mod = await site.user("mod", "moderator")
    bob = await site.user("bob")
    await site.user("carol")
    moderator_can = ROLE_PERMISSIONS["moderator"]
    rows = all_rows()
    assert rows
    failures: list[str] = []

    async def check(row: Row, who: User | None, status: int, code: str | None) -> None:
        path, body = await _filled(site, row)
        response = await site.call(row.method, path, who, body)
        label = f"{row.method} {path} as {who.username if who else 'nobody'}"
        if response.status_code != status:
            failures.append(
                f"{label}: {response.status_code} (wanted {status}) {response.text[:300]}"
            )
        elif code is not None:
            try:
                expect_error(response, status, code)
            except AssertionError as exc:
                failures.append(f"{label}: {exc}")

    for row in rows:
        await check(row, None, 401, "not_authenticated")
        if row.permission is None:
            await check(row, bob, row.ok, None)
            continue
        await check(row, bob, 403, "permission_denied")
        if row.permission in moderator_can:
            await check(row, mod, row.ok, None)
        else:
            await check(row, mod, 403, "permission_denied")
        await check(row, alice, row.ok, None)
    assert not failures, "\n".join(failures)
