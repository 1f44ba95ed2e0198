"""The group-commit writers' shared fallback (services/batching.py, ``commit_each``): a batch
whose transaction fails is committed again one write at a time, so that one bad write fails
alone and its neighbours still go through."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from echochat.services.batching import commit_each


@dataclass
class Item:
    name: str
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Store:
    """Commits names, refusing the whole transaction when it holds a bad one."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.transactions: list[list[str]] = []

    async def commit(self, batch: list[Item]) -> list[tuple[Item, str]]:
        self.transactions.append([item.name for item in batch])
        for item in batch:
            if item.name in self.bad:
                raise ValueError(f"cannot store {item.name}")
        return [(item, item.name.upper()) for item in batch]


async def test_a_good_batch_is_one_transaction() -> None:
    store = Store(bad=set())
    items = [Item("a"), Item("b")]
    done = await commit_each(store.commit, items)
    assert [(i.name, r) for i, r in done] == [("a", "A"), ("b", "B")]
    assert store.transactions == [["a", "b"]]
    assert not any(item.future.done() for item in items)  # the writer answers them


async def test_one_bad_write_fails_alone_and_the_others_go_through() -> None:
    store = Store(bad={"b"})
    a, b, c = Item("a"), Item("b"), Item("c")
    done = await commit_each(store.commit, [a, b, c])
    assert [(i.name, r) for i, r in done] == [("a", "A"), ("c", "C")]
    assert store.transactions == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    with pytest.raises(ValueError, match="cannot store b"):
        b.future.result()
    assert not a.future.done() and not c.future.done()


async def test_a_single_bad_write_is_not_tried_twice() -> None:
    store = Store(bad={"x"})
    x = Item("x")
    assert await commit_each(store.commit, [x]) == []
    assert store.transactions == [["x"]]
    with pytest.raises(ValueError, match="cannot store x"):
        x.future.result()
