"""Promotion of warm standby pods into the serving pool, what the in-cluster controller runs.

The thin I/O around two pure choices (``waiting`` and ``promotion_patch``). Each tick: read
the serving Deployment, its pods and the standby pods (``render/standby``); when the serving
Deployment asks for more pods than are ready (its autoscaler raised ``spec.replicas``, so
pods are starting cold), relabel up to that many ready standby pods into the serving pool
with one JSON merge patch each, as field manager ``mlkube-rollout``. The serving ReplicaSet
adopts a relabelled pod (its selector now matches, pod-template-hash included) and deletes a
surplus pod that is still starting; the standby ReplicaSet, whose selector no longer matches,
releases it and starts a replacement
(https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#isolating-pods-from-a-replicaset).
The Service selects ``app: <name>``, so the pod is an endpoint from the patch on.

``scale_and_promote`` raises the serving count first and then relabels (the order matters:
a ReplicaSet that adopted a pod before its count went up would delete one of its serving
pods). No promotion happens while the serving Deployment rolls out (two pod-template-hashes):
the pool is of the old template's pods' kind until the rollout ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import ObjectNotFoundError
from mlkube.backends.kubernetes.render.manifest import (
    LABEL_TRACK,
    ROLLOUT_MANAGER,
    KindInfo,
    Manifest,
    kind_info,
)
from mlkube.backends.kubernetes.render.standby import (
    LABEL_POOL,
    POD_TEMPLATE_HASH,
    standby_selector,
)

POD = KindInfo("v1", "Pod", "pods", namespaced=True)


@dataclass(frozen=True, slots=True)
class Promotion:
    """What one tick did."""

    promoted: tuple[str, ...]
    """Pods moved from the standby pool into the serving pool."""
    waiting: int
    """Serving pods the Deployment asks for beyond its ready ones, before promotion."""
    reason: str


def is_ready(pod: Manifest) -> bool:
    """The pod's ``Ready`` condition is True and it is not being deleted. Pure."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serving_hash(pods: list[Manifest]) -> str | None:
    """The serving ReplicaSet's pod-template-hash; None while a rollout leaves two. Pure."""
    hashes = {(p["metadata"].get("labels") or {}).get(POD_TEMPLATE_HASH) for p in pods}
    hashes.discard(None)
    return next(iter(hashes)) if len(hashes) == 1 else None


def waiting(serving: Manifest, pods: list[Manifest]) -> int:
    """Serving pods asked for and not ready (starting, or not created yet). Pure."""
    wanted = int(serving["spec"].get("replicas", 1))
    return max(0, wanted - sum(1 for p in pods if is_ready(p)))


def promotion_patch(name: str, template_hash: str) -> Manifest:
    """The labels that move a standby pod into the serving pool. Pure.

    ``app`` and the track make the Service and the serving ReplicaSet select it; the serving
    ReplicaSet's hash makes that ReplicaSet adopt it; the pool label goes (null deletes in a
    merge patch), so the standby ReplicaSet releases it.
    """
    labels: dict[str, Any] = {
        "app": name,
        LABEL_TRACK: "stable",
        POD_TEMPLATE_HASH: template_hash,
        LABEL_POOL: None,
    }
    return {"metadata": {"labels": labels}}


def promote_waiting(cluster: Cluster, namespace: str, name: str) -> Promotion:
    """One tick: relabel ready standby pods for the serving pods that are not ready yet."""
    serving = cluster.get(kind_info("Deployment"), name, namespace)
    if serving is None:
        raise ObjectNotFoundError(f"no Deployment '{name}' in namespace '{namespace}'")
    pods = cluster.pods(namespace, {"app": name, LABEL_TRACK: "stable"})
    missing = waiting(serving, pods)
    if missing == 0:
        return Promotion((), 0, "every serving pod is ready")
    template_hash = serving_hash(pods)
    if template_hash is None:
        return Promotion((), missing, "the serving Deployment is rolling out: no promotion")
    pool = [p for p in cluster.pods(namespace, standby_selector(name)) if is_ready(p)]
    # The longest-warm first: the most likely to have everything loaded.
    pool.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
    promoted = []
    for pod in pool[:missing]:
        pod_name = pod["metadata"]["name"]
        cluster.merge_patch(
            POD, pod_name, namespace, promotion_patch(name, template_hash), manager=ROLLOUT_MANAGER
        )
        promoted.append(pod_name)
    if not promoted:
        return Promotion((), missing, "no standby pod is ready")
    return Promotion(tuple(promoted), missing, f"promoted {', '.join(promoted)}")


def scale_and_promote(cluster: Cluster, namespace: str, name: str, replicas: int) -> Promotion:
    """Raise the serving Deployment to ``replicas`` (scale subresource), then promote."""
    cluster.scale(name, namespace, replicas)
    return promote_waiting(cluster, namespace, name)
