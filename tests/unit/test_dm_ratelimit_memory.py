"""The in-memory rate limiter (the DM rate limit on the embedded default, and every other
limit there) is a plain dict with `limits`' sliding-window-counter arithmetic: these
tests drive it and `limits`' own ``SlidingWindowCounterRateLimiter`` over its
``MemoryStorage`` with the same clock and the same events, and require the same answers
(allowed or not, and the ``Retry-After``); and show that old counters are swept.
"""

from __future__ import annotations

import math
import random
import time

import pytest
from limits import parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from echochat.integrations.ratelimit import LocalSlidingWindow, RateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rate", ["3/second", "5/10seconds", "2/minute", "7/hour"])
async def test_same_answers_as_limits_sliding_window_counter(
    rate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1_800_000_000.25)
    monkeypatch.setattr(time, "time", clock)  # what `limits` reads
    ours = RateLimiter(clock=clock)
    theirs = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
    item = parse(rate)
    expiry = item.get_expiry()
    rng = random.Random(rate)
    answers: list[tuple[bool, int]] = []
    for step in range(400):
        steps = [0.0, 0.01, expiry / 7, expiry / 3, expiry * 0.9, expiry * 2.5]
        clock.now += rng.choices(steps, weights=[6, 6, 3, 2, 1, 1])[0]
        who = rng.choice(["alice", "bob"])
        if step % 5 == 4:
            expected = await theirs.test(item, "dm", who)
            wait = await ours.test(rate, "dm", who)
        else:
            expected = await theirs.hit(item, "dm", who)
            wait = await ours.hit(rate, "dm", who)
        assert (wait == 0) == expected, (step, clock.now)
        if not expected:
            stats = await theirs.get_window_stats(item, "dm", who)
            assert wait == max(1, math.ceil(stats.reset_time - clock.now)), step
        answers.append((expected, wait))
    # the sequence exercised both answers
    assert {allowed for allowed, _ in answers} == {True, False}


async def test_limits_are_per_identifiers_and_clear_resets() -> None:
    clock = Clock(1_000_000.0)
    limiter = RateLimiter(clock=clock)
    assert limiter.backend == "memory"
    assert [await limiter.hit("2/minute", "dm", "1") for _ in range(3)][:2] == [0, 0]
    assert await limiter.hit("2/minute", "dm", "1") > 0
    assert await limiter.test("2/minute", "dm", "1") > 0
    assert await limiter.hit("2/minute", "dm", "2") == 0  # another user
    assert await limiter.hit("3/minute", "dm", "1") == 0  # another rate
    await limiter.clear("2/minute", "dm", "1")
    assert await limiter.hit("2/minute", "dm", "1") == 0
    # two windows later nothing is left to weigh
    clock.now += 120
    assert await limiter.test("2/minute", "dm", "1") == 0


def test_counters_of_finished_windows_are_swept() -> None:
    clock = Clock(5_000.0)
    local = LocalSlidingWindow(clock)
    for user in range(100):
        assert local.hit(("10/second", str(user)), 10, 1)
    assert len(local) == 100
    clock.now += 1.0  # the previous window still counts
    local.sweep()
    assert len(local) == 100
    clock.now += 1.0
    local.hit(("10/minute", "x"), 10, 60)
    local.sweep()
    assert len(local) == 1
