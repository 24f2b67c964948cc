"""Reading a replica's ``/metrics`` text into a snapshot, and rates between two snapshots.

Pure: no I/O. Only the series the controller needs are kept: request counts by status code,
the request-duration histogram, in-flight requests, queue depth, CPU seconds and RSS. Rates
(error rate, p99, requests per second, CPU cores) come from the difference of two snapshots,
as Prometheus' ``rate()`` and ``histogram_quantile()`` would compute them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape of one replica at monotonic time ``at``."""

    at: float
    requests: float = 0.0
    errors: float = 0.0
    """Requests answered with a 5xx status."""
    buckets: dict[float, float] = field(default_factory=dict)
    """Cumulative duration histogram: upper bound in seconds → count."""
    in_flight: float = 0.0
    queue_depth: float = 0.0
    cpu_seconds: float | None = None
    rss_bytes: int | None = None


def parse_metrics(text: str, *, at: float) -> Snapshot:
    """The snapshot in a Prometheus text exposition. Pure; unknown series are ignored."""
    requests = errors = in_flight = queue = 0.0
    cpu: float | None = None
    rss: int | None = None
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name, labels, raw = match.group(1), match.group(2) or "", match.group(3)
        try:
            value = float(raw)
        except ValueError:
            continue
        if name == "mlkube_requests_total":
            requests += value
            code = dict(_LABEL.findall(labels)).get("code", "")
            if code.startswith("5"):
                errors += value
        elif name == "mlkube_request_duration_seconds_bucket":
            bound = float(dict(_LABEL.findall(labels)).get("le", "+Inf"))
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == "mlkube_in_flight_requests":
            in_flight += value
        elif name == "mlkube_queue_depth":
            queue += value
        elif name == "process_cpu_seconds_total":
            cpu = value
        elif name == "process_resident_memory_bytes":
            rss = int(value)
    return Snapshot(at, requests, errors, buckets, in_flight, queue, cpu, rss)


@dataclass(frozen=True, slots=True)
class Rates:
    """What happened between two snapshots."""

    requests: float
    errors: float
    requests_per_second: float
    error_rate: float
    p95_ms: float | None
    p99_ms: float | None
    cpu_cores: float | None


def rates(before: Snapshot, after: Snapshot) -> Rates:
    """Rates between two snapshots of one replica. Pure.

    A counter that went down means the process restarted: the new value is the increase.
    """
    span = max(after.at - before.at, 1e-9)
    requests = _increase(before.requests, after.requests)
    errors = _increase(before.errors, after.errors)
    buckets = {b: _increase(before.buckets.get(b, 0.0), c) for b, c in after.buckets.items()}
    cpu = None
    if before.cpu_seconds is not None and after.cpu_seconds is not None:
        cpu = _increase(before.cpu_seconds, after.cpu_seconds) / span
    return Rates(
        requests=requests,
        errors=errors,
        requests_per_second=requests / span,
        error_rate=errors / requests if requests > 0 else 0.0,
        p95_ms=_quantile_ms(0.95, buckets),
        p99_ms=_quantile_ms(0.99, buckets),
        cpu_cores=cpu,
    )


def merge(parts: list[Rates]) -> Rates:
    """The rates of several replicas together (p95/p99: the worst replica's). Pure."""
    requests = sum(p.requests for p in parts)
    errors = sum(p.errors for p in parts)
    p95 = [p.p95_ms for p in parts if p.p95_ms is not None]
    p99 = [p.p99_ms for p in parts if p.p99_ms is not None]
    cpus = [p.cpu_cores for p in parts if p.cpu_cores is not None]
    return Rates(
        requests=requests,
        errors=errors,
        requests_per_second=sum(p.requests_per_second for p in parts),
        error_rate=errors / requests if requests > 0 else 0.0,
        p95_ms=max(p95) if p95 else None,
        p99_ms=max(p99) if p99 else None,
        cpu_cores=sum(cpus) if cpus else None,
    )


def _increase(before: float, after: float) -> float:
    return after - before if after >= before else after


def _quantile_ms(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets, linear within a bucket."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound * 1000.0
            width = count - lower_count
            fraction = (rank - lower_count) / width if width > 0 else 1.0
            return (lower_bound + (bound - lower_bound) * fraction) * 1000.0
        lower_bound, lower_count = bound, count
    return lower_bound * 1000.0
