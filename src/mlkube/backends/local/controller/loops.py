"""The controller's loops: reconcile, readiness probes, metrics scrapes with canary analysis,
and the autoscaler. Each loop is thin: it observes, calls a pure decision, and hands the
changes it returns (``changes``) to ``Controller.apply``, the one writer of the records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from mlkube.autoscale.api import (
    Decision,
    Observation,
    PolicyState,
    ReplicaMetrics,
    decide,
    should_activate,
)
from mlkube.autoscale.history import LoadHistory
from mlkube.backends.local.controller.changes import (
    AnalysisBaseline,
    AnalysisResult,
    AutoscalerRan,
    Change,
    Event,
    ProbeResult,
    Scraped,
    SetDesired,
    TrafficSeen,
)
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.probe import http_get
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.usage import record as record_usage
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import (
    Rates,
    Snapshot,
    merge,
    parse_metrics,
    rates,
)
from mlkube.backends.local.decisions.standby import arriving_rate
from mlkube.desired.rollout import judge_canary
from mlkube.spec.rollout import RolloutStrategy

logger = logging.getLogger(__name__)

_RUNNING = (Phase.STARTING, Phase.READY, Phase.NOT_READY)


async def every(ctrl: Controller, period_s: float, tick: Callable[[], Awaitable[None]]) -> None:
    """Run ``tick`` every ``period_s`` until the controller stops; a failing tick is logged."""
    while not ctrl.stopping.is_set():
        try:
            await tick()
        except Exception:
            logger.exception("controller loop tick failed")
        await ctrl.clock.sleep(period_s)


async def reconcile_tick(ctrl: Controller) -> None:
    ctrl.reconcile()


async def balancer_tick(ctrl: Controller) -> None:
    """Start the balancer again if it died (it then takes every route again); otherwise read
    its counters back."""
    if ctrl.balancer.alive():
        await ctrl.refresh_traffic()
        return
    logger.warning("the balancer is gone; starting it again")
    await ctrl.attach_balancer(after_death=True)


# readiness -----------------------------------------------------------------------------------
async def probe_tick(ctrl: Controller) -> None:
    """Probe every running replica's /v2/health/ready at once; route on change."""
    jobs = [
        (dep, replica)
        for dep in ctrl.deployments.values()
        for replica in dep.replicas.values()
        if replica.handle is not None and replica.phase in _RUNNING
    ]
    timeout = ctrl.settings.probe_timeout_s
    results = await asyncio.gather(
        *(http_get(r.port, "/v2/health/ready", timeout_s=timeout) for _, r in jobs)
    )
    now = ctrl.clock.monotonic()
    threshold = ctrl.settings.failure_threshold
    changed = set()
    for (dep, replica), (status, _) in zip(jobs, results, strict=True):
        if replica.phase not in _RUNNING:
            continue
        result = probe_transition(replica, status == 200, now, threshold)
        if result is None:
            continue
        routed = result.phase is not replica.phase
        ctrl.apply(dep, [result])
        if routed:
            changed.add(dep.key)
    if changed:
        ctrl.reconcile()


def probe_transition(replica: Replica, ok: bool, now: float, threshold: int) -> ProbeResult | None:
    """A running replica's readiness after one probe (None: nothing changes). Pure.

    A success makes it Ready (the Ready event the first time) and clears its failures; a
    failure of a Ready replica counts, and ``threshold`` of them in a row make it NotReady.
    """
    result = ProbeResult(
        replica.name,
        replica.phase,
        replica.probe_failures,
        replica.unready_since,
        replica.ready_at,
        replica.ever_ready,
        replica.last_reason,
    )
    if ok:
        if replica.phase is Phase.READY:
            cleared = replace(result, probe_failures=0, unready_since=None)
            return cleared if cleared != result else None
        if replica.ever_ready:
            return replace(result, phase=Phase.READY, probe_failures=0, unready_since=None)
        ready = Event("Normal", "Ready", f"replica {replica.name} is ready")
        return replace(
            result,
            phase=Phase.READY,
            probe_failures=0,
            unready_since=None,
            ready_at=now,
            ever_ready=True,
            event=ready,
        )
    if replica.phase is not Phase.READY:
        return None
    failures = replica.probe_failures + 1
    if failures < threshold:
        return replace(result, probe_failures=failures)
    unhealthy = Event("Warning", "Unhealthy", f"replica {replica.name} readiness failed")
    return replace(
        result,
        phase=Phase.NOT_READY,
        probe_failures=failures,
        unready_since=now,
        last_reason="readiness probe failed",
        event=unhealthy,
    )


