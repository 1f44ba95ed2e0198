"""The bus contract (tests/bus_contract.py) against the in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from echochat.bus.memory import MemoryBus
from tests.bus_contract import BusContract


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    await memory.start()
    yield memory
    await memory.close()


class TestMemoryBus(BusContract):
    """The shared contract, plus what only the in-process bus can show: time is injected."""

    async def test_expiry_follows_the_injected_clock(self) -> None:
        now = [1000.0]
        memory = MemoryBus(clock=lambda: now[0])
        await memory.put("k", b"v", ttl=10)
        now[0] += 9.999
        assert await memory.get("k") == b"v"
        assert await memory.expire("k", 5)
        now[0] += 4.999
        assert await memory.get_many(["k", "missing"]) == [b"v", None]
        now[0] += 0.002
        assert await memory.get("k") is None
        assert not await memory.delete("k")

    async def test_stored_values_are_copies_not_the_callers_buffer(self) -> None:
        # orjson's results keep a 4 KiB working buffer alive; the bus keeps an exact copy.
        memory = MemoryBus()
        original = orjson.dumps({"s": "online"})
        await memory.put("k", original)
        stored = await memory.get("k")
        assert stored == original
        assert stored is not original
