"""The Redis bus: fan-out and shared state across any number of processes.

Keyed state and capped sets are plain Redis commands (Lua where a check and a write must be
atomic). Publish/subscribe uses ONE dedicated connection per bus with one reader task that
routes each message to the local :class:`Subscription` objects of its channel; Redis is told
to SUBSCRIBE when a channel gets its first local subscriber and to UNSUBSCRIBE when it loses
its last. If that connection drops, the reader reconnects with backoff, subscribes again to
every channel, and then tells every subscription it overflowed, so consumers resynchronise
from the database (pub/sub is at-most-once; nothing may depend on a message arriving).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from echochat.bus.base import BusUnavailable, CappedAdd, Subscription
from echochat.config import mask_url

__all__ = ["RedisBus"]

log = logging.getLogger("echochat.bus")

_T = TypeVar("_T")
# What "Redis cannot be reached" looks like; other Redis errors are bugs and propagate as-is.
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

# 0: added, 1: already a member, 2: full.
_CAPPED_ADD = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('SCARD', KEYS[1]) >= cap then
  return 2
end
redis.call('SADD', KEYS[1], ARGV[1])
return 0
"""

_TRIM_RANDOM = """
local cap = tonumber(ARGV[1])
if cap <= 0 then
  return {}
end
local size = redis.call('SCARD', KEYS[1])
if size <= cap then
  return {}
end
return redis.call('SPOP', KEYS[1], size - cap)
"""

_CAPPED_RESULTS = (CappedAdd.ADDED, CappedAdd.ALREADY_MEMBER, CappedAdd.FULL)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "surrogateescape")


async def _connect(conn: AbstractConnection) -> None:
    connect: Callable[[], Awaitable[None]] = conn.connect  # untyped in redis-py
    await connect()