# metrics and canary analysis ------------------------------------------------------------
async def scrape_tick(ctrl: Controller) -> None:
    jobs = [
        (dep, replica)
        for dep in ctrl.deployments.values()
        for replica in dep.replicas.values()
        if replica.handle is not None and replica.phase in _RUNNING
    ]
    results = await asyncio.gather(
        *(http_get(r.port, "/metrics", timeout_s=ctrl.settings.probe_timeout_s) for _, r in jobs)
    )
    now = ctrl.clock.monotonic()
    for (dep, replica), (status, body) in zip(jobs, results, strict=True):
        if status != 200 or replica.handle is None:
            continue
        snapshot = parse_metrics(body.decode(errors="replace"), at=now)
        if snapshot.cpu_seconds is None or snapshot.rss_bytes is None:
            usage = replica.handle.rss_and_cpu()
            if usage is not None:
                snapshot = _with_usage(snapshot, usage)
        ctrl.apply(dep, [Scraped(replica.name, snapshot)])
    for dep in ctrl.deployments.values():
        ctrl.apply(dep, [traffic_seen(dep, now)])
        _canary_analysis(ctrl, dep, now)
    record_usage(ctrl, now)


def _with_usage(snapshot: Snapshot, usage: tuple[int, float]) -> Snapshot:
    rss, cpu = usage
    return replace(snapshot, rss_bytes=rss, cpu_seconds=cpu)


def traffic_seen(dep: Deployment, now: float) -> TrafficSeen:
    """The load balancer's requests per second since the last look (kept until a second
    look). Pure."""
    total = dep.router.stats.requests
    rps = dep.rps
    if dep.lb_seen_at:
        rps = (total - dep.lb_requests_seen) / max(now - dep.lb_seen_at, 1e-9)
    return TrafficSeen(total, now, rps)


def _canary_analysis(ctrl: Controller, dep: Deployment, now: float) -> None:
    rollout = dep.rollout
    analysis = dep.doc.spec.rollout.analysis
    if (
        analysis is None
        or not rollout.active
        or rollout.strategy is not RolloutStrategy.CANARY
        or rollout.target is None
    ):
        return
    canaries = [
        r for r in dep.replicas.values() if r.revision == rollout.target and r.phase is Phase.READY
    ]
    if dep.next_analysis_at is None:
        changes: list[Change] = [
            AnalysisResult(dep.analysis_failure, dep.analysis_passed, now + analysis.interval)
        ]
        changes += [
            AnalysisBaseline(r.name, r.snapshots[-1] if r.snapshots else None) for r in canaries
        ]
        ctrl.apply(dep, changes)
        _mark_lb_base(dep, canaries)
        return
    if now < dep.next_analysis_at:
        return
    merged = _canary_rates(dep, canaries)
    enough, failure = judge_canary(
        merged,
        max_error_rate=analysis.max_error_rate,
        max_p99_ms=analysis.max_p99_latency_ms,
        min_requests=analysis.min_requests,
    )
    ctrl.apply(dep, [analysis_verdict(dep, rollout.target, merged, enough, failure)])


def analysis_verdict(
    dep: Deployment, target: int, merged: Rates, enough: bool, failure: str | None
) -> AnalysisResult:
    """The canary analysis after an interval judged by ``judge_canary``. Pure.

    A failure is kept (the rollout step rolls back); enough good traffic passes it, with an
    event; either way the next interval is unscheduled, and starts at the next scrape.
    """
    if failure is not None:
        return AnalysisResult(failure, dep.analysis_passed, None)
    if not enough:
        return AnalysisResult(dep.analysis_failure, dep.analysis_passed, None)
    passed = Event(
        "Normal",
        "AnalysisPassed",
        f"canary revision {target}: error rate {merged.error_rate:.3f} over "
        f"{merged.requests:.0f} requests, p99 {merged.p99_ms or 0:.1f} ms",
    )
    return AnalysisResult(dep.analysis_failure, True, None, passed)


