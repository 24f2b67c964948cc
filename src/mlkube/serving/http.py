"""A small HTTP/1.1 server on asyncio Protocols and httptools: the serving hot path.

Why not Starlette/uvicorn: the benchmark (bench/serve.py) measures the whole ASGI stack at
several times the cost of a tiny ONNX prediction; parsing with httptools straight into our
handler and writing one pre-built response buffer is what lets adaptive batching pay off.

What lives here: dispatch to the handler, keep-alive, pipelining (responses in request order),
drain on shutdown. Limits, timeouts, protocol refusals and lingering close come from the
shared core (``mlkube.serving.httpcore``), the same one the load balancer reads requests with.
What does not: routing and protocols (``app.py``), batching (``mlkube.batching``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mlkube.serving.httpcore.connection import (
    DISCARD,
    PAUSED_PIPELINE,
    HttpServerConnection,
    sweep,
)
from mlkube.serving.httpcore.errors import REASONS, HttpError
from mlkube.serving.httpcore.limits import HttpLimits

logger = logging.getLogger(__name__)

# Most responses a client may have outstanding on one connection before we stop reading
# from it; bounds memory when a client pipelines without reading answers.
MAX_PIPELINED = 32
# A keep-alive connection with nothing outstanding that stayed silent this long no longer
# counts as a client about to send (``ServerState.may_send``): a closed-loop client sends
# again within its think time, a proxy's pooled connection may sit idle for its pool's
# timeout (30 s in our balancer), and counted as a sender it made every lone request wait
# for company that was not coming. Checked by the sweep (every 0.5 s by default).
QUIET_AFTER_S = 1.0


@dataclass(slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-case names; values decoded as UTF-8 (bytes that are not become U+FFFD)."""
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
    """The bytes of a whole HTTP/1.1 response (headers only for a HEAD request).

    Header values are written as UTF-8, so a request id the client sent in UTF-8 comes back
    as the same bytes.
    """
    reason = REASONS.get(response.status, "Unknown")
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
    return "".join(lines).encode() + (b"" if is_head else response.body)


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
        limits: HttpLimits | None = None,
    ) -> None:
        self.handler = handler
        self.limits = dataclasses.replace(limits or HttpLimits(), max_body_bytes=max_body_bytes)
        self.error_response = error_response
        self.connections: set[HttpServerConnection] = set()
        self.draining = False
        self.in_flight = 0
        self.quiet = 0
        """Open connections with nothing outstanding, silent for over ``quiet_after_s``."""
        self.quiet_after_s = QUIET_AFTER_S
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def max_body_bytes(self) -> int:
        return self.limits.max_body_bytes

    def may_send(self) -> int:
        """How many requests could still arrive soon: the open connections that are neither
        waiting for an answer nor quiet (a proxy's pooled connection, a client gone idle).
        The batchers read it to tell a lone request from one that others may join."""
        return len(self.connections) - self.in_flight - self.quiet


class HttpConnection(HttpServerConnection):
    """One client connection: dispatch requests, write responses in order."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(state.limits, state.connections)
        self.state = state
        self.pending: deque[_Slot] = deque()
        self.body_parts: list[bytes] = []
        self.quiet = False
        """Counted in ``state.quiet`` (set by the sweep, cleared by the next request)."""

    def busy(self) -> bool:
        return bool(self.pending)

    def check_timeouts(self, now: float) -> None:
        super().check_timeouts(now)
        state = self.state
        if (
            not self.quiet
            and not self.pending
            and self.transport is not None
            and now - self.last_active > state.quiet_after_s
        ):
            self.quiet = True
            state.quiet += 1

    def _not_quiet(self) -> None:
        if self.quiet:
            self.quiet = False
            self.state.quiet -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._not_quiet()

    # the core's hooks
    def head_complete(self, method: bytes) -> None:
        self.body_parts = []
        if self.expect_continue and not self.pending and self.transport is not None:
            # curl asks before sending bodies over 1 KiB and otherwise waits a second. With
            # answers outstanding it would land between them, so the client just waits.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def body_received(self, chunk: bytes) -> None:
        self.body_parts.append(chunk)

    def request_complete(self, keep_alive: bool) -> None:
        slot = _Slot(head=self.parser.get_method() == b"HEAD")
        self.pending.append(slot)
        if self.quiet:
            self._not_quiet()
        state = self.state
        if state.draining:
            self._finish(slot, state.error_response(503, "server is shutting down"), False)
            return
        request = self._request(keep_alive)
        state.in_flight += 1
        state.idle.clear()

        def respond(response: Response) -> None:
            self._done(slot, response, keep_alive)

        try:
            result = state.handler(request, respond)
        except Exception:  # the handler is ours; this is a bug, never the caller's fault
            logger.exception("request handler failed")
            result = state.error_response(500, "internal server error")
        if result is not None:
            self._done(slot, result, keep_alive)
        if len(self.pending) > MAX_PIPELINED:
            self.pause(PAUSED_PIPELINE)

    def send_error(self, error: HttpError) -> None:
        slot = _Slot()
        self.pending.append(slot)
        response = self.state.error_response(error.status, error.message)
        if error.retry_after_s:
            response.headers.append(("retry-after", str(error.retry_after_s)))
        self._finish(slot, response, keep_alive=False)

    def _request(self, keep_alive: bool) -> Request:
        url = self.url.decode("latin-1")
        path, _, query = url.partition("?")
        parts = self.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        headers = {
            name.decode("latin-1").lower(): value.decode("utf-8", "replace")
            for name, value in self.headers
        }
        method = self.parser.get_method().decode("latin-1")
        return Request(method, path, query, headers, body, keep_alive)

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
        pending = self.pending
        while pending and pending[0].data is not None:
            slot = pending.popleft()
            if transport is None:
                continue
            transport.write(slot.data)  # type: ignore[arg-type]
            if slot.close:
                pending.clear()
                self.close_after_answer()
                return
        if self.paused_by & PAUSED_PIPELINE and len(pending) <= MAX_PIPELINED // 2:
            self.resume(PAUSED_PIPELINE)
        if not pending:
            self.last_active = self.loop.time()
            if self.phase == DISCARD and not self.lingering and transport is not None:
                # The client closed its side with requests outstanding: all are answered,
                # and nothing more can come on this connection (left open, it would count
                # as a client that may still send, and hold its socket for good).
                self.close_after_answer()

    def close_if_idle(self) -> None:
        """Close a keep-alive connection with nothing outstanding (used when draining)."""
        if not self.pending and self.transport is not None:
            self.phase = DISCARD
            self.transport.close()


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
    state: ServerState, *, idle_timeout_s: float | None = None, every_s: float | None = None
) -> None:
    """Forever: apply the connections' timeouts (header, body, idle, lingering).

    ``idle_timeout_s`` overrides the limits' idle timeout, ``every_s`` the sweep interval.
    """
    if idle_timeout_s is not None:
        state.limits = dataclasses.replace(state.limits, idle_timeout_s=idle_timeout_s)
        for connection in state.connections:
            connection.limits = state.limits
    await sweep(
        state.connections, lambda: every_s if every_s is not None else state.limits.sweep_every_s
    )


async def drain(server: asyncio.Server, state: ServerState, timeout_s: float) -> bool:
    """Stop accepting, let in-flight requests finish (up to ``timeout_s``), close connections.

    Returns True when everything finished in time.
    """
    state.draining = True
    server.close()
    for connection in list(state.connections):
        if isinstance(connection, HttpConnection):
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
