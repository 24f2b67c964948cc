"""Who owns a live Deployment's ``spec.replicas``, and the handover apply does first when it
stops sending that field. Pure: live objects in, the handovers out.

Server-side apply removes a field its manager stops sending when no other manager owns it; a
Deployment's replicas then fall back to the default of 1
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management). apply
stops sending ``replicas`` once an autoscaler (HPA, ScaledObject) or the rollout driver runs
the count. While ``mlkube`` is still the field's only owner, the documented handover comes
first: apply ``{spec: {replicas: <live count>}}`` as the private manager ``mlkube-handover``,
so the field has another owner when mlkube lets go; the autoscaler's next write of a new count
removes that manager by itself
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#transferring-ownership).

``mlkube scale`` is an Update through the ``scale`` subresource: the API server records it as
manager ``mlkube`` with ``subresource: scale``, a manager distinct from mlkube's apply. A
conflict with it (or with the handover manager) alone is taken back by ``apply_taking_back``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlkube.backends.kubernetes.render.manifest import FIELD_MANAGER, Manifest

HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"
"""The private field manager that holds ``spec.replicas`` while an autoscaler takes it over."""

REPLICAS = ("spec", "replicas")


@dataclass(frozen=True, slots=True, order=True)
class FieldOwner:
    """One ``metadata.managedFields`` entry's identity."""

    manager: str
    operation: str
    subresource: str = ""


MLKUBE_APPLY = FieldOwner(FIELD_MANAGER, "Apply")


def owners(obj: Manifest, path: Sequence[str]) -> list[FieldOwner]:
    """The managers whose managedFields (FieldsV1) include ``path``, sorted. Pure."""
    found = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        node: Any = entry.get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if node is not None:
            found.add(
                FieldOwner(
                    str(entry.get("manager", "")),
                    str(entry.get("operation", "")),
                    str(entry.get("subresource") or ""),
                )
            )
    return sorted(found)


@dataclass(frozen=True, slots=True)
class ReplicasHandover:
    """Apply ``{spec: {replicas}}`` to this Deployment as ``HANDOVER_MANAGER`` first."""

    namespace: str
    name: str
    replicas: int


def replicas_handovers(
    objects: Sequence[Manifest], live: Mapping[tuple[str, str], Manifest]
) -> list[ReplicasHandover]:
    """The handovers before applying ``objects``, given the ``live`` Deployments by
    (namespace, name): one for each existing Deployment applied without ``replicas`` whose
    live count only mlkube's apply owns, at that live count. Pure."""
    handovers = []
    for obj in objects:
        if obj["kind"] != "Deployment" or "replicas" in obj["spec"]:
            continue
        where = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        current = live.get(where)
        if current is not None and owners(current, REPLICAS) == [MLKUBE_APPLY]:
            count = int((current.get("spec") or {}).get("replicas", 1))
            handovers.append(ReplicasHandover(*where, count))
    return handovers
