"""How a rollout strategy maps onto Deployments: one track, two colours, or stable + canary.

Pure: no I/O. A ``Track`` is one Deployment: its name, the labels that select its pods, the
model it serves, its share of traffic and its replica bounds.

- RollingUpdate: one track, the Deployment's own rolling update does the work.
- BlueGreen: ``<name>-blue`` serves ``kubernetes.stableModelUri``, ``<name>-green`` serves
  ``model.uri``; the main Service selects ``kubernetes.activeColor``.
- Canary / ABTest: ``<name>`` (stable) and ``<name>-canary``; weights go to an HTTPRoute when a
  Gateway is named, otherwise the replica ratio carries the split (the capability table says
  so, with the share that results).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlkube.backends.kubernetes.render.manifest import LABEL_COLOR, LABEL_TRACK
from mlkube.desired.traffic import current_split
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


def tracks_of(deployment: ModelDeployment) -> tuple[Track, ...]:
    """The Deployments ``deployment`` renders to, by its rollout strategy.

    Pure: no I/O. Canary and ABTest replica counts and weights are ``desired.traffic``'s, the
    same the local backend runs: the stable track keeps every replica and its bounds, the
    canary runs ``max(1, ceil(n·w/100))`` of them.
    """
    spec = deployment.spec
    name = deployment.name
    low, high = _bounds(deployment)
    initial = spec.initial_replicas
    stable_uri = spec.kubernetes.stable_model_uri or spec.model.uri
    strategy = spec.rollout.strategy
    if strategy is RolloutStrategy.ROLLING_UPDATE:
        # The same selector as the stable track of a Canary/ABTest: a Deployment's selector is
        # immutable, so switching strategy must not change it (the switch is an in-place update).
        selector = {LABEL_TRACK: "stable"}
        return (Track(name, "", selector, spec.model.uri, 100, initial, low, high),)
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
    now = current_split(deployment, initial)
    stable = Track(
        name, "", {LABEL_TRACK: "stable"}, stable_uri, 100 - now.weight, initial, low, high
    )
    canary = Track(
        f"{name}-canary",
        "canary",
        {LABEL_TRACK: "canary"},
        spec.model.uri,
        now.weight,
        now.canary_replicas,
        current_split(deployment, low).canary_replicas,
        current_split(deployment, high).canary_replicas,
    )
    return (stable, canary)


def _bounds(deployment: ModelDeployment) -> tuple[int, int]:
    autoscaling = deployment.spec.autoscaling
    if autoscaling is None:
        return deployment.spec.replicas, deployment.spec.replicas
    return autoscaling.min_replicas, autoscaling.max_replicas