_LB_BASE: dict[str, tuple[int, int]] = {}


def _mark_lb_base(dep: Deployment, canaries: list[Replica]) -> None:
    for replica in canaries:
        backend = dep.router.backends.get(replica.name)
        if backend is not None:
            _LB_BASE[replica.name] = (backend.requests, backend.errors)


def _canary_rates(dep: Deployment, canaries: list[Replica]) -> Rates:
    """The canary's own rates over the interval.

    Requests and 5xx answers are counted at the load balancer for the canary's replicas (the
    replicas' own counters also count readiness probes, which would dilute the error rate);
    p99 comes from the canary replicas' own latency histograms.
    """
    parts = [
        rates(r.analysis_base or r.snapshots[0], r.snapshots[-1]) for r in canaries if r.snapshots
    ]
    scraped = merge(parts) if parts else Rates(0, 0, 0, 0, None, None, None)
    requests = errors = 0
    for replica in canaries:
        backend = dep.router.backends.get(replica.name)
        if backend is None:
            continue
        base_requests, base_errors = _LB_BASE.get(replica.name, (0, 0))
        requests += backend.requests - base_requests
        errors += backend.errors - base_errors
    if requests == 0:
        return scraped
    return Rates(requests, errors, 0.0, errors / requests, scraped.p95_ms, scraped.p99_ms, None)


# autoscaler -------------------------------------------------------------------------------
async def autoscale_tick(ctrl: Controller) -> None:
    now = ctrl.clock.monotonic()
    for dep in ctrl.deployments.values():
        spec = dep.doc.spec.autoscaling
        if spec is None or dep.rollout.active:
            continue
        if dep.desired == 0 and dep.router.holding:
            observation = _observation(dep, now)
            if should_activate(spec, observation):
                _scale(ctrl, dep, 1, "a request arrived while at zero replicas")
                continue
        if now < dep.next_autoscale_at:
            continue
        observation = _observation(dep, now)
        history = _load_history(ctrl, dep, observation, now)
        decision, state = decide(spec, observation, dep.autoscale_state, history)
        ctrl.metrics.decision(
            dep.namespace, dep.name, before=dep.desired, after=decision.desired_replicas
        )
        changes = autoscaler_ran(dep, decision, state, now + spec.tick_seconds())
        ctrl.apply(dep, changes)
        if any(isinstance(change, SetDesired) for change in changes):
            ctrl.reconcile()


def autoscaler_ran(
    dep: Deployment, decision: Decision, state: PolicyState | None, next_at: float
) -> list[Change]:
    """What one autoscaler sync changes: its state and decision, the AutoscalerDecision event
    when the decision is news (``_news``), and the count when the decision changes it. Pure."""
    shown = {
        "desiredReplicas": decision.desired_replicas,
        "reason": decision.reason,
        "metrics": decision.metric_values,
        "limitedBy": decision.limited_by,
        "conditions": [list(c) for c in decision.conditions],
        "standby": decision.standby,
    }
    event = None
    if _news(dep.last_decision, shown, dep.desired):
        inputs = ", ".join(f"{k}={v:.3g}" for k, v in decision.metric_values.items())
        limit = f"; limitedBy={decision.limited_by}" if decision.limited_by else ""
        limit += f"; standby={decision.standby}" if decision.standby else ""
        event = Event(
            "Normal",
            "AutoscalerDecision",
            f"{dep.desired} -> {decision.desired_replicas}: {decision.reason} ({inputs}{limit})",
        )
    changes: list[Change] = [AutoscalerRan(state, shown, next_at, event, decision.standby)]
    if decision.desired_replicas != dep.desired:
        changes.append(SetDesired(decision.desired_replicas, decision.reason))
    return changes


def _news(previous: dict[str, Any] | None, decision: dict[str, Any], current: int) -> bool:
    """Whether a decision is worth an event: it changes the count, or what holds it differs
    from the last decision. A steady hold is not repeated every tick (it would bury every other
    event); ``status`` always shows the latest decision with its inputs."""
    if previous is None or decision["desiredReplicas"] != current:
        return True
    return _outcome(previous) != _outcome(decision)


