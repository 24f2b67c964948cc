"""The default mlkube policy: HPA v2 for cpu/memory, Knative-style for concurrency/RPS.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from mlkube.autoscale.api import Decision, Observation, PolicyState
from mlkube.spec.autoscaling import AutoscalingSpec


def decide(
    spec: AutoscalingSpec, observation: Observation, state: PolicyState | None
) -> tuple[Decision, PolicyState]:
    """Placeholder until the policies land: keep the current count within bounds."""
    current = observation.current_replicas
    desired = min(max(current, spec.min_replicas), spec.max_replicas)
    decision = Decision(desired, "policies not implemented yet", {}, None, ())
    return decision, state or PolicyState()
