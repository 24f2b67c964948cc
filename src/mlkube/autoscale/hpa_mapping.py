"""From mlkube's spec and observation to the exact HPA types, and back.

Pure: no I/O. Local replicas become pods (one container, ``main``); CPU in cores becomes
millicores, memory in bytes becomes milli-bytes, so the HPA arithmetic runs unchanged.
"""

from __future__ import annotations

from mlkube.autoscale.api import Observation, PolicyState, ReplicaMetrics
from mlkube.autoscale.hpa.behavior import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Policy, Rules
from mlkube.autoscale.hpa.controller import (
    Behavior,
    HpaMemory,
    HpaObserved,
    HpaSpec,
    MetricTarget,
    Readings,
)
from mlkube.autoscale.hpa.pods import Pod, ReadinessTimings
from mlkube.spec.autoscaling import (
    AutoscalingSpec,
    BehaviorSpec,
    CpuMetric,
    MemoryMetric,
    ScalingRules,
)

CONTAINER = "main"


def rules_from_spec(raw: ScalingRules | None, default: Rules, window_default: float) -> Rules:
    """HPA API defaulting of one direction (``copyHPAScalingRules``)."""
    if raw is None:
        return Rules(int(window_default), default.select, default.policies)
    window = raw.stabilization_window_seconds
    policies = default.policies
    if raw.policies is not None:
        policies = tuple(Policy(p.type.value, p.value, p.period_seconds) for p in raw.policies)
    return Rules(
        int(window_default) if window is None else window,
        raw.select_policy.value if raw.select_policy is not None else default.select,
        policies,
        None if raw.tolerance is None else float(raw.tolerance.value),
    )


def behavior_from_spec(spec: AutoscalingSpec, behavior: BehaviorSpec) -> Behavior:
    """``spec.behavior`` with HPA defaults filled in; scale-down window from the flag."""
    return Behavior(
        rules_from_spec(behavior.scale_up, DEFAULT_SCALE_UP, DEFAULT_SCALE_UP.window),
        rules_from_spec(behavior.scale_down, DEFAULT_SCALE_DOWN, spec.downscale_stabilization),
    )


def ml_default_behavior(spec: AutoscalingSpec) -> Behavior:
    """Without ``behavior``, ML metrics scale up at once and down after one stable window."""
    up = Rules(0, "Max", (Policy("Pods", max(spec.max_replicas, 1), 1),))
    down = Rules(round(spec.stable_window), "Max", (Policy("Percent", 100, 1),))
    return Behavior(up, down)


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
    """The HPA object and controller flags equivalent to ``spec`` for these metrics."""
    behavior = None if spec.behavior is None else behavior_from_spec(spec, spec.behavior)
    return HpaSpec(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metrics=tuple(hpa_target(m) for m in metrics),
        behavior=behavior,
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
