"""Helpers for the suites that talk to ``/ws``: a real uvicorn server inside the test's event
loop (httpx's ASGI transport cannot upgrade), users registered over HTTP, and a socket
wrapper whose every wait is bounded.

Ordering is what makes negative checks honest: replies and events on one socket leave the
server in the order it produced them, so "X did not arrive" is checked by sending a ``ping``
afterwards and reading up to its ``ok`` reply (:meth:`Socket.assert_quiet`).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx
import orjson
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from echochat.app import create_app
from echochat.config import ResolvedSettings, Settings
from echochat.realtime.hub import Hub
from echochat.realtime.wsserver import LeanWebSocketProtocol
from echochat.services.context import Context
from tests.apps import STARTUP_TIMEOUT

API = "/api/v1"
PASSWORD = "violet-kettle-harbour-42"
WAIT = 5.0  # the longest any single expected frame may take

Frame = dict[str, Any]
MakeSettings = Callable[..., ResolvedSettings]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expect_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``{"error": {"code", "message", ...}}`` with ``status`` and ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"]
    return error


def cookieless(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """Make ``http`` behave like a script: it never stores a cookie, so every request is
    judged by its bearer header alone."""
    http.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return http


# --- users -------------------------------------------------------------------------------------


@dataclass
class User:
    id: int
    username: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


async def register(http: httpx.AsyncClient, username: str, *, email: str | None = None) -> User:
    body: dict[str, Any] = {"username": username, "password": PASSWORD, "token_response": True}
    if email is not None:
        body["email"] = email
    response = await http.post(f"{API}/auth/register", json=body)
    assert response.status_code == 201, response.text
    return _user(response.json())


async def login(http: httpx.AsyncClient, username: str) -> User:
    """A second session (device) of an existing user."""
    response = await http.post(
        f"{API}/auth/login",
        json={"username": username, "password": PASSWORD, "token_response": True},
    )
    assert response.status_code == 200, response.text
    return _user(response.json())


def _user(body: dict[str, Any]) -> User:
    return User(
        id=body["user"]["id"],
        username=body["user"]["username"],
        token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


async def befriend(http: httpx.AsyncClient, a: User, b: User) -> None:
    """Make ``a`` and ``b`` buddies: a asks, b accepts."""
    asked = await http.post(
        f"{API}/buddies/requests", json={"username": b.username}, headers=a.headers
    )
    assert asked.status_code == 201, asked.text
    accepted = await http.post(
        f"{API}/buddies/requests/{asked.json()['id']}/accept", headers=b.headers
    )
    assert accepted.status_code == 200, accepted.text


# --- a real server in this event loop ------------------------------------------------------


@dataclass
class Server:
    url: str
    app: FastAPI
    settings: Settings
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return ws_url(self.url)

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    async def connect(self, user: User | None = None, **kwargs: Any) -> Socket:
        """A socket of ``user`` (bearer), after its ``hello`` event arrived."""
        return await open_socket(self.url, user, **kwargs)

    async def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT
    ) -> None:
        """Poll a condition on the server's state (same process), bounded by ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if condition():
                        return
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def ws_url(base_url: str) -> str:
    return "ws" + base_url.removeprefix("http") + "/ws"


async def open_socket(
    base_url: str, user: User | None = None, *, query: str = "", **kwargs: Any
) -> Socket:
    """A socket on the server at ``base_url``, as ``user`` (bearer) unless the caller brings
    other credentials, returned after its ``hello`` and ``offline.summary`` events arrived
    (the summary's data is kept in ``Socket.summary``). ``query`` (e.g. ``"?state=busy"``)
    is appended to the URL."""
    headers = dict(kwargs.pop("additional_headers", {}))
    if user is not None:
        headers.update(user.headers)
    ws = await websockets.connect(
        ws_url(base_url) + query,
        additional_headers=headers,
        ping_interval=None,
        proxy=None,
        open_timeout=WAIT,
        close_timeout=2,
        **kwargs,
    )
    sock = Socket(ws)
    hello = await sock.event("hello")
    if user is not None:
        assert hello["data"]["username"] == user.username
    sock.summary = (await sock.event("offline.summary"))["data"]
    return sock


