"""One HPA reconcile: observed scale, pods and metrics in; desired count, conditions, state out.

Pure: no I/O. Mirrors ``reconcileAutoscaler`` and ``computeReplicasForMetrics`` of
``horizontal.go`` (``/work/shared/autoscaling.md`` §1.2, §1.8–§1.10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlkube.autoscale.api import Recommendation, ScaleEvent
from mlkube.autoscale.hpa import calculator as calc
from mlkube.autoscale.hpa.behavior import (
    RateArgs,
    convert_with_behavior_rate,
    convert_with_rules,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from mlkube.autoscale.hpa.pods import (
    ZERO_TIME,
    MetricError,
    Pod,
    PodMetric,
    ReadinessTimings,
    resource_samples,
)
from mlkube.desired.scaling import Behavior

ContainerSamples = Mapping[str, Mapping[str, int | None]]
"""Pod name → container name → usage in milli-units (None: that container has no sample)."""


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """One entry of ``spec.metrics``."""

    type: str
    """Resource, ContainerResource, Pods, Object or External (anything else is invalid)."""
    name: str = ""
    """The resource (cpu, memory) or the metric name."""
    target_type: str = "Utilization"
    """Utilization, AverageValue or Value."""
    value: int = 0
    """Percent for Utilization, milli-units otherwise."""
    container: str | None = None


@dataclass(frozen=True, slots=True)
class HpaSpec:
    """The HPA object plus the controller flags that shape it."""

    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricTarget, ...]
    behavior: Behavior | None = None
    """None selects the legacy path (``normalizeDesiredReplicas``)."""
    tolerance: float = 0.1
    timings: ReadinessTimings = calc.DEFAULT_TIMINGS
    downscale_window: float = 300.0
    scale_up_limit_factor: float = 2.0
    scale_up_limit_minimum: float = 4.0


@dataclass(frozen=True, slots=True)
class Readings:
    """What the metrics APIs returned; a missing key reads as an API error."""

    resource: Mapping[str, ContainerSamples] = field(default_factory=dict)
    resource_timestamp: float = ZERO_TIME
    resource_window: float = 60.0
    pods: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    objects: Mapping[str, int] = field(default_factory=dict)
    external: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HpaObserved:
    """The scale subresource, the pods and the metrics at ``now``."""

    now: float
    spec_replicas: int
    status_replicas: int
    pods: tuple[Pod, ...]
    readings: Readings
    previous_desired: int = 0
    """``status.desiredReplicas`` from the last reconcile (kept when metrics fail)."""


@dataclass(frozen=True, slots=True)
class HpaMemory:
    """The controller's in-memory history for one HPA."""

    recommendations: tuple[Recommendation, ...] | None = None
    """None until the first reconcile records ``{current, now}``."""
    up_events: tuple[ScaleEvent, ...] = ()
    down_events: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricStatus:
    """What one metric reported and proposed (``status.currentMetrics``)."""

    target: MetricTarget
    proposal: int
    value: int
    """Utilization percent, or average/total milli-value."""
    raw: int | None = None


@dataclass(frozen=True, slots=True)
class HpaOutcome:
    """The result of one reconcile."""

    desired: int
    rescale: bool
    conditions: tuple[tuple[str, str, str], ...]
    statuses: tuple[MetricStatus, ...]
    memory: HpaMemory
    metric_desired: int | None = None
    """The largest metric proposal, before normalisation (None when not evaluated)."""
    stabilized: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MetricFailure:
    """A metric that could not be evaluated: the ScalingActive reason and the message."""

    reason: str
    message: str


Proposal = MetricStatus | MetricFailure
"""A metric's outcome computed outside the HPA calculator (mlkube's load metrics)."""


_FAILED_REASON = {
    "Resource": "FailedGetResourceMetric",
    "ContainerResource": "FailedGetContainerResourceMetric",
    "Pods": "FailedGetPodsMetric",
    "Object": "FailedGetObjectMetric",
    "External": "FailedGetExternalMetric",
}


def tolerances(spec: HpaSpec) -> calc.Tolerances:
    """Per-direction tolerances: ``behavior.*.tolerance`` where set, else the flag."""
    down = up = spec.tolerance
    if spec.behavior is not None:
        if spec.behavior.scale_down.tolerance is not None:
            down = spec.behavior.scale_down.tolerance
        if spec.behavior.scale_up.tolerance is not None:
            up = spec.behavior.scale_up.tolerance
    return calc.Tolerances(down, up)


