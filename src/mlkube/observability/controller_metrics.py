"""Per-deployment metrics of the local controller (catalogue: ``CONTROLLER_METRICS``).

State-shaped gauges (desired / ready replicas, replicas by phase, rollout phase and canary
weight, the autoscaler's last wish and its inputs) are read at scrape time from a snapshot
function the controller passes in, as plain ``DeploymentState`` values, so this module never
imports the controller. Events (autoscaler decisions, restarts) are counters the controller
bumps where they happen. Nothing registers on the global registry.

Wiring (in ``mlkube.backends.local.controller``): ``metrics = ControllerMetrics(registry,
state=lambda: [deployment_state(d) for d in ctrl.deployments.values()])``; call
``metrics.decision(...)`` in the autoscaler tick and ``metrics.restart(...)`` in
``Controller._crashed``; answer ``GET /metrics`` with
``prometheus_client.generate_latest(registry)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlkube.observability.catalogue import CONTROLLER_METRICS

PHASES = ("Pending", "Starting", "Ready", "NotReady", "CrashLoopBackOff", "Terminating")
ROLLOUT_PHASES = ("Progressing", "Complete", "Failed", "RolledBack", "ABTest")
RESTART_REASONS = ("OOMKilled", "Error", "Signal", "Readiness", "Other")
MAX_INPUTS = 24
"""At most this many autoscaler inputs per deployment: a bound on the ``input`` label."""
_INPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_HELP = {m.name: m.help for m in CONTROLLER_METRICS}
_DEP = ["namespace", "deployment"]


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """What the controller knows about one deployment, as plain values."""

    namespace: str
    name: str
    desired: int
    ready: int
    phases: Mapping[str, int] = field(default_factory=dict)
    """Replicas by phase name (``Phase`` values); phases left out count 0."""
    min_replicas: int | None = None
    max_replicas: int | None = None
    rollout_phase: str = "Complete"
    canary_weight: float = 0.0
    """Share of traffic (0-1) of the rollout's new revision."""
    stable_revision: int = 1
    canary_revision: int | None = None
    autoscaler_desired: int | None = None
    autoscaler_inputs: Mapping[str, float] = field(default_factory=dict)


def restart_reason(text: str) -> str:
    """The bounded ``reason`` label for a free-text exit reason of the supervisor. Pure.

    ``OOMKilled`` → OOMKilled, ``exited with code 1`` → Error, ``killed by SIGKILL`` →
    Signal, ``failed readiness ...`` → Readiness, anything else → Other.
    """
    if text.startswith("OOMKilled"):
        return "OOMKilled"
    if text.startswith("exited with code"):
        return "Error"
    if text.startswith("killed by"):
        return "Signal"
    if "readiness" in text:
        return "Readiness"
    return "Other"


def direction(before: int, after: int) -> str:
    """``up``, ``down`` or ``none``. Pure."""
    if after > before:
        return "up"
    if after < before:
        return "down"
    return "none"


class _DeploymentCollector(Collector):
    def __init__(self, state: Callable[[], Iterable[DeploymentState]]) -> None:
        self._state = state

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the metric set depends on live state; nothing to check at register

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(name, _HELP[name], labels=_DEP + list(extra))
            for name, extra in (
                ("mlkube_deployment_desired_replicas", ()),
                ("mlkube_deployment_ready_replicas", ()),
                ("mlkube_deployment_replicas", ("phase",)),
                ("mlkube_deployment_min_replicas", ()),
                ("mlkube_deployment_max_replicas", ()),
                ("mlkube_autoscaler_desired_replicas", ()),
                ("mlkube_autoscaler_metric_value", ("input",)),
                ("mlkube_rollout_phase", ("phase",)),
                ("mlkube_rollout_canary_weight_ratio", ()),
                ("mlkube_rollout_revision", ("role",)),
            )
        }
        for dep in self._state():
            _add(families, dep)
        yield from families.values()


def _add(families: dict[str, GaugeMetricFamily], dep: DeploymentState) -> None:
    key = [dep.namespace, dep.name]
    families["mlkube_deployment_desired_replicas"].add_metric(key, dep.desired)
    families["mlkube_deployment_ready_replicas"].add_metric(key, dep.ready)
    for phase in PHASES:
        families["mlkube_deployment_replicas"].add_metric([*key, phase], dep.phases.get(phase, 0))
    if dep.min_replicas is not None:
        families["mlkube_deployment_min_replicas"].add_metric(key, dep.min_replicas)
    if dep.max_replicas is not None:
        families["mlkube_deployment_max_replicas"].add_metric(key, dep.max_replicas)
    if dep.autoscaler_desired is not None:
        families["mlkube_autoscaler_desired_replicas"].add_metric(key, dep.autoscaler_desired)
    inputs = sorted(k for k in dep.autoscaler_inputs if _INPUT_NAME.match(k))[:MAX_INPUTS]
    for name in inputs:
        families["mlkube_autoscaler_metric_value"].add_metric(
            [*key, name], dep.autoscaler_inputs[name]
        )
    for phase in ROLLOUT_PHASES:
        value = 1.0 if phase == dep.rollout_phase else 0.0
        families["mlkube_rollout_phase"].add_metric([*key, phase], value)
    families["mlkube_rollout_canary_weight_ratio"].add_metric(key, dep.canary_weight)
    families["mlkube_rollout_revision"].add_metric([*key, "stable"], dep.stable_revision)
    if dep.canary_revision is not None:
        families["mlkube_rollout_revision"].add_metric([*key, "canary"], dep.canary_revision)


class ControllerMetrics:
    """The controller's metrics on ``registry``: live state gauges plus event counters."""

    def __init__(
        self,
        registry: CollectorRegistry,
        state: Callable[[], Iterable[DeploymentState]] = lambda: (),
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: used by nothing
        self.registry = registry
        self._decisions = Counter(
            "mlkube_autoscaler_decisions",
            _HELP["mlkube_autoscaler_decisions_total"],
            [*_DEP, "direction"],
            registry=registry,
        )
        self._restarts = Counter(
            "mlkube_replica_restarts",
            _HELP["mlkube_replica_restarts_total"],
            [*_DEP, "reason"],
            registry=registry,
        )
        registry.register(_DeploymentCollector(state))

    def decision(self, namespace: str, deployment: str, *, before: int, after: int) -> None:
        """Count one autoscaler decision (also when it keeps the count)."""
        self._decisions.labels(namespace, deployment, direction(before, after)).inc()

    def restart(self, namespace: str, deployment: str, reason: str) -> None:
        """Count one replica restart; ``reason`` is the supervisor's text (classified)."""
        self._restarts.labels(namespace, deployment, restart_reason(reason)).inc()

    def forget(self, namespace: str, deployment: str) -> None:
        """Drop the counters of a deployment that was deleted (its series end)."""
        for value in ("up", "down", "none"):
            self._remove(self._decisions, namespace, deployment, value)
        for value in RESTART_REASONS:
            self._remove(self._restarts, namespace, deployment, value)

    @staticmethod
    def _remove(counter: Counter, *labels: str) -> None:
        try:
            counter.remove(*labels)
        except KeyError:
            return
