"""Where the integration suites find PostgreSQL and Redis, and what to do when they are missing.

Without the servers the suites skip *loudly* (a reason on every skipped test and a banner at
the end of the run); with ``ECHOCHAT_REQUIRE_SERVICES=1`` (set by ``.ci/run``) they fail.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

PG_URL = os.environ.get("ECHOCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ECHOCHAT_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHROMIUM = os.environ.get("ECHOCHAT_TEST_CHROMIUM", "/usr/bin/chromium")

MISSING: list[str] = []


def require_services() -> bool:
    return os.environ.get("ECHOCHAT_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


def need(what: str, ok: bool, hint: str) -> None:
    """Skip (or fail under ECHOCHAT_REQUIRE_SERVICES=1) when ``what`` is not available."""
    if ok:
        return
    message = f"{what} is not available ({hint})"
    if require_services():
        pytest.fail(f"{message}; ECHOCHAT_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    if message not in MISSING:
        MISSING.append(message)
    pytest.skip(f"SKIPPED LOUDLY: {message}")
