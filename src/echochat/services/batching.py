"""What the group-commit writers (DMs: ``services/dm.py``; rooms:
``services/room_writer.py``) share: answering their callers' futures, once each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["Waiting", "fail", "fail_all", "resolve"]


class Waiting(Protocol):
    """A queued write: its caller waits on ``future``."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


def resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def fail_all(items: Iterable[Waiting], exc: BaseException) -> None:
    """Answer every caller of ``items`` still waiting with ``exc``."""
    for item in items:
        fail(item.future, exc)
