"""The load balancer: an HTTP/1.1 reverse proxy on asyncio Protocols with keep-alive pools.

Chosen by measurement (``bench/local.py``, docs/local.md). Requests are read with the HTTP
core the replicas use (``mlkube.serving.httpcore``: the same limits, timeouts, refusals and
error bodies), rebuilt with canonical framing (hop-by-hop headers dropped, the body as
``Content-Length`` or re-chunked), and streamed to a replica over a per-replica keep-alive
pool; the response bytes are streamed back as they arrive. There is no per-request task.

Semantics:
- Weights: a smooth weighted round robin over ready replicas (``weights.py``); a header rule
  sends matching requests to one revision (A/B by header).
- Memory: request and response bodies stream through bounded buffers; a client that sends
  faster than the replica reads (or reads slower than it answers) is paused, not buffered.
- Retry: when nothing of the request reached a replica (connect refused or timed out), or
  for GET/HEAD whose whole request is still at hand, when no response byte came back; on
  another replica, at most ``MAX_ATTEMPTS`` tries, while the retry budget allows (about one
  retry per five requests). A POST its replica died reading waits for the controller's word
  (``Router.replica_exited``): killed from outside → retried; OOMKilled, crashed, or no word
  within ``verdict_wait_s`` → 502. So a query of death kills one replica, and a SIGKILL fails
  no request.
- Timeouts: connecting (``connect_timeout_s``) and waiting for the replica
  (``upstream_timeout_s`` of silence) → 504. A replica that times out, resets or refuses is
  ejected (skipped) for a while, longer when it keeps failing (passive outlier detection).
- Drain: a draining replica gets no new requests; ``in_flight`` tells the controller when the
  ones it has are done.
- No ready replica: requests are held up to ``hold_s`` (scale from zero, a replica coming
  back, an ejection ending), then answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from mlkube.backends.local.decisions.weights import SmoothWeightedPicker
from mlkube.serving.httpcore import errors
from mlkube.serving.httpcore.connection import (
    DISCARD,
    HOP_BY_HOP,
    IDLE,
    PAUSED_BUFFER,
    PAUSED_PIPELINE,
    PAUSED_UPSTREAM,
    HttpServerConnection,
)
from mlkube.serving.httpcore.errors import HttpError
from mlkube.serving.httpcore.limits import HttpLimits

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # a few tries: up to four replicas
EJECT_S = 1.0  # first ejection of a failing replica; doubles while it keeps failing
MAX_EJECT_S = 30.0
MAX_IDLE_PER_BACKEND = 256  # more idle upstream connections than this are closed
# Idle pooled connections are closed before the replica's own idle timeout (60 s) can close
# them under a request being sent, which could then not be retried safely.
POOL_IDLE_S = 30.0
MAX_BUFFERED = 256 * 1024  # request bytes held per client connection before it is paused
MAX_PIPELINED = 32
REPLAY_MAX = 256 * 1024  # a request is kept for a retry when it is at most this big
# How long a POST whose replica died reading it waits for the controller to say why it died.
VERDICT_WAIT_S = 5.0
VERDICT_MEMORY_S = 30.0
UPSTREAM_GRACE_S = 5.0  # the balancer waits this much longer than the replica's own timeout
LATENCY_BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_IDEMPOTENT = frozenset((b"GET", b"HEAD"))


@dataclass(slots=True)
class Backend:
    """One replica as the load balancer sees it."""

    name: str
    port: int
    revision: int
    host: str = "127.0.0.1"
    grpc_port: int = 0
    """The replica's gRPC port (0: none); the balancer's ``tcp`` listener uses it."""
    in_flight: int = 0
    draining: bool = False
    ejected_until: float = 0.0
    idle: list[_Upstream] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    failures: int = 0
    """Consecutive failures (timeouts, resets, refusals); a success resets it."""
    ejections: int = 0


@dataclass(slots=True)
class Stats:
    """Counters of everything that went through one load balancer."""

    requests: int = 0
    errors: int = 0
    failed: int = 0
    """Requests the load balancer itself answered with 502/503/504."""
    retries: int = 0
    held: int = 0
    timeouts: int = 0
    ejections: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1


class RetryBudget:
    """Retries allowed as a share of requests (Finagle's and Envoy's retry budgets).

    Each request deposits ``ratio`` of a retry, time adds ``reserve_per_s`` (so a quiet
    service can still retry), and the balance is capped: a failing replica set cannot turn
    every request into ``MAX_ATTEMPTS`` requests.
    """

    def __init__(self, ratio: float = 0.2, reserve_per_s: float = 5.0, cap: float = 20.0):
        self.ratio = ratio
        self.reserve_per_s = reserve_per_s
        self.cap = cap
        self.balance = cap
        self._at = 0.0

    def deposit(self) -> None:
        self.balance = min(self.cap, self.balance + self.ratio)

    def withdraw(self, now: float) -> bool:
        if self._at:
            self.balance = min(self.cap, self.balance + (now - self._at) * self.reserve_per_s)
        self._at = now
        if self.balance < 1.0:
            return False
        self.balance -= 1.0
        return True


class Router:
    """The replicas one service spreads requests over, and how."""

    def __init__(self, name: str, *, hold_s: float, on_demand: Callable[[], None] | None = None):
        self.name = name
        self.hold_s = hold_s
        self.on_demand = on_demand
        self.backends: dict[str, Backend] = {}
        self.stats = Stats()
        self.limits = HttpLimits()
        """Limits on client requests; ``set_server_limits`` applies the spec's."""
        self.connect_timeout_s = 5.0
        self.upstream_timeout_s = 30.0 + UPSTREAM_GRACE_S
        self.budget = RetryBudget()
        self.verdict_wait_s = VERDICT_WAIT_S
        self._parked: dict[str, list[tuple[_Client, _Exchange]]] = {}
        self._verdicts: dict[str, tuple[bool, float]] = {}
        self._picker = SmoothWeightedPicker({})
        self._header_picker: SmoothWeightedPicker | None = None
        self.header: bytes | None = None
        self.header_value: bytes | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.holding = 0

    def set_server_limits(self, *, max_body_bytes: int, request_timeout_s: float) -> None:
        """Apply a spec's ``server.maxRequestSize`` and ``server.requestTimeout``: bodies over
        the size get 413 here, and a replica silent for longer than its own timeout (plus a
        grace) gets 504 and is ejected."""
        self.limits = dataclasses.replace(self.limits, max_body_bytes=max_body_bytes)
        self.upstream_timeout_s = request_timeout_s + UPSTREAM_GRACE_S

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
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def replica_exited(self, name: str, *, caused_by_request: bool) -> None:
        """The controller saw replica ``name`` die, and why. Requests it died reading wait for
        this: retried elsewhere when it was killed from outside (SIGKILL, SIGTERM), answered
        502 when the death may be theirs (OOMKilled, a crash): a query of death kills one."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # no loop runs: nothing can be parked here, nothing to tell
            return
        self._verdicts[name] = (caused_by_request, now)
        for old, (_, at) in list(self._verdicts.items()):
            if now - at > VERDICT_MEMORY_S:
                del self._verdicts[old]
        for client, exchange in self._parked.pop(name, []):
            client.verdict(exchange, caused_by_request=caused_by_request)

    def verdict(self, name: str, now: float) -> bool | None:
        """Whether the last death of ``name`` may have been caused by a request; None: unknown."""
        known = self._verdicts.get(name)
        if known is None or now - known[1] > VERDICT_MEMORY_S:
            return None
        return known[0]

    @property
    def awaiting_verdict(self) -> set[str]:
        """Replicas some request waits to hear about (``replica_exited``)."""
        return set(self._parked)

    def park(self, name: str, client: _Client, exchange: _Exchange) -> None:
        self._parked.setdefault(name, []).append((client, exchange))

    def unpark(self, name: str, exchange: _Exchange) -> None:
        parked = self._parked.get(name, [])
        self._parked[name] = [(c, e) for c, e in parked if e is not exchange]
        if not self._parked[name]:
            del self._parked[name]

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
        # Each skipped replica joins ``exclude``, so this ends once every name was offered.
        name = picker.pick(exclude)
        while name is not None:
            backend = self.backends[name]
            if backend.ejected_until <= now and not backend.draining:
                return backend
            exclude = exclude | {name}
            name = picker.pick(exclude)
        return None

    def eject(self, backend: Backend, now: float) -> None:
        """Skip a replica that failed, for longer each time it fails again."""
        backend.failures += 1
        backend.ejections += 1
        self.stats.ejections += 1
        backend.ejected_until = now + min(MAX_EJECT_S, EJECT_S * 2 ** (backend.failures - 1))
        # Requests it queued before failing may have been holding for another replica.
        self.loop_call_at(backend.ejected_until, self._wake)

    def loop_call_at(self, when: float, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is held
            asyncio.get_running_loop().call_at(when, callback)

    @property
    def has_routes(self) -> bool:
        return bool(self._picker.names) or bool(self._header_picker and self._header_picker.names)

    async def wait_for_route(self, timeout_s: float) -> None:
        """Wait until the routes change or an ejection ends, at most ``timeout_s``."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout_s)

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


