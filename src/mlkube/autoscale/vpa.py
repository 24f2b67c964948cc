"""Right-sizing the way the VPA recommender does: decaying histograms, percentiles, margins.

Pure: no I/O, no clock. Follows ``vertical-pod-autoscaler/pkg/recommender`` as restated in
``/work/shared/autoscaling.md`` §2: exponential-bucket histograms (ratio 1.05) whose samples
decay with a 24 h half-life; CPU samples weighted by ``max(request, 0.1)``; one memory peak per
24 h interval; target/lower/upper = p90/p50/p95 × 1.15, widened by a confidence factor;
minimums of 25 m CPU and 250 MiB per pod; an OOM inserts ``max(used + 100 MiB, used × 1.2)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

HALF_LIFE = 24 * 3600.0
MEMORY_INTERVAL = 24 * 3600.0
MIN_SAMPLE_WEIGHT = 0.1
EPSILON = 0.001 * MIN_SAMPLE_WEIGHT
MARGIN = 0.15
POD_MIN_CPU = 0.025
POD_MIN_MEMORY = 250 * 1024 * 1024
OOM_BUMP_RATIO = 1.2
OOM_MIN_BUMP = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BucketScheme:
    """Exponential buckets: bucket 0 is ``[0, first)``; bucket n starts at
    ``first · (ratio^n − 1) / (ratio − 1)``."""

    first: float
    ratio: float
    max_value: float

    @property
    def num_buckets(self) -> int:
        """How many buckets cover ``[0, max_value]``."""
        n = math.log(self.max_value * (self.ratio - 1) / self.first + 1, self.ratio)
        return math.ceil(n) + 1

    def start(self, bucket: int) -> float:
        """Where ``bucket`` begins."""
        if bucket == 0:
            return 0.0
        return self.first * (self.ratio**bucket - 1) / (self.ratio - 1)

    def find(self, value: float) -> int:
        """The bucket holding ``value`` (clamped to the last one)."""
        if value < self.first:
            return 0
        bucket = math.floor(math.log(value * (self.ratio - 1) / self.first + 1, self.ratio))
        return min(bucket, self.num_buckets - 1)


CPU_BUCKETS = BucketScheme(0.01, 1.05, 1000.0)
"""CPU cores: 176 buckets from 10 m to about 1021 cores."""
MEMORY_BUCKETS = BucketScheme(1e7, 1.05, 1e12)
"""Memory bytes: 176 buckets from 10 MB to about 1 TB."""


@dataclass
class DecayingHistogram:
    """A histogram whose sample weights grow by 2^(t/halfLife), so old samples fade."""

    scheme: BucketScheme
    half_life: float = HALF_LIFE
    weights: dict[int, float] = field(default_factory=dict)
    reference: float = 0.0

    def add(self, value: float, weight: float, at: float) -> None:
        """Add ``value`` with ``weight`` observed at time ``at`` (seconds)."""
        if at > self.reference + 100 * self.half_life:
            self._shift(at)
        factor = 2.0 ** ((at - self.reference) / self.half_life)
        bucket = self.scheme.find(value)
        self.weights[bucket] = self.weights.get(bucket, 0.0) + weight * factor

    def subtract(self, value: float, weight: float, at: float) -> None:
        """Remove a sample added earlier (memory peaks are replaced this way)."""
        factor = 2.0 ** ((at - self.reference) / self.half_life)
        bucket = self.scheme.find(value)
        self.weights[bucket] = max(0.0, self.weights.get(bucket, 0.0) - weight * factor)

    def _shift(self, at: float) -> None:
        new_reference = math.floor(at / self.half_life) * self.half_life
        scale = 2.0 ** ((self.reference - new_reference) / self.half_life)
        self.weights = {b: w * scale for b, w in self.weights.items()}
        self.reference = new_reference

    def percentile(self, p: float) -> float:
        """The upper edge of the bucket where the cumulative weight reaches ``p``; 0 if empty."""
        live = {b: w for b, w in self.weights.items() if w >= EPSILON}
        if not live:
            return 0.0
        total = sum(live.values())
        lo, hi = min(live), max(live)
        partial = 0.0
        chosen = hi
        for bucket in range(lo, hi):
            partial += live.get(bucket, 0.0)
            if partial >= p * total:
                chosen = bucket
                break
        if chosen < self.scheme.num_buckets - 1:
            return self.scheme.start(chosen + 1)
        return self.scheme.start(chosen)


@dataclass(frozen=True, slots=True)
class UsageSample:
    """One observation of one replica."""

    at: float
    """Seconds (any epoch, the same for every sample)."""
    cpu_cores: float | None = None
    memory_bytes: int | None = None
    cpu_request_cores: float | None = None
    requests_per_second: float | None = None
    latency_p95_ms: float | None = None


@dataclass(frozen=True, slots=True)
class OomEvent:
    """A replica was killed for memory at ``at`` while holding ``memory_bytes``."""

    at: float
    memory_bytes: int
    memory_request_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Lower bound, target and upper bound of one resource."""

    lower: float
    target: float
    upper: float


