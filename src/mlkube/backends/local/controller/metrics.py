"""The controller's own metrics: what it knows about each deployment, as Prometheus gauges.

``deployment_state`` turns a ``Deployment`` into the plain ``DeploymentState`` that
``observability.controller_metrics`` reads at scrape time (pure: it only reads the record).
``new_metrics`` builds the controller's ``ControllerMetrics`` on a registry of its own; the
control API answers ``GET /metrics`` with ``exposition``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest

from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.decisions.plan import Phase
from mlkube.observability.controller_metrics import ControllerMetrics, DeploymentState


def deployment_state(dep: Deployment) -> DeploymentState:
    """The controller-side facts of one deployment that its metrics export. Pure."""
    phases = Counter(str(r.phase) for r in dep.replicas.values())
    autoscaling = dep.doc.spec.autoscaling
    rollout = dep.rollout
    total = sum(dep.weights.values())
    share = 0.0
    if rollout.active and rollout.target is not None and total > 0:
        share = dep.weights.get(rollout.target, 0.0) / total
    decision = dep.last_decision or {}
    inputs = decision.get("metrics") or {}
    return DeploymentState(
        namespace=dep.namespace,
        name=dep.name,
        desired=dep.desired,
        # Serving replicas only: a ready standby must not hide a missing serving one.
        ready=sum(1 for r in dep.replicas.values() if r.phase is Phase.READY and not r.standby),
        phases=dict(phases),
        min_replicas=autoscaling.min_replicas if autoscaling is not None else None,
        max_replicas=autoscaling.max_replicas if autoscaling is not None else None,
        rollout_phase=str(rollout.phase),
        canary_weight=share,
        stable_revision=rollout.stable,
        canary_revision=rollout.target if rollout.active else None,
        autoscaler_desired=decision.get("desiredReplicas"),
        autoscaler_inputs={k: float(v) for k, v in inputs.items() if _is_number(v)},
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def new_metrics(deployments: Callable[[], Iterable[Deployment]]) -> ControllerMetrics:
    """Controller metrics on a fresh registry, reading ``deployments()`` at each scrape."""
    return ControllerMetrics(
        CollectorRegistry(),
        state=lambda: [deployment_state(d) for d in deployments()],
    )


def exposition(metrics: ControllerMetrics) -> bytes:
    """The Prometheus text exposition of every controller metric."""
    return generate_latest(metrics.registry)
