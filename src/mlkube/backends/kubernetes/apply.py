"""Server-side apply of rendered objects, in order, then pruning of what the render dropped.

The decisions are pure functions (``prune_plan``, ``without_autoscaled_replicas``,
``needed_apis``, ``split_by_namespace``, ``ownership.replicas_handovers``); ``apply_objects``
is the thin loop that asks the cluster and acts.

Order of an apply:
1. every CRD-served API the objects need is checked by discovery, so a missing KEDA, VPA,
   Gateway API or Prometheus Operator fails before anything is changed;
2. a server-side dry run (``dryRun=All``) of every object: the API server checks what it would
   reject (validation, admission, a node port already allocated) and changes nothing. Every
   rejection is reported, and nothing is applied unless the whole set passed. An object in a
   namespace that does not exist yet cannot be dry-run (the server answers 404 for the
   namespace); so the real apply creates those namespaces first, the only change made before
   everything is checked, and then dry-runs the objects in them. ``--dry-run`` cannot create
   them: it reports those objects as not checked, never as accepted;
3. the objects are applied for real with field manager ``mlkube``, in dependency order. If the
   server still rejects one part-way (something changed since the dry run),
   ``PartialApplyError`` names what was applied and what was not. A conflict with
   mlkube's own other writers only (``mlkube scale``, the rollout driver, the replicas
   handover) is taken back with force, and a canary whose steps the driver runs keeps its
   replica count; a Deployment that stops sending ``spec.replicas`` (an autoscaler or the
   driver owns the count now) while ``mlkube`` is that field's only owner first hands it over
   (``ownership.replicas_handovers``), so the count never falls back to the default of 1;
4. a live Service whose new selector would match no available pod while its old one does (a
   strategy switch to Deployments that have not started) is held back, keeping its old
   selector and endpoints, until the new Deployments are rolled out (``ApplyResult.held``);
5. objects labelled as this deployment's that the render no longer holds are deleted, in
   reverse order, but only once every Deployment of the new set is rolled out: a strategy
   switch must not delete the Deployment that serves while its replacement has no available
   pod. When they are not rolled out yet, the old objects are kept (``ApplyResult.kept``):
   ``apply --wait`` prunes them after the wait succeeds, else the next apply does.
   PersistentVolumes, claims and Namespaces are never pruned: they hold data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import (
    ApiMissingError,
    ApplyError,
    ClusterError,
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
from mlkube.backends.kubernetes.wait import rollout_state

logger = logging.getLogger(__name__)

NEVER_PRUNED = frozenset({"Namespace", "PersistentVolume", "PersistentVolumeClaim"})
AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")
HELD_WARNING = (
    "a Service whose new selector matches no available pod yet keeps its old selector until "
    "the new Deployments are rolled out, so that it keeps endpoints: `apply --wait` applies "
    "it then, or apply again later"
)
KEPT_WARNING = (
    "objects the specs no longer hold are kept until every new Deployment is rolled out "
    "(so that something keeps serving): `apply --wait` prunes them once the rollout is done, "
    "or apply again later"
)


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
    unchecked: tuple[ObjectKey, ...] = ()
    """``dry_run`` only: objects never sent, as their namespace does not exist yet."""

    kept: tuple[ObjectKey, ...] = ()
    """Objects to prune that were kept because the new Deployments are not rolled out yet."""

    held: tuple[Manifest, ...] = ()
    """Services not applied yet: their new selector matches no available pod (see
    ``services_to_hold``); apply them once the new Deployments are rolled out."""


class PartialApplyError(ApplyError):
    """The server rejected an object after others were applied for real."""

    def __init__(
        self,
        failed: ObjectKey,
        error: ClusterError,
        applied: tuple[ObjectKey, ...],
        not_applied: tuple[ObjectKey, ...],
    ) -> None:
        self.failed = failed
        self.cause = error
        self.applied = applied
        self.not_applied = (failed, *not_applied)
        done = ", ".join(map(str, applied)) or "none"
        left = ", ".join(map(str, self.not_applied))
        super().__init__(
            f"the apply stopped part-way at {failed}: {error}. Applied: {done}. Not applied: "
            f"{left}. Fix the cause and apply again: applying is idempotent, and nothing was "
            "pruned."
        )


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
    missing = missing_namespaces(cluster, objects)
    checkable, later = split_by_namespace(objects, missing)
    _dry_run(cluster, checkable, force=force, created=())
    created: tuple[ObjectKey, ...] = ()
    unchecked: tuple[ObjectKey, ...] = ()
    warnings: list[str] = []
    if later and dry_run:
        unchecked = tuple(key_of(obj) for obj in later)
        warnings.append(unchecked_warning(missing, len(unchecked)))
    elif later:
        namespaces = [o for o in objects if o["kind"] == "Namespace" and key_of(o).name in missing]
        try:
            created = _apply_in_order(cluster, namespaces, force=force, done=())
        except PartialApplyError as error:  # name every object left, not only the namespaces
            rest = tuple(k for k in map(key_of, objects) if k not in (*error.applied, error.failed))
            raise PartialApplyError(error.failed, error.cause, error.applied, rest) from error
        _dry_run(cluster, later, force=force, created=created)
    held: tuple[Manifest, ...] = ()
    if dry_run:
        applied = tuple(key_of(obj) for obj in checkable)
    else:
        hold = services_to_hold(cluster, objects)
        held = tuple(o for o in objects if key_of(o) in hold)
        now = [o for o in objects if key_of(o) not in hold]
        _hand_over_replicas(cluster, handovers)
        applied = _apply_in_order(cluster, now, force=force, done=created)
        if held:
            warnings.append(HELD_WARNING)
    if not prune:
        return ApplyResult(applied, (), tuple(warnings), unchecked, held=held)
    stale, prune_warnings = stale_objects(cluster, objects)
    warnings.extend(prune_warnings)
    if stale and not dry_run and (held or not rolled_out(cluster, objects)):
        warnings.append(KEPT_WARNING)
        return ApplyResult(applied, (), tuple(warnings), unchecked, tuple(stale), held)
    prune_now(cluster, stale, dry_run=dry_run)
    return ApplyResult(applied, tuple(stale), tuple(warnings), unchecked, held=held)


def services_to_hold(cluster: Cluster, objects: Sequence[Manifest]) -> set[ObjectKey]:
    """The live Services whose new selector would match no available pod while their live
    selector does (a switch to Deployments that have not started yet, such as Canary →
    BlueGreen): applying them now would empty their endpoints."""
    held: set[ObjectKey] = set()
    pods: dict[str, list[Manifest]] = {}
    for obj in objects:
        if obj["kind"] != "Service":
            continue
        namespace = obj["metadata"].get("namespace", "")
        live = cluster.get(kind_info("Service"), obj["metadata"]["name"], namespace)
        before = ((live or {}).get("spec") or {}).get("selector") or {}
        after = (obj.get("spec") or {}).get("selector") or {}
        if live is None or before == after or not after:
            continue
        if namespace not in pods:
            try:
                pods[namespace] = cluster.list_objects(kind_info("Deployment"), namespace, {})
            except ForbiddenError:
                pods[namespace] = []  # cannot tell: apply as rendered
        if serving(before, pods[namespace]) > 0 and serving(after, pods[namespace]) == 0:
            held.add(key_of(obj))
    return held


def serving(selector: Mapping[str, str], deployments: Iterable[Manifest]) -> int:
    """The available pods a Service ``selector`` matches among the Deployments' pods (each
    Deployment's pods carry its pod template's labels). Pure."""
    return sum(
        int((d.get("status") or {}).get("availableReplicas") or 0)
        for d in deployments
        if selector
        and all(
            ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels", {}).get(k) == v
            for k, v in selector.items()
        )
    )


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


def missing_namespaces(cluster: Cluster, objects: Sequence[Manifest]) -> set[str]:
    """The Namespaces among ``objects`` that the cluster does not have yet."""
    info = kind_info("Namespace")
    missing = set()
    for obj in objects:
        if obj["kind"] != "Namespace":
            continue
        try:
            if cluster.get(info, obj["metadata"]["name"], None) is None:
                missing.add(obj["metadata"]["name"])
        except ForbiddenError:
            continue  # may not read namespaces: take it as there; the dry run answers 404 if not
    return missing


def split_by_namespace(
    objects: Sequence[Manifest], missing: set[str]
) -> tuple[list[Manifest], list[Manifest]]:
    """(objects a dry run can check now, objects in a namespace that does not exist yet). Pure.

    The API server dry-runs an object only in an existing namespace: for any other it answers
    404 ``namespaces "x" not found``, and a dry-run Namespace is not stored, so it does not help
    (https://github.com/kubernetes/kubernetes/issues/83562).
    """
    now = [o for o in objects if o["metadata"].get("namespace") not in missing]
    later = [o for o in objects if o["metadata"].get("namespace") in missing]
    return now, later


def unchecked_warning(missing: set[str], count: int) -> str:
    """What a dry run says about the objects it could not send. Pure."""
    names = ", ".join(f"'{n}'" for n in sorted(missing))
    return (
        f"dry run: {count} objects were not checked: their namespace {names} does not exist "
        "yet, and the API server dry-runs objects only in an existing namespace. A real apply "
        "creates the namespace first and checks them before it changes anything else."
    )


def _dry_run(
    cluster: Cluster,
    objects: Sequence[Manifest],
    *,
    force: bool,
    created: Sequence[ObjectKey],
) -> None:
    """Dry-run every object; raise one error naming every object the server rejected, of the
    first rejection's class (a ConflictError stays one, with its managers)."""
    rejected: list[tuple[ObjectKey, str]] = []
    first: ApplyError | None = None
    for obj in objects:
        try:
            apply_taking_back(cluster, obj, dry_run=True, force=force)
        except ApplyError as error:
            rejected.append((key_of(obj), str(error)))
            first = first or error
    if first is not None:
        raised = type(first).__new__(type(first))
        raised.__dict__.update(first.__dict__)  # e.g. a ConflictError's managers
        raised.args = (dry_run_failure(rejected, len(objects), created),)
        raise raised from first


def dry_run_failure(
    rejected: Sequence[tuple[ObjectKey, str]], total: int, created: Sequence[ObjectKey]
) -> str:
    """The message of a failed dry run: what was rejected and that nothing (else) changed."""
    changed = (
        f"nothing else was changed ({', '.join(map(str, created))} was created first: objects "
        "in a namespace can be checked only once it exists)"
        if created
        else "nothing was changed"
    )
    reasons = "; ".join(f"{key}: {why}" for key, why in rejected)
    return (
        f"the server's dry run rejected {len(rejected)} of the {total} objects it checked, so "
        f"{changed}: {reasons}"
    )


def _apply_in_order(
    cluster: Cluster, objects: Sequence[Manifest], *, force: bool, done: Sequence[ObjectKey]
) -> tuple[ObjectKey, ...]:
    """Apply each object not in ``done``; a failure part-way raises PartialApplyError."""
    applied = list(done)
    for index, obj in enumerate(objects):
        key = key_of(obj)
        if key in done:
            continue
        try:
            apply_taking_back(cluster, obj, dry_run=False, force=force)
        except ClusterError as error:
            rest = [key_of(o) for o in objects[index + 1 :] if key_of(o) not in done]
            raise PartialApplyError(key, error, tuple(applied), tuple(rest)) from error
        applied.append(key)
    return tuple(applied)


def rolled_out(cluster: Cluster, objects: Sequence[Manifest]) -> bool:
    """Whether every Deployment among ``objects`` is rolled out now (``kubectl rollout
    status``), so old objects can go without taking serving pods with them."""
    info = kind_info("Deployment")
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        live = cluster.get(info, obj["metadata"]["name"], obj["metadata"]["namespace"])
        if live is None or not rollout_state(live).done:
            return False
    return True


def prune_now(cluster: Cluster, stale: Sequence[ObjectKey], *, dry_run: bool) -> None:
    """Delete ``stale`` (in the order given: reverse apply order)."""
    for key in stale:
        cluster.delete(kind_info(key.kind), key.name, key.namespace or None, dry_run=dry_run)


def stale_objects(
    cluster: Cluster, desired: Sequence[Manifest]
) -> tuple[list[ObjectKey], list[str]]:
    """The live objects of the rendered instances that ``desired`` no longer holds, and
    warnings about kinds that could not be listed."""
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
    return prune_plan(desired, live), warnings
