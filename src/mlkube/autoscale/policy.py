"""The mlkube autoscaling policy: HPA v2 for cpu/memory, Knative-style windows for load.

Pure: no I/O, no clock (``observation.now``). Every metric in ``spec.metrics`` proposes a count;
the largest wins and a failing metric blocks a scale-down, exactly as HPA. With only cpu/memory
metrics and no ``behavior`` this *is* HPA's legacy algorithm; otherwise the HPA behavior
algorithm (stabilization windows, rate policies) runs over the combined proposal, with the
behavior ``desired.scaling.resolve_scaling`` settles on (the one the cluster's HPA gets).
Scale to zero wraps it all.
"""

from __future__ import annotations

import math
from dataclasses import replace

from mlkube.autoscale import knative
from mlkube.autoscale.api import Decision, Observation, PolicyState
from mlkube.autoscale.history import LoadHistory
from mlkube.autoscale.hpa.controller import (
    HpaOutcome,
    MetricFailure,
    MetricStatus,
    MetricTarget,
    Proposal,
    reconcile,
)
from mlkube.autoscale.hpa_mapping import hpa_memory, hpa_observed, hpa_spec
from mlkube.autoscale.predictive import apply_forecast
from mlkube.spec.autoscaling import (
    AutoscalingSpec,
    ConcurrencyMetric,
    CpuMetric,
    LatencyMetric,
    MemoryMetric,
    QueueDepthMetric,
    RpsMetric,
)

_LIMITS = {
    "TooManyReplicas": "maxReplicas",
    "TooFewReplicas": "minReplicas",
    "ScaleUpLimit": "ScaleUpLimit",
    "ScaleDownLimit": "ScaleDownLimit",
}
NO_SAMPLES = "no metrics returned from resource metrics API"
"""The HPA calculator's error when no pod has a sample (``calculator.py``)."""

_STABILIZED = {
    "ScaleDownStabilized": "scaleDown stabilization window",
    "ScaleUpStabilized": "scaleUp stabilization window",
}


def decide(
    spec: AutoscalingSpec,
    observation: Observation,
    state: PolicyState | None,
    history: LoadHistory | None = None,
) -> tuple[Decision, PolicyState]:
    """The desired replica count for ``observation`` under ``spec``, and the new state.

    With ``autoscaling.predictive`` and a ``history``, the reactive count is raised to the
    forecast's ask (``autoscale.predictive``); ``Decision.standby`` is the warm pool to keep.
    """
    decision, new_state = _reactive(spec, observation, state)
    decision, new_state = apply_forecast(spec, observation, decision, new_state, history)
    return replace(decision, standby=standby_pool(spec, decision.desired_replicas)), new_state


def standby_pool(spec: AutoscalingSpec, serving: int) -> int:
    """Warm standby replicas to keep at ``serving`` replicas: ``standby``, at most
    ``maxReplicas - serving``, none at zero (scale to zero means nothing running)."""
    if serving == 0:
        return 0
    return max(0, min(spec.standby, spec.max_replicas - serving))


def _reactive(
    spec: AutoscalingSpec, observation: Observation, state: PolicyState | None
) -> tuple[Decision, PolicyState]:
    previous = state or PolicyState()
    active = is_active(observation)
    last_active = (
        observation.now if active or previous.last_active_at is None else previous.last_active_at
    )
    if spec.scale_to_zero is None:
        decision, new_state = _decide_scaling(spec, observation, state)
        return decision, replace(new_state, last_active_at=last_active)
    return _decide_with_zero(spec, observation, state, last_active)


def is_active(obs: Observation) -> bool:
    """Any request seen: held at the load balancer, in flight, queued or served."""
    if obs.pending_requests > 0:
        return True
    return any(
        r.in_flight > 0 or r.requests_per_second > 0 or r.queue_depth > 0 for r in obs.replicas
    )


def should_activate(spec: AutoscalingSpec, observation: Observation) -> bool:
    """At zero replicas with requests held by the load balancer: start one replica now."""
    return observation.current_replicas == 0 and observation.pending_requests > 0


def _decide_with_zero(
    spec: AutoscalingSpec, obs: Observation, state: PolicyState | None, last_active: float
) -> tuple[Decision, PolicyState]:
    idle_after = spec.scale_to_zero.idle_after if spec.scale_to_zero is not None else math.inf
    previous = state or PolicyState()
    if obs.current_replicas == 0:
        wanted = 1 if should_activate(spec, obs) else 0
        reason = (
            f"{obs.pending_requests} request(s) held at zero replicas: activating one replica"
            if wanted
            else "idle at zero replicas"
        )
        conditions = (
            ("AbleToScale", "True", "SucceededGetScale"),
            ("ScalingActive", "False", "ScaledToZero"),
        )
        decision = Decision(
            wanted, reason, {"pending_requests": float(obs.pending_requests)}, None, conditions
        )
        return decision, replace(previous, last_active_at=last_active, window=())
    idle_for = obs.now - last_active
    if idle_for >= idle_after:
        reason = f"no requests for {idle_for:.0f}s (idleAfter {idle_after:.0f}s): scaling to zero"
        conditions = (
            ("AbleToScale", "True", "SucceededRescale"),
            ("ScalingActive", "False", "ScaledToZero"),
        )
        decision = Decision(
            0, reason, {"idle_seconds": idle_for}, "scaleToZero idleAfter", conditions
        )
        fresh = PolicyState(last_active_at=last_active, last_scale_at=obs.now)
        return decision, fresh
    floor_one = spec.model_copy(update={"min_replicas": 1})
    decision, new_state = _decide_scaling(floor_one, obs, state)
    return decision, replace(new_state, last_active_at=last_active)


