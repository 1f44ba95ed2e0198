"""A server process freezes its start-up heap for the garbage collector (app.py,
``freeze_startup_heap``): full collections then walk only what was made since, instead of
the few hundred thousand objects of the modules, compiled statements and models, which
made each one a 60-150 ms stop of the server (docs/performance.md, "dm")."""

from __future__ import annotations

import gc
import weakref

from echochat.app import create_app
from echochat.config import ResolvedSettings
from tests.apps import running


class _Node:
    other: _Node | None = None


async def test_a_server_process_freezes_its_start_up_heap_until_it_stops(
    settings: ResolvedSettings,
) -> None:
    assert gc.get_freeze_count() == 0
    plain = create_app(settings.settings)
    async with running(plain):
        assert gc.get_freeze_count() == 0  # apps made in tests leave the collector alone
    server = create_app(settings.settings, server_process=True)
    async with running(server):
        frozen = gc.get_freeze_count()
        # the app's modules and models at least (tens of thousands of objects here)
        assert frozen > 10_000, frozen
        assert server.state.ctx not in gc.get_objects()  # made before: not walked
        cycle = _Node()
        cycle.other = cycle  # made after the freeze: only the collector can free it
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()  # collections go on for everything made since
        assert gone() is None
        # and never add to the frozen heap; frozen objects still die by reference counting
        # (the server's own start-up tasks finishing meanwhile), so the count only goes down
        assert 10_000 < gc.get_freeze_count() <= frozen
    assert gc.get_freeze_count() == 0  # given back when the app stops
