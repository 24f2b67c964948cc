"""The console's charts: a bounded in-memory history of each deployment's traffic.

Once a second ``History.sample`` reads what the controller already keeps (the load balancer's
counters in ``dep.router.stats``, the replicas' last scrape, the desired count) and appends one
``Point`` per deployment to a ring of ``HISTORY_S`` seconds. Rates and latency quantiles are
over the interval since the previous point (counter deltas), so a chart shows what happened in
that second, not an average since start. Nothing here touches the network or the store; the
Prometheus-free console reads it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.proxy import LATENCY_BUCKETS_MS

HISTORY_S = 3 * 3600
"""Seconds of history kept per deployment (3 hours at one point a second)."""
SAMPLE_PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class Point:
    """One deployment over one sample interval, at wall-clock time ``t`` (seconds)."""

    t: float
    rps: float
    errors_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    desired: int
    ready: int
    in_flight: float
    """Requests in the replicas at their last scrape (the concurrency the autoscaler sees)."""
    queue_depth: float
    """Requests waiting in the replicas' batchers at their last scrape."""
    batch_size: float | None = None
    """Mean rows per predict call over the replicas' scrapes in this interval (None: none)."""

    def row(self) -> list[float | int | None]:
        """The point as the JSON row the console's charts read (``COLUMNS`` order)."""
        return [
            round(self.t, 3),
            round(self.rps, 3),
            round(self.errors_per_s, 3),
            self.p50_ms,
            self.p99_ms,
            self.desired,
            self.ready,
            round(self.in_flight, 3),
            round(self.queue_depth, 3),
            None if self.batch_size is None else round(self.batch_size, 3),
        ]


COLUMNS = (
    "t",
    "rps",
    "errorsPerSecond",
    "p50Ms",
    "p99Ms",
    "desired",
    "ready",
    "inFlight",
    "queueDepth",
    "batchSize",
)


@dataclass(slots=True)
class _Counters:
    at: float
    requests: int
    errors: int
    latency: list[int]


def quantile_ms(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a latency histogram (bucket upper bounds), None when empty. Pure."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])


@dataclass(slots=True)
class History:
    """The last ``HISTORY_S`` seconds of every deployment, one ``Point`` per sample."""

    max_points: int = int(HISTORY_S / SAMPLE_PERIOD_S)
    series: dict[str, deque[Point]] = field(default_factory=dict)
    _last: dict[str, _Counters] = field(default_factory=dict)
    _batches: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per replica: (rows, predict calls) at its scrape the previous sample saw."""

    def sample(self, deployments: Iterable[Deployment], now: float) -> None:
        """Append one point per deployment; forget the deployments that are gone."""
        seen: set[str] = set()
        replicas: set[str] = set()
        for dep in deployments:
            seen.add(dep.key)
            replicas.update(f"{dep.key}/{name}" for name in dep.replicas)
            point = self._point(dep, now)
            if point is not None:
                self.series.setdefault(dep.key, deque(maxlen=self.max_points)).append(point)
        self._batches = {k: v for k, v in self._batches.items() if k in replicas}
        for key in set(self.series) - seen:
            del self.series[key]
            self._last.pop(key, None)

    def points(self, key: str, since: float = 0.0) -> list[Point]:
        return [p for p in self.series.get(key, ()) if p.t > since]

    def latest(self, key: str) -> Point | None:
        ring = self.series.get(key)
        return ring[-1] if ring else None

    def _point(self, dep: Deployment, now: float) -> Point | None:
        batch_size = self._batch_size(dep)  # its baselines move with every sample
        stats = dep.router.stats
        current = _Counters(now, stats.requests, stats.errors, list(stats.latency_counts))
        before = self._last.get(dep.key)
        self._last[dep.key] = current
        if before is None:
            return None  # the first sample only sets the baseline of the deltas
        span = max(now - before.at, 1e-6)
        requests = current.requests - before.requests
        errors = current.errors - before.errors
        latency = [a - b for a, b in zip(current.latency, before.latency, strict=False)]
        if requests < 0 or errors < 0 or any(d < 0 for d in latency):
            return None  # the counters restarted (a new balancer): a new baseline
        replicas = list(dep.replicas.values())
        last = [r.snapshots[-1] for r in replicas if r.snapshots]
        return Point(
            t=now,
            rps=requests / span,
            errors_per_s=errors / span,
            p50_ms=quantile_ms(latency, 0.5),
            p99_ms=quantile_ms(latency, 0.99),
            desired=dep.desired,
            ready=sum(1 for r in replicas if r.phase is Phase.READY),
            in_flight=sum(s.in_flight for s in last),
            queue_depth=sum(s.queue_depth for s in last),
            batch_size=batch_size,
        )

    def _batch_size(self, dep: Deployment) -> float | None:
        """Rows per predict call since the previous sample, over ``dep``'s replicas; a replica
        whose counters went back (restarted) only sets its new baseline."""
        rows = calls = 0.0
        for name, replica in dep.replicas.items():
            if not replica.snapshots:
                continue
            latest = replica.snapshots[-1]
            key = f"{dep.key}/{name}"
            before = self._batches.get(key)
            self._batches[key] = (latest.batch_rows, latest.batches)
            if before is None or latest.batches < before[1] or latest.batch_rows < before[0]:
                continue
            rows += latest.batch_rows - before[0]
            calls += latest.batches - before[1]
        return rows / calls if calls > 0 else None
