"""The warm standby pool on Kubernetes: a second Deployment the Service does not select.

Pure: no I/O. With ``autoscaling.standby: N`` (RollingUpdate or Canary; the stable track) a
Deployment ``<name>-standby`` runs N pods from the serving pod template, started, probed and
warmed like any other, but labelled ``mlkube.dev/pool: standby`` instead of ``app: <name>``
and ``mlkube.dev/track: stable``: the Service (``app: <name>``) and the serving Deployment's
selector (``app``, ``track``) do not match them, so they get no traffic and no other
controller counts them.

Promotion is the in-cluster controller's (``backends/kubernetes/standby_driver``): when the
serving Deployment has fewer ready pods than it asks for (its autoscaler raised the count),
it relabels a ready standby pod with the serving labels and the serving ReplicaSet's
``pod-template-hash``. The standby ReplicaSet's selector no longer matches it, so that
ReplicaSet releases it and creates a replacement; the serving ReplicaSet's selector does, so
that ReplicaSet adopts it and deletes its surplus, a pod still starting before a ready one
(https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#isolating-pods-from-a-replicaset,
#how-a-replicaset-works, #scaling-a-replicaset).
"""

from __future__ import annotations

from typing import Any

from mlkube.backends.kubernetes.render.manifest import (
    LABEL_INSTANCE,
    LABEL_TRACK,
    Manifest,
    metadata,
)
from mlkube.backends.kubernetes.render.model_source import model_source
from mlkube.backends.kubernetes.render.tracks import Track
from mlkube.backends.kubernetes.render.workload import (
    config_map,
    deployment_object,
    object_labels,
)
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.rollout import RolloutStrategy

LABEL_POOL = "mlkube.dev/pool"
"""``standby`` on warm pods nothing routes to; removed when a pod is promoted."""
POOL_STANDBY = "standby"
COMPONENT = "standby"
SERVING_ONLY = ("app", LABEL_TRACK)
"""The pod labels the Service and the serving Deployment select by: standby pods lack them."""
POD_TEMPLATE_HASH = "pod-template-hash"
"""The label the Deployment controller adds to its ReplicaSet's selector and pods."""


def standby_name(name: str) -> str:
    """The standby Deployment of deployment ``name``."""
    return f"{name}-standby"


def standby_size(deployment: ModelDeployment) -> int:
    """Pods the standby Deployment runs: ``standby``, at most ``maxReplicas − minReplicas``
    (a standby that could never be promoted is not kept); 0 without one."""
    autoscaling = deployment.spec.autoscaling
    if autoscaling is None or autoscaling.standby == 0:
        return 0
    if deployment.spec.rollout.strategy not in (
        RolloutStrategy.ROLLING_UPDATE,
        RolloutStrategy.CANARY,
    ):
        return 0
    room = autoscaling.max_replicas - max(autoscaling.min_replicas, 1)
    return max(0, min(autoscaling.standby, room))


def standby_selector(name: str) -> dict[str, str]:
    """The standby Deployment's selector: no serving pod carries ``mlkube.dev/pool``."""
    return {LABEL_INSTANCE: name, LABEL_POOL: POOL_STANDBY}


def standby_objects(deployment: ModelDeployment, tracks: tuple[Track, ...]) -> list[Manifest]:
    """The ``<name>-standby`` Deployment, or nothing when the spec asks for no standby."""
    size = standby_size(deployment)
    stable = next((t for t in tracks if t.suffix == ""), None)
    if size == 0 or stable is None:
        return []
    source = model_source(deployment, stable.model_uri)
    # The serving track's ConfigMap: the same revision, so the same server spec.
    config = config_map(deployment, stable, source)
    serving = deployment_object(deployment, stable, source, config)
    spec: dict[str, Any] = serving["spec"]
    template = spec["template"]
    labels = {k: v for k, v in template["metadata"]["labels"].items() if k not in SERVING_ONLY}
    labels[LABEL_POOL] = POOL_STANDBY
    template["metadata"]["labels"] = dict(sorted(labels.items()))
    spec["replicas"] = size
    spec["selector"] = {"matchLabels": standby_selector(deployment.name)}
    object_meta = serving["metadata"]
    object_meta.update(
        metadata(
            standby_name(deployment.name),
            deployment.namespace,
            {**object_labels(deployment, COMPONENT), LABEL_POOL: POOL_STANDBY},
            dict(object_meta.get("annotations") or {}),
        )
    )
    if not object_meta.get("annotations"):
        object_meta.pop("annotations", None)
    return [serving]