def _decide_scaling(
    spec: AutoscalingSpec, obs: Observation, state: PolicyState | None
) -> tuple[Decision, PolicyState]:
    previous = state or PolicyState()
    resource = tuple(m for m in spec.metrics if isinstance(m, CpuMetric | MemoryMetric))
    load = tuple(m for m in spec.metrics if not isinstance(m, CpuMetric | MemoryMetric))
    hspec = hpa_spec(spec, resource)
    extra, new_state, values = load_proposals(spec, load, obs, previous, fresh=state is None)
    observed = hpa_observed(spec, obs, previous_desired=obs.current_replicas)
    outcome = reconcile(hspec, observed, hpa_memory(state), extra)
    new_state = replace(
        new_state,
        recommendations=outcome.memory.recommendations or (),
        scale_up_events=outcome.memory.up_events,
        scale_down_events=outcome.memory.down_events,
        last_scale_at=obs.now if outcome.rescale else previous.last_scale_at,
    )
    return _decision(outcome, obs, values), new_state


def load_proposals(
    spec: AutoscalingSpec,
    metrics: tuple[ConcurrencyMetric | RpsMetric | LatencyMetric | QueueDepthMetric, ...],
    obs: Observation,
    state: PolicyState,
    *,
    fresh: bool,
) -> tuple[tuple[Proposal, ...], PolicyState, dict[str, float]]:
    """Proposals of the ML metrics, with the updated Knative window and panic state."""
    samples = knative.trim(
        (*state.window, demand_sample(obs, state, spec)), obs.now, spec.stable_window
    )
    state = replace(state, window=samples)
    values: dict[str, float] = {}
    proposals: list[Proposal] = []
    windowed = [m for m in metrics if isinstance(m, ConcurrencyMetric | RpsMetric)]
    if windowed:
        proposal, state = _windowed(spec, windowed, obs, state, values, fresh=fresh)
        proposals.append(proposal)
    for m in metrics:
        if isinstance(m, LatencyMetric):
            proposals.append(latency_proposal(m, obs, spec.tolerance, values))
        elif isinstance(m, QueueDepthMetric):
            proposals.append(queue_proposal(m, obs, spec.tolerance, values))
    return tuple(proposals), state, values


def demand_sample(obs: Observation, state: PolicyState, spec: AutoscalingSpec) -> knative.Sample:
    """This tick's demand totals over the ready replicas and the load balancer.

    In-flight counts queued requests too (as Knative's queue-proxy does). The request rate is
    what arrives, not what is served: served + the queue's growth since the last tick + the
    queue drained over one panic window. A saturated replica serves no more than its capacity,
    so the served rate alone would hide an overload.
    """
    ready = [r for r in obs.replicas if r.ready]
    queued = sum(r.queue_depth for r in obs.replicas) + obs.pending_requests
    in_flight = sum(r.in_flight for r in ready) + obs.pending_requests
    served = sum(r.requests_per_second for r in ready)
    growth = 0.0
    if state.window:
        last = state.window[-1]
        if obs.now > last[0]:
            growth = max(0.0, (queued - last[3]) / (obs.now - last[0]))
    drain = queued / knative.panic_window(spec.stable_window, spec.panic_window_percentage)
    return (obs.now, in_flight, served + growth + drain, queued)


