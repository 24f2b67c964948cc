"""What the predictive policy needs beyond one observation: start-ups and a rate history.

``LoadHistory`` is the policy's input (pure, frozen). ``RateHistory`` is the bounded store a
loop keeps to build it: the last ``RECENT_S`` seconds at full resolution (for the trend) and
per-minute means for ``KEEP_S`` before that (for the daily profile), so a week of history is
about ten thousand samples whatever the tick. ``measured_startup`` turns replicas' spawn and
ready times into the start-up horizon.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlkube.autoscale.api import ReplicaMetrics
from mlkube.autoscale.forecast import DAY_S, SEASON_DAYS, RateSample

RECENT_S = 3600.0
"""Full-resolution history kept (the trend window is at most an hour)."""
BUCKET_S = 60.0
"""Older history is kept as means over buckets of this many seconds."""
KEEP_S = (SEASON_DAYS + 1) * DAY_S
"""History older than this is dropped."""
STARTUP_SAMPLES = 5
"""The start-up horizon is the median of this many most recent measured start-ups."""


@dataclass(frozen=True, slots=True)
class LoadHistory:
    """The predictive policy's inputs besides the ``Observation``."""

    now: float
    """The current time in the clock of ``rates`` (the loop uses wall-clock seconds)."""
    rates: Sequence[RateSample]
    """(time, requests per second arriving at the deployment), oldest first."""
    startup_seconds: float | None
    """The revision's measured start-up, spawn to ready (median of its recent replicas);
    None before any replica became ready."""


Startups = tuple[tuple[str, float], ...]
"""(replica name, spawn-to-ready seconds), oldest first, at most ``STARTUP_SAMPLES``."""


def measured_startups(replicas: Iterable[ReplicaMetrics], previous: Startups = ()) -> Startups:
    """``previous`` extended by the start-ups of replicas that became ready since.

    A replica counts once (by name), so the loop passes back what this returned last tick;
    a replica promoted from warm standby should not be passed (promotion is no start-up).
    """
    known = {name for name, _ in previous}
    fresh = sorted(
        (r.started_at, r.name, r.ready_at - r.started_at)
        for r in replicas
        if r.ready_at is not None and r.ready_at >= r.started_at and r.name not in known
    )
    merged = [*previous, *((name, seconds) for _, name, seconds in fresh)]
    return tuple(merged[-STARTUP_SAMPLES:])


def startup_seconds(measured: Startups) -> float | None:
    """The median start-up of ``measured`` (None when empty)."""
    return statistics.median(s for _, s in measured) if measured else None


@dataclass
class RateHistory:
    """A bounded history of the arriving request rate. Mutable: the loop owns one."""

    recent: list[RateSample] = field(default_factory=list)
    buckets: list[RateSample] = field(default_factory=list)
    """(bucket start, mean rate) for samples older than ``RECENT_S``."""
    _open: tuple[float, float, int] | None = None
    """The bucket being filled: (start, sum of rates, count)."""

    def record(self, now: float, rate: float) -> None:
        """Add one sample; times must not go backwards (a backwards sample is dropped)."""
        if self.recent and now <= self.recent[-1][0]:
            return
        self.recent.append((now, max(0.0, rate)))
        while self.recent and self.recent[0][0] <= now - RECENT_S:
            self._into_bucket(*self.recent.pop(0))
        while self.buckets and self.buckets[0][0] <= now - KEEP_S:
            self.buckets.pop(0)

    def _into_bucket(self, t: float, rate: float) -> None:
        start = t - t % BUCKET_S
        if self._open is not None and self._open[0] != start:
            begin, total, count = self._open
            self.buckets.append((begin + BUCKET_S / 2, total / count))
            self._open = None
        if self._open is None:
            self._open = (start, rate, 1)
        else:
            self._open = (start, self._open[1] + rate, self._open[2] + 1)

    def samples(self) -> tuple[RateSample, ...]:
        """Every kept sample, oldest first (closed buckets as their midpoint and mean)."""
        return (*self.buckets, *self.recent)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the loop's store (closed buckets and recent samples)."""
        return {
            "recent": [list(s) for s in self.recent],
            "buckets": [list(s) for s in self.buckets],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RateHistory:
        """The inverse of ``to_json`` (the open bucket is lost: at most a minute of means)."""
        return cls(
            recent=[(float(t), float(r)) for t, r in data.get("recent", ())],
            buckets=[(float(t), float(r)) for t, r in data.get("buckets", ())],
        )


@dataclass
class LoadTracker:
    """What a loop keeps per deployment to build each tick's ``LoadHistory``. Mutable.

    Each tick: ``history = tracker.observe(wall_now, arriving_rps, cold_replicas)``, then
    ``decide(spec, observation, state, history)``; persist ``to_json()`` with the state.
    """

    rates: RateHistory = field(default_factory=RateHistory)
    startups: Startups = ()

    def observe(
        self, now: float, arriving_rps: float, replicas: Iterable[ReplicaMetrics]
    ) -> LoadHistory:
        """Record this tick's arriving rate and newly ready replicas; the policy's input.

        ``now`` is wall-clock seconds; ``replicas`` are the observation's replicas that
        started cold (leave out ones promoted from standby).
        """
        self.rates.record(now, arriving_rps)
        self.startups = measured_startups(replicas, self.startups)
        return LoadHistory(now, self.rates.samples(), startup_seconds(self.startups))

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the loop's store."""
        return {"rates": self.rates.to_json(), "startups": [list(s) for s in self.startups]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadTracker:
        """The inverse of ``to_json``."""
        return cls(
            RateHistory.from_json(data.get("rates", {})),
            tuple((str(n), float(s)) for n, s in data.get("startups", ())),
        )
