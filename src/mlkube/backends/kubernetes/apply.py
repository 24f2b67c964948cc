"""Server-side apply of rendered objects, in order, then pruning of what the render dropped.

The decisions are pure functions (``prune_plan``, ``without_autoscaled_replicas``,
``needed_apis``, ``ownership.replicas_handovers``); ``apply_objects`` is the thin loop that
asks the cluster and acts.

Order of an apply:
1. every CRD-served API the objects need is checked by discovery, so a missing KEDA, VPA,
   Gateway API or Prometheus Operator fails before anything is changed;
2. a server-side dry run of every object (``dryRun=All``) catches what the API server would
   reject, again before anything is changed (objects in a namespace this apply creates are
   skipped in that pass: the namespace does not exist yet);
3. the objects are applied for real with field manager ``mlkube``, in dependency order; a
   conflict with mlkube's own other writers only (``mlkube scale``, the rollout driver, the
   replicas handover) is taken back with force, and a canary whose steps the driver runs keeps
   its replica count; a Deployment that stops sending ``spec.replicas`` (an autoscaler or the
   driver owns the count now) while ``mlkube`` is that field's only owner first hands it over
   (``ownership.replicas_handovers``), so the count never falls back to the default of 1;
4. objects labelled as this deployment's that the render no longer holds are deleted, in
   reverse order. PersistentVolumes, claims and Namespaces are never pruned: they hold data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import (
    ApiMissingError,
    ApplyError,
    ConflictError,
    ForbiddenError,
)
from mlkube.backends.kubernetes.ownership import (
    HANDOVER_MANAGER,
    ReplicasHandover,
    replicas_handovers,
)
from mlkube.backends.kubernetes.progression import ClusterRollout
from mlkube.backends.kubernetes.render.manifest import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_ROLLOUT,
    ANNOTATION_ROLLOUT_STATE,
    FIELD_MANAGER,
    KINDS,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    ROLLOUT_MANAGER,
    KindInfo,
    Manifest,
    apply_rank,
    kind_info,
)

logger = logging.getLogger(__name__)

NEVER_PRUNED = frozenset({"Namespace", "PersistentVolume", "PersistentVolumeClaim"})
AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Identity of an object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.kind}/{self.name}{where}"


def key_of(obj: Manifest) -> ObjectKey:
    """The identity of a JSON-shaped object."""
    meta = obj["metadata"]
    return ObjectKey(obj["kind"], meta.get("namespace") or "", meta["name"])


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did."""

    applied: tuple[ObjectKey, ...]
    """Every object applied (with ``dry_run``: accepted by the server's dry run)."""

    pruned: tuple[ObjectKey, ...]
    warnings: tuple[str, ...] = ()


def needed_apis(objects: Iterable[Manifest]) -> list[KindInfo]:
    """The CRD-served kinds among ``objects`` (each once, in table order). Pure."""
    kinds = {obj["kind"] for obj in objects}
    return [info for info in KINDS if info.crd and info.kind in kinds]


def instances(objects: Iterable[Manifest]) -> list[tuple[str, str]]:
    """(namespace, instance) pairs of the objects, for pruning by label. Pure."""
    found = {
        (obj["metadata"].get("namespace", ""), obj["metadata"]["labels"][LABEL_INSTANCE])
        for obj in objects
        if obj["kind"] in ("Deployment", "ResourceQuota")
    }
    return sorted(found)


def prune_plan(desired: Sequence[Manifest], live: Iterable[Manifest]) -> list[ObjectKey]:
    """Live objects of ours that ``desired`` no longer holds, in reverse apply order. Pure.

    Only objects carrying ``app.kubernetes.io/managed-by: mlkube`` are candidates, and never
    the kinds in ``NEVER_PRUNED``.
    """
    wanted = {key_of(obj) for obj in desired}
    stale = {
        key_of(obj)
        for obj in live
        if obj["metadata"].get("labels", {}).get(LABEL_MANAGED_BY) == MANAGED_BY
        and obj["kind"] not in NEVER_PRUNED
        and key_of(obj) not in wanted
    }
    return sorted(stale, key=lambda k: (-apply_rank(k.kind), k.namespace, k.name))


