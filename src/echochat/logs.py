"""Logging setup: one line per event, ``key=value`` fields, never secrets or message bodies."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["configure_logging", "uvicorn_log_config"]

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET = ("alembic", "aiosqlite", "asyncio")


class _DropDeniedHandshakeNoise(logging.Filter):
    """uvicorn logs an ERROR for every WebSocket upgrade we refuse with an HTTP answer
    (401/403); our own log line already records the refusal with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, stream=sys.stderr, force=True)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def uvicorn_log_config(level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
            **{name: {"level": "WARNING"} for name in QUIET},
        },
    }