def _millis(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisBus:
    """The :class:`~echochat.bus.base.Bus` on Redis; every key and channel gets ``prefix``."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "echochat:",
        timeout: float = 5.0,
        health_interval: float = 30.0,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._health_interval = health_interval
        self._client: aioredis.Redis | None = None
        self._scripts: tuple[AsyncScript, AsyncScript] | None = None  # capped_add, trim_random
        # pub/sub: local routing, the one connection, its reader, and SUBSCRIBE acknowledgements
        self._subscribers: dict[str, set[Subscription]] = {}
        self._subscriptions: set[Subscription] = set()
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._acks: dict[str, deque[asyncio.Future[None]]] = defaultdict(deque)
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._closing = False

    def __repr__(self) -> str:
        return f"RedisBus({mask_url(self._url)!r}, prefix={self._prefix!r})"

    # life cycle ----------------------------------------------------------------------------
    def _unavailable(self, what: str, exc: BaseException) -> BusUnavailable:
        reason = _one_line(exc)
        password = self._password()
        if password:
            reason = reason.replace(password, "***")
        return BusUnavailable(f"Redis bus at {mask_url(self._url)}: {what}: {reason}")

    def _password(self) -> str | None:
        if self._client is None:
            return None
        password = self._client.connection_pool.connection_kwargs.get("password")
        return password if isinstance(password, str) else None

    async def start(self) -> None:
        if self._client is not None:
            return
        self._closing = False
        self._send_lock = asyncio.Lock()
        try:
            self._client = aioredis.Redis.from_url(self._url)
        except (ValueError, RedisError) as exc:
            raise BusUnavailable(
                f"Redis bus at {mask_url(self._url)}: invalid URL: {_one_line(exc)}"
            ) from None
        self._scripts = (
            self._client.register_script(_CAPPED_ADD),
            self._client.register_script(_TRIM_RANDOM),
        )
        conn = self._new_connection()
        try:
            async with asyncio.timeout(self._timeout):
                await _connect(conn)
                await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            error = self._unavailable("cannot connect", exc)
            await self._shutdown(conn)
            raise error from None
        self._conn = conn
        self._reader = asyncio.get_running_loop().create_task(
            self._read_forever(), name=f"echochat-redis-bus-reader:{self._prefix}"
        )

    async def close(self) -> None:
        if self._client is None:
            return
        self._closing = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for sub in list(self._subscriptions):
            await sub.close()  # no UNSUBSCRIBE while closing: the connection goes anyway
        self._subscriptions.clear()
        self._subscribers.clear()
        conn, self._conn = self._conn, None
        await self._shutdown(conn)

    async def _shutdown(self, conn: AbstractConnection | None) -> None:
        for queue in self._acks.values():
            for fut in queue:
                if not fut.done():
                    fut.set_result(None)
        self._acks.clear()
        self._ready.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._unavailable("ping failed", exc) from None

    @property
    def _redis(self) -> aioredis.Redis:
        return self._require_started()

    def _require_started(self) -> aioredis.Redis:
        if self._client is None or self._closing:
            raise BusUnavailable(f"Redis bus at {mask_url(self._url)} is not started")
        return self._client

    def _require_scripts(self) -> tuple[AsyncScript, AsyncScript]:
        self._require_started()
        assert self._scripts is not None
        return self._scripts

    # publish / subscribe -----------------------------------------------------------------
    async def publish(self, channel: str, payload: bytes) -> None:
        await self._do("publish", self._redis.publish(self._prefix + channel, payload))

    async def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """One pipeline (no MULTI) on one connection: Redis runs the PUBLISHes in order,
        so each channel's messages reach subscribers in list order, for one round trip."""
        if not messages:
            return
        if len(messages) == 1:
            await self.publish(*messages[0])
            return
        pipe = self._redis.pipeline(transaction=False)
        prefix = self._prefix
        for channel, payload in messages:
            pipe.publish(prefix + channel, payload)
        await self._do("publish", pipe.execute())

    async def subscribe(self, *channels: str, maxsize: int = 1024) -> Subscription:
        self._require_started()
        sub = Subscription(self, maxsize)
        self._subscriptions.add(sub)
        try:
            await sub.add(*channels)
        except BaseException:
            await sub.close()
            raise
        return sub

    async def _attach(self, sub: Subscription, channels: Iterable[str]) -> None:
        self._require_started()
        waits: list[asyncio.Future[None]] = []
        async with self._send_lock:
            fresh: list[str] = []
            for channel in channels:
                subs = self._subscribers.get(channel)
                if subs is None:
                    self._subscribers[channel] = {sub}
                    fut = asyncio.get_running_loop().create_future()
                    self._acks[channel].append(fut)
                    self._ready[channel] = fut
                    fresh.append(channel)
                else:
                    subs.add(sub)
                waits.append(self._ready[channel])
            if fresh:
                await self._send("SUBSCRIBE", *(self._prefix + c for c in fresh))
        pending = [fut for fut in waits if not fut.done()]
        if pending:
            _, not_done = await asyncio.wait(pending, timeout=self._timeout)
            if not_done:
                raise BusUnavailable(
                    f"Redis bus at {mask_url(self._url)}: subscription not confirmed "
                    f"within {self._timeout:g} s"
                )

    async def _detach(self, sub: Subscription, channels: Iterable[str]) -> None:
        async with self._send_lock:
            gone: list[str] = []
            for channel in channels:
                subs = self._subscribers.get(channel)
                if subs is None:
                    continue
                subs.discard(sub)
                if not subs:
                    del self._subscribers[channel]
                    self._ready.pop(channel, None)
                    gone.append(channel)
            if gone and not self._closing:
                await self._send("UNSUBSCRIBE", *(self._prefix + c for c in gone))
        if sub.closed and not sub.channels:
            self._subscriptions.discard(sub)

    async def _send(self, *args: str) -> None:
        """Write a command on the pub/sub connection (caller holds the send lock). If the
        connection is down the reader will subscribe again to everything once it is back."""
        conn = self._conn
        if conn is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_command(*args, check_health=False)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("bus.redis.pubsub_send_failed error=%s", _one_line(exc))
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    def _new_connection(self) -> AbstractConnection:
        pool = self._redis.connection_pool
        name = "".join(c if "!" <= c <= "~" else "_" for c in self._prefix)
        # A plain RESP2 connection of our own: pub/sub replies are ordinary arrays, and the
        # pool's maintenance-notification hooks (RESP3 only) do not apply to it.
        kwargs = {
            **{
                key: value
                for key, value in pool.connection_kwargs.items()
                if not key.startswith(("maint_notifications", "orig_", "oss_cluster_maint"))
            },
            "protocol": 2,
            "decode_responses": False,
            "retry": Retry(NoBackoff(), 0),
            "client_name": f"echochat-pubsub:{name}",
        }
        conn: AbstractConnection = pool.connection_class(**kwargs)
        return conn

    # the reader ---------------------------------------------------------------------------
    async def _read_forever(self) -> None:
        conn = self._conn
        delay = 0.05
        while True:
            if conn is not None:
                try:
                    await self._read(conn)
                except Exception as exc:
                    log.warning(
                        "bus.redis.pubsub_lost url=%s error=%s",
                        mask_url(self._url),
                        _one_line(exc),
                    )
                if self._conn is conn:
                    self._conn = None
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                conn = None
            try:
                conn = await self._reconnect()
            except Exception as exc:
                log.warning(
                    "bus.redis.pubsub_reconnect_failed url=%s retry_in=%.2fs error=%s",
                    mask_url(self._url),
                    delay,
                    _one_line(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            log.info("bus.redis.pubsub_reconnected url=%s", mask_url(self._url))
            for sub in list(self._subscriptions):
                if not sub.closed:
                    sub.signal_overflow()

    async def _read(self, conn: AbstractConnection) -> None:
        pinged = False
        while True:
            reply = await conn.read_response(
                timeout=self._health_interval, disconnect_on_error=False
            )
            if reply is None:  # idle: make sure the server is still there
                if pinged:
                    raise TimeoutError(f"no answer to PING within {self._health_interval:g} s")
                pinged = True
                async with self._send_lock:
                    if self._conn is not conn:
                        raise ConnectionError("pub/sub connection was replaced")
                    await conn.send_command("PING", check_health=False)
                continue
            pinged = False
            self._handle(reply)
            if self._conn is not conn:
                raise ConnectionError("pub/sub connection failed while sending")

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind = reply[0]
        if kind == b"message" and len(reply) == 3:
            channel = reply[1].decode("utf-8", "surrogateescape")
            if not channel.startswith(self._prefix):
                return
            channel = channel[len(self._prefix) :]
            for sub in list(self._subscribers.get(channel, ())):
                sub._deliver(channel, bytes(reply[2]))
        elif kind == b"subscribe":
            channel = reply[1].decode("utf-8", "surrogateescape")[len(self._prefix) :]
            queue = self._acks.get(channel)
            if queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                if not queue:
                    del self._acks[channel]

    async def _reconnect(self) -> AbstractConnection:
        """A new pub/sub connection, subscribed again to every channel with local subscribers,
        every subscription confirmed; raises if that fails (the caller backs off)."""
        conn = self._new_connection()
        try:
            async with asyncio.timeout(self._timeout):
                await _connect(conn)
                async with self._send_lock:
                    channels = list(self._subscribers)
                    if channels:
                        await conn.send_command(
                            "SUBSCRIBE", *(self._prefix + c for c in channels), check_health=False
                        )
                        confirmed = 0
                        while confirmed < len(channels):
                            reply = await conn.read_response(disconnect_on_error=False)
                            if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                                confirmed += 1
                    self._conn = conn
                    stale = [fut for queue in self._acks.values() for fut in queue]
                    self._acks.clear()
                    for fut in stale:
                        if not fut.done():
                            fut.set_result(None)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        return conn

    # keyed state -------------------------------------------------------------------------
    async def _do(self, what: str, call: Awaitable[_T]) -> _T:
        """Await a command; a lost or timed-out connection becomes :class:`BusUnavailable`."""
        try:
            return await call
        except _DOWN as exc:
            raise self._unavailable(f"{what} failed", exc) from None

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        name = self._prefix + key
        if ttl is None:
            await self._do("put", self._redis.set(name, value))
        elif ttl <= 0:
            await self._do("put", self._redis.delete(name))
        else:
            await self._do("put", self._redis.set(name, value, px=_millis(ttl)))

    async def get(self, key: str) -> bytes | None:
        value = await self._do("get", self._redis.get(self._prefix + key))
        return None if value is None else _bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._do("get_many", self._redis.mget([self._prefix + k for k in keys]))
        return [None if value is None else _bytes(value) for value in values]

    async def delete(self, key: str) -> bool:
        return bool(await self._do("delete", self._redis.delete(self._prefix + key)))

    async def expire(self, key: str, ttl: float) -> bool:
        millis = _millis(ttl) if ttl > 0 else 0  # 0: PEXPIRE deletes the key at once
        return bool(await self._do("expire", self._redis.pexpire(self._prefix + key, millis)))

    # capped sets -------------------------------------------------------------------------
    async def capped_add(self, key: str, member: str, cap: int) -> CappedAdd:
        client, (script, _) = self._redis, self._require_scripts()
        call = script(keys=[self._prefix + key], args=[member, cap], client=client)
        return _CAPPED_RESULTS[int(await self._do("capped_add", call))]

    async def set_remove(self, key: str, member: str) -> bool:
        return bool(await self._do("set_remove", self._redis.srem(self._prefix + key, member)))

    async def set_members(self, key: str) -> set[str]:
        members = await self._do("set_members", self._redis.smembers(self._prefix + key))
        return {_text(m) for m in members}

    async def trim_random(self, key: str, cap: int) -> list[str]:
        client, (_, script) = self._redis, self._require_scripts()
        call = script(keys=[self._prefix + key], args=[cap], client=client)
        removed = await self._do("trim_random", call)
        return [_text(m) for m in removed or ()]
