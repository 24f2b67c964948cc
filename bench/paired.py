"""Paired one-connection latency: the same client alternates requests between servers.

``bench/serve.py`` measures each arm with wrk for a few seconds at a time, arm after arm. On a
shared machine whose speed drifts between runs (this one alternates between two speeds, each
for tens of seconds), the difference of two such medians at one connection swings by more
than a millisecond for a 4 ms model, so "within 0.1 ms of the bare app" cannot be read from
them. Here one client holds one keep-alive connection to each server and sends the same
request to each in turn, in a random order per round, so both see the machine as it is at
that moment; what is reported is the median of the per-round differences with a bootstrap
95% interval, beside each server's own median.

The client is a plain socket (HTTP/1.1, ``Content-Length`` framing, ``TCP_NODELAY``): it
adds the same few microseconds to every server, so it cancels in the differences.
"""

from __future__ import annotations

import random
import socket
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BOOTSTRAP_RESAMPLES = 1000
WARM_UP_REQUESTS = 50


class KeepAlive:
    """One keep-alive HTTP/1.1 connection that POSTs the same body again and again."""

    def __init__(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r}: a URL with a host and a port is needed")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        fields = {"Content-Type": "application/json", **(headers or {})}
        head = f"POST {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self._request = head.encode("latin-1") + body
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def post(self) -> float:
        """Send the request, read the whole answer; the seconds it took. A non-200 raises."""
        started = time.perf_counter()
        self._socket.sendall(self._request)
        status, body_length = self._read_head()
        self._read_exactly(body_length)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"the server answered {status}")
        return elapsed

    def _read_head(self) -> tuple[int, int]:
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        length = None
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:  # every server here frames its answers by length
            raise RuntimeError(f"an answer without Content-Length: {status_line!r}")
        return int(status_line.split(" ", 2)[1]), length

    def _read_exactly(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    def _receive(self) -> None:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        self._socket.close()


@dataclass(frozen=True, slots=True)
class Difference:
    """One arm against the reference arm, from paired rounds (milliseconds)."""

    median_ms: float
    low_ms: float
    high_ms: float
    """The bootstrap 95% interval of ``median_ms``."""


def median_difference(
    differences: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Difference:
    """The median of paired differences and its percentile bootstrap 95% interval."""
    if not differences:
        raise ValueError("no paired rounds")
    chooser = random.Random(seed)  # noqa: S311 - resampling and ordering, not secrets
    medians = sorted(
        statistics.median(chooser.choices(differences, k=len(differences)))
        for _ in range(resamples)
    )
    return Difference(
        median_ms=statistics.median(differences),
        low_ms=medians[int(0.025 * resamples)],
        high_ms=medians[min(resamples - 1, int(0.975 * resamples))],
    )


def paired_rounds(
    clients: Mapping[str, KeepAlive], rounds: int, max_seconds: float, *, seed: int = 0
) -> dict[str, list[float]]:
    """Per arm, the milliseconds of each round's request: every arm once a round, in a
    random order, until ``rounds`` rounds or ``max_seconds``, whichever comes first."""
    for client in clients.values():
        for _ in range(WARM_UP_REQUESTS):
            client.post()
    chooser = random.Random(seed)  # noqa: S311 - resampling and ordering, not secrets
    arms = list(clients)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    deadline = time.monotonic() + max_seconds
    for _ in range(rounds):
        if time.monotonic() >= deadline:
            break
        chooser.shuffle(arms)
        for arm in arms:
            times[arm].append(clients[arm].post() * 1000)
    return times


def compare(times: Mapping[str, list[float]], reference: str) -> dict[str, Any]:
    """Each arm's median, and each other arm's paired difference from ``reference``: the
    median difference and the bounds of its 95% interval (``low``, ``high``)."""
    report: dict[str, Any] = {
        "rounds": len(times[reference]),
        "p50_ms": {arm: round(statistics.median(values), 4) for arm, values in times.items()},
        "difference_ms": {},
    }
    for arm, values in times.items():
        if arm == reference:
            continue
        paired = [mine - theirs for mine, theirs in zip(values, times[reference], strict=True)]
        found = median_difference(paired)
        report["difference_ms"][arm] = {
            "median": round(found.median_ms, 4),
            "low": round(found.low_ms, 4),
            "high": round(found.high_ms, 4),
        }
    return report


def measure(
    urls: Mapping[str, str],
    body: bytes,
    reference: str,
    *,
    rounds: int,
    max_seconds: float,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Paired rounds against the servers at ``urls`` (arm → predict URL), compared."""
    clients = {arm: KeepAlive(url, body, headers) for arm, url in urls.items()}
    try:
        return compare(paired_rounds(clients, rounds, max_seconds), reference)
    finally:
        for client in clients.values():
            client.close()
