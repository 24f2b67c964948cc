"""Reading HTTP/1.1 requests from one client connection, with limits, timeouts and lingering.

``HttpServerConnection`` feeds bytes to httptools and calls its subclass (the replica's
connection, the balancer's client side) at three points: headers complete, a body chunk,
request complete. On the way it refuses, the moment a limit is crossed:

- a URL over ``max_url_bytes`` → 414; headers over ``max_header_bytes`` → 431 (httptools
  buffers a header until its end, so the bytes of a head still open are counted per read);
- a body over ``max_body_bytes`` → 413, from ``Content-Length`` before any body byte, or
  while a chunked body arrives;
- HTTP/1.1 without exactly one ``Host`` → 400; a transfer coding other than ``chunked`` →
  501; ``CONNECT`` → 501; anything httptools rejects → 400;
- headers not complete within ``header_timeout_s``, or a body silent for
  ``body_timeout_s`` → 408 (checked by ``sweep``, so the hot path only stores a time).

A refusal stops parsing, and once the subclass has written the answer (after any earlier
pipelined answers) the connection closes the way nginx's lingering close does: half-close,
read and drop what the client still sends (bounded in time and bytes), then close. A client
that sends its whole body before reading (urllib, requests) thus reads the 413 instead of a
reset. An ``Upgrade`` request is answered as plain HTTP/1.1 (RFC 9110 §7.8) and the
connection closes after that answer, lingering the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

import httptools

from mlkube.serving.httpcore import errors
from mlkube.serving.httpcore.errors import HttpError
from mlkube.serving.httpcore.limits import HttpLimits

logger = logging.getLogger(__name__)

# Phases of the request being read.
IDLE = 0  # between requests (an answer may still be outstanding)
HEAD = 1  # request line and headers
BODY = 2  # headers done, body being read
DISCARD = 3  # nothing more is parsed: refused, upgraded or last request; input is dropped

# Why reading is paused (a bit each); timeouts do not run while we hold the client back.
PAUSED_PIPELINE = 1
PAUSED_BUFFER = 2
PAUSED_UPSTREAM = 4


# Headers that concern one connection only (RFC 9110 §7.6.1), which a proxy drops.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect")
)
_WATCHED = HOP_BY_HOP | {b"host", b"transfer-encoding", b"content-length"}
_WATCHED_LENGTHS = frozenset(len(name) for name in _WATCHED)


class _StopParsingError(Exception):
    """Raised in a parser callback to stop parsing; the reason is in ``_error``."""


class HttpServerConnection(asyncio.Protocol):
    """The request side of one server connection. Subclasses answer requests."""

    def __init__(self, limits: HttpLimits, connections: set[HttpServerConnection]) -> None:
        self.limits = limits
        self.connections = connections
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.phase = IDLE
        self.last_active = self.loop.time()
        self.head_since = 0.0
        self.paused_by = 0
        self.lingering = False
        """True once the last answer is written and we only drain the client."""
        self.linger_wanted = False
        """The client may still be sending: close by lingering, not at once."""
        self._error: HttpError | None = None
        self.begun = 0
        self._open_head_bytes = 0
        self._linger_until = 0.0
        self._discarded = 0
        self._reset_head()

    def _reset_head(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.hosts = 0
        self.content_length = -1
        self.chunked = False
        self.expect_continue = False
        self.upgrade = False
        self.hop_by_hop = False
        """A hop-by-hop header (Connection, Expect, Upgrade...) is among ``headers``."""
        self.body_bytes = 0

    # what subclasses implement ----------------------------------------------------------------
    def head_complete(self, method: bytes) -> None:
        """The request's headers were read and passed every check."""

    def body_received(self, chunk: bytes) -> None:
        """A piece of the request body (chunk framing removed)."""

    def request_complete(self, keep_alive: bool) -> None:
        """The request was read to its end."""

    def send_error(self, error: HttpError) -> None:
        """Answer ``error`` after any earlier answers, then call ``close_after_answer``."""
        self.write(errors.encode_error(error, close=True))
        self.close_after_answer()

    def busy(self) -> bool:
        """An answer is outstanding (idle timeouts do not apply)."""
        return False

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but provide its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.phase = DISCARD
        self.transport = None

    def eof_received(self) -> bool | None:
        if self.lingering or not self.busy():
            return None  # the transport closes itself
        # The client half-closed after its request (``nc -N``): answer it, read nothing more.
        self.phase = DISCARD
        return True

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.phase == DISCARD:
            self._discarded += len(data)
            if self._discarded > self.limits.linger_bytes and self.transport is not None:
                self.transport.close()
            return
        open_head = self.phase == HEAD
        begun = self.begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if self._error is None:  # a bug of ours in a hook, never the client's fault
                logger.error("HTTP request hook failed: %r", error.__context__ or error)
            self.fail(self._error or errors.internal())
            return
        except httptools.HttpParserUpgrade:
            # The request asking to upgrade was read and is answered as plain HTTP/1.1;
            # whatever follows is not HTTP/1.1 we could read, so it is dropped.
            self.phase = DISCARD
            self.linger_wanted = True
            return
        except httptools.HttpParserError as error:
            self.fail(errors.malformed(str(error) or type(error).__name__))
            return
        if open_head and self.phase == HEAD and begun == self.begun:
            # The whole read belongs to a head that is still open (httptools holds it).
            self._open_head_bytes += len(data)
            if self._open_head_bytes > self.limits.max_header_bytes:
                self.fail(errors.headers_too_large(self.limits.max_header_bytes))

    # httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.begun += 1
        self._reset_head()
        self.phase = HEAD
        self.head_since = self.last_active
        self._open_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(errors.url_too_long(self.limits.max_url_bytes))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > self.limits.max_header_bytes:
            self._stop(errors.headers_too_large(self.limits.max_header_bytes))
        self.headers.append((name, value))
        if len(name) not in _WATCHED_LENGTHS:  # most headers: no lower() needed
            return
        lower = name.lower()
        if lower in HOP_BY_HOP:
            self.hop_by_hop = True
            if lower == b"expect":
                self.expect_continue = value.strip().lower() == b"100-continue"
        elif lower == b"host":
            self.hosts += 1
        elif lower == b"transfer-encoding":
            # Only "chunked", once: a coding we cannot undo (gzip, chunked) would otherwise
            # reach the model as if it were the body.
            if self.chunked or value.strip().lower() != b"chunked":
                self._stop(errors.unsupported_coding(value))
            self.chunked = True
        elif lower == b"content-length":
            self.content_length = int(value) if value.strip().isdigit() else -1

    def on_headers_complete(self) -> None:
        parser = self.parser
        if self.hosts != 1 and (self.hosts > 1 or parser.get_http_version() == "1.1"):
            self._stop(errors.missing_host())
        method = parser.get_method()
        if method == b"CONNECT":
            self._stop(errors.no_tunnels())
        if self.content_length > self.limits.max_body_bytes:
            # Refused before any body byte is read.
            self._stop(errors.body_too_large(self.limits.max_body_bytes))
        # An upgrade needs Connection and Upgrade headers, both hop-by-hop (CONNECT is refused).
        self.upgrade = self.hop_by_hop and bool(parser.should_upgrade())
        self.phase = BODY
        self.head_complete(method)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            self._stop(errors.body_too_large(self.limits.max_body_bytes))
        self.body_received(body)

    def on_message_complete(self) -> None:
        self.phase = IDLE
        keep_alive = bool(self.parser.should_keep_alive()) and not self.upgrade
        if not keep_alive:
            self.phase = DISCARD  # the last request: nothing after it is read
            # After an Upgrade request the client may already send the new protocol.
            self.linger_wanted = self.upgrade
        self.request_complete(keep_alive)

    def _stop(self, error: HttpError) -> None:
        self._error = error
        raise _StopParsingError

    # answering --------------------------------------------------------------------------------
    def fail(self, error: HttpError) -> None:
        """Refuse the request being read: stop parsing, answer, then close by lingering."""
        if self.phase == DISCARD:
            return
        self.phase = DISCARD
        self.linger_wanted = True
        self._resume()
        self.send_error(error)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close_after_answer(self) -> None:
        """The last answer is written: close, by lingering when the client may still send."""
        transport = self.transport
        if transport is None:
            return
        self.phase = DISCARD
        if not self.linger_wanted or not transport.can_write_eof():
            transport.close()
            return
        # nginx's lingering close: the FIN tells the client the answer is complete, and what
        # it still sends is read and dropped, so its kernel gets no reset before it reads.
        self.lingering = True
        self._linger_until = self.loop.time() + self.limits.linger_s
        self._resume()
        transport.write_eof()

    def pause(self, reason: int) -> None:
        if not self.paused_by and self.transport is not None:
            self.transport.pause_reading()
        self.paused_by |= reason

    def resume(self, reason: int) -> None:
        was = self.paused_by
        self.paused_by &= ~reason
        if was and not self.paused_by and self.transport is not None:
            self.last_active = self.loop.time()
            self.transport.resume_reading()

    def _resume(self) -> None:
        if self.paused_by:
            self.resume(self.paused_by)

    # timeouts ---------------------------------------------------------------------------------
    def check_timeouts(self, now: float) -> None:
        """Called by ``sweep`` every ``limits.sweep_every_s``."""
        transport = self.transport
        if transport is None:
            return
        limits = self.limits
        phase = self.phase
        if self.lingering:
            if now > self._linger_until or now - self.last_active > limits.linger_idle_s:
                transport.close()
        elif self.paused_by or phase == DISCARD:
            return
        elif phase == HEAD:
            if now - self.head_since > limits.header_timeout_s:
                self.fail(errors.header_timeout(limits.header_timeout_s))
        elif phase == BODY:
            if now - self.last_active > limits.body_timeout_s:
                self.fail(errors.body_timeout(limits.body_timeout_s))
        elif not self.busy() and now - self.last_active > limits.idle_timeout_s:
            # Nothing outstanding and no byte of a next request: close quietly (as nginx's
            # keepalive_timeout does); a 408 here could be read as the answer to a request
            # the client is sending at this very moment.
            transport.close()


async def sweep(connections: set[HttpServerConnection], every_s: Callable[[], float]) -> None:
    """Forever: apply each connection's timeouts, every ``every_s()`` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every_s())
        now = loop.time()
        for connection in list(connections):
            connection.check_timeouts(now)