def without_autoscaled_replicas(
    objects: Sequence[Manifest], existing: set[ObjectKey]
) -> list[Manifest]:
    """Drop ``spec.replicas`` from existing Deployments that an autoscaler drives. Pure.

    The autoscaler owns the replica count once it runs; applying our starting count again
    would reset it (or conflict with the autoscaler's field manager). A new Deployment keeps
    ``replicas`` so it starts at the spec's initial count.
    """
    scaled = {
        (obj["metadata"]["namespace"], obj["spec"]["scaleTargetRef"]["name"])
        for obj in objects
        if obj["kind"] in AUTOSCALER_KINDS
    }
    out: list[Manifest] = []
    for obj in objects:
        key = key_of(obj)
        if obj["kind"] == "Deployment" and key in existing and (key.namespace, key.name) in scaled:
            spec = {k: v for k, v in obj["spec"].items() if k != "replicas"}
            obj = {**obj, "spec": spec}
        out.append(obj)
    return out


def apply_objects(
    cluster: Cluster,
    objects: Sequence[Manifest],
    *,
    dry_run: bool,
    force: bool,
    prune: bool,
) -> ApplyResult:
    """Apply ``objects`` (already in apply order) as described in the module docstring."""
    check_apis(cluster, objects)
    live = _live_deployments(cluster, objects)
    existing = {ObjectKey("Deployment", namespace, name) for namespace, name in live}
    objects = without_autoscaled_replicas(objects, existing)
    objects = without_driven_replicas(objects, _live_rollouts(cluster, objects))
    handovers = replicas_handovers(objects, live)
    _dry_run_all(cluster, objects, force=force)
    if not dry_run:
        _hand_over_replicas(cluster, handovers)
        for obj in objects:
            apply_taking_back(cluster, obj, dry_run=False, force=force)
    applied = tuple(key_of(obj) for obj in objects)
    if not prune:
        return ApplyResult(applied, ())
    pruned, warnings = prune_stale(cluster, objects, dry_run=dry_run)
    return ApplyResult(applied, tuple(pruned), tuple(warnings))


OWN_MANAGERS = frozenset({FIELD_MANAGER, ROLLOUT_MANAGER, HANDOVER_MANAGER})
"""mlkube's other writers: ``mlkube scale`` (manager ``mlkube``, subresource ``scale``), the
rollout driver and the replicas handover. A conflict with them alone is taken back: the spec
is the source of truth."""


def apply_taking_back(cluster: Cluster, obj: Manifest, *, dry_run: bool, force: bool) -> None:
    """Server-side apply ``obj``; when it conflicts only with mlkube's own other writers, apply
    again with force (never over another tool's fields unless ``force``)."""
    try:
        cluster.apply(obj, dry_run=dry_run, force=force)
    except ConflictError as conflict:
        if force or not conflict.managers or not set(conflict.managers) <= OWN_MANAGERS:
            raise
        cluster.apply(obj, dry_run=dry_run, force=True)


def without_driven_replicas(
    objects: Sequence[Manifest], live: dict[ObjectKey, ClusterRollout]
) -> list[Manifest]:
    """Drop ``spec.replicas`` from a canary Deployment whose steps the rollout driver is
    running for this very revision (``live``: the driver's records). Pure.

    Applying the same spec mid-rollout must not send the canary back to the first step; a
    spec with a new model (a new revision hash) does start over, with the rendered count.
    """
    out: list[Manifest] = []
    for obj in objects:
        record = live.get(key_of(obj)) if obj["kind"] == "Deployment" else None
        driven = record is not None and (record.state.active or record.promoting)
        if driven and record is not None and record.target_hash == _template_hash(obj):
            obj = {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != "replicas"}}
        out.append(obj)
    return out


