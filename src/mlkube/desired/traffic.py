"""Who gets traffic during a rollout: replica splits per step and the header A/B route.

Pure: no I/O. One rounding rule for both backends: at a canary (or A/B) weight of ``w``
percent over ``n`` replicas the new revision runs ``max(1, ceil(n·w/100))`` replicas and the
stable revision keeps all ``n`` until promotion (so capacity never drops while traffic moves).
Traffic then follows the weights exactly: locally the load balancer's weights, on a cluster
the HTTPRoute of ``kubernetes.gateway``. Without a Gateway a cluster can only split by replica
ratio; the capability table says so, with the share that results.

A header A/B route means the same on both: requests whose header matches go to the new
revision, every other request to the stable one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.rollout import ABTestSpec, RolloutSpec, RolloutStrategy


@dataclass(frozen=True, slots=True)
class TrafficSplit:
    """One rollout step: the new revision's share of traffic and both revisions' replicas."""

    weight: int
    """Percent of the requests (those not matched by a header route) sent to the new revision."""
    stable_replicas: int
    canary_replicas: int

    @property
    def replica_share(self) -> float:
        """The new revision's share by replica count: what a split without weights gives."""
        total = self.stable_replicas + self.canary_replicas
        return 100.0 * self.canary_replicas / total if total else 0.0


@dataclass(frozen=True, slots=True)
class HeaderRoute:
    """Requests whose ``header`` (lowercase) matches go to the new revision; others do not."""

    header: str
    value: str | None
    """None: any value of the header matches."""


def canary_replicas(replicas: int, weight: int) -> int:
    """Replicas of the new revision at ``weight`` percent of ``replicas``. Pure.

    ``max(1, ceil(replicas · weight / 100))``: a step always runs the new revision (a 0 %
    step is a smoke test without traffic), and rounding up never leaves it short of capacity.
    """
    return max(1, math.ceil(replicas * weight / 100))


def split(replicas: int, weight: int) -> TrafficSplit:
    """The split at ``weight`` percent for ``replicas`` desired replicas. Pure."""
    return TrafficSplit(weight, replicas, canary_replicas(replicas, weight))


def rollout_splits(rollout: RolloutSpec, replicas: int) -> tuple[TrafficSplit, ...]:
    """The split of every step of a Canary (or the one split of an ABTest). Pure.

    RollingUpdate and BlueGreen have no weighted steps: an empty tuple.
    """
    if rollout.strategy is RolloutStrategy.CANARY:
        return tuple(split(replicas, step.weight) for step in rollout.steps)
    if rollout.strategy is RolloutStrategy.AB_TEST:
        return (ab_split(ab_test_of(rollout), replicas),)
    return ()


def ab_test_of(rollout: RolloutSpec) -> ABTestSpec:
    """``rollout.abTest`` (the validator requires it for ABTest) or its defaults. Pure."""
    return rollout.ab_test if rollout.ab_test is not None else ABTestSpec()


def ab_split(ab: ABTestSpec, replicas: int) -> TrafficSplit:
    """An A/B test's split: by header, no request without it reaches B. Pure."""
    weight = 0 if ab.header is not None else ab.weight
    return TrafficSplit(weight, replicas, canary_replicas(replicas, ab.weight))


def header_route(rollout: RolloutSpec) -> HeaderRoute | None:
    """The header route of an ABTest by header, else None. Pure."""
    if rollout.strategy is not RolloutStrategy.AB_TEST:
        return None
    ab = ab_test_of(rollout)
    if ab.header is None:
        return None
    return HeaderRoute(ab.header.lower(), ab.header_value)


def current_split(deployment: ModelDeployment, replicas: int) -> TrafficSplit:
    """The split a cluster runs now for ``replicas`` stable replicas. Pure.

    ABTest: its one split. Canary: the step at ``kubernetes.canaryWeight``, else the first
    step (the rollout driver moves the steps on from there).
    """
    rollout = deployment.spec.rollout
    if rollout.strategy is RolloutStrategy.AB_TEST:
        return ab_split(ab_test_of(rollout), replicas)
    weight = deployment.spec.kubernetes.canary_weight
    return split(replicas, rollout.steps[0].weight if weight is None else weight)
