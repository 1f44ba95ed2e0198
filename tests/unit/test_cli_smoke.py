"""``echochat smoke`` against a real ``echochat serve`` process, and against nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from echochat.cli.main import app
from echochat.cli.smoke import explain
from echochat.client import NetworkError, OpError, RateLimitedError, e2ee
from echochat.config import load_settings
from echochat.store import Database, server_settings
from tests.conftest import LiveServer, free_port


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # Rich reads it: one table row per line


def smoke(url: str) -> Result:
    result = CliRunner().invoke(app, ["smoke", "--url", url, "--timeout", "10"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"echochat smoke crashed:\n{result.output}") from result.exception
    assert "Traceback" not in result.output
    return result


def test_smoke_passes_against_a_live_server(live_server: LiveServer) -> None:
    result = smoke(live_server.url)
    assert result.exit_code == 0, result.output
    steps = re.findall(r"│\s+\d+ │ (.+?)\s+│ (PASS|FAIL|SKIP)\s+│\s+(\d+ ms)", result.output)
    assert steps[0][0] == "server reachable, version"
    assert len(steps) == 11 and all(status == "PASS" for _, status, _ in steps), result.output
    for name in (
        "E2EE keys and sockets",
        "retry is idempotent",
        "delivered and read receipts",
        "history, decrypted",
        "BUZZ!",
    ):
        assert name in result.output
    assert re.search(r"offline delivery to smoke-[0-9a-f]{8}-b", result.output)
    created = re.search(r"Created throwaway users: (smoke-\S+-a), (smoke-\S+-b)", result.output)
    assert created, result.output
    assert "all 11 steps passed" in result.output


def test_smoke_fails_clearly_against_a_dead_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = smoke(url)
    assert result.exit_code == 1
    assert re.search(r"1 │ server reachable, version\s+│ FAIL", result.output), result.output
    assert len(re.findall(r"│ SKIP", result.output)) == 10  # every later step is listed
    assert f"no answer from {url}" in result.output
    assert "next: check that the server runs" in result.output
    assert "Created throwaway users" not in result.output


def test_smoke_says_when_registration_is_rate_limited(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    server = live_server_factory({"ECHOCHAT_RATE_LIMIT_REGISTER_IP": "1/hour"})
    result = smoke(server.url)
    assert result.exit_code == 1
    assert re.search(r"register smoke-\S+-a\s+│ PASS", result.output), result.output
    assert re.search(r"register smoke-\S+-b\s+│ FAIL", result.output), result.output
    assert "registration is rate-limited for this IP" in result.output
    assert "raise rate_limit_register_ip" in result.output
    # the one user that was made is named, so an admin can find it
    assert re.search(r"Created throwaway users: smoke-\S+-a \(", result.output)


def test_smoke_says_when_the_server_is_not_echochat(live_server: LiveServer) -> None:
    result = smoke(live_server.url + "/not-here")
    assert result.exit_code == 1
    assert "GET /healthz answered HTTP 404" in result.output
    assert "does not look like an EchoChat server" in result.output


async def close_registration(server: LiveServer) -> None:
    """What an admin's "registration closed" switch writes (the server reads it each time)."""
    settings = load_settings(
        environ={"ECHOCHAT_DATA_DIR": str(server.data_dir)}, config_file=None
    ).settings
    db = Database.create(settings.resolved_database_url)
    try:
        async with db.transaction() as conn:
            await server_settings.put_txn(conn, "registration_open", False, by="test")
    finally:
        await db.close()


def test_smoke_says_when_registration_is_closed(live_server: LiveServer) -> None:
    asyncio.run(close_registration(live_server))
    result = smoke(live_server.url)
    assert result.exit_code == 1
    assert re.search(r"register smoke-\S+-a\s+│ FAIL\s+│.*registration is closed", result.output)
    assert "an admin can open registration in the admin settings" in result.output
    assert "Created throwaway users" not in result.output


def test_failures_say_what_to_do_next() -> None:
    url = "http://chat.example.org"
    detail, hint = explain(OpError("dm.send", "unknown_op", "unknown op 'dm.send'"), url)
    assert "does not know the op 'dm.send'" in detail and "upgrade it" in hint
    detail, hint = explain(e2ee.E2EEError("bad_signature", "does not verify"), url)
    assert "bad_signature" in detail and "changed what it relayed" in hint
    detail, hint = explain(RateLimitedError(429, "rate_limited", "slow down", 30), url)
    assert "wait 30 s" in hint
    detail, hint = explain(NetworkError(0, "network_error", "refused"), url)
    assert url in detail and "echochat serve" in hint
