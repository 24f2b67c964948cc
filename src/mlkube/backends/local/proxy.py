"""The load balancer: an HTTP/1.1 reverse proxy on asyncio Protocols with keep-alive pools.

Chosen by measurement (``bench/local.py``, docs/local.md). The hot path does the least that
routing needs: a C parser (httptools) finds where each request and response ends, the request
bytes are forwarded as received, the response bytes are streamed back as they arrive, and
upstream connections are kept alive in a per-replica pool. There is no per-request task and no
header rewriting.

Semantics:
- Weights: a smooth weighted round robin over ready replicas (``weights.py``); a header rule
  sends matching requests to one revision (A/B by header).
- Retry: only when the upstream connection failed before any response byte arrived (connect
  refused, reset, closed) -- then on another replica, at most ``MAX_ATTEMPTS`` times. A request
  whose response had started is never retried.
- Drain: a draining replica gets no new requests; ``in_flight`` tells the controller when the
  ones it has are done.
- No ready replica: requests are held up to ``hold_s`` (scale from zero, or a replica coming
  back), then answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from mlkube.backends.local.decisions.weights import SmoothWeightedPicker

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # a few tries: a stale keep-alive connection, then up to three replicas
EJECT_S = 1.0  # a replica that refused a connection is skipped this long (passive health check)
MAX_IDLE_PER_BACKEND = 256  # more idle upstream connections than this are closed
LATENCY_BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)


@dataclass(slots=True)
class Backend:
    """One replica as the load balancer sees it."""

    name: str
    port: int
    revision: int
    host: str = "127.0.0.1"
    in_flight: int = 0
    draining: bool = False
    ejected_until: float = 0.0
    idle: list[_Upstream] = field(default_factory=list)
    requests: int = 0
    errors: int = 0


@dataclass(slots=True)
class Stats:
    """Counters of everything that went through one load balancer."""

    requests: int = 0
    errors: int = 0
    failed: int = 0
    """Requests the load balancer itself answered with 502/503."""
    retries: int = 0
    held: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1


def _error_response(status: int, reason: bytes, message: str, *, retry_after: int = 0) -> bytes:
    body = json.dumps({"error": {"type": "unavailable", "message": message}}).encode()
    extra = b"Retry-After: %d\r\n" % retry_after if retry_after else b""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (status, reason, len(body), extra)
        + body
    )


class Router:
    """The replicas one service spreads requests over, and how."""

    def __init__(self, name: str, *, hold_s: float, on_demand: Callable[[], None] | None = None):
        self.name = name
        self.hold_s = hold_s
        self.on_demand = on_demand
        self.backends: dict[str, Backend] = {}
        self.stats = Stats()
        self._picker = SmoothWeightedPicker({})
        self._header_picker: SmoothWeightedPicker | None = None
        self.header: bytes | None = None
        self.header_value: bytes | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.holding = 0

    def configure(
        self,
        backends: list[Backend],
        weights: dict[str, float],
        header_rule: tuple[str, str | None, set[str]] | None = None,
    ) -> None:
        """Set the routable replicas. ``header_rule`` = (header, value, replica names)."""
        current = {b.name: b for b in backends}
        for name, old in list(self.backends.items()):
            if name not in current:
                for conn in old.idle:
                    conn.close()
                old.idle.clear()
        for backend in backends:
            existing = self.backends.get(backend.name)
            if existing is not None and existing.port == backend.port:
                existing.draining = backend.draining
                current[backend.name] = existing
        self.backends = current
        routable = {
            n: w for n, w in weights.items() if n in current and not current[n].draining and w > 0
        }
        if header_rule is not None:
            header, value, names = header_rule
            self.header = header.lower().encode()
            self.header_value = value.encode() if value is not None else None
            # B's replicas take header traffic whatever their weight: an A/B test by header
            # gives B no share of the other requests (weight 0), and they must still answer.
            live = {n for n, b in current.items() if not b.draining}
            self._header_picker = SmoothWeightedPicker({n: 1.0 for n in names if n in live})
            routable = {n: w for n, w in routable.items() if n not in names}
        else:
            self.header = None
            self._header_picker = None
        self._picker = SmoothWeightedPicker(routable)
        if self._picker.names or (self._header_picker and self._header_picker.names):
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def drain(self, name: str) -> None:
        """Stop routing new requests to ``name``."""
        backend = self.backends.get(name)
        if backend is not None:
            backend.draining = True
            weights = {n: 1.0 for n in self._picker.names if n != name}
            self._picker = SmoothWeightedPicker(weights)

    def pick(self, tried: frozenset[str], header_match: bool, now: float) -> Backend | None:
        picker = self._header_picker if header_match and self._header_picker else self._picker
        exclude = tried
        for _ in range(len(picker.names) + 1):
            name = picker.pick(exclude)
            if name is None:
                return None
            backend = self.backends[name]
            if backend.ejected_until <= now and not backend.draining:
                return backend
            exclude = exclude | {name}
        return None

    @property
    def has_routes(self) -> bool:
        return bool(self._picker.names) or bool(self._header_picker and self._header_picker.names)

    async def wait_for_route(self) -> bool:
        """Hold a request until some replica is routable; False after ``hold_s``."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.holding += 1
        self.stats.held += 1
        if self.on_demand is not None:
            self.on_demand()
        try:
            await asyncio.wait_for(waiter, self.hold_s)
        except TimeoutError:
            return False
        finally:
            self.holding -= 1
        return True

    def latency_quantile_ms(self, q: float) -> float | None:
        counts = self.stats.latency_counts
        total = sum(counts)
        if total == 0:
            return None
        rank, seen = q * total, 0
        for index, count in enumerate(counts):
            seen += count
            if seen >= rank:
                return float(LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)])
        return float(LATENCY_BUCKETS_MS[-1])


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to a replica; carries one request at a time."""

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.client: _Client | None = None
        self.got_bytes = False
        self.closed = False
        self.reused = False
        self.status = 0
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, client: _Client, data: bytes) -> None:
        self.client = client
        self.got_bytes = False
        self.status = 0
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # an unsolicited response on an idle connection: drop it
            self.close()
            return
        self.got_bytes = True
        client.write(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()
            client.upstream_failed(self, broken=True)

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_message_complete(self) -> None:
        client = self.client
        self.client = None
        keep = self._parser.should_keep_alive()
        backend = self.backend
        if keep and not self.closed and len(backend.idle) < MAX_IDLE_PER_BACKEND:
            self.reused = True
            backend.idle.append(self)
        else:
            self.close()
        if client is not None:
            client.response_done(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.backend.idle.remove(self)
        client = self.client
        self.client = None
        if client is not None:
            client.upstream_failed(self, broken=self.got_bytes)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class _Request:
    """One parsed request; ``raw`` is its exact bytes when they could be kept (no pipelining)."""

    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    header_match: bool
    keep_alive: bool
    raw: bytes | None = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [b"%s %s HTTP/1.1" % (self.method, self.url)]
        lines.extend(
            name + b": " + value
            for name, value in self.headers
            if name.lower() not in (b"transfer-encoding", b"content-length")
        )
        lines.append(b"Content-Length: %d" % len(self.body))
        self.raw = b"\r\n".join(lines) + b"\r\n\r\n" + self.body
        return self.raw


class _Client(asyncio.Protocol):
    """One client connection: parse request boundaries, forward, stream the answer back."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._buffer = bytearray()
        self._queue: deque[_Request] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._url = b""
        self._body = bytearray()
        self._match = False
        self._begun = 0
        self._completed = 0
        self._completed_in_feed = 0
        self._mixed = False
        self._busy = False
        self._request: _Request | None = None
        self._data = b""
        self._tried: frozenset[str] = frozenset()
        self._attempts = 0
        self._started = 0.0
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)

    # httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._begun += 1
        self._headers = []
        self._url = b""
        self._body = bytearray()
        self._match = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        header = self.router.header
        if header is not None and name.lower() == header:
            wanted = self.router.header_value
            self._match = wanted is None or value == wanted

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self._completed += 1
        self._completed_in_feed += 1
        self._queue.append(
            _Request(
                self._parser.get_method(),
                self._url,
                self._headers,
                bytes(self._body),
                self._match,
                self._parser.should_keep_alive(),
            )
        )

    # request flow --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._completed_in_feed = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply_and_close(_error_response(501, b"Not Implemented", "upgrade"))
            return
        except httptools.HttpParserError:
            self._reply_and_close(_error_response(400, b"Bad Request", "malformed HTTP request"))
            return
        if self._begun == self._completed:
            # The buffer ends on a request boundary. If it holds exactly one request, its raw
            # bytes are forwarded as they are (the fast path); otherwise requests are rebuilt.
            if self._completed_in_feed == 1 and not self._mixed:
                self._queue[-1].raw = bytes(self._buffer)
            self._buffer.clear()
            self._mixed = False
        elif self._completed_in_feed:
            self._mixed = True
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if not self._queue or self._closed:
            return
        request = self._queue.popleft()
        self._busy = True
        self._request = request
        self._data = request.encode()
        self._tried = frozenset()
        self._attempts = 0
        self._started = self.loop.time()
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._request
        if request is None:
            return
        backend = self.router.pick(self._tried, request.header_match, self.loop.time())
        if backend is None:
            self.loop.create_task(self._hold())
            return
        self._attempts += 1
        backend.in_flight += 1
        while backend.idle:
            upstream = backend.idle.pop()
            if not upstream.closed:
                upstream.send(self, self._data)
                return
        self.loop.create_task(self._connect(backend))

    async def _hold(self) -> None:
        if await self.router.wait_for_route():
            self._tried = frozenset()
            self._dispatch()
        else:
            self._finish_with(
                _error_response(503, b"Service Unavailable", "no ready replica", retry_after=1)
            )

    async def _connect(self, backend: Backend) -> None:
        try:
            _, upstream = await self.loop.create_connection(
                lambda: _Upstream(backend, self.loop), backend.host, backend.port
            )
        except OSError:
            backend.ejected_until = self.loop.time() + EJECT_S
            self._retry(backend, same_ok=False)
            return
        upstream.send(self, self._data)

    def _retry(self, backend: Backend, *, same_ok: bool) -> None:
        backend.in_flight -= 1
        if not same_ok:
            self._tried = self._tried | {backend.name}
        if self._attempts >= MAX_ATTEMPTS:
            self._finish_with(_error_response(502, b"Bad Gateway", "no replica answered"))
            return
        self.router.stats.retries += 1
        self._dispatch()

    def upstream_failed(self, upstream: _Upstream, *, broken: bool) -> None:
        """The upstream connection died; retry unless part of a response was sent."""
        if broken:
            upstream.backend.in_flight -= 1
            self.router.stats.failed += 1
            self._reply_and_close(b"")
            return
        # No response byte came back: the request may be retried. A reused keep-alive
        # connection may simply have been closed by the replica, so that replica may be tried
        # again on a fresh connection; connect errors exclude it.
        self._retry(upstream.backend, same_ok=upstream.reused)

    def response_done(self, upstream: _Upstream) -> None:
        backend = upstream.backend
        backend.in_flight -= 1
        backend.requests += 1
        if upstream.status >= 500:
            backend.errors += 1
        self.router.stats.observe(upstream.status, (self.loop.time() - self._started) * 1000.0)
        self._after_response()

    def _finish_with(self, response: bytes) -> None:
        self.router.stats.failed += 1
        self.router.stats.observe(int(response[9:12]), (self.loop.time() - self._started) * 1e3)
        self.write(response)
        self._after_response()

    def _after_response(self) -> None:
        self._busy = False
        request, self._request = self._request, None
        if request is not None and not request.keep_alive:
            self._reply_and_close(b"")
            return
        self._next()

    def _reply_and_close(self, response: bytes) -> None:
        if response:
            self.write(response)
        if self.transport is not None:
            self.transport.close()
        self._closed = True


async def serve(router: Router, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` for ``router``; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Client(router), host, port, reuse_address=True, backlog=1024
    )
