"""The HPA replica calculator: one metric → a proposed replica count.

Pure: no I/O. Milli-units throughout; IEEE doubles where Go uses float64, integer division
where Go divides int64s. Mirrors ``replica_calculator.go`` and ``metrics/utilization.go``
(``/work/shared/autoscaling.md`` §1.3–§1.7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlkube.autoscale.hpa.pods import (
    MetricError,
    Pod,
    PodMetric,
    ReadinessTimings,
    group_pods,
    pod_requests,
)

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far the usage ratio may stray from 1.0 before the count changes (both inclusive)."""

    scale_down: float = 0.1
    scale_up: float = 0.1

    def within(self, ratio: float) -> bool:
        """True when ``ratio`` is close enough to 1.0 to keep the current count."""
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


DEFAULT_TOLERANCES = Tolerances()
DEFAULT_TIMINGS = ReadinessTimings()


@dataclass(frozen=True, slots=True)
class PodContext:
    """The pods of the target and how to judge their readiness."""

    pods: tuple[Pod, ...]
    now: float
    timings: ReadinessTimings = DEFAULT_TIMINGS


def ceil_int32(value: float) -> int:
    """Go's ``int32(math.Ceil(x))`` for the non-negative counts we produce, saturating."""
    if math.isnan(value):
        return 0
    if value >= MAX_INT32:
        return MAX_INT32
    return math.ceil(value)


def utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """(ratio, integer utilization percent, raw average) as ``GetResourceUtilizationRatio``."""
    total = requested = counted = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        total += metric.value
        requested += requests[name]
        counted += 1
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = (total * 100) // requested
    return utilization / target, utilization, total // counted


def usage_ratio(metrics: Mapping[str, PodMetric], target: int) -> tuple[float, int]:
    """(ratio, truncated average) as ``GetMetricUsageRatio``."""
    usage = sum(m.value for m in metrics.values()) // len(metrics)
    return usage / target, usage


def resource_replicas(
    current: int,
    target_utilization: int,
    samples: Mapping[str, PodMetric],
    ctx: PodContext,
    *,
    resource: str,
    container: str | None = None,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> tuple[int, int, int]:
    """``GetResourceReplicas``: (replicas, utilization %, raw average milli-value)."""
    if not samples:
        raise MetricError(
            f"unable to get metrics for resource {resource}: "
            "no metrics returned from resource metrics API"
        )
    if not ctx.pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    metrics = dict(samples)
    groups = group_pods(ctx.pods, metrics, resource, now=ctx.now, timings=ctx.timings)
    for name in groups.ignored | groups.unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests = pod_requests(ctx.pods, resource, container)
    ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)

    with_unready = bool(groups.unready) and ratio > 1.0
    if not with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current, utilization, raw
        return ceil_int32(ratio * groups.ready_count), utilization, raw

    fill_missing = max(100, target_utilization)
    for name in groups.missing:
        if ratio < 1.0:
            metrics[name] = PodMetric(requests[name] * fill_missing // 100)
        elif ratio > 1.0:
            metrics[name] = PodMetric(0)
    if with_unready:
        for name in groups.unready:
            metrics[name] = PodMetric(0)
    new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
    return _rebalanced(current, ratio, new_ratio, len(metrics), tolerances), utilization, raw


def _rebalanced(current: int, ratio: float, new_ratio: float, count: int, tol: Tolerances) -> int:
    flipped = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    if tol.within(new_ratio) or flipped:
        return current
    proposed = ceil_int32(new_ratio * count)
    if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
        return current
    return proposed


def plain_replicas(
    current: int,
    target: int,
    samples: Mapping[str, PodMetric],
    ctx: PodContext,
    *,
    resource: str = "",
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> tuple[int, int]:
    """``calcPlainMetricReplicas`` (Pods metrics, Resource AverageValue): (replicas, usage)."""
    if not ctx.pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    metrics = dict(samples)
    groups = group_pods(ctx.pods, metrics, resource, now=ctx.now, timings=ctx.timings)
    for name in groups.ignored | groups.unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = usage_ratio(metrics, target)

    with_unready = bool(groups.unready) and ratio > 1.0
    if not with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current, usage
        return ceil_int32(ratio * groups.ready_count), usage

    for name in groups.missing:
        if ratio < 1.0:
            metrics[name] = PodMetric(target)
        elif ratio > 1.0:
            metrics[name] = PodMetric(0)
    if with_unready:
        for name in groups.unready:
            metrics[name] = PodMetric(0)
    new_ratio, _ = usage_ratio(metrics, target)
    return _rebalanced(current, ratio, new_ratio, len(metrics), tolerances), usage


def ready_running_count(pods: tuple[Pod, ...]) -> int:
    """Pods in phase Running with Ready=True (``getReadyPodsCount``)."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    return sum(1 for p in pods if p.phase == "Running" and p.ready is True)


def value_replicas(
    current: int,
    value: int,
    target: int,
    pods: tuple[Pod, ...],
    *,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> int:
    """Object/External Value target (``getUsageRatioReplicaCount``). No tolerance at 0."""
    ratio = value / target
    if current == 0:
        return ceil_int32(ratio)
    if tolerances.within(ratio):
        return current
    return ceil_int32(ratio * ready_running_count(pods))


def average_value_replicas(
    status_replicas: int,
    value: int,
    target_average: int,
    *,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
) -> tuple[int, int]:
    """Object/External AverageValue target, against ``status.replicas``: (replicas, average)."""
    if status_replicas <= 0:
        # Go divides by zero here (+Inf/NaN); we answer as a fresh count instead.
        return ceil_int32(value / target_average), value
    replicas = status_replicas
    ratio = value / (target_average * status_replicas)
    if not tolerances.within(ratio):
        replicas = ceil_int32(value / target_average)
    average = value / status_replicas
    usage = MAX_INT64 if average >= MAX_INT64 else math.ceil(average)
    return replicas, usage


def external_sum(values: tuple[int, ...]) -> int:
    """The sum of every matching series, saturating at MaxInt64 as HPA does."""
    if not values:
        raise MetricError("no metrics returned from external metrics API")
    return min(sum(values), MAX_INT64)
