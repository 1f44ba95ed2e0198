"""The realtime path's memory-saving parts, driven directly: the hub's connection (a writer
task only while there is something to write, one sweep for silent sockets) and the lean
uvicorn WebSocket protocol (``echochat.realtime.wsserver``) on an in-memory transport, with
websockets' own client state machine on the other end. The gateway suite
(tests/unit/test_gateway.py) runs every socket behaviour over the same protocol."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.uri import parse_uri

from echochat.realtime.hub import CLOSE_GOING_AWAY, Connection, Hub
from echochat.realtime.wsserver import LeanWebSocketProtocol
from echochat.services.accounts import Principal

# --- the hub's connections ------------------------------------------------------------------


class Recorder:
    """What Connection uses of a Starlette WebSocket; ``gate`` holds sends."""

    def __init__(self) -> None:
        self.sent: list[str | int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int = 1000) -> None:
        self.sent.append(code)


def connection(limit: int = 8, user_id: int = 1) -> tuple[Connection, Recorder]:
    principal = Principal(
        user_id=user_id,
        username=f"user{user_id}",
        display_name="",
        session_id=f"s{user_id}",
        roles=frozenset(),
        permissions=frozenset(),
    )
    recorder = Recorder()
    conn = Connection(id=f"p.{user_id}", principal=principal, websocket=recorder, limit=limit)  # type: ignore[arg-type]
    return conn, recorder


def closing(conn: Connection) -> bool:
    return conn.closing


def busy(conn: Connection) -> bool:
    """Whether a writer task exists (only while there is something to write)."""
    return conn.writer is not None


async def written(conn: Connection) -> None:
    async with asyncio.timeout(2):
        while conn.writer is not None:
            await asyncio.wait((conn.writer,))


async def test_an_idle_connection_has_no_writer_task() -> None:
    conn, recorder = connection()
    assert not busy(conn) and conn.pending == 0
    conn.send("a")
    conn.send("b")
    assert busy(conn) and conn.pending == 2
    await written(conn)
    assert recorder.sent == ["a", "b"]
    assert not busy(conn) and conn.pending == 0  # idle again: nothing left behind
    conn.send("c")  # a later frame starts a new writer
    await written(conn)
    assert recorder.sent == ["a", "b", "c"]


async def test_frames_sent_while_one_is_in_flight_keep_their_order() -> None:
    conn, recorder = connection()
    recorder.gate.clear()
    conn.send("first")
    await asyncio.sleep(0)  # the writer takes "first" and waits on the socket
    assert conn.pending == 0 and busy(conn)
    conn.send("second")
    conn.close(1000)
    recorder.gate.set()
    await written(conn)
    assert recorder.sent == ["first", "second", 1000]


async def test_the_limit_counts_frames_waiting_behind_the_one_in_flight() -> None:
    conn, recorder = connection(limit=2)
    recorder.gate.clear()
    conn.send("in flight")
    await asyncio.sleep(0)
    conn.send("w1")
    conn.send("w2")
    assert not closing(conn)
    conn.send("w3")  # a third waiting frame: too slow
    assert conn.dropped and closing(conn) and conn.pending == 0 and not busy(conn)
    recorder.gate.set()
    await asyncio.sleep(0)
    assert recorder.sent == []  # the frame in flight was abandoned with its writer


async def test_close_of_an_idle_connection_sends_the_close() -> None:
    conn, recorder = connection()
    conn.close(4000)
    conn.close(4001)  # a second close changes nothing
    conn.send("late")
    await written(conn)
    assert recorder.sent == [4000]


async def test_flushed_waits_for_the_backlog_and_does_not_raise_on_a_drop() -> None:
    conn, recorder = connection()
    recorder.gate.clear()
    conn.send("a")
    conn.close(1000)
    waiting = asyncio.create_task(conn.flushed(2))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    recorder.gate.set()
    await asyncio.wait_for(waiting, 2)
    assert recorder.sent == ["a", 1000]
    other, gated = connection()
    gated.gate.clear()
    other.send("x")
    await asyncio.sleep(0)
    other.drop()
    await other.flushed(2)  # returns at once, no CancelledError


async def test_the_sweep_closes_silent_sockets_only() -> None:
    hub = Hub(None)  # type: ignore[arg-type]  # the sweep needs no context
    silent, silent_ws = connection(user_id=1)
    chatty, chatty_ws = connection(user_id=2)
    await hub.add(silent)
    await hub.add(chatty)
    now = time.monotonic()
    silent.last_seen = now - 80
    chatty.last_seen = now - 10
    assert hub.close_silent(now - 75) == 1
    assert silent.closing and not chatty.closing
    assert hub.close_silent(now - 75) == 0  # already closing: not twice
    await written(silent)
    assert silent_ws.sent == [CLOSE_GOING_AWAY]
    assert chatty_ws.sent == []


def test_connections_have_no_instance_dict() -> None:
    conn, _ = connection()
    assert not hasattr(conn, "__dict__")
    assert not hasattr(LeanWebSocketProtocol.__new__(LeanWebSocketProtocol), "__dict__")


# --- the lean WebSocket protocol on an in-memory transport ------------------------------------


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.output = bytearray()
        self.closed = False
        self.closed_event = asyncio.Event()
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.output += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.closed_event.set()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def take(self) -> bytes:
        data = bytes(self.output)
        self.output.clear()
        return data


App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Peer:
    """A server-side protocol instance and websockets' client state machine facing it."""

    def __init__(
        self,
        app: App,
        protocol: type[asyncio.Protocol] = LeanWebSocketProtocol,
        config: uvicorn.Config | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("ws_ping_interval", None)
        self.config = config or uvicorn.Config(app, lifespan="off", log_config=None, **options)
        if not self.config.loaded:
            self.config.load()
        self.state = ServerState()
        self.server = protocol(config=self.config, server_state=self.state, app_state={})  # type: ignore[call-arg]
        self.transport = MemoryTransport()
        self.server.connection_made(self.transport)
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws?x=1"))

    def handshake(self) -> None:
        self.client.send_request(self.client.connect())
        self.push()

    def push(self) -> None:
        """What the client has to send, into the server."""
        for chunk in self.client.data_to_send():
            if chunk:
                self.server.data_received(chunk)

    def pull(self) -> list[Request | Response | Frame]:
        """What the server wrote, into the client; the events it makes of it."""
        self.client.receive_data(self.transport.take())
        return list(self.client.events_received())

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


def echo_app(seen: list[Message]) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append({"type": "scope", "path": scope["path"], "query": scope["query_string"]})
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo " + message["text"]})

    return app


async def test_handshake_echo_and_closing_handshake() -> None:
    seen: list[Message] = []
    peer = Peer(echo_app(seen))
    peer.handshake()
    await peer.settle()
    (response,) = peer.pull()
    assert isinstance(response, Response) and response.status_code == 101
    assert peer.client.state is State.OPEN
    assert seen[0] == {"type": "scope", "path": "/ws", "query": b"x=1"}
    peer.client.send_text(b"hi")
    peer.push()
    await peer.settle()
    (frame,) = peer.pull()
    assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT and frame.data == b"echo hi"
    peer.client.send_close(1000)
    peer.push()
    await peer.settle()
    assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == 1000
    assert peer.transport.closed


async def test_an_open_socket_keeps_neither_the_request_nor_the_response() -> None:
    peer = Peer(echo_app([]))
    peer.handshake()
    await peer.settle()
    server = peer.server
    assert isinstance(server, LeanWebSocketProtocol)
    assert server.response is None
    assert "request" not in (server.conn.parser.gi_frame.f_locals or {})  # type: ignore[attr-defined]
    # and the swapped parser reads frames as before, fragmented ones too
    peer.pull()
    peer.client.send_text(b"par", fin=False)
    peer.client.send_continuation(b"ts", fin=True)
    peer.push()
    await peer.settle()
    (frame,) = peer.pull()
    assert isinstance(frame, Frame) and frame.data == b"echo parts"


async def test_reading_pauses_while_the_app_is_busy() -> None:
    release = asyncio.Event()
    got: list[str] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while len(got) < 2:
            got.append((await receive())["text"])

    peer = Peer(slow)
    peer.handshake()
    await peer.settle()
    peer.pull()
    peer.client.send_text(b"one")
    peer.client.send_text(b"two")
    peer.push()
    assert not peer.transport.reading  # two messages wait, nothing more is read
    release.set()
    await peer.settle()
    assert got == ["one", "two"]
    assert peer.transport.reading


async def test_senders_wait_while_the_transport_is_paused() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cancelled_sender: list[asyncio.Task[None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate

        async def give_up() -> None:
            await send({"type": "websocket.send", "text": "cancelled"})

        cancelled_sender.append(asyncio.create_task(give_up()))
        await send({"type": "websocket.send", "text": "after resume"})

    peer = Peer(app)
    peer.handshake()
    await peer.settle()
    peer.pull()
    peer.server.pause_writing()
    gate.set_result(None)
    await peer.settle()
    assert peer.pull() == []  # nothing written while paused
    cancelled_sender[0].cancel()  # one waiting sender gives up: the other keeps waiting
    await peer.settle()
    assert peer.pull() == []
    peer.server.resume_writing()
    await peer.settle()
    frames = peer.pull()
    assert [f.data for f in frames if isinstance(f, Frame)] == [b"after resume"]


async def test_a_denial_response_reaches_the_client() -> None:
    async def deny(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b'{"error":{}}'})

    peer = Peer(deny)
    peer.handshake()
    await peer.settle()
    (response,) = peer.pull()
    assert isinstance(response, Response) and response.status_code == 401
    assert response.body == b'{"error":{}}'
    assert peer.transport.closed


async def test_a_peer_that_never_answers_pings_is_closed_1011() -> None:
    peer = Peer(echo_app([]), ws_ping_interval=0.05, ws_ping_timeout=0.05)
    peer.handshake()
    await peer.settle()
    peer.pull()
    async with asyncio.timeout(2):
        await peer.transport.closed_event.wait()
    peer.client.receive_data(peer.transport.take())
    assert peer.client.close_rcvd is not None and peer.client.close_rcvd.code == 1011


async def test_a_peer_that_answers_pings_stays_open() -> None:
    peer = Peer(echo_app([]), ws_ping_interval=0.02, ws_ping_timeout=0.05)
    peer.handshake()
    await peer.settle()
    peer.pull()
    pings = 0
    async with asyncio.timeout(2):
        while pings < 3:
            await asyncio.sleep(0.01)
            for event in peer.pull():
                if isinstance(event, Frame) and event.opcode is Opcode.PING:
                    pings += 1
            peer.push()  # the client state machine queued the pong
    assert not peer.transport.closed


async def test_deflate_is_negotiated_only_when_enabled() -> None:
    for enabled in (False, True):
        peer = Peer(echo_app([]), ws_per_message_deflate=enabled)
        peer.client = ClientProtocol(
            parse_uri("ws://127.0.0.1:8000/ws"),
            extensions=[
                __import__(
                    "websockets.extensions.permessage_deflate", fromlist=["x"]
                ).ClientPerMessageDeflateFactory()
            ],
        )
        peer.handshake()
        await peer.settle()
        (response,) = peer.pull()
        assert isinstance(response, Response)
        offered = response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in offered) is enabled


# --- what it saves ----------------------------------------------------------------------------


async def _bytes_per_open_socket(protocol: type[asyncio.Protocol], n: int) -> float:
    """Python memory held per open, idle socket by ``n`` protocol instances (traced)."""
    received = asyncio.Event()

    async def idle(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.set()
        await receive()  # waits, as an idle socket's app does

    config = uvicorn.Config(idle, lifespan="off", log_config=None, ws_ping_interval=20.0)
    warm = Peer(idle, protocol=protocol, config=config)  # imports and caches, not counted
    warm.handshake()
    await received.wait()
    peers = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            peer = Peer(idle, protocol=protocol, config=config)
            peer.handshake()
            peers.append(peer)
        await asyncio.sleep(0.05)
        for peer in peers:  # only the server side is counted
            peer.client = None  # type: ignore[assignment]
            peer.transport.output = bytearray()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    for peer in [warm, *peers]:
        peer.server.connection_lost(None)
    await asyncio.sleep(0.05)
    return (after - before) / n


@pytest.mark.parametrize("n", [200])
async def test_an_idle_socket_costs_much_less_than_with_uvicorns_protocol(n: int) -> None:
    lean = await _bytes_per_open_socket(LeanWebSocketProtocol, n)
    stock = await _bytes_per_open_socket(WebSocketsSansIOProtocol, n)
    print(f"traced bytes per idle socket: lean {lean:.0f}, uvicorn's websockets-sansio {stock:.0f}")
    assert lean < stock * 0.6, (lean, stock)
