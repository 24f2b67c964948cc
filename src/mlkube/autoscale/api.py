"""The autoscaling contract: what the local loop observes, and what a policy decides.

Pure: no I/O, no clock. ``decide`` takes the time from ``observation.now``. The loop that
gathers an ``Observation`` and acts on a ``Decision`` lives in the backends; it persists the
``PolicyState`` between ticks (``to_json``/``from_json``) so a restart resumes the windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlkube.autoscale.history import LoadHistory
    from mlkube.spec.autoscaling import AutoscalingSpec

Condition = tuple[str, str, str]
"""An HPA condition (type, status, reason), e.g. ("ScalingLimited", "True", "ScaleUpLimit")."""


@dataclass(frozen=True, slots=True)
class ReplicaMetrics:
    """What one replica reported over the last sync period."""

    name: str
    ready: bool
    started_at: float
    """Monotonic seconds when the replica process started."""
    ready_at: float | None
    """When it first became ready (None: not yet)."""
    cpu_cores: float | None
    """CPU used, in cores, averaged over the last sync period (None: no sample)."""
    memory_bytes: int | None
    """Resident set size (None: no sample)."""
    in_flight: float
    """Average in-flight requests over the period."""
    requests_per_second: float
    queue_depth: float
    latency_p95_ms: float | None


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything a policy sees at one tick."""

    now: float
    """Monotonic seconds."""
    current_replicas: int
    """The count currently asked for (HPA's ``scale.spec.replicas``)."""
    replicas: tuple[ReplicaMetrics, ...]
    cpu_request_cores: float | None
    """Per replica, from ``spec.resources.requests.cpu``."""
    memory_request_bytes: int | None
    pending_requests: int = 0
    """Requests held by the load balancer while at zero replicas."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer, with the reasons a human needs to trust it."""

    desired_replicas: int
    reason: str
    """A sentence: which metric drove it, which rule limited it."""
    metric_values: dict[str, float]
    """The values behind it, e.g. ``{"cpu_utilization": 83.0}``."""
    limited_by: str | None
    """The rule that changed the metric's wish, e.g. "maxReplicas", "ScaleUpLimit"."""
    conditions: tuple[Condition, ...]
    """HPA-style conditions AbleToScale / ScalingActive / ScalingLimited."""
    standby: int = 0
    """Warm standby replicas to keep next to the serving ones: ``autoscaling.standby``, at
    most ``maxReplicas`` minus ``desired_replicas`` (one that could never be promoted is
    not kept)."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A past metric-desired count, remembered for stabilization."""

    replicas: int
    at: float


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A past rescale of ``change`` replicas (always positive), for rate policies."""

    change: int
    at: float
    outdated: bool = False
    """HPA marks events older than the longest policy period as reusable slots."""


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Everything a policy remembers between ticks. JSON-serialisable for the loop's store."""

    recommendations: tuple[Recommendation, ...] = ()
    """HPA stabilization history; empty before the first tick."""
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    panic_until: float | None = None
    """Knative panic mode: stays on while over threshold and one stable window after."""
    max_panic_replicas: int = 0
    """Highest count asked for while panicking (panic never scales down)."""
    last_active_at: float | None = None
    """Last time any request was seen; drives scale to zero."""
    window: tuple[tuple[float, float, float, float], ...] = field(default=())
    """Recent (time, in-flight demand, rps demand, queued) totals for the stable/panic windows."""
    last_scale_at: float | None = None
    forecast_asks: tuple[Recommendation, ...] = ()
    """Recent forecast asks (predictive scaling), held one stable window before a scale-down."""

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the loop's SQLite store."""
        return {
            "recommendations": [[r.replicas, r.at] for r in self.recommendations],
            "scaleUpEvents": [[e.change, e.at, e.outdated] for e in self.scale_up_events],
            "scaleDownEvents": [[e.change, e.at, e.outdated] for e in self.scale_down_events],
            "panicUntil": self.panic_until,
            "maxPanicReplicas": self.max_panic_replicas,
            "lastActiveAt": self.last_active_at,
            "window": [list(w) for w in self.window],
            "lastScaleAt": self.last_scale_at,
            "forecastAsks": [[r.replicas, r.at] for r in self.forecast_asks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyState:
        """The inverse of ``to_json``."""
        recs = data["recommendations"]
        ups, downs = data["scaleUpEvents"], data["scaleDownEvents"]
        return cls(
            recommendations=tuple(Recommendation(int(r), float(t)) for r, t in recs),
            scale_up_events=tuple(ScaleEvent(int(e[0]), float(e[1]), bool(e[2])) for e in ups),
            scale_down_events=tuple(ScaleEvent(int(e[0]), float(e[1]), bool(e[2])) for e in downs),
            panic_until=_opt_float(data.get("panicUntil")),
            max_panic_replicas=int(data.get("maxPanicReplicas", 0)),
            last_active_at=_opt_float(data.get("lastActiveAt")),
            window=tuple(
                (float(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in data.get("window", ())
            ),
            last_scale_at=_opt_float(data.get("lastScaleAt")),
            forecast_asks=tuple(
                Recommendation(int(r), float(t)) for r, t in data.get("forecastAsks", ())
            ),
        )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def decide(
    spec: AutoscalingSpec,
    observation: Observation,
    state: PolicyState | None,
    history: LoadHistory | None = None,
) -> tuple[Decision, PolicyState]:
    """Pure: the desired replica count for ``observation`` under ``spec``, and the new state.

    ``history`` feeds ``autoscaling.predictive`` (the measured start-up and the request-rate
    history, see ``autoscale.history``); without it the decision is the reactive one.
    """
    from mlkube.autoscale.policy import decide as _decide

    return _decide(spec, observation, state, history)


def should_activate(spec: AutoscalingSpec, observation: Observation) -> bool:
    """True when the load balancer holds requests at zero replicas: start one replica now."""
    from mlkube.autoscale.policy import should_activate as _should_activate

    return _should_activate(spec, observation)


__all__ = [
    "Condition",
    "Decision",
    "Observation",
    "PolicyState",
    "Recommendation",
    "ReplicaMetrics",
    "ScaleEvent",
    "decide",
    "should_activate",
]