@dataclass(frozen=True, slots=True)
class ResourceRecommendation:
    """What to request, in cores and bytes, and how sure we are."""

    cpu: Estimate
    memory: Estimate
    confidence_days: float
    samples: int


@dataclass
class _Aggregate:
    cpu: DecayingHistogram = field(default_factory=lambda: DecayingHistogram(CPU_BUCKETS))
    memory: DecayingHistogram = field(default_factory=lambda: DecayingHistogram(MEMORY_BUCKETS))
    first: float | None = None
    last: float | None = None
    count: int = 0
    last_cpu_at: float | None = None
    peaks: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Memory interval index → (peak bytes, time it was added at)."""

    def add_cpu(self, s: UsageSample) -> None:
        if s.cpu_cores is None or (self.last_cpu_at is not None and s.at <= self.last_cpu_at):
            return
        weight = max(s.cpu_request_cores or 0.0, MIN_SAMPLE_WEIGHT)
        self.cpu.add(s.cpu_cores, weight, s.at)
        self.last_cpu_at = s.at
        self.first = s.at if self.first is None else min(self.first, s.at)
        self.last = s.at if self.last is None else max(self.last, s.at)
        self.count += 1

    def add_memory_peak(self, value: float, at: float) -> None:
        interval = math.floor(at / MEMORY_INTERVAL)
        stamp = (interval + 1) * MEMORY_INTERVAL
        old = self.peaks.get(interval)
        if old is not None:
            if value <= old[0]:
                return
            self.memory.subtract(old[0], 1.0, old[1])
        self.memory.add(value, 1.0, stamp)
        self.peaks[interval] = (value, stamp)


def confidence_days(first: float | None, last: float | None, count: int) -> float:
    """``min(lifespan in days, samples / 1440)``: days of history at one sample a minute."""
    if first is None or last is None:
        return 0.0
    return min((last - first) / 86400.0, count / 1440.0)


def oom_bump(used: float) -> float:
    """The memory an OOM-killed replica is assumed to have needed."""
    return max(used + OOM_MIN_BUMP, used * OOM_BUMP_RATIO)


def recommend_resources(
    samples: Iterable[UsageSample],
    ooms: Iterable[OomEvent] = (),
    *,
    containers_per_pod: int = 1,
) -> ResourceRecommendation:
    """The VPA recommendation for one container from its usage samples and OOM kills."""
    agg = _Aggregate()
    ordered = sorted(samples, key=lambda s: s.at)
    for s in ordered:
        agg.add_cpu(s)
        if s.memory_bytes is not None:
            agg.add_memory_peak(float(s.memory_bytes), s.at)
    for oom in ooms:
        interval = math.floor(oom.at / MEMORY_INTERVAL)
        usage_peak = agg.peaks.get(interval, (0.0, 0.0))[0]
        used = max(float(oom.memory_request_bytes or 0), usage_peak, float(oom.memory_bytes))
        agg.add_memory_peak(oom_bump(used), oom.at)
    conf = confidence_days(agg.first, agg.last, agg.count)
    min_cpu = POD_MIN_CPU / containers_per_pod
    min_mem = POD_MIN_MEMORY / containers_per_pod
    return ResourceRecommendation(
        cpu=_estimate(agg.cpu, conf, min_cpu),
        memory=_estimate(agg.memory, conf, min_mem),
        confidence_days=conf,
        samples=agg.count,
    )


def _estimate(hist: DecayingHistogram, conf: float, minimum: float) -> Estimate:
    margin = 1.0 + MARGIN
    target = hist.percentile(0.90) * margin
    lower = hist.percentile(0.50) * margin
    upper = hist.percentile(0.95) * margin
    if conf > 0:
        lower *= (1.0 + 0.001 / conf) ** -2
        upper *= 1.0 + 1.0 / conf
    else:
        lower, upper = 0.0, math.inf
    return Estimate(max(lower, minimum), max(target, minimum), max(upper, minimum))


def capacity_at_slo(samples: Iterable[UsageSample], slo_ms: float) -> float | None:
    """The highest per-replica request rate seen with p95 within the SLO (None: no data)."""
    good = [
        s.requests_per_second
        for s in samples
        if s.requests_per_second is not None
        and s.latency_p95_ms is not None
        and s.latency_p95_ms <= slo_ms
    ]
    return max(good) if good else None
