"""A small HTTP/1.1 server on asyncio Protocols and httptools: the serving hot path.

Why not Starlette/uvicorn: the benchmark (bench/serve.py) measures the whole ASGI stack at
several times the cost of a tiny ONNX prediction; parsing with httptools straight into our
handler and writing one pre-built response buffer is what lets adaptive batching pay off.

What lives here: connection handling, keep-alive, pipelining (responses in request order),
body size limits (413 before the body is read), malformed input (400), drain on shutdown.
What does not: routing and protocols (``app.py``), batching (``mlkube.batching``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools

logger = logging.getLogger(__name__)

# Most responses a client may have outstanding on one connection before we stop reading
# from it; bounds memory when a client pipelines without reading answers.
MAX_PIPELINED = 32
# A connection with nothing outstanding and no bytes for this long is closed, so idle or
# half-sent connections (slowloris) cannot hold file descriptors forever.
IDLE_TIMEOUT_S = 60.0
IDLE_SWEEP_S = 5.0
MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 65536

_REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool = True


@dataclass(slots=True)
class Response:
    """What a handler returns; ``headers`` are extra headers beyond length and type."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Respond = Callable[[Response], None]
Handler = Callable[[Request, Respond], "Response | None"]
"""Returns the response, or None and calls ``respond`` exactly once later."""


def encode_response(response: Response, *, keep_alive: bool, is_head: bool = False) -> bytes:
    """The bytes of a whole HTTP/1.1 response (headers only for a HEAD request)."""
    reason = _REASONS.get(response.status, "Unknown")
    lines = [
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"content-type: {response.content_type}\r\n"
        f"content-length: {len(response.body)}\r\n"
    ]
    for name, value in response.headers:
        lines.append(f"{name}: {value}\r\n")
    if not keep_alive:
        lines.append("connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + (b"" if is_head else response.body)


class _Slot:
    """A response position on one connection, filled when its handler finishes."""

    __slots__ = ("close", "data", "head")

    def __init__(self, head: bool = False) -> None:
        self.data: bytes | None = None
        self.close = False
        self.head = head


class ServerState:
    """What all connections of one server share: the handler, limits, and drain status."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        error_response: Callable[[int, str], Response],
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.error_response = error_response
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()


class HttpConnection(asyncio.Protocol):
    """One client connection: parse requests, dispatch, write responses in order."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Slot] = deque()
        self.closing = False
        self.paused = False
        self._loop = asyncio.get_running_loop()
        self.last_active = self._loop.time()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.rejected: tuple[int, str] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but provide its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.closing = True
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self._fail(400, f"malformed HTTP request: {_describe(error)}")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            self.rejected = (414, f"URL longer than {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.rejected = (431, f"headers larger than {MAX_HEADER_BYTES} bytes")
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.state.max_body_bytes:
            # Refuse before reading the body; the connection cannot be reused after that.
            self._fail(413, _too_large(self.state.max_body_bytes))
            return
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            # curl asks before sending bodies over 1 KiB and otherwise waits a second.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.state.max_body_bytes:
            self._fail(413, _too_large(self.state.max_body_bytes))
            return
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        keep_alive = bool(self.parser.should_keep_alive())
        slot = _Slot(head=self.parser.get_method() == b"HEAD")
        self.pending.append(slot)
        if self.rejected is not None:
            status, message = self.rejected
            self._finish(slot, self.state.error_response(status, message), keep_alive)
            return
        if self.state.draining:
            self._finish(slot, self.state.error_response(503, "server is shutting down"), False)
            return
        request = self._request(keep_alive)
        self.state.in_flight += 1
        self.state.idle.clear()

        def respond(response: Response) -> None:
            self._done(slot, response, keep_alive)

        try:
            result = self.state.handler(request, respond)
        except Exception:  # the handler is ours; this is a bug, never the caller's fault
            logger.exception("request handler failed")
            result = self.state.error_response(500, "internal server error")
        if result is not None:
            self._done(slot, result, keep_alive)
        if len(self.pending) > MAX_PIPELINED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def _request(self, keep_alive: bool) -> Request:
        url = self.url.decode("latin-1")
        path, _, query = url.partition("?")
        body = self.body_parts[0] if len(self.body_parts) == 1 else b"".join(self.body_parts)
        return Request(
            self.parser.get_method().decode("latin-1"), path, query, self.headers, body, keep_alive
        )

    def _done(self, slot: _Slot, response: Response, keep_alive: bool) -> None:
        state = self.state
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()
        self._finish(slot, response, keep_alive and not state.draining)

    def _finish(self, slot: _Slot, response: Response, keep_alive: bool) -> None:
        slot.data = encode_response(response, keep_alive=keep_alive, is_head=slot.head)
        slot.close = not keep_alive
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        while self.pending and self.pending[0].data is not None:
            slot = self.pending.popleft()
            if transport is None:
                continue
            transport.write(slot.data)  # type: ignore[arg-type]
            if slot.close:
                self.closing = True
                self.pending.clear()
                transport.close()
                return
        if self.paused and transport is not None and len(self.pending) <= MAX_PIPELINED // 2:
            self.paused = False
            transport.resume_reading()

    def _fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or read further, then close."""
        if self.closing:
            return
        slot = _Slot()
        self.pending.append(slot)
        self.parser = httptools.HttpRequestParser(self)  # discard whatever follows
        self._finish(slot, self.state.error_response(status, message), keep_alive=False)
        self.closing = True

    def close_if_idle(self) -> None:
        """Close a keep-alive connection with nothing outstanding (used when draining)."""
        if not self.pending and self.transport is not None:
            self.transport.close()


def _too_large(limit: int) -> str:
    return f"request body larger than the limit of {limit} bytes"


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text[:200]


async def start_server(
    state: ServerState, *, host: str, port: int, reuse_port: bool = False, backlog: int = 2048
) -> asyncio.Server:
    """Listen on ``host:port``; raises OSError (e.g. EADDRINUSE) as the OS reports it."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpConnection(state),
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        backlog=backlog,
    )


async def close_idle_connections(
    state: ServerState, *, idle_timeout_s: float = IDLE_TIMEOUT_S, every_s: float = IDLE_SWEEP_S
) -> None:
    """Forever: close connections with nothing outstanding that sent nothing for a while."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every_s)
        deadline = loop.time() - idle_timeout_s
        for connection in list(state.connections):
            idle = connection.last_active < deadline and not connection.pending
            if idle and connection.transport is not None:
                connection.transport.close()


async def drain(server: asyncio.Server, state: ServerState, timeout_s: float) -> bool:
    """Stop accepting, let in-flight requests finish (up to ``timeout_s``), close connections.

    Returns True when everything finished in time.
    """
    state.draining = True
    server.close()
    for connection in list(state.connections):
        connection.close_if_idle()
    try:
        await asyncio.wait_for(state.idle.wait(), timeout_s)
        finished = True
    except TimeoutError:
        finished = False
    for connection in list(state.connections):
        if connection.transport is not None:
            connection.transport.close()
    return finished
