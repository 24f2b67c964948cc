"""A replica's measured profile, and the replica model the simulator builds from it.

Pure: no I/O. ``mlkube profile`` writes the JSON (``Profile.to_json``); ``mlkube simulate
--profile`` reads it back. Without a profile the model comes from the spec and defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from mlkube.autoscale.simulator import P95_FACTOR, ReplicaModel
from mlkube.errors import MlkubeError
from mlkube.spec import ModelDeployment
from mlkube.spec.autoscaling import LatencyMetric

PROFILE_VERSION = 1


class ProfileError(MlkubeError):
    """A profile file that cannot be used."""


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """One step of the load test: offered concurrency and what came back."""

    concurrency: int
    requests_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    cpu_cores: float
    memory_bytes: int
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Profile:
    """What one replica can do, measured on this machine."""

    model: str
    slo_ms: float
    startup_s: float
    base_latency_ms: float
    capacity_rps: float
    """Highest throughput reached."""
    capacity_at_slo_rps: float
    """Highest throughput with p95 within the SLO."""
    cpu_per_request: float
    """Core-seconds per request (slope of CPU over throughput)."""
    idle_cpu_cores: float
    memory_bytes: int
    points: tuple[LoadPoint, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The profile file's content."""
        return {
            "version": PROFILE_VERSION,
            "model": self.model,
            "sloMs": self.slo_ms,
            "startupSeconds": self.startup_s,
            "baseLatencyMs": self.base_latency_ms,
            "capacityRps": self.capacity_rps,
            "capacityAtSloRps": self.capacity_at_slo_rps,
            "cpuPerRequest": self.cpu_per_request,
            "idleCpuCores": self.idle_cpu_cores,
            "memoryBytes": self.memory_bytes,
            "points": [
                {
                    "concurrency": p.concurrency,
                    "rps": p.requests_per_second,
                    "p50Ms": p.latency_p50_ms,
                    "p95Ms": p.latency_p95_ms,
                    "cpuCores": p.cpu_cores,
                    "memoryBytes": p.memory_bytes,
                    "errors": p.errors,
                }
                for p in self.points
            ],
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> Profile:
        """Parse a profile file's content; errors name the file and the field."""
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: a profile is a JSON object, got {type(data).__name__}")
        try:
            return cls(
                model=str(data.get("model", "")),
                slo_ms=_positive(data, "sloMs", source),
                startup_s=_non_negative(data, "startupSeconds", source),
                base_latency_ms=_positive(data, "baseLatencyMs", source),
                capacity_rps=_positive(data, "capacityRps", source),
                capacity_at_slo_rps=_non_negative(data, "capacityAtSloRps", source),
                cpu_per_request=_non_negative(data, "cpuPerRequest", source),
                idle_cpu_cores=_non_negative(data, "idleCpuCores", source),
                memory_bytes=int(_non_negative(data, "memoryBytes", source)),
                points=tuple(_point(p, source) for p in data.get("points", ())),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"{source}: {exc}") from exc


def _point(data: Any, source: str) -> LoadPoint:
    """One load-test step of a profile file (``to_json``'s ``points``)."""
    return LoadPoint(
        concurrency=int(_positive(data, "concurrency", source)),
        requests_per_second=_non_negative(data, "rps", source),
        latency_p50_ms=_non_negative(data, "p50Ms", source),
        latency_p95_ms=_non_negative(data, "p95Ms", source),
        cpu_cores=_non_negative(data, "cpuCores", source),
        memory_bytes=int(_non_negative(data, "memoryBytes", source)),
        errors=int(_non_negative(data, "errors", source)) if "errors" in data else 0,
    )


def _number(data: dict[str, Any], key: str, source: str) -> float:
    if key not in data:
        raise ProfileError(f"{source}: missing '{key}'")
    value = float(data[key])
    if math.isnan(value) or math.isinf(value):
        raise ProfileError(f"{source}: '{key}' must be a finite number, got {data[key]!r}")
    return value


def _positive(data: dict[str, Any], key: str, source: str) -> float:
    value = _number(data, key, source)
    if value <= 0:
        raise ProfileError(f"{source}: '{key}' must be positive, got {value}")
    return value


def _non_negative(data: dict[str, Any], key: str, source: str) -> float:
    value = _number(data, key, source)
    if value < 0:
        raise ProfileError(f"{source}: '{key}' must not be negative, got {value}")
    return value


def slo_ms(deployment: ModelDeployment | None) -> float:
    """The latency SLO: a latency metric's target, else the p99 alert threshold, else 500 ms."""
    if deployment is None:
        return 500.0
    autoscaling = deployment.spec.autoscaling
    if autoscaling is not None:
        for metric in autoscaling.metrics:
            if isinstance(metric, LatencyMetric):
                return metric.target_ms
    return deployment.spec.monitoring.alerts.p99_latency_ms


def model_from(
    deployment: ModelDeployment | None,
    profile: Profile | None = None,
    **overrides: float | int | None,
) -> ReplicaModel:
    """The simulator's replica model: defaults, then the spec's resources, then the profile,
    then explicit overrides (``capacity_rps``, ``startup_s``, ``cpu_per_request``...)."""
    model = ReplicaModel(slo_ms=slo_ms(deployment))
    if deployment is not None:
        requests = deployment.spec.resources.requests
        limits = deployment.spec.resources.limits
        cpu_req, cpu_lim, mem_req = requests.get("cpu"), limits.get("cpu"), requests.get("memory")
        model = replace(
            model,
            cpu_request_cores=None if cpu_req is None else float(cpu_req.value),
            cpu_limit_cores=None if cpu_lim is None else float(cpu_lim.value),
            memory_request_bytes=None if mem_req is None else int(mem_req.value),
        )
    if profile is not None:
        model = replace(
            model,
            capacity_rps=profile.capacity_rps,
            base_latency_ms=_base_latency(profile),
            startup_s=profile.startup_s,
            cpu_per_request=profile.cpu_per_request,
            idle_cpu_cores=profile.idle_cpu_cores,
            memory_bytes=profile.memory_bytes,
        )
    return replace(model, **overrides) if overrides else model  # type: ignore[arg-type]


def _base_latency(profile: Profile) -> float:
    """The service time that makes the model's capacity at the SLO match the measured one."""
    if profile.capacity_at_slo_rps <= 0 or profile.capacity_at_slo_rps >= profile.capacity_rps:
        return profile.base_latency_ms
    rho = profile.capacity_at_slo_rps / profile.capacity_rps
    return (1.0 - rho) * profile.slo_ms / P95_FACTOR
