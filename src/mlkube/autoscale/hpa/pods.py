"""Pods as the HPA controller sees them, and how it sorts them before counting.

Pure: no I/O. Quantities are milli-units (1 CPU = 1000), times are seconds on any monotonic
scale shared by ``now`` and the pods. Mirrors ``groupPods`` and ``calculateRequests`` of the
Kubernetes HPA replica calculator (see ``/work/shared/autoscaling.md`` §1.4, §1.5.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ZERO_TIME = -1.0e11
"""Go's zero time: far in the past, yet ``ZERO_TIME + d`` is still after it."""


class MetricError(Exception):
    """A metric could not be turned into a replica count (HPA's FailedGet*Metric)."""


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod (or local replica) of the scale target."""

    name: str
    phase: str = "Running"
    """Running, Pending, Succeeded or Failed."""
    ready: bool | None = True
    """The Ready condition; None when the pod has no Ready condition."""
    start: float | None = ZERO_TIME
    """``status.startTime``; None when unset."""
    ready_transition: float = ZERO_TIME
    """``lastTransitionTime`` of the Ready condition."""
    deleted: bool = False
    """A deletion timestamp is set."""
    requests: Mapping[str, int | None] = field(default_factory=dict)
    """Container name → request of the scaled resource in milli-units (None: no request)."""
    resource_requests: Mapping[str, Mapping[str, int | None]] = field(default_factory=dict)
    """Resource name → container → request, when several resources are scaled on."""

    def requests_for(self, resource: str) -> Mapping[str, int | None]:
        """Container requests of ``resource``: ``resource_requests`` if given, else ``requests``."""
        return self.resource_requests.get(resource, self.requests)


@dataclass(frozen=True, slots=True)
class PodMetric:
    """One pod's sample."""

    value: int
    timestamp: float = ZERO_TIME
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class ReadinessTimings:
    """The two CPU readiness durations of the HPA controller."""

    cpu_initialization_period: float = 300.0
    """Pods younger than this count only once a full metric window follows their readiness."""
    initial_readiness_delay: float = 30.0
    """A pod unready within this long of starting is treated as never having been ready."""


@dataclass(frozen=True, slots=True)
class PodGroups:
    """The outcome of ``group_pods``."""

    ready_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def group_pods(
    pods: tuple[Pod, ...],
    metrics: Mapping[str, PodMetric],
    resource: str,
    *,
    now: float,
    timings: ReadinessTimings,
) -> PodGroups:
    """Sort pods into ready / unready / missing / ignored exactly as HPA's ``groupPods``."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleted or pod.phase == "Failed":
            ignored.add(pod.name)
        elif pod.phase == "Pending":
            unready.add(pod.name)
        elif pod.name not in metrics:
            missing.add(pod.name)
        elif resource == "cpu" and _cpu_unready(pod, metrics[pod.name], now, timings):
            unready.add(pod.name)
        else:
            ready += 1
    return PodGroups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def _cpu_unready(pod: Pod, metric: PodMetric, now: float, timings: ReadinessTimings) -> bool:
    if pod.ready is None or pod.start is None:
        return True
    if pod.start + timings.cpu_initialization_period > now:
        return (not pod.ready) or metric.timestamp < pod.ready_transition + metric.window
    return (not pod.ready) and pod.start + timings.initial_readiness_delay > pod.ready_transition


def pod_requests(pods: tuple[Pod, ...], resource: str, container: str | None) -> dict[str, int]:
    """Each pod's request (sum over containers, or the named one), as ``calculateRequests``."""
    requests: dict[str, int] = {}
    for pod in pods:
        declared = pod.requests_for(resource)
        names = [container] if container else list(declared)
        total = 0
        for name in names:
            if name not in declared:
                raise MetricError(f"container {name} not found in Pod {pod.name}")
            value = declared[name]
            if value is None:
                raise MetricError(
                    f"missing request for {resource} in container {name} of Pod {pod.name}"
                )
            total += value
        requests[pod.name] = total
    return requests


def resource_samples(
    per_container: Mapping[str, Mapping[str, int | None]],
    container: str | None,
    *,
    timestamp: float = ZERO_TIME,
    window: float = 60.0,
) -> dict[str, PodMetric]:
    """Pod samples from per-container usage: the sum, or one container; absent → left out."""
    samples: dict[str, PodMetric] = {}
    for pod, containers in per_container.items():
        if container is not None:
            value = containers.get(container)
            if value is not None:
                samples[pod] = PodMetric(value, timestamp, window)
        elif containers and all(v is not None for v in containers.values()):
            total = sum(v for v in containers.values() if v is not None)
            samples[pod] = PodMetric(total, timestamp, window)
    return samples