def metric_replicas(spec: HpaSpec, target: MetricTarget, obs: HpaObserved) -> MetricStatus:
    """``computeReplicasForMetric``: one metric's proposal (raises ``MetricError``)."""
    tol = tolerances(spec)
    ctx = calc.PodContext(obs.pods, obs.now, spec.timings)
    current = obs.spec_replicas
    if target.type in ("Resource", "ContainerResource"):
        return _resource(target, obs, ctx, tol)
    if target.type == "Pods":
        samples = obs.readings.pods.get(target.name)
        if samples is None:
            raise MetricError(f"unable to get metric {target.name}")
        metrics = {k: PodMetric(v) for k, v in samples.items()}
        replicas, usage = calc.plain_replicas(current, target.value, metrics, ctx, tolerances=tol)
        return MetricStatus(target, replicas, usage)
    if target.type in ("Object", "External"):
        return _object_or_external(target, obs, tol)
    raise MetricError(f"unknown metric source type {target.type!r}")


def _resource(
    target: MetricTarget, obs: HpaObserved, ctx: calc.PodContext, tol: calc.Tolerances
) -> MetricStatus:
    per_container = obs.readings.resource.get(target.name)
    if per_container is None:
        raise MetricError(f"unable to get metrics for resource {target.name}")
    samples = resource_samples(
        per_container,
        target.container,
        timestamp=obs.readings.resource_timestamp,
        window=obs.readings.resource_window,
    )
    current = obs.spec_replicas
    if target.target_type == "Utilization":
        replicas, util, raw = calc.resource_replicas(
            current,
            target.value,
            samples,
            ctx,
            resource=target.name,
            container=target.container,
            tolerances=tol,
        )
        return MetricStatus(target, replicas, util, raw)
    if not samples:
        raise MetricError(f"unable to get metrics for resource {target.name}")
    replicas, usage = calc.plain_replicas(
        current, target.value, samples, ctx, resource=target.name, tolerances=tol
    )
    return MetricStatus(target, replicas, usage)


def _object_or_external(
    target: MetricTarget, obs: HpaObserved, tol: calc.Tolerances
) -> MetricStatus:
    if target.type == "Object":
        raw = obs.readings.objects.get(target.name)
        if raw is None:
            raise MetricError(f"unable to get metric {target.name} on the described object")
        value = raw
    else:
        series = obs.readings.external.get(target.name)
        if series is None:
            raise MetricError(f"unable to get external metric {target.name}")
        value = calc.external_sum(series)
    if target.target_type == "AverageValue":
        replicas, usage = calc.average_value_replicas(
            obs.status_replicas, value, target.value, tolerances=tol
        )
        return MetricStatus(target, replicas, usage)
    replicas = calc.value_replicas(obs.spec_replicas, value, target.value, obs.pods, tolerances=tol)
    return MetricStatus(target, replicas, value)


@dataclass
class Conditions:
    """HPA conditions by type; setting one replaces it (the last write wins)."""

    items: dict[str, tuple[str, str]] = field(default_factory=dict)

    def set(self, kind: str, status: bool, reason: str) -> None:
        """Set condition ``kind`` to True/False with ``reason``."""
        self.items[kind] = ("True" if status else "False", reason)

    def freeze(self) -> tuple[tuple[str, str, str], ...]:
        """(type, status, reason) in the order the types were first set."""
        return tuple((k, s, r) for k, (s, r) in self.items.items())


def evaluate(spec: HpaSpec, target: MetricTarget, obs: HpaObserved) -> Proposal:
    """One metric's proposal, or its failure with HPA's condition reason."""
    try:
        return metric_replicas(spec, target, obs)
    except MetricError as exc:
        return MetricFailure(_FAILED_REASON.get(target.type, "InvalidMetricSourceType"), str(exc))


def compute_metrics(
    spec: HpaSpec, obs: HpaObserved, conds: Conditions, extra: tuple[Proposal, ...] = ()
) -> tuple[int, tuple[MetricStatus, ...], str | None]:
    """``computeReplicasForMetrics``: the largest proposal, or -1 when HPA must not act."""
    replicas = 0
    statuses: list[MetricStatus] = []
    first_error: tuple[str, str] | None = None
    invalid = 0
    proposals = (*(evaluate(spec, t, obs) for t in spec.metrics), *extra)
    for status in proposals:
        if isinstance(status, MetricFailure):
            invalid += 1
            if first_error is None:
                first_error = (status.reason, status.message)
            continue
        statuses.append(status)
        if replicas == 0 or status.proposal > replicas:
            replicas = status.proposal
    if first_error is not None and (invalid >= len(proposals) or replicas < obs.spec_replicas):
        conds.set("ScalingActive", False, first_error[0])
        return -1, tuple(statuses), first_error[1]
    conds.set("ScalingActive", True, "ValidMetricFound")
    return replicas, tuple(statuses), first_error[1] if first_error else None