def _live_rollouts(
    cluster: Cluster, objects: Sequence[Manifest]
) -> dict[ObjectKey, ClusterRollout]:
    """The rollout driver's records on the live canary Deployments among ``objects``."""
    records: dict[ObjectKey, ClusterRollout] = {}
    for obj in objects:
        annotations = obj["metadata"].get("annotations") or {}
        if obj["kind"] != "Deployment" or ANNOTATION_ROLLOUT not in annotations:
            continue
        live = cluster.get(
            kind_info("Deployment"), obj["metadata"]["name"], obj["metadata"]["namespace"]
        )
        text = ((live or {}).get("metadata", {}).get("annotations") or {}).get(
            ANNOTATION_ROLLOUT_STATE
        )
        record = None if text is None else ClusterRollout.from_json(text)
        if record is not None:
            records[key_of(obj)] = record
    return records


def _template_hash(obj: Manifest) -> str:
    template = obj["spec"].get("template", {}).get("metadata", {})
    return str((template.get("annotations") or {}).get(ANNOTATION_CONFIG_HASH, ""))


def _live_deployments(
    cluster: Cluster, objects: Sequence[Manifest]
) -> dict[tuple[str, str], Manifest]:
    """The live Deployments among ``objects``, by (namespace, name)."""
    live = {}
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        where = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        found = cluster.get(kind_info("Deployment"), where[1], where[0])
        if found is not None:
            live[where] = found
    return live


def _hand_over_replicas(cluster: Cluster, handovers: Sequence[ReplicasHandover]) -> None:
    """Apply ``{spec: {replicas: <live count>}}`` as ``HANDOVER_MANAGER`` for each handover."""
    for handover in handovers:
        try:
            cluster.apply_fields(
                "Deployment",
                handover.name,
                handover.namespace,
                {"spec": {"replicas": handover.replicas}},
                manager=HANDOVER_MANAGER,
            )
        except ConflictError:
            # The documented rule: the autoscaler wrote the field first and owns it already.
            logger.info(
                "%s/%s: replicas have another owner already", handover.namespace, handover.name
            )


def check_apis(cluster: Cluster, objects: Sequence[Manifest]) -> None:
    """Raise ApiMissingError for the first CRD-served kind the cluster does not serve."""
    needed = needed_apis(objects)
    served = cluster.served(needed)
    for info in needed:
        if info not in served:
            raise ApiMissingError(info.api_version, info.kind)


def _dry_run_all(cluster: Cluster, objects: Sequence[Manifest], *, force: bool) -> None:
    created_namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        try:
            apply_taking_back(cluster, obj, dry_run=True, force=force)
        except ApplyError as error:
            if namespace in created_namespaces and "does not exist" in str(error):
                continue
            raise


def prune_stale(
    cluster: Cluster, desired: Sequence[Manifest], *, dry_run: bool
) -> tuple[list[ObjectKey], list[str]]:
    """Delete the objects of the rendered instances that ``desired`` no longer holds.

    Returns what was deleted (with ``dry_run``: what would be) and warnings about kinds that
    could not be listed.
    """
    live: list[Manifest] = []
    warnings: list[str] = []
    for namespace, instance in instances(desired):
        labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: instance}
        # Only kinds the cluster serves (discovery): an API that is not installed holds
        # nothing of ours, and asking for it is a plain-text 404.
        for info in cluster.served(i for i in KINDS if i.kind not in NEVER_PRUNED):
            try:
                live.extend(cluster.list_objects(info, namespace or None, labels))
            except ForbiddenError as error:
                warnings.append(f"not pruning {info.kind} objects: {error}")
    stale = prune_plan(desired, live)
    for key in stale:
        cluster.delete(kind_info(key.kind), key.name, key.namespace or None, dry_run=dry_run)
    return stale, warnings
