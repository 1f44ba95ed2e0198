"""The bus contract (tests/bus_contract.py) against the in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
    pass