class _HeadDoneError(Exception):
    """Stops the response parser at the end of the head of a response to HEAD."""


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to a replica; carries one request at a time."""

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.client: _Client | None = None
        self.responded = False
        self.closed = False
        self.is_head = False
        self.status = 0
        self.last_io = 0.0
        self.full = False
        self.reads_held = False
        self._head_keep = False
        self._head_done = False
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, client: _Client, is_head: bool, now: float) -> None:
        self.client = client
        self.responded = False
        self.is_head = is_head
        self.status = 0
        self.last_io = now

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def hold_reads(self, hold: bool) -> None:
        """Stop (or restart) reading the answer while the client reads slower."""
        if hold != self.reads_held and self.transport is not None:
            self.reads_held = hold
            if hold:
                self.transport.pause_reading()
            else:
                self.last_io = self.loop.time()
                self.transport.resume_reading()

    # the request side backs up: hold the client until the replica reads
    def pause_writing(self) -> None:
        self.full = True
        if self.client is not None:
            self.client.pause(PAUSED_UPSTREAM)

    def resume_writing(self) -> None:
        self.full = False
        self.last_io = self.loop.time()
        if self.client is not None:
            self.client.upstream_ready(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # an unsolicited response on an idle connection: drop it
            self.close()
            return
        self.responded = True
        self.last_io = self.loop.time()
        client.write(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self._head_done:
                raise  # a bug of ours in a callback
            self._head_done = False
            self._parser = httptools.HttpResponseParser(self)
            self._complete(client, self._head_keep)
        except httptools.HttpParserError:
            self.close()
            self.client = None
            client.upstream_failed(self, timeout=False)

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.is_head and self.status >= 200:
            # A response to HEAD has no body whatever its Content-Length says; httptools
            # cannot be told the request method, so the message ends here.
            self._head_keep = bool(self._parser.should_keep_alive())
            self._head_done = True
            raise _HeadDoneError

    def on_message_complete(self) -> None:
        if self.status < 200:  # an interim response (100 Continue): the answer follows
            return
        client = self.client
        if client is not None:
            self._complete(client, bool(self._parser.should_keep_alive()))

    def _complete(self, client: _Client, keep: bool) -> None:
        self.client = None
        client.response_done(self, keep and not self.closed)

    def to_pool(self) -> None:
        backend = self.backend
        if self.reads_held:
            self.hold_reads(False)
        if not self.closed and not self.full and len(backend.idle) < MAX_IDLE_PER_BACKEND:
            backend.idle.append(self)
        else:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.backend.idle.remove(self)
        client = self.client
        self.client = None
        if client is not None:
            client.upstream_failed(self, timeout=False)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Exchange:
    """One request on a client connection, from its headers to the end of its response."""

    # Class-level defaults: most fields keep them, and one exchange per request is made on
    # the hot path (setting two dozen slots cost more than the rest of the bookkeeping).
    head: bytes | None = None
    raw_ok = False
    """The request may be forwarded as the bytes it came in (no hop-by-hop header)."""
    buffered = 0
    complete = False
    keep_alive = True
    error: HttpError | None = None
    written = False
    body_sent = 0
    started = 0.0
    tried: frozenset[str] = frozenset()
    attempts = 0
    backend: Backend | None = None
    upstream: _Upstream | None = None

    def __init__(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        header_match: bool,
        expect: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.is_head = method == b"HEAD"
        self.header_match = header_match
        self.expect_continue = expect
        self.parts: deque[bytes] = deque()
        """Request bytes (after the head) read from the client and not yet sent."""
        self.idempotent = method in _IDEMPOTENT
        self.replay: list[bytes] | None = []
        """Everything sent after the head, kept for a retry (up to REPLAY_MAX)."""

    def head_bytes(self) -> bytes:
        """The head sent to the replica: as read, less hop-by-hop headers."""
        if self.head is None:
            lines = b"".join([b"%s: %s\r\n" % pair for pair in self.headers])
            self.head = b"%s %s HTTP/1.1\r\n%s\r\n" % (self.method, self.url, lines)
        return self.head


def _error_exchange(error: HttpError) -> _Exchange:
    exchange = _Exchange(b"", b"", [], False, False)
    exchange.error = error
    exchange.complete = True
    exchange.keep_alive = False
    return exchange


class _Client(HttpServerConnection):
    """One client connection: read requests, forward each, stream its answer back."""

    def __init__(self, router: Router, connections: set[HttpServerConnection]) -> None:
        super().__init__(router.limits, connections)
        self.router = router
        self.active: _Exchange | None = None
        self.queue: deque[_Exchange] = deque()
        self.receiving: _Exchange | None = None
        self.buffered = 0
        self.writes_paused_since = 0.0
        # While one read is parsed, what goes to the replica is gathered and written once:
        # a small request's head and body cost one send, not two.
        self._feeding = False
        self._out: list[bytes] = []
        self._out_to: _Upstream | None = None
        self._out_head: _Exchange | None = None

    def busy(self) -> bool:
        return self.active is not None

    def data_received(self, data: bytes) -> None:
        self._feeding = True
        at_boundary = self.phase == IDLE
        begun = self.begun
        try:
            super().data_received(data)
        finally:
            self._feeding = False
            upstream = self._out_to
            if upstream is not None:
                # Sending counts as activity: a long upload is not a silent replica.
                upstream.last_io = self.last_active
                self._flush_out(upstream, data, at_boundary and self.begun == begun + 1)

    def _flush_out(self, upstream: _Upstream, data: bytes, one_request: bool) -> None:
        out = self._out
        head_of = self._out_head
        self._out = []
        self._out_to = None
        self._out_head = None
        if (
            one_request
            and head_of is not None
            and head_of.raw_ok
            and head_of.complete
            and self.phase == IDLE
        ):
            upstream.write(data)  # the read was exactly this one request: sent as it came
            return
        if head_of is not None:
            out.insert(0, head_of.head_bytes())
        if out:
            upstream.write(out[0] if len(out) == 1 else b"".join(out))

    def _send(self, upstream: _Upstream, data: bytes) -> None:
        if self._feeding and (self._out_to is upstream or self._out_to is None):
            self._out_to = upstream
            self._out.append(data)
        else:
            upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        active, self.active = self.active, None
        self.queue.clear()
        if active is not None:
            self._abandon(active)

    # response side backpressure: stop reading the replica while the client is slow
    def pause_writing(self) -> None:
        self.writes_paused_since = self.loop.time()
        upstream = self.active.upstream if self.active else None
        if upstream is not None:
            upstream.hold_reads(True)

    def resume_writing(self) -> None:
        self.writes_paused_since = 0.0
        upstream = self.active.upstream if self.active else None
        if upstream is not None:
            upstream.hold_reads(False)

    # the core's hooks -------------------------------------------------------------------------
    def head_complete(self, method: bytes) -> None:
        # The head is forwarded as read, less hop-by-hop headers; the framing headers stay
        # (the body is sent as it came: Content-Length, or chunked re-chunked).
        router = self.router
        headers = self.headers
        if self.hop_by_hop:
            headers = [h for h in headers if h[0].lower() not in HOP_BY_HOP]
        if self.hosts == 0:  # HTTP/1.0 may leave it out; the replica speaks HTTP/1.1
            headers.append((b"host", b"127.0.0.1"))
        match = False
        header = router.header
        if header is not None:
            wanted = router.header_value
            for name, value in headers:
                if name.lower() == header:
                    match = wanted is None or value == wanted
        expect = self.expect_continue and (self.chunked or self.content_length > 0)
        exchange = _Exchange(method, self.url, headers, match, expect)
        exchange.raw_ok = not self.hop_by_hop and self.hosts == 1
        self.receiving = exchange
        if self.active is None:
            self._start(exchange)
        else:
            self.queue.append(exchange)
            if len(self.queue) >= MAX_PIPELINED:
                self.pause(PAUSED_PIPELINE)

    def body_received(self, chunk: bytes) -> None:
        exchange = self.receiving
        if exchange is None:
            return
        if self.chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        self._push(exchange, chunk)

    def request_complete(self, keep_alive: bool) -> None:
        exchange = self.receiving
        self.receiving = None
        if exchange is None:
            return
        exchange.keep_alive = keep_alive
        if self.chunked:
            self._push(exchange, b"0\r\n\r\n")
        exchange.complete = True

    def send_error(self, error: HttpError) -> None:
        receiving, self.receiving = self.receiving, None
        if receiving is not None and receiving is self.active:
            if receiving.upstream is not None and receiving.upstream.responded:
                self._close_now()  # its answer already started; nothing more can be said
                return
            self._abandon(receiving)
            self.active = None
        elif receiving is not None:
            with contextlib.suppress(ValueError):
                self.queue.remove(receiving)
        exchange = _error_exchange(error)
        if self.active is None:
            self._start(exchange)
        else:
            self.queue.append(exchange)

    def check_timeouts(self, now: float) -> None:
        super().check_timeouts(now)
        if self.transport is None:
            return
        if self.writes_paused_since and now - self.writes_paused_since > self.limits.body_timeout_s:
            self._close_now()  # a client that stopped reading its answer
            return
        exchange = self.active
        upstream = exchange.upstream if exchange is not None else None
        if exchange is None or upstream is None or self.writes_paused_since:
            return
        timeout = self.router.upstream_timeout_s
        if not upstream.full and now - upstream.last_io > timeout:
            upstream.client = None
            upstream.close()
            self.router.stats.timeouts += 1
            self.upstream_failed(upstream, timeout=True)

    # forwarding -------------------------------------------------------------------------------
    def _push(self, exchange: _Exchange, data: bytes) -> None:
        replay = exchange.replay
        if replay is not None:
            if exchange.body_sent + exchange.buffered + len(data) > REPLAY_MAX:
                exchange.replay = None
            else:
                replay.append(data)
        upstream = exchange.upstream
        if upstream is not None and not upstream.full:
            self._send(upstream, data)
            upstream.last_io = self.last_active
            exchange.written = True
            exchange.body_sent += len(data)
            return
        exchange.parts.append(data)
        exchange.buffered += len(data)
        self.buffered += len(data)
        if self.buffered > MAX_BUFFERED:
            self.pause(PAUSED_BUFFER)

    def _start(self, exchange: _Exchange) -> None:
        self.active = exchange
        exchange.started = self.last_active
        if exchange.error is not None:
            self._answer_locally(exchange, exchange.error)
            return
        if exchange.expect_continue and exchange is self.receiving and not exchange.buffered:
            self.write(CONTINUE)  # our turn: the client may send its body now
        self._dispatch(exchange, self.last_active)

    def _dispatch(self, exchange: _Exchange, now: float = 0.0) -> None:
        router = self.router
        now = now or self.loop.time()
        backend = router.pick(exchange.tried, exchange.header_match, now)
        if backend is None:
            self.loop.create_task(self._hold(exchange))
            return
        exchange.attempts += 1
        exchange.backend = backend
        backend.in_flight += 1
        idle = backend.idle
        while idle:
            upstream = idle.pop()
            if not upstream.closed:
                self._attach(exchange, upstream, now)
                return
        self.loop.create_task(self._connect(exchange, backend))

    async def _hold(self, exchange: _Exchange) -> None:
        router = self.router
        router.holding += 1
        router.stats.held += 1
        if router.on_demand is not None:
            router.on_demand()
        deadline = self.loop.time() + router.hold_s
        try:
            while True:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    break
                await router.wait_for_route(remaining)
                if self.active is not exchange:
                    return  # the client left
                exchange.tried = frozenset()
                if router.pick(exchange.tried, exchange.header_match, self.loop.time()):
                    self._dispatch(exchange)
                    return
        finally:
            router.holding -= 1
        self._answer_locally(exchange, errors.no_ready_replica())

    async def _connect(self, exchange: _Exchange, backend: Backend) -> None:
        router = self.router
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Upstream(backend, self.loop), backend.host, backend.port
                ),
                router.connect_timeout_s,
            )
        except (OSError, TimeoutError):
            if self.active is exchange and exchange.backend is backend:
                self._failed(exchange, timeout=False)
            return
        if self.active is not exchange or exchange.backend is not backend:
            upstream.to_pool()  # the client left meanwhile; the connection is still good
            return
        self._attach(exchange, upstream, self.loop.time())

    def _attach(self, exchange: _Exchange, upstream: _Upstream, now: float) -> None:
        exchange.upstream = upstream
        upstream.start(self, exchange.is_head, now)
        if self.writes_paused_since:
            upstream.hold_reads(True)
        if self._feeding and self._out_to is None and exchange is self.receiving:
            # Sent when this read is parsed: the read itself when it held just this request.
            self._out_to = upstream
            self._out_head = exchange
        else:
            self._send(upstream, exchange.head_bytes())
        exchange.written = True
        parts = exchange.parts
        while parts:
            data = parts.popleft()
            self._send(upstream, data)
            exchange.body_sent += len(data)
        self.buffered -= exchange.buffered
        exchange.buffered = 0
        if self.paused_by & PAUSED_BUFFER and self.buffered <= MAX_BUFFERED:
            self.resume(PAUSED_BUFFER)

    def upstream_ready(self, upstream: _Upstream) -> None:
        """The replica read what was written; send what waited and read the client again."""
        exchange = self.active
        if exchange is not None and exchange.upstream is upstream:
            self._attach_parts(exchange, upstream)
        self.resume(PAUSED_UPSTREAM)

    def _attach_parts(self, exchange: _Exchange, upstream: _Upstream) -> None:
        parts = exchange.parts
        while parts and not upstream.full:
            data = parts.popleft()
            upstream.write(data)
            exchange.body_sent += len(data)
            exchange.buffered -= len(data)
            self.buffered -= len(data)
        if self.paused_by & PAUSED_BUFFER and self.buffered <= MAX_BUFFERED:
            self.resume(PAUSED_BUFFER)

    # outcomes ---------------------------------------------------------------------------------
    def response_done(self, upstream: _Upstream, keep: bool) -> None:
        exchange = self.active
        if exchange is None or exchange.upstream is not upstream:
            upstream.close()
            return
        router = self.router
        backend = upstream.backend
        backend.requests += 1
        backend.failures = 0
        backend.in_flight -= 1
        status = upstream.status
        if status >= 500:
            backend.errors += 1
        budget = router.budget
        if budget.balance < budget.cap:
            budget.deposit()
        router.stats.observe(status, (upstream.last_io - exchange.started) * 1000.0)
        if not exchange.complete:
            # Answered before the request ended (a replica's 413): that connection expects
            # the rest, and so would this one; both close, the client's by lingering.
            keep = False
            self.receiving = None
            self.phase = DISCARD
            self.linger_wanted = True
        exchange.upstream = None
        exchange.backend = None
        if exchange.buffered:
            self._drop_parts(exchange)
        if self.paused_by & PAUSED_UPSTREAM:
            self.resume(PAUSED_UPSTREAM)
        if keep:
            upstream.to_pool()
        else:
            upstream.close()
        self._next(exchange.keep_alive and keep, upstream.last_io)

    def upstream_failed(self, upstream: _Upstream, *, timeout: bool) -> None:
        exchange = self.active
        if exchange is None or exchange.upstream is not upstream:
            return
        exchange.upstream = None
        if upstream.responded:
            # Part of an answer went out: the client sees it cut, nothing is sent twice.
            self._release(exchange)
            self.router.stats.failed += 1
            self._close_now()
            return
        self._failed(exchange, timeout=timeout)

    def _failed(self, exchange: _Exchange, *, timeout: bool) -> None:
        """No answer from the replica tried: eject it; retry if that is safe, else 502/504."""
        router = self.router
        backend = exchange.backend
        now = self.loop.time()
        if backend is not None:
            router.eject(backend, now)
            exchange.tried = exchange.tried | {backend.name}
        self._release(exchange)
        replay = exchange.replay
        whole = replay is not None and exchange.complete
        safe = not exchange.written or (exchange.idempotent and whole)
        if not safe and not timeout and whole and backend is not None and router.verdict_wait_s:
            # Did the replica die of this request, or was it killed from outside? Only the
            # controller knows (OOMKilled or not): wait for its word, a bounded time.
            caused = router.verdict(backend.name, now)
            if caused is None:
                router.park(backend.name, self, exchange)
                self.loop.call_later(
                    router.verdict_wait_s, self._no_verdict, backend.name, exchange
                )
                return
            safe = not caused
        if safe:
            self._retry(exchange, now)
            return
        self._give_up(exchange, timeout=timeout)

    def verdict(self, exchange: _Exchange, *, caused_by_request: bool) -> None:
        """The controller's word on the replica ``exchange`` was waiting about."""
        if self.active is not exchange:
            return
        if caused_by_request:
            self._give_up(exchange, timeout=False)
        else:
            self._retry(exchange, self.loop.time())

    def _no_verdict(self, name: str, exchange: _Exchange) -> None:
        self.router.unpark(name, exchange)
        if self.active is exchange:
            self._give_up(exchange, timeout=False)

    def _retry(self, exchange: _Exchange, now: float) -> None:
        router = self.router
        replay = exchange.replay
        if (
            exchange.attempts < MAX_ATTEMPTS
            and self.transport is not None
            and router.budget.withdraw(now)
        ):
            if exchange.written and replay is not None:
                exchange.parts = deque(replay)
                self.buffered += sum(map(len, replay)) - exchange.buffered
                exchange.buffered = sum(map(len, replay))
                exchange.body_sent = 0
            exchange.written = False
            router.stats.retries += 1
            self._dispatch(exchange)
            return
        self._give_up(exchange, timeout=False)

    def _give_up(self, exchange: _Exchange, *, timeout: bool) -> None:
        router = self.router
        if timeout:
            error = errors.upstream_timeout(router.upstream_timeout_s)
        elif exchange.attempts > 1 and not exchange.written:
            error = errors.no_replica_answered()
        else:
            error = errors.upstream_closed()
        self._answer_locally(exchange, error)

    def _answer_locally(self, exchange: _Exchange, error: HttpError) -> None:
        """The balancer answers ``exchange`` itself (a 5xx, or a refusal of the request)."""
        if self.active is not exchange:
            return
        if error.status >= 500:
            self.router.stats.failed += 1
            self.router.stats.observe(error.status, (self.loop.time() - exchange.started) * 1e3)
        if not exchange.complete:
            # The client is still sending a body nobody will read.
            self.receiving = None
            self.phase = DISCARD
            self.linger_wanted = True
        keep = exchange.keep_alive and exchange.complete
        self.write(errors.encode_error(error, close=not keep))
        self._abandon(exchange)
        self._next(keep)

    def _release(self, exchange: _Exchange) -> None:
        """Forget the replica ``exchange`` was on: its in-flight count, its connection (closed:
        it carries a request that will not finish), the client held back for it."""
        backend, exchange.backend = exchange.backend, None
        if backend is not None:
            backend.in_flight -= 1
        upstream, exchange.upstream = exchange.upstream, None
        if upstream is not None:
            upstream.client = None
            upstream.close()
            if self._out_to is upstream:
                self._out.clear()
                self._out_to = None
                self._out_head = None
        if self.paused_by & PAUSED_UPSTREAM:
            self.resume(PAUSED_UPSTREAM)

    def _drop_parts(self, exchange: _Exchange) -> None:
        self.buffered -= exchange.buffered
        exchange.buffered = 0
        exchange.parts.clear()
        if self.paused_by & PAUSED_BUFFER and self.buffered <= MAX_BUFFERED:
            self.resume(PAUSED_BUFFER)

    def _abandon(self, exchange: _Exchange) -> None:
        """Free what ``exchange`` holds (answered here, or its client left)."""
        self._release(exchange)
        self._drop_parts(exchange)

    def _next(self, keep_alive: bool, now: float = 0.0) -> None:
        self.active = None
        self.last_active = now or self.loop.time()
        if not keep_alive:
            self.queue.clear()
            self.close_after_answer()
            return
        if self.paused_by & PAUSED_PIPELINE and len(self.queue) < MAX_PIPELINED // 2:
            self.resume(PAUSED_PIPELINE)
        if self.queue:
            self._start(self.queue.popleft())
        elif self.phase == DISCARD and self.receiving is None:
            self.close_after_answer()  # the last request was answered

    def _close_now(self) -> None:
        self.phase = DISCARD
        if self.transport is not None:
            self.transport.close()