def reconcile(
    spec: HpaSpec, obs: HpaObserved, memory: HpaMemory, extra: tuple[Proposal, ...] = ()
) -> HpaOutcome:
    """``reconcileAutoscaler`` after a successful scale read.

    ``extra`` adds proposals computed elsewhere (mlkube's load metrics); they join the HPA
    metrics under the same rules: the largest wins, a failure blocks a scale-down.
    """
    conds = Conditions()
    conds.set("AbleToScale", True, "SucceededGetScale")
    current = obs.spec_replicas
    history = memory.recommendations
    if history is None:
        history = (Recommendation(current, obs.now),)
    memory = HpaMemory(history, memory.up_events, memory.down_events)

    if current == 0 and spec.min_replicas != 0:
        conds.set("ScalingActive", False, "ScalingDisabled")
        return HpaOutcome(0, False, conds.freeze(), (), memory)
    if current > spec.max_replicas:
        return _finish(spec, obs, memory, conds, spec.max_replicas)
    if current < spec.min_replicas:
        return _finish(spec, obs, memory, conds, spec.min_replicas)

    metric_desired, statuses, error = compute_metrics(spec, obs, conds, extra)
    if metric_desired == -1:
        return HpaOutcome(
            obs.previous_desired, False, conds.freeze(), statuses, memory, error=error
        )
    desired, stabilized, memory = normalize(
        spec, current, max(metric_desired, 0), memory, conds, obs.now
    )
    outcome = _finish(spec, obs, memory, conds, desired)
    return HpaOutcome(
        outcome.desired,
        outcome.rescale,
        outcome.conditions,
        statuses,
        outcome.memory,
        metric_desired,
        stabilized,
        error,
    )


def normalize(
    spec: HpaSpec, current: int, desired: int, memory: HpaMemory, conds: Conditions, now: float
) -> tuple[int, int, HpaMemory]:
    """Stabilise and limit ``desired``: the legacy path, or the ``behavior`` path."""
    history = memory.recommendations or ()
    if spec.behavior is None:
        stabilized, history = stabilize_legacy(
            history, desired, now=now, window=spec.downscale_window
        )
        reason = "ScaleDownStabilized" if stabilized != desired else "ReadyForNewScale"
        conds.set("AbleToScale", True, reason)
        limited = convert_with_rules(
            current,
            stabilized,
            spec.min_replicas,
            spec.max_replicas,
            factor=spec.scale_up_limit_factor,
            minimum=spec.scale_up_limit_minimum,
        )
    else:
        b = spec.behavior
        stabilized, history = stabilize_with_behavior(
            history,
            desired,
            current,
            now=now,
            up_window=b.scale_up.window,
            down_window=b.scale_down.window,
        )
        if stabilized != desired:
            direction = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
            conds.set("AbleToScale", True, direction)
        else:
            conds.set("AbleToScale", True, "ReadyForNewScale")
        args = RateArgs(
            current,
            stabilized,
            spec.min_replicas,
            spec.max_replicas,
            b.scale_up,
            b.scale_down,
            memory.up_events,
            memory.down_events,
        )
        limited = convert_with_behavior_rate(args, now)
    conds.set("ScalingLimited", limited.replicas != stabilized, limited.reason)
    return limited.replicas, stabilized, HpaMemory(history, memory.up_events, memory.down_events)


def _finish(
    spec: HpaSpec, obs: HpaObserved, memory: HpaMemory, conds: Conditions, desired: int
) -> HpaOutcome:
    current = obs.spec_replicas
    if desired == current:
        return HpaOutcome(current, False, conds.freeze(), (), memory)
    conds.set("AbleToScale", True, "SucceededRescale")
    if spec.behavior is not None:
        if desired > current:
            ups = store_scale_event(
                memory.up_events, desired - current, spec.behavior.scale_up, obs.now
            )
            memory = HpaMemory(memory.recommendations, ups, memory.down_events)
        else:
            downs = store_scale_event(
                memory.down_events, current - desired, spec.behavior.scale_down, obs.now
            )
            memory = HpaMemory(memory.recommendations, memory.up_events, downs)
    return HpaOutcome(desired, True, conds.freeze(), (), memory)