def _listening_socket(send_buffer: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:  # accepted sockets inherit it (Linux)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(
    make_settings: MakeSettings,
    *,
    uvicorn_options: dict[str, Any] | None = None,
    send_buffer: int | None = None,
    **overrides: Any,
) -> AsyncIterator[Server]:
    """Run the app under uvicorn on a free loopback port of this process; settings
    ``overrides`` apply (the public URL, hence the allowed origin, names the port)."""
    listener = _listening_socket(send_buffer)
    port = int(listener.getsockname()[1])
    overrides.setdefault("rate_limit_register_ip", "1000/hour")
    overrides.setdefault("rate_limit_login_ip", "1000/hour")
    settings = make_settings(port=port, **overrides).settings
    app = create_app(settings)
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
        "log_config": None,
        "lifespan": "on",
        "timeout_graceful_shutdown": 3,
        # as `echochat serve` runs it (cli/serve.py), except ws_max_size: uvicorn's default
        # lets frames over max_frame_bytes reach the gateway's own check
        "ws": LeanWebSocketProtocol,
        "ws_per_message_deflate": settings.ws_compression,
        "server_header": False,
        "proxy_headers": False,
    }
    options.update(uvicorn_options or {})
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]), name=f"uvicorn-{port}")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        async with cookieless(httpx.AsyncClient(base_url=settings.public_url, timeout=10)) as http:
            yield Server(url=settings.public_url, app=app, settings=settings, http=http)
    finally:
        server.should_exit = True
        async with asyncio.timeout(20):
            await task
        listener.close()


# --- a socket whose every wait is bounded ------------------------------------------------------


class Socket:
    """A client socket that keeps frames it read but nobody asked for yet."""

    _refs = itertools.count(1)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: list[Frame] = []
        self.summary: Frame | None = None  # the offline.summary data, when open_socket read it

    async def recv(self, timeout: float = WAIT) -> Frame:
        """The next frame (from what was put aside first)."""
        if self.pending:
            return self.pending.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> Frame:
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        frame: Frame = orjson.loads(raw)
        return frame

    async def next_matching(
        self, predicate: Callable[[Frame], bool], what: str, timeout: float = WAIT
    ) -> Frame:
        """The first frame matching ``predicate``; others are kept for later, in order."""
        for index, frame in enumerate(self.pending):
            if predicate(frame):
                return self.pending.pop(index)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = await self._read(timeout)
                    if predicate(frame):
                        return frame
                    self.pending.append(frame)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; got {self.pending}"
            ) from None

    async def event(self, type_: str, timeout: float = WAIT, **data: Any) -> Frame:
        """The next event of ``type_`` whose data has the given values."""

        def match(frame: Frame) -> bool:
            if frame.get("op") != "ev" or frame.get("type") != type_:
                return False
            return all(frame["data"].get(k) == v for k, v in data.items())

        return await self.next_matching(match, f"event {type_} {data}", timeout)

    async def presence(self, username: str, timeout: float = WAIT) -> Frame:
        """The next presence event about ``username``: its data."""
        frame = await self.event("presence", timeout, username=username)
        data: Frame = frame["data"]
        return data

    async def send_json(self, frame: Any) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def send_op(self, op: str, data: Any = None, **extra: Any) -> str:
        ref = f"t-{next(self._refs)}"
        frame: dict[str, Any] = {"op": op, "ref": ref, **extra}
        if data is not None:
            frame["data"] = data
        await self.send_json(frame)
        return ref

    async def reply(self, ref: str, timeout: float = WAIT) -> Frame:
        """The ``ok`` or ``err`` frame answering ``ref``."""
        return await self.next_matching(
            lambda f: f.get("op") in ("ok", "err") and f.get("ref") == ref,
            f"the reply to {ref}",
            timeout,
        )

    async def call(self, op: str, data: Any = None) -> Frame:
        """Send ``op`` and return its reply, which must be ``ok``: its data."""
        reply = await self.reply(await self.send_op(op, data))
        assert reply["op"] == "ok", reply
        result: Frame = reply["data"]
        return result

    async def error(self, op: str, data: Any = None) -> Frame:
        """Send ``op`` and return its reply, which must be ``err``: its error object."""
        reply = await self.reply(await self.send_op(op, data))
        assert reply["op"] == "err", reply
        error: Frame = reply["error"]
        return error

    async def assert_quiet(self, predicate: Callable[[Frame], bool] | None = None) -> None:
        """Nothing (matching ``predicate``, default: any event) came before a fresh ping's
        reply: whatever the server produced before now has been read."""
        predicate = predicate or (lambda f: f.get("op") == "ev")
        ref = await self.send_op("ping", {})
        while True:
            frame = await self.recv()
            if frame.get("op") == "ok" and frame.get("ref") == ref:
                break
            assert not predicate(frame), f"unexpected frame {frame}"

    async def closed(self, timeout: float = WAIT) -> ConnectionClosed:
        """Read until the server closes the socket; the close exception (``.rcvd.code``)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.pending.append(orjson.loads(await self.ws.recv()))
        except ConnectionClosed as exc:
            return exc
        except TimeoutError:
            raise AssertionError(
                f"the server did not close the socket within {timeout} s; got {self.pending}"
            ) from None

    async def close(self) -> None:
        await self.ws.close()