async def _sweep(router: Router, connections: set[HttpServerConnection], server: object) -> None:
    """Apply client and upstream timeouts; close pooled connections idle too long."""
    loop = asyncio.get_running_loop()
    while True:
        every = min(router.limits.sweep_every_s, router.upstream_timeout_s / 4)
        await asyncio.sleep(max(0.01, every))
        now = loop.time()
        for connection in list(connections):
            connection.check_timeouts(now)
        for backend in list(router.backends.values()):
            stale = [u for u in backend.idle if now - u.last_io > POOL_IDLE_S]
            for upstream in stale:
                upstream.close()
        if not connections and not getattr(server, "is_serving", lambda: False)():
            return


async def serve(router: Router, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` for ``router``; the caller closes the returned server (its
    open connections end on their own timeouts) or ``stop``s it."""
    loop = asyncio.get_running_loop()
    connections: set[HttpServerConnection] = set()
    server = await loop.create_server(
        lambda: _Client(router, connections), host, port, reuse_address=True, backlog=1024
    )
    task = loop.create_task(_sweep(router, connections, server))
    _LISTENERS[server] = (connections, task)
    task.add_done_callback(lambda _: _LISTENERS.pop(server, None))
    return server


async def stop(server: asyncio.Server, timeout_s: float) -> None:
    """Close ``server`` and wait up to ``timeout_s`` for its connections to finish (a
    lingering close included); then abort the ones left. Python 3.11's
    ``Server.wait_closed`` does not wait for connections, hence this."""
    server.close()
    listener = _LISTENERS.get(server)
    if listener is None:
        return
    connections, sweeper = listener
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(sweeper), timeout_s)
    for connection in list(connections):
        if connection.transport is not None:
            connection.transport.abort()


# Each listener's connections and sweeper; also the strong task references asyncio asks for.
_LISTENERS: dict[asyncio.Server, tuple[set[HttpServerConnection], asyncio.Task[None]]] = {}
