"""The bus contract (tests/bus_contract.py) against Redis, plus what only a shared bus can do:
several processes (here: several RedisBus instances) seeing each other, prefixes isolating
deployments, clear errors when Redis is unreachable, and recovery from a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from echochat.bus.base import BusOverflow, BusUnavailable, CappedAdd
from echochat.bus.redis import RedisBus
from tests.bus_contract import BusContract, eventually, next_message

pytestmark = pytest.mark.integration

MakeBus = Callable[..., Awaitable[RedisBus]]


@pytest.fixture
async def make_bus(redis_server: str, redis_prefix: str) -> AsyncIterator[MakeBus]:
    """Started RedisBus instances on this test's prefix (or a sub-prefix of it), closed after."""
    started: list[RedisBus] = []

    async def make(prefix: str = redis_prefix, url: str = redis_server) -> RedisBus:
        bus = RedisBus(url, prefix=prefix)
        await bus.start()
        started.append(bus)
        return bus

    yield make
    for bus in started:
        await bus.close()


@pytest.fixture
async def bus(make_bus: MakeBus) -> RedisBus:
    return await make_bus()


@pytest.fixture
async def admin(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server)
    yield client
    await client.aclose()


class TestRedisBus(BusContract):
    pass


# --- several processes ------------------------------------------------------------------------


async def test_two_buses_on_one_prefix_share_messages_and_state(make_bus: MakeBus) -> None:
    one, two = await make_bus(), await make_bus()
    sub_one = await one.subscribe("room")
    sub_two = await two.subscribe("room")

    await one.publish("room", b"from one")
    await two.publish("room", b"from two")
    assert await next_message(sub_one) == ("room", b"from one")
    assert await next_message(sub_one) == ("room", b"from two")
    assert await next_message(sub_two) == ("room", b"from one")
    assert await next_message(sub_two) == ("room", b"from two")

    await one.put("presence:ann", b"online", ttl=60)
    assert await two.get("presence:ann") == b"online"
    assert await two.delete("presence:ann") is True
    assert await one.get("presence:ann") is None

    assert await one.capped_add("voice", "ann", 1) is CappedAdd.ADDED
    assert await two.capped_add("voice", "ann", 1) is CappedAdd.ALREADY_MEMBER
    assert await two.capped_add("voice", "bob", 1) is CappedAdd.FULL
    assert await two.set_members("voice") == {"ann"}


async def test_capped_add_race_across_buses(make_bus: MakeBus) -> None:
    buses = [await make_bus() for _ in range(3)]
    results = await asyncio.gather(
        *(buses[i % 3].capped_add("race", f"user{i}", 10) for i in range(60))
    )
    assert results.count(CappedAdd.ADDED) == 10
    assert len(await buses[0].set_members("race")) == 10


async def test_another_prefix_is_isolated(make_bus: MakeBus, redis_prefix: str) -> None:
    ours, ours_too = await make_bus(), await make_bus()
    theirs = await make_bus(prefix=redis_prefix + "other:")
    our_sub = await ours.subscribe("room")
    their_sub = await theirs.subscribe("room")

    await ours_too.publish("room", b"ours")
    assert await next_message(our_sub) == ("room", b"ours")
    await theirs.publish("room", b"theirs")
    # Had "ours" leaked across, it would have arrived before "theirs".
    assert await next_message(their_sub) == ("room", b"theirs")
    await ours.publish("room", b"marker")
    # Had "theirs" leaked across, it would have arrived before the marker.
    assert await next_message(our_sub) == ("room", b"marker")

    await ours.put("k", b"ours")
    await ours.capped_add("s", "ours", 0)
    assert await theirs.get("k") is None
    assert await theirs.set_members("s") == set()


async def test_keys_and_channels_carry_the_prefix(
    bus: RedisBus, redis_prefix: str, admin: aioredis.Redis
) -> None:
    await bus.put("k", b"v")
    await bus.capped_add("s", "m", 0)
    assert await admin.get(redis_prefix + "k") == b"v"
    assert await admin.smembers(redis_prefix + "s") == {b"m"}
    sub = await bus.subscribe("chan")
    assert await admin.publish(redis_prefix + "chan", b"raw") == 1
    assert await next_message(sub) == ("chan", b"raw")


async def test_one_redis_subscription_per_channel_per_bus(
    bus: RedisBus, redis_prefix: str, admin: aioredis.Redis
) -> None:
    channel = redis_prefix + "shared"

    async def subscribers() -> int:
        counts = dict(await admin.pubsub_numsub(channel))
        return int(counts[channel.encode()])

    first = await bus.subscribe("shared")
    second = await bus.subscribe("shared")
    assert await subscribers() == 1
    await first.close()
    await bus.publish("shared", b"still here")
    assert await next_message(second) == ("shared", b"still here")
    assert await subscribers() == 1
    await second.close()

    async def unsubscribed() -> bool:
        return await subscribers() == 0

    await eventually(unsubscribed, "the last local subscriber to unsubscribe on Redis")


# --- failures and recovery --------------------------------------------------------------------


