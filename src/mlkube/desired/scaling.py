"""The autoscaling policy with every default resolved, once, for both backends.

Pure: no I/O. ``resolve_scaling`` decides which algorithm runs and with which numbers; the
local loop runs exactly that (``autoscale.policy``) and the renderer writes exactly that into
the HPA's ``behavior`` (or KEDA's ``horizontalPodAutoscalerConfig``), every field explicit, so a
cluster's own defaults never decide how a deployment scales.

The rules, in order:

1. ``behavior`` in the spec: HPA API defaulting fills what it leaves out, except that the
   scale-down window defaults to ``downscaleStabilization`` (the controller flag locally).
2. No ``behavior`` and a request metric (concurrency, rps, latency, queueDepth): the ML
   default, scale up at once and down after one ``stableWindow``.
3. No ``behavior``, cpu/memory only, ``downscaleStabilization`` other than HPA's 300 s: HPA's
   behavior defaults with that scale-down window (a cluster cannot change the flag per HPA,
   so the window is carried by ``behavior`` on both sides).
4. Otherwise no behavior at all: HPA's legacy algorithm (scale-up capped at max(2x, 4), the
   flag's 300 s downscale stabilization), which is what an HPA without ``behavior`` runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mlkube.spec.autoscaling import AutoscalingSpec, CpuMetric, MemoryMetric, ScalingRules
from mlkube.spec.deployment import ModelDeploymentSpec

HPA_DOWNSCALE_WINDOW_S = 300.0
"""``--horizontal-pod-autoscaler-downscale-stabilization``'s default."""

HPA_TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance``'s default."""


@dataclass(frozen=True, slots=True)
class Policy:
    """At most ``value`` pods (type "Pods") or percent ("Percent") per ``period`` seconds."""

    type: str
    value: int
    period: int


@dataclass(frozen=True, slots=True)
class Rules:
    """One direction of ``behavior`` after API defaulting."""

    window: int
    """Stabilization window in seconds."""
    select: str = "Max"
    """Max, Min or Disabled."""
    policies: tuple[Policy, ...] = ()
    tolerance: float | None = None

    def longest_period(self) -> int:
        """The longest policy period (0 without policies)."""
        return max((p.period for p in self.policies), default=0)


DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True, slots=True)
class Behavior:
    """``spec.behavior`` after API defaulting (the scale-down window already resolved)."""

    scale_up: Rules
    scale_down: Rules


class BehaviorSource(enum.StrEnum):
    """Where the resolved behavior came from (rules 1 to 4 of this module)."""

    SPEC = "spec"
    ML_DEFAULT = "ml-default"
    DOWNSCALE_WINDOW = "downscale-window"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class ResolvedScaling:
    """What both backends run for one ``autoscaling`` section."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior | None
    """None: HPA's legacy algorithm (rule 4)."""
    source: BehaviorSource
    sync_period_s: float
    """How often a decision is made: ``syncPeriod``, else 15 s for cpu/memory only, else 2 s."""
    tolerance: float


def resolve_scaling(autoscaling: AutoscalingSpec) -> ResolvedScaling:
    """The scaling policy ``autoscaling`` means, every default resolved. Pure."""
    behavior, source = _behavior(autoscaling)
    return ResolvedScaling(
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        behavior=behavior,
        source=source,
        sync_period_s=autoscaling.tick_seconds(),
        tolerance=autoscaling.tolerance,
    )


def _behavior(autoscaling: AutoscalingSpec) -> tuple[Behavior | None, BehaviorSource]:
    if autoscaling.behavior is not None:
        down_window = autoscaling.downscale_stabilization
        return (
            Behavior(
                _rules(autoscaling.behavior.scale_up, DEFAULT_SCALE_UP, DEFAULT_SCALE_UP.window),
                _rules(autoscaling.behavior.scale_down, DEFAULT_SCALE_DOWN, down_window),
            ),
            BehaviorSource.SPEC,
        )
    if not only_resource_metrics(autoscaling):
        return ml_default_behavior(autoscaling), BehaviorSource.ML_DEFAULT
    if autoscaling.downscale_stabilization != HPA_DOWNSCALE_WINDOW_S:
        down = Rules(
            round(autoscaling.downscale_stabilization),
            DEFAULT_SCALE_DOWN.select,
            DEFAULT_SCALE_DOWN.policies,
        )
        return Behavior(DEFAULT_SCALE_UP, down), BehaviorSource.DOWNSCALE_WINDOW
    return None, BehaviorSource.LEGACY


def only_resource_metrics(autoscaling: AutoscalingSpec) -> bool:
    """True when every metric is cpu or memory (HPA Resource metrics). Pure."""
    return all(isinstance(m, CpuMetric | MemoryMetric) for m in autoscaling.metrics)


def _rules(raw: ScalingRules | None, default: Rules, window_default: float) -> Rules:
    """HPA API defaulting of one direction (``copyHPAScalingRules``)."""
    if raw is None:
        return Rules(round(window_default), default.select, default.policies)
    policies = default.policies
    if raw.policies is not None:
        policies = tuple(Policy(p.type.value, p.value, p.period_seconds) for p in raw.policies)
    window = raw.stabilization_window_seconds
    return Rules(
        round(window_default) if window is None else window,
        raw.select_policy.value if raw.select_policy is not None else default.select,
        policies,
        None if raw.tolerance is None else float(raw.tolerance.value),
    )


def ml_default_behavior(autoscaling: AutoscalingSpec) -> Behavior:
    """Without ``behavior``, request metrics scale up at once and down after one stable window.

    Pure. Scale-up: no window, up to ``maxReplicas`` pods per second (no rate limit in
    practice); scale-down: a ``stableWindow`` window, then all at once (Knative's shape).
    """
    up = Rules(0, "Max", (Policy("Pods", max(autoscaling.max_replicas, 1), 1),))
    down = Rules(round(autoscaling.stable_window), "Max", (Policy("Percent", 100, 1),))
    return Behavior(up, down)


def replicas_after_apply(
    old: ModelDeploymentSpec | None, new: ModelDeploymentSpec, current: int
) -> int:
    """The replica count right after ``new`` is applied over ``old``. Pure.

    As on a cluster: without autoscaling the spec's ``replicas`` rules; with it the autoscaler
    owns the count, which is kept and only clamped into the new bounds (an HPA does the same
    at its next sync); a first apply starts at ``replicas`` clamped into the bounds.
    """
    if old is None:
        return new.initial_replicas
    if new.autoscaling is None:
        return new.replicas
    return max(new.autoscaling.min_replicas, min(new.autoscaling.max_replicas, current))