def _outcome(decision: dict[str, Any]) -> tuple[object, ...]:
    """What makes two holds different: the count, a bound or rate limit that holds it, and
    whether the metrics worked. A stabilization window that merely smooths an idle metric
    flickering between 0 and 1 replica's worth is not news (it flipped every tick)."""
    limited = decision["limitedBy"]
    if limited is not None and "stabilization window" in limited:
        limited = None
    active = [c for c in decision["conditions"] if c[0] == "ScalingActive"]
    return decision["desiredReplicas"], limited, active


def _load_history(
    ctrl: Controller, dep: Deployment, observation: Observation, now: float
) -> LoadHistory:
    """This tick's arriving rate and the revision's cold start-ups, into the deployment's
    load tracker; the history ``decide`` forecasts from."""
    counts = {name: b.requests for name, b in dep.router.backends.items()}
    seconds = now - dep.load_seen_at if dep.load_counts is not None else 0.0
    rate = arriving_rate(dep.load_counts, counts, dep.router.holding, seconds)
    if dep.load_counts is None:  # the first look has no interval: the held requests only
        rate = float(dep.router.holding)
    cold = cold_replicas(dep, observation)
    return ctrl.track_load(dep, ctrl.clock.wall(), counts, rate, cold)


def cold_replicas(dep: Deployment, observation: Observation) -> list[ReplicaMetrics]:
    """The observed replicas whose spawn-to-ready time is a start-up of the stable revision:
    not promoted from standby (that start-up was paid before the scale-up) and not
    re-adopted by a restarted controller (their start times are another process's clock).
    Pure."""
    cold = []
    for metrics in observation.replicas:
        replica = dep.replicas.get(metrics.name)
        if (
            replica is not None
            and replica.revision == dep.rollout.stable
            and not replica.promoted
            and replica.adopted_at is None
        ):
            cold.append(metrics)
    return cold


def _scale(ctrl: Controller, dep: Deployment, replicas: int, reason: str) -> None:
    ctrl.apply(dep, [SetDesired(replicas, reason)])
    ctrl.reconcile()


def _observation(dep: Deployment, now: float) -> Observation:
    spec = dep.doc.spec
    period = spec.autoscaling.tick_seconds() if spec.autoscaling else 15.0
    metrics = []
    for replica in dep.replicas.values():
        if replica.handle is None or replica.phase not in _RUNNING or replica.standby:
            continue  # a standby serves nothing: its idle metrics would dilute the load
        metrics.append(_replica_metrics(replica, now, period))
    requests = spec.resources.effective_requests()
    cpu, memory = requests.get("cpu"), requests.get("memory")
    return Observation(
        now=now,
        current_replicas=dep.desired,
        replicas=tuple(metrics),
        cpu_request_cores=float(cpu.value) if cpu is not None else None,
        memory_request_bytes=memory.whole if memory is not None else None,
        pending_requests=dep.router.holding,
    )


def _replica_metrics(replica: Replica, now: float, period: float) -> ReplicaMetrics:
    window = [s for s in replica.snapshots if s.at >= now - period] or replica.snapshots[-1:]
    first = next((s for s in replica.snapshots if s.at >= now - period - 1e-9), None)
    base = (
        replica.snapshots[replica.snapshots.index(first) - 1]
        if first and replica.snapshots.index(first) > 0
        else first
    )
    latest = replica.snapshots[-1] if replica.snapshots else None
    measured = (
        rates(base, latest)
        if base is not None and latest is not None and base is not latest
        else None
    )
    return ReplicaMetrics(
        name=replica.name,
        ready=replica.phase is Phase.READY,
        started_at=replica.started_at or now,
        ready_at=replica.ready_at,
        cpu_cores=measured.cpu_cores if measured else None,
        memory_bytes=latest.rss_bytes if latest else None,
        in_flight=sum(s.in_flight for s in window) / len(window) if window else 0.0,
        requests_per_second=measured.requests_per_second if measured else 0.0,
        queue_depth=latest.queue_depth if latest else 0.0,
        latency_p95_ms=measured.p95_ms if measured else None,
    )


def demand_callback(ctrl: Controller, dep: Deployment) -> Callable[[], None]:
    """What the router calls when it holds a request at zero replicas: activate now."""

    def on_demand() -> None:
        spec = dep.doc.spec.autoscaling
        if spec is not None and dep.desired == 0:
            _scale(ctrl, dep, 1, "a request arrived while at zero replicas")

    return on_demand
