"""The behaviour every :class:`~echochat.bus.base.Bus` must have.

A suite subclasses :class:`BusContract` and provides an async ``bus`` fixture that yields a
started bus (and closes it afterwards); every test below then runs against that bus:
``tests/unit/test_bus_memory.py`` (in-process) and ``tests/integration/test_bus_redis.py``.

Nothing here sleeps for a fixed time: waits are bounded polling loops or ``wait_for``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from echochat.bus.base import Bus, BusOverflow, CappedAdd, Subscription

__all__ = ["BusContract", "eventually", "next_message"]

WAIT = 2.0


async def next_message(sub: Subscription, timeout: float = WAIT) -> tuple[str, bytes]:
    """The next message of ``sub``, failing the test if none comes within ``timeout``."""
    return await asyncio.wait_for(sub.get(), timeout)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = WAIT) -> None:
    """Poll ``check`` until it is true; fail after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await check():
        assert loop.time() < deadline, f"timed out after {limit} s waiting for: {what}"
        await asyncio.sleep(0.01)


async def _gone(bus: Bus, key: str) -> None:
    async def check() -> bool:
        return await bus.get(key) is None

    await eventually(check, f"key {key!r} to expire")


class BusContract:
    """Subclass in a ``test_*.py`` module and provide a ``bus`` fixture."""

    # life cycle ------------------------------------------------------------------------
    async def test_is_a_bus_and_pings(self, bus: Bus) -> None:
        assert isinstance(bus, Bus)
        assert isinstance(bus.name, str)
        assert bus.name
        await bus.ping()

    # publish / subscribe ---------------------------------------------------------------
    async def test_publish_reaches_every_subscriber_of_the_channel_and_no_other(
        self, bus: Bus
    ) -> None:
        first = await bus.subscribe("room:1")
        second = await bus.subscribe("room:1", "room:2")
        other = await bus.subscribe("room:2")

        await bus.publish("room:1", b"hello")

        assert await next_message(first) == ("room:1", b"hello")
        assert await next_message(second) == ("room:1", b"hello")
        # Per-publisher order is kept, so if ``other`` had got "room:1" it would come first.
        await bus.publish("room:2", b"marker")
        assert await next_message(other) == ("room:2", b"marker")
        assert await next_message(second) == ("room:2", b"marker")
        for sub in (first, second, other):
            await sub.close()

    async def test_publish_without_subscribers_is_fine(self, bus: Bus) -> None:
        await bus.publish("nobody-listens", b"x")

    async def test_subscribe_then_publish_arrives_in_order(self, bus: Bus) -> None:
        sub = await bus.subscribe("ordered")
        payloads = [f"m{i}".encode() for i in range(100)]
        for payload in payloads:
            await bus.publish("ordered", payload)
        got = [await next_message(sub) for _ in payloads]
        assert got == [("ordered", p) for p in payloads]
        await sub.close()

    async def test_publish_many_keeps_order_per_channel_and_reaches_only_subscribers(
        self, bus: Bus
    ) -> None:
        both = await bus.subscribe("many:a", "many:b")
        only_b = await bus.subscribe("many:b")
        sent = [(f"many:{'ab'[i % 3 == 0]}", f"m{i}".encode()) for i in range(60)]
        sent.insert(7, ("many:nobody", b"lost"))
        await bus.publish_many(sent)
        await bus.publish_many([])
        await bus.publish_many([("many:a", b"alone")])
        expected = [m for m in sent if m[0] != "many:nobody"] + [("many:a", b"alone")]
        got = [await next_message(both) for _ in expected]
        # one publisher: the order holds within each channel (and here across them too)
        for channel in ("many:a", "many:b"):
            assert [m for m in got if m[0] == channel] == [m for m in expected if m[0] == channel]
        b_only = [m for m in expected if m[0] == "many:b"]
        assert [await next_message(only_b) for _ in b_only] == b_only
        await bus.publish("many:b", b"marker")
        assert await next_message(only_b) == ("many:b", b"marker")  # nothing else was queued
        for sub in (both, only_b):
            await sub.close()

    async def test_payloads_are_opaque_bytes(self, bus: Bus) -> None:
        sub = await bus.subscribe("binary")
        payload = bytes(range(256)) + "é€😀".encode()
        await bus.publish("binary", payload)
        await bus.publish("binary", b"")
        assert await next_message(sub) == ("binary", payload)
        assert await next_message(sub) == ("binary", b"")
        await sub.close()

    async def test_channels_can_be_added_and_removed_on_a_live_subscription(self, bus: Bus) -> None:
        sub = await bus.subscribe()
        assert sub.channels == set()
        await sub.add("a", "b")
        assert sub.channels == {"a", "b"}
        await bus.publish("b", b"1")
        assert await next_message(sub) == ("b", b"1")

        await sub.remove("a")
        assert sub.channels == {"b"}
        await bus.publish("a", b"dropped")
        await bus.publish("b", b"2")
        assert await next_message(sub) == ("b", b"2")

        await sub.add("a")
        await sub.add("a")  # adding twice changes nothing
        await bus.publish("a", b"3")
        assert await next_message(sub) == ("a", b"3")
        await sub.remove("not-subscribed")
        await sub.close()

    async def test_removing_a_channel_leaves_other_subscribers_of_it_alone(self, bus: Bus) -> None:
        leaving = await bus.subscribe("shared")
        staying = await bus.subscribe("shared")
        await leaving.remove("shared")
        await bus.publish("shared", b"x")
        assert await next_message(staying) == ("shared", b"x")
        await leaving.close()
        await bus.publish("shared", b"y")
        assert await next_message(staying) == ("shared", b"y")
        await staying.close()

    async def test_close_ends_iteration(self, bus: Bus) -> None:
        sub = await bus.subscribe("closing")
        received: list[tuple[str, bytes]] = []
        got_one = asyncio.Event()

        async def consume() -> None:
            async for item in sub:
                received.append(item)
                got_one.set()

        task = asyncio.create_task(consume())
        await bus.publish("closing", b"before")
        await asyncio.wait_for(got_one.wait(), WAIT)
        await sub.close()
        await asyncio.wait_for(task, WAIT)  # the loop ended by itself
        assert received == [("closing", b"before")]
        assert sub.closed
        assert sub.channels == set()
        await sub.close()  # closing twice is harmless
        await bus.publish("closing", b"after")  # no subscriber left: nothing happens
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(sub.get(), WAIT)

    async def test_closing_the_bus_ends_every_subscription(self, bus: Bus) -> None:
        subs = [await bus.subscribe("c1"), await bus.subscribe("c1", "c2")]
        await bus.close()
        for sub in subs:
            assert sub.closed
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(sub.get(), WAIT)

    async def test_overflow_is_raised_once_then_reading_continues(self, bus: Bus) -> None:
        sub = await bus.subscribe("flood", maxsize=3)
        for i in range(5):
            await bus.publish("flood", f"{i}".encode())

        async def overflowed() -> bool:
            return sub.dropped == 3

        # Deliveries may still be in flight (Redis): wait until the 4th one overflowed.
        await eventually(overflowed, "the fourth message to overflow the queue")
        with pytest.raises(BusOverflow):
            await next_message(sub)
        # The overflow is reported once: what came after it is read normally.
        assert await next_message(sub) == ("flood", b"4")
        await bus.publish("flood", b"5")
        async for item in sub:
            assert item == ("flood", b"5")
            break
        await sub.close()

    # keyed state -----------------------------------------------------------------------
    async def test_put_get_and_overwrite(self, bus: Bus) -> None:
        assert await bus.get("k") is None
        await bus.put("k", b"v1")
        assert await bus.get("k") == b"v1"
        await bus.put("k", b"\x00v2\xff")
        assert await bus.get("k") == b"\x00v2\xff"
        await bus.put("empty", b"")
        assert await bus.get("empty") == b""

    async def test_get_many_keeps_order_and_reports_missing_keys(self, bus: Bus) -> None:
        await bus.put("a", b"1")
        await bus.put("c", b"3")
        assert await bus.get_many(["a", "b", "c", "a"]) == [b"1", None, b"3", b"1"]
        assert await bus.get_many([]) == []

    async def test_delete_says_whether_the_key_existed(self, bus: Bus) -> None:
        await bus.put("d", b"x")
        assert await bus.delete("d") is True
        assert await bus.get("d") is None
        assert await bus.delete("d") is False

    async def test_ttl_expires_and_keys_without_ttl_stay(self, bus: Bus) -> None:
        await bus.put("short", b"x", ttl=0.1)
        await bus.put("forever", b"y")
        assert await bus.get("short") == b"x"
        await _gone(bus, "short")
        assert await bus.get("forever") == b"y"
        assert await bus.delete("short") is False

    async def test_put_again_without_ttl_makes_a_key_persistent(self, bus: Bus) -> None:
        await bus.put("k", b"x", ttl=0.1)
        await bus.put("k", b"y")
        await bus.put("sentinel", b"s", ttl=0.1)
        await _gone(bus, "sentinel")
        assert await bus.get("k") == b"y"

    async def test_expire_resets_the_time_to_live(self, bus: Bus) -> None:
        assert await bus.expire("missing", 10) is False
        await bus.put("renewed", b"x", ttl=0.1)
        await bus.put("sentinel", b"s", ttl=0.1)
        assert await bus.expire("renewed", 60) is True
        await _gone(bus, "sentinel")
        assert await bus.get("renewed") == b"x"

        assert await bus.expire("renewed", 0.05) is True
        await _gone(bus, "renewed")
        assert await bus.expire("renewed", 10) is False

    async def test_expire_gives_a_ttl_to_a_persistent_key(self, bus: Bus) -> None:
        await bus.put("p", b"x")
        assert await bus.expire("p", 0.1) is True
        await _gone(bus, "p")

    # capped sets -----------------------------------------------------------------------
    async def test_capped_add(self, bus: Bus) -> None:
        assert await bus.capped_add("roster", "ann", 2) is CappedAdd.ADDED
        assert await bus.capped_add("roster", "ann", 2) is CappedAdd.ALREADY_MEMBER
        assert await bus.capped_add("roster", "bob", 2) is CappedAdd.ADDED
        assert await bus.capped_add("roster", "cid", 2) is CappedAdd.FULL
        # A member of a full set is still told it is a member, not that the set is full.
        assert await bus.capped_add("roster", "bob", 2) is CappedAdd.ALREADY_MEMBER
        assert await bus.set_members("roster") == {"ann", "bob"}
        # A lower cap than the current size refuses newcomers and keeps the members.
        assert await bus.capped_add("roster", "dan", 1) is CappedAdd.FULL
        assert await bus.set_members("roster") == {"ann", "bob"}
        # After someone leaves there is room again.
        assert await bus.set_remove("roster", "ann") is True
        assert await bus.capped_add("roster", "cid", 2) is CappedAdd.ADDED
        assert await bus.set_members("roster") == {"bob", "cid"}

    async def test_capped_add_with_cap_zero_is_unlimited(self, bus: Bus) -> None:
        for i in range(100):
            assert await bus.capped_add("open", f"u{i}", 0) is CappedAdd.ADDED
        assert await bus.capped_add("open", "u0", 0) is CappedAdd.ALREADY_MEMBER
        assert await bus.set_members("open") == {f"u{i}" for i in range(100)}

    async def test_concurrent_capped_adds_never_exceed_the_cap(self, bus: Bus) -> None:
        results = await asyncio.gather(*(bus.capped_add("race", f"user{i}", 10) for i in range(50)))
        assert results.count(CappedAdd.ADDED) == 10
        assert results.count(CappedAdd.FULL) == 40
        added = {f"user{i}" for i, r in enumerate(results) if r is CappedAdd.ADDED}
        assert await bus.set_members("race") == added

    async def test_set_remove_and_members(self, bus: Bus) -> None:
        assert await bus.set_members("s") == set()
        assert await bus.set_remove("s", "x") is False
        await bus.capped_add("s", "x", 0)
        await bus.capped_add("s", "ünïcødé 😀", 0)
        assert await bus.set_members("s") == {"x", "ünïcødé 😀"}
        assert await bus.set_remove("s", "x") is True
        assert await bus.set_remove("s", "x") is False
        assert await bus.set_members("s") == {"ünïcødé 😀"}
        assert await bus.set_remove("s", "ünïcødé 😀") is True
        assert await bus.set_members("s") == set()

    async def test_trim_random_removes_exactly_the_excess(self, bus: Bus) -> None:
        everyone = {f"p{i}" for i in range(10)}
        for member in everyone:
            await bus.capped_add("voice", member, 0)

        removed = await bus.trim_random("voice", 4)

        assert len(removed) == 6
        assert len(set(removed)) == 6
        left = await bus.set_members("voice")
        assert len(left) == 4
        assert left | set(removed) == everyone
        assert not left & set(removed)
        assert await bus.trim_random("voice", 4) == []
        assert await bus.trim_random("voice", 10) == []
        assert await bus.set_members("voice") == left

    async def test_trim_random_with_cap_zero_or_missing_key_removes_nothing(self, bus: Bus) -> None:
        for i in range(3):
            await bus.capped_add("t", f"m{i}", 0)
        assert await bus.trim_random("t", 0) == []
        assert await bus.set_members("t") == {"m0", "m1", "m2"}
        assert await bus.trim_random("missing", 1) == []

    async def test_trim_random_picks_different_members(self, bus: Bus) -> None:
        """Random, not always the same ones: over 30 trims of 1 out of 10, more than one
        distinct member must have been chosen (odds of a false failure: 10 ** -29)."""
        chosen: set[str] = set()
        for _ in range(30):
            for i in range(10):
                await bus.capped_add("rnd", f"m{i}", 0)
            removed = await bus.trim_random("rnd", 9)
            assert len(removed) == 1
            chosen.update(removed)
        assert len(chosen) > 1
