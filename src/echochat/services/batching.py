"""What the group-commit writers (DMs: ``services/dm.py``; rooms:
``services/room_writer.py``) share: answering their callers' futures, once each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

__all__ = ["Waiting", "commit_each", "fail", "fail_all", "resolve"]

_W = TypeVar("_W", bound="Waiting")
_R = TypeVar("_R")


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


async def commit_each(
    commit: Callable[[list[_W]], Awaitable[list[tuple[_W, _R]]]], batch: list[_W]
) -> list[tuple[_W, _R]]:
    """``commit(batch)`` in one transaction; if it fails, one item at a time, so that one
    bad write fails alone (its caller gets the error) and the others go on."""
    try:
        return await commit(batch)
    except Exception as exc:
        if len(batch) == 1:
            fail(batch[0].future, exc)
            return []
    done: list[tuple[_W, _R]] = []
    for item in batch:
        try:
            done += await commit([item])
        except Exception as one:
            fail(item.future, one)
    return done