async def test_unreachable_redis_names_the_url_without_the_password() -> None:
    bus = RedisBus("redis://:secretpw@127.0.0.1:1/0", prefix="echochat-test:unreachable:")
    with pytest.raises(BusUnavailable) as caught:
        await bus.start()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "***" in message
    assert "secretpw" not in message
    assert "\n" not in message
    assert "Traceback" not in message
    await bus.close()  # closing a bus that never started is harmless


async def test_using_a_bus_that_is_not_started_is_a_clear_error() -> None:
    bus = RedisBus("redis://:secretpw@127.0.0.1:1/0")
    with pytest.raises(BusUnavailable, match="not started"):
        await bus.publish("x", b"y")
    with pytest.raises(BusUnavailable, match="not started"):
        await bus.subscribe("x")
    with pytest.raises(BusUnavailable) as caught:
        await bus.ping()
    assert "secretpw" not in str(caught.value)


async def test_dropped_pubsub_connection_resubscribes_and_signals_overflow(
    bus: RedisBus, redis_prefix: str, admin: aioredis.Redis
) -> None:
    sub = await bus.subscribe("a", "b")
    await bus.publish("a", b"before")
    assert await next_message(sub) == ("a", b"before")

    name = "echochat-pubsub:" + redis_prefix
    ids = [c["id"] for c in await admin.client_list(_type="pubsub") if c.get("name") == name]
    assert len(ids) == 1, "one pub/sub connection per bus"
    assert await admin.client_kill_filter(_id=ids[0]) == 1

    # The reader reconnects, subscribes again, and tells the subscriber it may have missed
    # messages; after that, messages flow again on every channel.
    with pytest.raises(BusOverflow):
        await next_message(sub, 10)
    await bus.publish("a", b"after")
    await bus.publish("b", b"after")
    assert await next_message(sub) == ("a", b"after")
    assert await next_message(sub) == ("b", b"after")

    # New subscriptions on the new connection work too.
    late = await bus.subscribe("c")
    await bus.publish("c", b"late")
    assert await next_message(late) == ("c", b"late")
    await bus.ping()


class _Proxy:
    """A TCP proxy in front of Redis that the test can cut and restore (an outage)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.frozen = False
        self.dropped = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.frozen:  # a silent network: nothing arrives, nothing is closed
                    self.dropped += len(data)
                    continue
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


async def test_outage_errors_clearly_then_recovers(redis_server: str, redis_prefix: str) -> None:
    target = urlsplit(redis_server)
    proxy = _Proxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    bus = RedisBus(f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix, timeout=0.5)
    await bus.start()
    try:
        sub = await bus.subscribe("a")
        await bus.put("k", b"v")

        await proxy.cut()
        with pytest.raises(BusUnavailable, match="publish failed"):
            await bus.publish("a", b"lost")
        with pytest.raises(BusUnavailable, match="get failed"):
            await bus.get("k")
        with pytest.raises(BusUnavailable, match="ping failed"):
            await bus.ping()
        with pytest.raises(BusUnavailable, match="not confirmed"):
            await bus.subscribe("b")

        await proxy.start()  # Redis is back, on the same address
        with pytest.raises(BusOverflow):
            await next_message(sub, 10)
        await bus.publish("a", b"back")
        assert await next_message(sub) == ("a", b"back")
        assert await bus.get("k") == b"v"
        late = await bus.subscribe("b")
        await bus.publish("b", b"late")
        assert await next_message(late) == ("b", b"late")
    finally:
        await bus.close()
        await proxy.cut()


async def test_silent_connection_is_detected_by_the_idle_ping(
    redis_server: str, redis_prefix: str
) -> None:
    target = urlsplit(redis_server)
    proxy = _Proxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    bus = RedisBus(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix, timeout=0.5, health_interval=0.1
    )
    await bus.start()
    try:
        sub = await bus.subscribe("a")
        proxy.frozen = True

        async def ping_swallowed() -> bool:
            return proxy.dropped > 0

        await eventually(ping_swallowed, "the idle PING to be sent into the silence")
        proxy.frozen = False
        # No answer to the PING: the reader gives the connection up, reconnects, and says so.
        with pytest.raises(BusOverflow):
            await next_message(sub, 10)
        await bus.publish("a", b"back")
        assert await next_message(sub) == ("a", b"back")
    finally:
        await bus.close()
        await proxy.cut()


async def test_idle_pings_keep_a_quiet_subscription_alive(
    make_bus: MakeBus, redis_server: str, redis_prefix: str
) -> None:
    publisher = await make_bus()
    quiet = RedisBus(redis_server, prefix=redis_prefix, health_interval=0.1)
    await quiet.start()
    try:
        sub = await quiet.subscribe("a")
        await asyncio.sleep(0.5)  # about five idle intervals: five PINGs, each answered
        await publisher.publish("a", b"still listening")
        # Had a PING gone unanswered, the reader would have reconnected and said so first.
        assert await next_message(sub) == ("a", b"still listening")
    finally:
        await quiet.close()
