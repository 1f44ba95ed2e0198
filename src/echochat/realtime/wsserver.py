"""A lean WebSocket protocol for uvicorn (its ``ws=`` option), used by ``echochat serve``.

It speaks ASGI exactly as uvicorn's own ``websockets-sansio`` implementation does (the same
websockets Sans-I/O state machine does the framing, the handshake and the closing
handshake; the same keepalive pings, close timeout, denial responses and ``ws_max_size``),
but an idle socket costs far less memory, which is what 10,000 idle sockets on one process
are about (docs/performance.md, "idle"):

- ``__slots__`` instead of an instance dict with some forty entries;
- the messages for the app wait in a plain list, made only while one waits, and the app's
  pending ``receive()`` is one future, instead of an ``asyncio.Queue`` (four deques) plus
  an ``asyncio.Event`` (another deque) per socket;
- neither the handshake request (its parsed headers live on in the websockets parser's
  frame) nor the 101 response is kept once the socket is open: the parser is swapped for
  a frames-only one, which it is at that point anyway;
- one timer at a time for the keepalive (the next ping, or the pong deadline).

What it keeps per socket: the transport, the websockets protocol object (parser, close
state, deflate contexts when negotiated), the ASGI scope (with the request headers, which
the app may read for as long as it likes), and the task running the app.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import struct
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

__all__ = ["LeanWebSocketProtocol", "text_frame"]

log = logging.getLogger("uvicorn.error")

# The same deflate parameters as uvicorn's (12-bit windows, memLevel 5), when enabled.
_DEFLATE: list[ServerExtensionFactory] = [
    ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
]
# How websockets decodes header values (latin-1 from 17.0 on); compared as numbers, since
# "9.1" >= "17.0" as strings.
_LATIN1_HEADERS = tuple(int(p) for p in websockets_version.split(".")[:2] if p.isdigit()) >= (17, 0)
CLOSE_TIMEOUT = 10.0  # seconds to wait for the peer's close frame after ours

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class LeanWebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection for uvicorn, from the upgrade request to the close."""

    __slots__ = (
        "_binary",
        "_drained",
        "_fragments",
        "_inbox",
        "_ping_payload",
        "_ping_sent_at",
        "_read_paused",
        "_timer",
        "_waiter",
        "_write_paused",
        "app_state",
        "close_sent",
        "close_timer",
        "config",
        "conn",
        "disconnected",
        "handshake_complete",
        "initial_response",
        "loop",
        "response",
        "scope",
        "server_state",
        "transport",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.conn = ServerProtocol(
            extensions=_DEFLATE if config.ws_per_message_deflate else None,
            max_size=config.ws_max_size,
            logger=log,
        )
        self.scope: dict[str, Any] = {}
        self.response: Response | None = None  # the 101, until the app accepts
        self.initial_response: tuple[int, list[tuple[str, str]], bytes] | None = None
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        # messages for the app, while it is not waiting for them; its pending receive()
        self._inbox: list[Message] | None = None
        self._waiter: asyncio.Future[Message] | None = None
        self._read_paused = False
        # while the transport's buffer is full: senders wait for this future
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        # keepalive: one timer at a time (the next ping, or the deadline of its pong)
        self._timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._fragments: list[bytes] | None = None  # a fragmented message being received
        self._binary = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_keepalive()
        self._deliver(
            {"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006}
        )
        self.server_state.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self._resume_senders()  # a transport lost while paused never resumes writing
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._resume_senders()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.conn.parser_exc is not None:
            self._parser_failed()
            return
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self._connect(event)
                continue
            if not isinstance(event, Frame):  # pragma: no cover - a server reads no responses
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                self._data_frame(event)
            elif opcode is Opcode.PING:
                self._write_pending()  # websockets queued the pong
            elif opcode is Opcode.PONG:
                self._pong(event)
            elif opcode is Opcode.CLOSE:
                self._close_frame()

    def shutdown(self) -> None:
        """The server is stopping (uvicorn calls this on every open connection)."""
        self._stop_keepalive()
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if self.handshake_complete:
            self._deliver({"type": "websocket.disconnect", "code": 1012})
            self.conn.send_close(1012)
            self._write_pending()
        else:
            self._send_500()
        self.transport.close()

    # --- incoming ------------------------------------------------------------------------------

    def _connect(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(response)
            self._write_pending()
            self.transport.close()
            return
        self.response = response
        if _LATIN1_HEADERS:
            headers = [
                (k.encode("ascii"), v.encode("latin-1")) for k, v in request.headers.raw_items()
            ]
        else:  # pragma: no cover - websockets < 17
            headers = [
                (k.encode("ascii"), v.encode("ascii", errors="surrogateescape"))
                for k, v in request.headers.raw_items()
            ]
        raw_path, _, query_string = request.path.partition("?")
        subprotocols: list[str] = []
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in header.split(","))
        root_path = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": get_local_addr(self.transport),
            "client": get_remote_addr(self.transport),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._deliver({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)

    def _data_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CONT:
            if self._fragments is None:  # pragma: no cover - websockets checks the sequence
                return
            self._fragments.append(bytes(frame.data))
        else:
            self._binary = frame.opcode is Opcode.BINARY
            self._fragments = [bytes(frame.data)]
        if not frame.fin:
            return
        parts, self._fragments = self._fragments, None
        if self.close_sent:
            return  # the app is past websocket.close: keep reading until the peer's close
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._binary:
            self._deliver({"type": "websocket.receive", "bytes": data})
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:  # pragma: no cover - websockets checks UTF-8 first
            log.exception("Invalid UTF-8 sequence received from client.")
            self.conn.send_close(1007)
            self._parser_failed()
            return
        self._deliver({"type": "websocket.receive", "text": text})

    def _close_frame(self) -> None:
        if self.close_sent:
            # the peer answered our close frame: the closing handshake is complete
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
                self.transport.close()
            return
        if not self.transport.is_closing():
            received = self.conn.close_rcvd
            assert received is not None
            self._deliver(
                {"type": "websocket.disconnect", "code": received.code, "reason": received.reason}
            )
            self._write_pending()  # websockets queued the answering close frame
            self.transport.close()

    def _parser_failed(self) -> None:
        sent = self.conn.close_sent
        assert sent is not None
        self._deliver({"type": "websocket.disconnect", "code": sent.code, "reason": sent.reason})
        self._write_pending()
        self.close_sent = True
        self.transport.close()

    # --- the app's receive -------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
            return
        if self._inbox is None:
            self._inbox = []
        self._inbox.append(message)
        if not self._read_paused and message["type"] == "websocket.receive":
            # the app is busy: stop reading until it catches up (bounded memory)
            self._read_paused = True
            self.transport.pause_reading()

    def receive(self) -> asyncio.Future[Message]:
        """ASGI ``receive``: the next message (an awaitable, as ASGI asks)."""
        future: asyncio.Future[Message] = self.loop.create_future()
        inbox = self._inbox
        if inbox:
            future.set_result(inbox.pop(0))
            if not inbox:
                self._inbox = None
                if self._read_paused:
                    self._read_paused = False
                    self.transport.resume_reading()
        else:
            self._waiter = future
        return future

    # --- the app's send ------------------------------------------------------------------------

    async def _writable(self) -> None:
        while self._write_paused and not self.disconnected:
            if self._drained is None:
                self._drained = self.loop.create_future()
            # shielded: a sender cancelled while waiting must not cancel the others' wait
            await asyncio.shield(self._drained)

    def _resume_senders(self) -> None:
        self._write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _write_pending(self) -> None:
        output = self.conn.data_to_send()
        if output:
            self.transport.write(b"".join(output))

    def send_text_now(self, text: str) -> bool:
        """Write a text frame at once, without a task or an ASGI message, when nothing
        stands in the way (open, no close sent, the transport not paused); False when the
        caller must take the ASGI ``send`` path instead (which waits or raises)."""
        if (
            self._write_paused
            or self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self._write_pending()
        return True

    def send_frame_now(self, frame: bytes) -> bool:
        """Write a frame built by :func:`text_frame` at once (the same bytes for every
        socket that gets it: a room message); False when it cannot be done here and the
        caller must send the text instead (as for :meth:`send_text_now`, and when deflate
        was negotiated on this socket)."""
        conn = self.conn
        if (
            self._write_paused
            or self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or conn.state is not State.OPEN
            or conn.extensions
            or conn.expect_continuation_frame
        ):
            return False
        self._write_pending()
        self.transport.write(frame)
        return True

    async def send(self, message: Message) -> None:
        """ASGI ``send``."""
        if self._write_paused:
            await self._writable()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if not self.handshake_complete and self.initial_response is None:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._deliver({"type": "websocket.disconnect", "code": 1006})
                log.info('%s - "WebSocket %s" 403', *self._where())
                self.conn.send_response(self.conn.reject(HTTPStatus.FORBIDDEN, ""))
                self.close_sent = True
                self.handshake_complete = True
                self.response = None
                self._write_pending()
                self.transport.close()
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                log.info('%s - "WebSocket %s" %d', *self._where(), status)
                headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in list(message.get("headers", []))
                ]
                self.initial_response = (status, headers, b"")
                self.response = None
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif not self.close_sent and self.initial_response is None:
            try:
                if kind == "websocket.send":
                    data = message.get("bytes")
                    if data is not None:
                        self.conn.send_binary(data)
                    else:
                        text = message.get("text")
                        if text is not None:
                            self.conn.send_text(text.encode())
                    self._write_pending()
                elif kind == "websocket.close":
                    if not self.transport.is_closing():
                        code = message.get("code", 1000)
                        reason = message.get("reason", "") or ""
                        self._deliver(
                            {"type": "websocket.disconnect", "code": code, "reason": reason}
                        )
                        self.conn.send_close(code, reason)
                        self._write_pending()
                        self.close_sent = True
                        self._stop_keepalive()
                        if self._read_paused:
                            self._read_paused = False
                            self.transport.resume_reading()
                        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)
                else:
                    raise RuntimeError(
                        "Expected ASGI message 'websocket.send' or 'websocket.close', "
                        f"but got '{kind}'."
                    )
            except InvalidState as exc:
                raise ClientDisconnected() from exc
        elif self.initial_response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            status, headers, body = self.initial_response
            body += message["body"]
            self.initial_response = (status, headers, body)
            if not message.get("more_body", False):
                response_headers = Headers(headers)
                response_headers.setdefault("Date", email.utils.formatdate(usegmt=True))
                response_headers.setdefault("Connection", "close")
                response_headers.setdefault("Content-Length", str(len(body)))
                response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
                self._deliver({"type": "websocket.disconnect", "code": 1006})
                self.conn.send_response(Response(status, _phrase(status), response_headers, body))
                self.close_sent = True
                self._write_pending()
                self.transport.close()
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _accept(self, message: Message) -> None:
        log.info('%s - "WebSocket %s" [accepted]', *self._where())
        response = self.response
        assert response is not None
        headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in (
                self.server_state.default_headers + list(message.get("headers", []))
            )
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        del response.headers["Date"]
        response.headers.update(headers)
        if self.transport.is_closing():
            return
        self.handshake_complete = True
        self.conn.send_response(response)
        self.response = None
        self._write_pending()
        self._forget_request()
        self._start_keepalive()

    def _forget_request(self) -> None:
        """websockets' server parser keeps the parsed request (all its headers) in its frame
        for the connection's lifetime; once open, the connection only parses frames, which is
        what the base parser does. Swap it in when the old one is idle between frames."""
        conn = self.conn
        if conn.reader.buffer or conn.parser_exc is not None or conn.state is not State.OPEN:
            return
        parser = Protocol.parse(conn)
        next(parser)
        conn.parser = parser

    def _where(self) -> tuple[str, str]:
        return get_client_addr(self.scope), get_path_with_query_string(self.scope)  # type: ignore[arg-type]

    # --- the app --------------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        app = cast(App, self.config.loaded_app)
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            log.exception("Exception in ASGI application\n")
            self._send_500()
        else:
            if not self.handshake_complete:
                log.error("ASGI callable returned without completing handshake.")
                self._send_500()
        if self.close_timer is None:
            self.transport.close()

    def _send_500(self) -> None:
        if self.initial_response or self.handshake_complete:
            return
        self.conn.send_response(self.conn.reject(500, "Internal Server Error"))
        self._write_pending()

    # --- keepalive ------------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.config.ws_ping_interval
        if interval is not None and interval > 0:
            self._timer = self.loop.call_later(interval, self._ping)

    def _stop_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ping_payload = None

    def _ping(self) -> None:
        self._timer = None
        if self.close_sent or self.transport.is_closing():
            return
        self._ping_payload = struct.pack("!I", random.getrandbits(32))
        self._ping_sent_at = self.loop.time()
        self.conn.send_ping(self._ping_payload)
        self._write_pending()
        timeout = self.config.ws_ping_timeout
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._pong_missing)
        else:
            self._start_keepalive()

    def _pong(self, frame: Frame) -> None:
        # ignore unsolicited pongs and stale ones whose payload is not the ping in flight
        if self._ping_payload is None or bytes(frame.data) != self._ping_payload:
            return
        rtt = self.loop.time() - self._ping_sent_at
        self._ping_payload = None
        if self._timer is not None and self.config.ws_ping_timeout is not None:
            self._timer.cancel()  # the pong deadline; the next ping follows
            interval = self.config.ws_ping_interval or 0.0
            self._timer = self.loop.call_later(max(0.0, interval - rtt), self._ping)

    def _pong_missing(self) -> None:
        self._timer = None
        self._ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(1011, "keepalive ping timeout")
        self._write_pending()
        self.close_sent = True
        self.transport.close()


def text_frame(text: str) -> bytes:
    """The bytes of an unmasked, unfragmented, uncompressed server text frame (RFC 6455
    5.2) of ``text``: what websockets would write for it on a socket without extensions."""
    data = text.encode()
    size = len(data)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = b"\x81\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + size.to_bytes(8, "big")
    return head + data
