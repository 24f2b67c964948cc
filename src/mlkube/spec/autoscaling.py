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
    value: Annotated[int, Field(gt=0)]
    period_seconds: Annotated[int, Field(gt=0, le=1800)]


class ScalingRules(SpecModel):
    """One direction of HPA behavior (scaleUp or scaleDown)."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    """Look-back over past recommendations; None takes HPA's default (0 up, 300 down)."""

    select_policy: SelectPolicy | None = None
    """Max (default), Min or Disabled."""

    policies: tuple[ScalingPolicy, ...] | None = None
    """None takes HPA's defaults for that direction."""

    tolerance: Quantity | None = None
    """Per-direction tolerance (HPA's `tolerance`, default 0.1 cluster-wide)."""


class BehaviorSpec(SpecModel):
    """HPA v2 behavior: stabilization windows and rate policies per direction."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class CpuMetric(SpecModel):
    """Average CPU across replicas, as a percent of requests or an absolute value."""

    type: Literal["cpu"]
    target_utilization: Annotated[int, Field(gt=0)] | None = None
    target_average_value: Quantity | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CpuMetric:
        _exactly_one_target(self.target_utilization, self.target_average_value)
        return self


class MemoryMetric(SpecModel):
    """Average memory across replicas, as a percent of requests or an absolute value."""

    type: Literal["memory"]
    target_utilization: Annotated[int, Field(gt=0)] | None = None
    target_average_value: Quantity | None = None

    @model_validator(mode="after")
    def _one_target(self) -> MemoryMetric:
        _exactly_one_target(self.target_utilization, self.target_average_value)
        return self


class ConcurrencyMetric(SpecModel):
    """In-flight requests per replica (Knative-style, with panic mode)."""

    type: Literal["concurrency"]
    target: Annotated[float, Field(gt=0)]


class RpsMetric(SpecModel):
    """Requests per second per replica."""

    type: Literal["rps"]
    target: Annotated[float, Field(gt=0)]


class LatencyMetric(SpecModel):
    """A latency percentile against an SLO."""

    type: Literal["latency"]
    target_ms: Annotated[float, Field(gt=0)]
    percentile: Annotated[float, Field(gt=0, lt=100)] = 95


class QueueDepthMetric(SpecModel):
    """Requests waiting for the model, per replica."""

    type: Literal["queueDepth"]
    target: Annotated[float, Field(gt=0)]


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


class AutoscalingSpec(SpecModel):
    """How the replica count follows load."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 3
    metrics: tuple[MetricSpec, ...] = (CpuMetric(type="cpu", target_utilization=70),)
    """Several metrics → the largest desired count wins, as in HPA."""

    behavior: BehaviorSpec = BehaviorSpec()
    sync_period: Seconds = 15.0
    """How often the autoscaler decides (HPA's --horizontal-pod-autoscaler-sync-period)."""

    stable_window: Seconds = 60.0
    """Averaging window of concurrency/RPS metrics (Knative's stable window)."""

    panic_window_percentage: Annotated[float, Field(gt=0, le=100)] = 10.0
    """Panic window as a percent of the stable window."""

    panic_threshold_percentage: Annotated[float, Field(gt=100)] = 200.0
    """Enter panic mode when the panic-window demand exceeds this percent of capacity."""

    scale_to_zero: ScaleToZeroSpec | None = None
    """Allow zero replicas when idle (needs minReplicas: 0)."""

    engine: AutoscalerEngine = AutoscalerEngine.HPA

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
        return self
