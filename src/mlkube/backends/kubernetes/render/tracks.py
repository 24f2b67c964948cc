"""How a rollout strategy maps onto Deployments: one track, two colours, or stable + canary.

Pure: no I/O. A ``Track`` is one Deployment: its name, the labels that select its pods, the
model it serves, its share of traffic and its replica bounds.

- RollingUpdate: one track, the Deployment's own rolling update does the work.
- BlueGreen: ``<name>-blue`` serves ``kubernetes.stableModelUri``, ``<name>-green`` serves
  ``model.uri``; the main Service selects ``kubernetes.activeColor``.
- Canary / ABTest: ``<name>`` (stable) and ``<name>-canary``; weights go to an HTTPRoute when a
  Gateway is named, otherwise the replica counts carry the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlkube.backends.kubernetes.render.manifest import LABEL_COLOR, LABEL_TRACK
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.rollout import RolloutStrategy


@dataclass(frozen=True, slots=True)
class Track:
    """One Deployment of a ModelDeployment."""

    deployment_name: str
    suffix: str
    """Empty for the main track, else ``blue``/``green``/``canary``."""

    selector: dict[str, str]
    """Labels the Deployment selects its pods by (beyond ``app: <name>``)."""

    model_uri: str
    weight: int
    """Percent of traffic this track receives now."""

    replicas: int
    min_replicas: int
    max_replicas: int
    service_extra: dict[str, str] = field(default_factory=dict)

    @property
    def config_name(self) -> str:
        """The ConfigMap holding this track's server spec."""
        return f"{self.deployment_name}-config"


def tracks_of(deployment: ModelDeployment, warnings: list[str]) -> tuple[Track, ...]:
    """The Deployments ``deployment`` renders to, by its rollout strategy.

    Pure: no I/O. Appends to ``warnings`` what the strategy cannot honour on Kubernetes.
    """
    spec = deployment.spec
    name = deployment.name
    low, high = _bounds(deployment)
    initial = spec.initial_replicas
    stable_uri = spec.kubernetes.stable_model_uri or spec.model.uri
    strategy = spec.rollout.strategy
    if strategy is RolloutStrategy.ROLLING_UPDATE:
        return (Track(name, "", {}, spec.model.uri, 100, initial, low, high),)
    if strategy is RolloutStrategy.BLUE_GREEN:
        active = spec.kubernetes.active_color
        return tuple(
            Track(
                f"{name}-{color}",
                color,
                {LABEL_COLOR: color},
                stable_uri if color == "blue" else spec.model.uri,
                100 if color == active else 0,
                initial,
                low,
                high,
            )
            for color in ("blue", "green")
        )
    weight = _canary_weight(deployment, warnings)
    header_only = _header_routing(deployment) and weight == 0
    if spec.kubernetes.gateway is None:
        stable_n, canary_n = split_replicas(initial, weight)
    else:
        stable_n, canary_n = _share(initial, 100 - weight), _share(initial, weight)
    canary_bounds = _scaled_bounds(low, high, weight)
    if header_only:
        # Requests with the A/B header still need a canary replica to land on.
        canary_n, canary_bounds = max(1, canary_n), (1, max(1, high))
    stable = Track(
        name,
        "",
        {LABEL_TRACK: "stable"},
        stable_uri,
        100 - weight,
        stable_n,
        *_scaled_bounds(low, high, 100 - weight),
    )
    canary = Track(
        f"{name}-canary",
        "canary",
        {LABEL_TRACK: "canary"},
        spec.model.uri,
        weight,
        canary_n,
        *canary_bounds,
    )
    return (stable, canary)


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replica counts whose ratio is nearest ``weight`` percent canary.

    Pure. A weight strictly between 0 and 100 keeps at least one replica on each side, so the
    split is coarse with few replicas (1 + 1 is 50%): the documented limit of replica-ratio
    splitting without a Gateway.
    """
    if weight <= 0:
        return total, 0
    if weight >= 100:
        return 0, total
    total = max(total, 2)
    canary = min(total - 1, max(1, round(total * weight / 100)))
    return total - canary, canary


def _share(total: int, weight: int) -> int:
    if weight <= 0:
        return 0
    return max(1, math.ceil(total * weight / 100))


def _scaled_bounds(low: int, high: int, weight: int) -> tuple[int, int]:
    if weight <= 0:
        return 0, 0
    scaled_high = max(1, math.ceil(high * weight / 100))
    scaled_low = min(scaled_high, math.ceil(low * weight / 100))
    return scaled_low, scaled_high


def _bounds(deployment: ModelDeployment) -> tuple[int, int]:
    autoscaling = deployment.spec.autoscaling
    if autoscaling is None:
        return deployment.spec.replicas, deployment.spec.replicas
    return autoscaling.min_replicas, autoscaling.max_replicas


def _header_routing(deployment: ModelDeployment) -> bool:
    rollout = deployment.spec.rollout
    return (
        rollout.strategy is RolloutStrategy.AB_TEST
        and rollout.ab_test is not None
        and rollout.ab_test.header is not None
        and deployment.spec.kubernetes.gateway is not None
    )


def _canary_weight(deployment: ModelDeployment, warnings: list[str]) -> int:
    rollout = deployment.spec.rollout
    if rollout.strategy is RolloutStrategy.AB_TEST and rollout.ab_test is not None:
        # The spec validator guarantees abTest is set for strategy ABTest.
        if rollout.ab_test.header and deployment.spec.kubernetes.gateway is None:
            warnings.append(
                f"deployment '{deployment.name}': rollout.abTest.header routing needs "
                "kubernetes.gateway (an HTTPRoute); without it only the weight split applies"
            )
        return rollout.ab_test.weight
    if deployment.spec.kubernetes.canary_weight is not None:
        return deployment.spec.kubernetes.canary_weight
    return rollout.steps[0].weight
