"""The app on a temporary SQLite database: probes, JSON errors, metrics, security headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from echochat.app import create_app
from echochat.config import ConfigError, ResolvedSettings, load_settings
from echochat.store import Database
from tests.apps import running

METRICS_TOKEN = "metrics-token-for-tests-0123456789"

AppClient = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def app_client(make_settings: Callable[..., ResolvedSettings]) -> AppClient:
    """Like the ``client`` fixture, but also hands out the app (for its state, or to add
    throwaway routes before it starts); keyword arguments are settings overrides."""

    @asynccontextmanager
    async def make(
        setup: Callable[[FastAPI], None] | None = None, **overrides: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        settings = make_settings(**overrides).settings
        app = create_app(settings)
        if setup is not None:
            setup(app)
        async with (
            running(app) as manager,
            httpx.AsyncClient(
                # An unhandled exception must become a 500 response, not fail the test client.
                transport=httpx.ASGITransport(app=manager.app, raise_app_exceptions=False),
                base_url=settings.public_url,
            ) as http,
        ):
            yield app, http

    return make


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


# --- probes --------------------------------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "bus": "ok"}}


async def test_readyz_503_when_bus_is_closed(app_client: AppClient) -> None:
    async with app_client() as (app, http):
        await app.state.ctx.bus.close()
        response = await http.get("/readyz")
    error = assert_error(response, 503, "not_ready")
    assert "bus" in error["message"]
    assert error["checks"]["database"] == "ok"
    assert error["checks"]["bus"] != "ok"


async def test_readyz_503_when_database_is_unreachable(
    app_client: AppClient, tmp_path: Path
) -> None:
    async with app_client() as (app, http):
        real = app.state.ctx.db
        broken = Database.create(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
        app.state.ctx.db = broken
        try:
            response = await http.get("/readyz")
        finally:
            app.state.ctx.db = real
            await broken.close()
    error = assert_error(response, 503, "not_ready")
    assert "database" in error["message"]
    assert error["checks"]["bus"] == "ok"
    assert error["checks"]["database"] != "ok"


# --- JSON errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/static/nope.js"])
async def test_unknown_path_is_json_404(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


async def test_wrong_method_is_json_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers.get("allow", "")


class Greeting(BaseModel):
    name: str
    times: int


def add_test_routes(app: FastAPI) -> None:
    @app.post("/api/v1/test/greet")
    async def greet(body: Greeting) -> dict[str, str]:
        return {"hello": body.name * body.times}

    @app.get("/api/v1/test/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom: internal detail that must not leak")


async def test_validation_error_is_json_422(app_client: AppClient) -> None:
    async with app_client(setup=add_test_routes) as (_, http):
        ok = await http.post("/api/v1/test/greet", json={"name": "ab", "times": 2})
        bad = await http.post("/api/v1/test/greet", json={"name": "alice", "times": "many"})
        missing = await http.post("/api/v1/test/greet", json={"name": "alice"})
        garbage = await http.post(
            "/api/v1/test/greet",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert ok.status_code == 200
    assert ok.json() == {"hello": "abab"}
    error = assert_error(bad, 422, "invalid_input")
    assert error["message"].startswith("times:")
    assert [f["field"] for f in error["fields"]] == ["times"]
    error = assert_error(missing, 422, "invalid_input")
    assert [f["field"] for f in error["fields"]] == ["times"]
    assert_error(garbage, 422, "invalid_input")


async def test_unexpected_exception_is_json_500_without_trace(app_client: AppClient) -> None:
    async with app_client(setup=add_test_routes) as (_, http):
        response = await http.get("/api/v1/test/boom")
        after = await http.get("/healthz")
    error = assert_error(response, 500, "internal")
    for leak in ("Traceback", "kaboom", "RuntimeError", 'File "'):
        assert leak not in response.text
    assert re.search(r"quote [0-9a-f]{12}", error["message"])
    assert after.status_code == 200  # the app keeps serving


async def test_unexpected_exception_response_has_security_headers(app_client: AppClient) -> None:
    async with app_client(setup=add_test_routes) as (_, http):
        response = await http.get("/api/v1/test/boom")
    assert response.status_code == 500
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("cache-control") == "no-store"
    assert "content-security-policy" in response.headers


# --- metrics -------------------------------------------------------------------------------


def assert_refused(response: httpx.Response, status: tuple[int, ...]) -> None:
    assert response.status_code in status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"]
    assert "echochat_http" not in response.text


async def test_metrics_closed_without_token_setting(client: httpx.AsyncClient) -> None:
    assert_refused(await client.get("/metrics"), (401,))
    response = await client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert_refused(response, (401, 403))


async def test_metrics_with_token(app_client: AppClient) -> None:
    async with app_client(metrics_token=METRICS_TOKEN) as (_, http):
        await http.get("/healthz")
        missing = await http.get("/metrics")
        basic = await http.get("/metrics", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        prefix = await http.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}
        )
        good = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert_refused(missing, (401,))
    assert_refused(basic, (401,))
    assert_refused(wrong, (401, 403))
    assert_refused(prefix, (401, 403))
    assert METRICS_TOKEN not in wrong.text
    assert good.status_code == 200
    assert good.headers["content-type"].startswith("text/plain")
    assert "echochat_http_requests_total" in good.text
    # Counted by route template, never by raw path.
    assert 'route="/healthz"' in good.text


async def test_empty_metrics_token_does_not_open_metrics(
    make_settings: Callable[..., ResolvedSettings],
) -> None:
    try:
        settings = load_settings(
            environ={"ECHOCHAT_METRICS_TOKEN": ""},
            overrides={"data_dir": make_settings().settings.data_dir},
        ).settings
    except ConfigError:
        return  # refusing the empty token is fine too
    app = create_app(settings)
    async with (
        running(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=settings.public_url
        ) as http,
    ):
        for header in ("Bearer ", "Bearer", "bearer  "):
            response = await http.get("/metrics", headers={"Authorization": header})
            assert_refused(response, (401, 403))


async def test_metrics_label_unknown_paths_without_raw_path(app_client: AppClient) -> None:
    async with app_client(metrics_token=METRICS_TOKEN) as (_, http):
        await http.get("/no/such/path/with-a-unique-name-123")
        good = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "with-a-unique-name-123" not in good.text
    assert 'route="unmatched"' in good.text


# --- security headers ----------------------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    csp = csp_directives(headers["content-security-policy"])
    assert "'self'" in csp["script-src"]
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers.get("referrer-policy")
    assert "strict-transport-security" not in headers  # plain http: no HSTS


async def test_security_headers_on_landing_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_security_headers(response)
    # The page itself carries no inline script (CSP would block it anyway).
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text, re.IGNORECASE)
    assert not re.search(r"\son[a-z]+\s*=", response.text, re.IGNORECASE)


async def test_security_headers_and_no_store_on_api_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nope")
    assert_error(response, 404, "not_found")
    assert_security_headers(response)
    assert response.headers["cache-control"] == "no-store"


async def test_hsts_when_public_url_is_https(app_client: AppClient) -> None:
    async with app_client(public_url="https://chat.example.org") as (_, http):
        response = await http.get("/healthz")
    assert "max-age=" in response.headers["strict-transport-security"]


# --- OpenAPI -------------------------------------------------------------------------------


async def test_openapi_served_under_api_v1(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "EchoChat"
    assert "/readyz" in spec["paths"]
    assert "/metrics" not in spec["paths"]
    assert response.headers["cache-control"] == "no-store"
    assert (await client.get("/openapi.json")).status_code == 404