def _windowed(
    spec: AutoscalingSpec,
    metrics: list[ConcurrencyMetric | RpsMetric],
    obs: Observation,
    state: PolicyState,
    values: dict[str, float],
    *,
    fresh: bool,
) -> tuple[Proposal, PolicyState]:
    panic_window = knative.panic_window(spec.stable_window, spec.panic_window_percentage)
    stable_demand = panic_demand = 0.0
    for m in metrics:
        column, label = (1, "concurrency") if isinstance(m, ConcurrencyMetric) else (2, "rps")
        stable = knative.averages(state.window, obs.now, spec.stable_window, column) or 0.0
        panic = knative.averages(state.window, obs.now, panic_window, column) or 0.0
        values[f"{label}_stable"] = stable
        values[f"{label}_panic"] = panic
        stable_demand = max(stable_demand, stable / m.target)
        panic_demand = max(panic_demand, panic / m.target)
    ready = sum(1 for r in obs.replicas if r.ready)
    panic_state = knative.PanicState(
        None if state.panic_until is None else state.panic_until - spec.stable_window,
        state.max_panic_replicas,
    )
    if fresh:
        panic_state = knative.fresh_panic_state(ready, obs.now)
    params = knative.KnativeParams(
        stable_window=spec.stable_window,
        panic_threshold=spec.panic_threshold_percentage / 100.0,
        max_scale_up_rate=spec.max_scale_up_rate,
        max_scale_down_rate=spec.max_scale_down_rate,
    )
    result = knative.scale(
        knative.WindowAverages(stable_demand, panic_demand),
        ready,
        now=obs.now,
        params=params,
        state=panic_state,
    )
    values["panic"] = 1.0 if result.panicking else 0.0
    until = (
        None if result.state.panic_time is None else result.state.panic_time + spec.stable_window
    )
    state = replace(state, panic_until=until, max_panic_replicas=result.state.max_panic)
    name = "+".join(m.type for m in metrics)
    target = MetricTarget(name, name, "AverageValue", 0)
    return MetricStatus(target, result.desired, result.desired), state


def latency_proposal(
    metric: LatencyMetric, obs: Observation, tolerance: float, values: dict[str, float]
) -> Proposal:
    """p95 against the SLO: scale by the ratio when above it, shrink at most by half below it."""
    p95s = [r.latency_p95_ms for r in obs.replicas if r.ready and r.latency_p95_ms is not None]
    ready = sum(1 for r in obs.replicas if r.ready)
    target = MetricTarget("latency", "latency_p95_ms", "Value", 0)
    if not p95s:
        return MetricStatus(target, 0 if ready else obs.current_replicas, 0)
    worst = max(p95s)
    values["latency_p95_ms"] = worst
    ratio = worst / metric.target_ms
    if (1.0 - tolerance) <= ratio <= (1.0 + tolerance):
        return MetricStatus(target, obs.current_replicas, round(worst))
    return MetricStatus(target, math.ceil(max(1, ready) * max(ratio, 0.5)), round(worst))


def queue_proposal(
    metric: QueueDepthMetric, obs: Observation, tolerance: float, values: dict[str, float]
) -> Proposal:
    """Waiting requests per replica, as an HPA AverageValue target over the total."""
    ready = sum(1 for r in obs.replicas if r.ready)
    if not obs.replicas:
        return MetricFailure("FailedGetPodsMetric", "no replicas report a queue depth")
    total = sum(r.queue_depth for r in obs.replicas) + obs.pending_requests
    values["queue_depth"] = total
    target = MetricTarget("queueDepth", "queue_depth", "AverageValue", 0)
    ratio = total / (metric.target * max(1, ready))
    if (1.0 - tolerance) <= ratio <= (1.0 + tolerance):
        return MetricStatus(target, obs.current_replicas, round(total))
    return MetricStatus(target, math.ceil(total / metric.target), round(total))


def _decision(outcome: HpaOutcome, obs: Observation, values: dict[str, float]) -> Decision:
    values = dict(values)
    driver = None
    best = -1
    for status in outcome.statuses:
        label = status.target.name or status.target.type
        values[f"desired_by_{label}"] = float(status.proposal)
        if status.target.target_type == "Utilization":
            values[f"{label}_utilization"] = float(status.value)
        if status.proposal > best:
            best, driver = status.proposal, label
    reasons = {
        kind: reason
        for kind, status_, reason in outcome.conditions
        if kind != "ScalingActive" or status_ == "False"
    }
    limited = _limited_by(outcome)
    current = obs.current_replicas
    if outcome.error is not None and outcome.metric_desired in (None, -1):
        why = reasons.get("ScalingActive", "metrics failed")
        sentence = f"holding at {outcome.desired}: {why} ({outcome.error})"
        if NO_SAMPLES in outcome.error:
            # The HPA's words for what, locally, is only the first sync period of a replica.
            sentence = (
                f"holding at {outcome.desired}: no metric sample yet (a replica reports "
                "after one sync period)"
            )
    elif driver is None:
        bound = limited or "within range"
        sentence = f"{current} → {outcome.desired}: bounds applied before metrics ({bound})"
    else:
        sentence = f"{driver} asks for {best}; {current} → {outcome.desired}"
        if limited:
            sentence += f", limited by {limited}"
    return Decision(outcome.desired, sentence, values, limited, outcome.conditions)


def _limited_by(outcome: HpaOutcome) -> str | None:
    for kind, status, reason in outcome.conditions:
        if kind == "ScalingLimited" and status == "True":
            return _LIMITS.get(reason, reason)
    for kind, _status, reason in outcome.conditions:
        if kind == "AbleToScale" and reason in _STABILIZED:
            return _STABILIZED[reason]
    return None
