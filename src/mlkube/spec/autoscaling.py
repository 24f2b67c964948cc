"""Autoscaling settings: HPA v2 metrics and behavior, plus ML-aware targets.

Pure: no I/O. The field names follow ``autoscaling/v2`` HorizontalPodAutoscaler where the
concept is the same (``behavior``, ``stabilizationWindowSeconds``, ``selectPolicy``), so the
Kubernetes backend can render them one to one.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlkube.spec.base import Seconds, SpecModel
from mlkube.spec.quantity import Quantity


class ScalingPolicyType(enum.StrEnum):
    """How a scaling policy's value is read: a count of pods or a percent of current."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(enum.StrEnum):
    """Which of several policies wins: the largest change, the smallest, or none at all."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicy(SpecModel):
    """At most ``value`` pods (or percent) of change within ``periodSeconds``."""

    type: ScalingPolicyType
    """Pods: ``value`` replicas; Percent: ``value`` percent of the count at the period's start."""

    value: Annotated[int, Field(gt=0)]
    """How much change the policy allows per period."""

    period_seconds: Annotated[int, Field(gt=0, le=1800)]
    """The look-back over past scale events, in whole seconds (1 to 1800, as HPA)."""


class ScalingRules(SpecModel):
    """One direction of HPA behavior (scaleUp or scaleDown)."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    """Look-back over past recommendations; None takes HPA's default (0 up, 300 down)."""

    select_policy: SelectPolicy | None = None
    """Max (default), Min or Disabled."""

    policies: tuple[ScalingPolicy, ...] | None = None
    """None takes HPA's defaults for that direction."""

    tolerance: Quantity | None = None
    """Per-direction tolerance (HPA's `tolerance`); None takes ``autoscaling.tolerance``."""

    @model_validator(mode="after")
    def _tolerance_range(self) -> ScalingRules:
        if self.tolerance is not None and not 0 <= self.tolerance.value < 1:
            raise ValueError(f"tolerance must be at least 0 and below 1, got {self.tolerance.text}")
        return self


class BehaviorSpec(SpecModel):
    """HPA v2 behavior: stabilization windows and rate policies per direction."""

    scale_up: ScalingRules | None = None
    """None takes HPA's defaults: no window, max(4 pods, 100%) per 15 s."""

    scale_down: ScalingRules | None = None
    """None takes HPA's defaults: the downscale window (300 s), 100% per 15 s."""


class CpuMetric(SpecModel):
    """Average CPU across replicas, as a percent of requests or an absolute value."""

    type: Literal["cpu"]
    """Always `cpu`."""
    target_utilization: Annotated[int, Field(gt=0)] | None = None
    """Percent of ``resources.requests.cpu`` (needs a CPU request)."""

    target_average_value: Quantity | None = None
    """Cores per replica, e.g. ``500m``."""

    @model_validator(mode="after")
    def _one_target(self) -> CpuMetric:
        _exactly_one_target(self.target_utilization, self.target_average_value)
        return self


class MemoryMetric(SpecModel):
    """Average memory across replicas, as a percent of requests or an absolute value."""

    type: Literal["memory"]
    """Always `memory`."""
    target_utilization: Annotated[int, Field(gt=0)] | None = None
    """Percent of ``resources.requests.memory`` (needs a memory request)."""

    target_average_value: Quantity | None = None
    """Bytes per replica, e.g. ``1Gi``."""

    @model_validator(mode="after")
    def _one_target(self) -> MemoryMetric:
        _exactly_one_target(self.target_utilization, self.target_average_value)
        return self


class ConcurrencyMetric(SpecModel):
    """In-flight requests per replica (Knative-style, with panic mode)."""

    type: Literal["concurrency"]
    """Always `concurrency`."""
    target: Annotated[float, Field(ge=0.01)]
    """Average in-flight requests per replica to aim for (Knative's target, minimum 0.01)."""


class RpsMetric(SpecModel):
    """Requests per second per replica."""

    type: Literal["rps"]
    """Always `rps`."""
    target: Annotated[float, Field(ge=0.01)]
    """Requests per second per replica to aim for."""


class LatencyMetric(SpecModel):
    """A latency percentile against an SLO."""

    type: Literal["latency"]
    """Always `latency`."""
    target_ms: Annotated[float, Field(gt=0)]
    """The SLO: scale out while the percentile is above it."""

    percentile: Annotated[float, Field(gt=0, lt=100)] = 95
    """Which latency percentile the SLO is about (replicas report p95)."""


class QueueDepthMetric(SpecModel):
    """Requests waiting for the model, per replica."""

    type: Literal["queueDepth"]
    """Always `queueDepth`."""
    target: Annotated[float, Field(gt=0)]
    """Waiting requests per replica to aim for."""


MetricSpec = Annotated[
    CpuMetric | MemoryMetric | ConcurrencyMetric | RpsMetric | LatencyMetric | QueueDepthMetric,
    Field(discriminator="type"),
]


def _exactly_one_target(utilization: int | None, average: Quantity | None) -> None:
    if (utilization is None) == (average is None):
        raise ValueError("set exactly one of targetUtilization or targetAverageValue")


class AutoscalerEngine(enum.StrEnum):
    """What scales on Kubernetes: the HPA (with the Prometheus adapter) or KEDA."""

    HPA = "hpa"
    KEDA = "keda"


class ScaleToZeroSpec(SpecModel):
    """Scale to zero after an idle period; the first request waits for a replica."""

    idle_after: Seconds = 300.0
    """No requests for this long → zero replicas."""

    activation_timeout: Seconds = 60.0
    """How long the load balancer holds a request while a replica starts, then 503."""


