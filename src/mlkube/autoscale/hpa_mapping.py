"""From mlkube's spec and observation to the exact HPA types, and back.

Pure: no I/O. Local replicas become pods (one container, ``main``); CPU in cores becomes
millicores, memory in bytes becomes milli-bytes, so the HPA arithmetic runs unchanged.
"""

from __future__ import annotations

from mlkube.autoscale.api import Observation, PolicyState, ReplicaMetrics
from mlkube.autoscale.hpa.controller import (
    HpaMemory,
    HpaObserved,
    HpaSpec,
    MetricTarget,
    Readings,
)
from mlkube.autoscale.hpa.pods import Pod, ReadinessTimings
from mlkube.desired.scaling import resolve_scaling
from mlkube.spec.autoscaling import AutoscalingSpec, CpuMetric, MemoryMetric

CONTAINER = "main"


def hpa_target(metric: CpuMetric | MemoryMetric) -> MetricTarget:
    """One cpu/memory metric as an HPA Resource metric (milli-units)."""
    if metric.target_utilization is not None:
        return MetricTarget("Resource", metric.type, "Utilization", metric.target_utilization)
    average = metric.target_average_value
    if average is None:  # the spec validator makes this unreachable
        raise ValueError(
            f"{metric.type} metric has neither targetUtilization nor targetAverageValue"
        )
    milli = int(average.value * 1000)
    return MetricTarget("Resource", metric.type, "AverageValue", milli)


def hpa_spec(spec: AutoscalingSpec, metrics: tuple[CpuMetric | MemoryMetric, ...]) -> HpaSpec:
    """The HPA object and controller flags equivalent to ``spec`` for these metrics.

    The behavior is the one ``desired.scaling.resolve_scaling`` settles on: the same the
    renderer writes into the cluster's HPA.
    """
    resolved = resolve_scaling(spec)
    return HpaSpec(
        min_replicas=resolved.min_replicas,
        max_replicas=resolved.max_replicas,
        metrics=tuple(hpa_target(m) for m in metrics),
        behavior=resolved.behavior,
        tolerance=spec.tolerance,
        timings=ReadinessTimings(spec.cpu_initialization_period, spec.initial_readiness_delay),
        downscale_window=spec.downscale_stabilization,
    )


def pod_of(replica: ReplicaMetrics, requests: dict[str, int | None]) -> Pod:
    """A local replica as a Running pod whose readiness is the replica's."""
    transition = replica.ready_at if replica.ready_at is not None else replica.started_at
    return Pod(
        name=replica.name,
        phase="Running",
        ready=replica.ready,
        start=replica.started_at,
        ready_transition=transition,
        resource_requests={resource: {CONTAINER: value} for resource, value in requests.items()},
    )


def _milli(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def hpa_observed(spec: AutoscalingSpec, obs: Observation, previous_desired: int) -> HpaObserved:
    """Pods with cpu and memory requests, and their samples, in milli-units."""
    requests = {"cpu": _milli(obs.cpu_request_cores), "memory": _milli(obs.memory_request_bytes)}
    cpu: dict[str, dict[str, int | None]] = {}
    memory: dict[str, dict[str, int | None]] = {}
    for r in obs.replicas:
        if r.cpu_cores is not None:
            cpu[r.name] = {CONTAINER: _milli(r.cpu_cores)}
        if r.memory_bytes is not None:
            memory[r.name] = {CONTAINER: _milli(r.memory_bytes)}
    readings = Readings(
        resource={"cpu": cpu, "memory": memory},
        resource_timestamp=obs.now,
        resource_window=spec.tick_seconds(),
    )
    return HpaObserved(
        now=obs.now,
        spec_replicas=obs.current_replicas,
        status_replicas=len(obs.replicas),
        pods=tuple(pod_of(r, requests) for r in obs.replicas),
        readings=readings,
        previous_desired=previous_desired,
    )


def hpa_memory(state: PolicyState | None) -> HpaMemory:
    """The controller's history from the persisted policy state (None: a fresh HPA)."""
    if state is None:
        return HpaMemory()
    return HpaMemory(state.recommendations, state.scale_up_events, state.scale_down_events)
