"""Builders shared by the autoscale tests."""

from __future__ import annotations

from typing import Any

from mlkube.autoscale.api import Observation, ReplicaMetrics
from mlkube.spec.autoscaling import AutoscalingSpec


def spec(**fields: Any) -> AutoscalingSpec:
    """An AutoscalingSpec from camelCase YAML-like fields, validated like a file."""
    return AutoscalingSpec.model_validate(fields)


def replica(
    name: str,
    *,
    cpu: float | None = 0.35,
    ready: bool = True,
    started_at: float = -1000.0,
    in_flight: float = 0.0,
    rps: float = 0.0,
    queue: float = 0.0,
    p95: float | None = None,
    memory: int | None = 100 * 2**20,
) -> ReplicaMetrics:
    return ReplicaMetrics(
        name=name,
        ready=ready,
        started_at=started_at,
        ready_at=started_at + 5 if ready else None,
        cpu_cores=cpu,
        memory_bytes=memory,
        in_flight=in_flight,
        requests_per_second=rps,
        queue_depth=queue,
        latency_p95_ms=p95,
    )


def observation(
    now: float, replicas: list[ReplicaMetrics], *, current: int | None = None, pending: int = 0
) -> Observation:
    return Observation(
        now=now,
        current_replicas=len(replicas) if current is None else current,
        replicas=tuple(replicas),
        cpu_request_cores=0.5,
        memory_request_bytes=512 * 2**20,
        pending_requests=pending,
    )