class PredictiveSpec(SpecModel):
    """Scale for the load expected when new replicas will be ready, not for the load now."""

    enabled: bool = True
    """False keeps the section but scales reactively only."""

    horizon: Literal["auto"] | Seconds = "auto"
    """How far ahead to forecast. ``auto``: the revision's measured start-up (spawn to ready,
    the median of its recent replicas) plus one decision period."""

    max_growth: Annotated[float, Field(ge=1, le=10)] = 2.0
    """The forecast never exceeds this many times the current request rate, so a spike's
    steep first seconds cannot run the count away (the count also never exceeds
    maxReplicas)."""

    trend_window: Seconds = 60.0
    """The recent history the linear trend is fitted to (at least 10 s)."""

    seasonality: bool = True
    """With a day or more of the deployment's own request rate, also scale ahead of the
    peak seen at the same time one day (and one week) ago."""

    @model_validator(mode="after")
    def _ranges(self) -> PredictiveSpec:
        if not 10.0 <= self.trend_window <= 3600.0:
            raise ValueError(f"trendWindow must be between 10s and 1h, got {self.trend_window}s")
        if self.horizon != "auto" and not 0 < float(self.horizon) <= 3600.0:
            raise ValueError(f"horizon must be auto or between 0 and 1h, got {self.horizon}s")
        return self


class AutoscalingSpec(SpecModel):
    """How the replica count follows load."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    """Fewest replicas (0 only with scaleToZero)."""
    max_replicas: Annotated[int, Field(ge=1)] = 3
    """Most replicas; must be at least minReplicas."""
    metrics: tuple[MetricSpec, ...] = (CpuMetric(type="cpu", target_utilization=70),)
    """Several metrics → the largest desired count wins, as in HPA."""

    behavior: BehaviorSpec | None = None
    """HPA v2 behavior. None keeps HPA's legacy algorithm for cpu/memory (5 min downscale
    stabilization, scale-up capped at max(2x, 4)); ML metrics then scale down after one
    stable window. ``{}`` selects the behavior algorithm with its defaults."""

    sync_period: Seconds | None = None
    """How often the autoscaler decides. None: 15 s (HPA's sync period) when only cpu/memory
    metrics are listed, else 2 s (Knative's tick). See ``tick_seconds``."""

    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.1
    """HPA's --horizontal-pod-autoscaler-tolerance: ratios within 1 ± this keep the count."""

    downscale_stabilization: Seconds = 300.0
    """HPA's --horizontal-pod-autoscaler-downscale-stabilization (used without ``behavior``)."""

    cpu_initialization_period: Seconds = 300.0
    """HPA's --horizontal-pod-autoscaler-cpu-initialization-period."""

    initial_readiness_delay: Seconds = 30.0
    """HPA's --horizontal-pod-autoscaler-initial-readiness-delay."""

    stable_window: Seconds = 60.0
    """Averaging window of concurrency/RPS metrics (Knative's stable window)."""

    panic_window_percentage: Annotated[float, Field(gt=0, le=100)] = 10.0
    """Panic window as a percent of the stable window."""

    panic_threshold_percentage: Annotated[float, Field(ge=110, le=1000)] = 200.0
    """Enter panic mode when the panic-window demand exceeds this percent of capacity."""

    max_scale_up_rate: Annotated[float, Field(gt=1)] = 1000.0
    """Knative: at most this many times the ready count in one ML-metric decision."""

    max_scale_down_rate: Annotated[float, Field(gt=1)] = 2.0
    """Knative: at most the ready count divided by this removed in one ML-metric decision."""

    scale_to_zero: ScaleToZeroSpec | None = None
    """Allow zero replicas when idle (needs minReplicas: 0)."""

    engine: AutoscalerEngine = AutoscalerEngine.HPA
    """What renders the autoscaler on Kubernetes."""

    predictive: PredictiveSpec | None = None
    """Start-up-aware scaling: a bounded forecast over the start-up horizon (and recurring
    daily peaks) may raise the count, never lower it below the reactive policy's ask."""

    standby: Annotated[int, Field(ge=0, le=100)] = 0
    """Warm standby replicas: started and warmed, not serving, promoted to serving in well
    under a second on scale-up. Never more than maxReplicas minus the serving count (a
    standby that could never be promoted is not kept). They cost replica-seconds like any
    replica."""

    def tick_seconds(self) -> float:
        """How often the loop should call ``decide`` (``sync_period`` or its default)."""
        if self.sync_period is not None:
            return self.sync_period
        only_resources = all(m.type in ("cpu", "memory") for m in self.metrics)
        return 15.0 if only_resources else 2.0

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas ({self.max_replicas}) must be >= minReplicas ({self.min_replicas})"
            )
        if self.min_replicas == 0 and self.scale_to_zero is None:
            raise ValueError("minReplicas 0 needs scaleToZero (the idle period and request hold)")
        if self.scale_to_zero is not None and self.min_replicas != 0:
            raise ValueError(f"scaleToZero needs minReplicas: 0, found {self.min_replicas}")
        if not self.metrics:
            raise ValueError("metrics must name at least one metric")
        if not 6.0 <= self.stable_window <= 3600.0:
            raise ValueError(f"stableWindow must be between 6s and 1h, got {self.stable_window}s")
        if self.sync_period is not None and self.sync_period <= 0:
            raise ValueError(f"syncPeriod must be positive, got {self.sync_period}s")
        return self
