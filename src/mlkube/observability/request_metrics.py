"""Counters and histograms for the request path: plain numbers, exported at scrape time.

Every answered request updates one counter and four or five histograms. prometheus_client's
``Counter``/``Histogram`` children take a lock per update and walk the bucket list in Python;
here an update is an index found by ``bisect`` (C) and two additions, about a fifth of the
cost (``bench/metrics.py`` measures both in the same run). What Prometheus scrapes is the same:
the families below are collected into prometheus_client's own ``CounterMetricFamily`` and
``HistogramMetricFamily`` and written by its ``generate_latest``, with the bucket labels its
``Histogram`` writes (``floatToGoString``), so the exposition is byte for byte what the
library's metrics would give (a test compares them).

No lock: a replica updates and scrapes these only on its event loop thread (HTTP and gRPC
handlers, and the batcher's completion callbacks, which run on the loop).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One labelled series of a counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    """One labelled series of a histogram: a count per bucket (not cumulative) and the sum.

    A value falls in the first bucket whose upper bound is at least the value (Prometheus'
    ``le``); past every bound, in +Inf."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


Child = TypeVar("Child", CounterChild, HistogramChild)


class _Family(Collector, Generic[Child]):
    """A metric's labelled series, each made on first use by ``new_child``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        new_child: Callable[[], Child],
    ) -> None:
        self.name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._new_child: Callable[[], Child] = new_child
        self._children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: str) -> Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self.name} takes labels {self._labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child


class CounterFamily(_Family[CounterChild]):
    """A counter with labels. ``name`` is the base name: the exposition adds ``_total``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, labelnames, CounterChild)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class HistogramFamily(_Family[HistogramChild]):
    """A histogram with labels and fixed, sorted bucket bounds (+Inf is added)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(bounds) or not bounds or bounds[-1] == float("inf"):
            raise ValueError(f"{name}: bucket bounds must be sorted and finite, got {buckets}")
        super().__init__(name, documentation, labelnames, lambda: HistogramChild(bounds))
        # The bucket labels prometheus_client's Histogram writes.
        self._le = (*(str(floatToGoString(b)) for b in bounds), "+Inf")  # type: ignore[no-untyped-call]

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            cumulative = 0.0
            buckets = []
            for le, count in zip(self._le, child.counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(values, buckets, child.sum)
        yield family
