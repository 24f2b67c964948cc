"""``KubernetesBackend``: the ``Backend`` protocol on a cluster.

Each operation opens a connection (``client.Cluster``) for its kubeconfig context and namespace,
acts through the thin loops beside it (``apply.apply_objects``, ``wait.wait_for_rollouts``) and
the pure views (``status``), and returns plain data; nothing here prints. A Canary's steps
and analysis run in ``rollout_driver`` (``rollout status|promote|abort``). The objects of a
deployment are found by the labels mlkube puts on everything it renders. Revision history and
undo are the Deployment controller's (``kubectl rollout history|undo``) and raise
``UnsupportedOperationError`` naming that command.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from mlkube.backends.base import (
    ApplyReport,
    DeleteReport,
    EventRow,
    JobRow,
    LogStream,
    ObjectChange,
    ObjectRef,
    Report,
    RevisionRow,
    RolloutStatus,
    ScaleReport,
    StatusReport,
    Table,
    UndoReport,
)
from mlkube.backends.kubernetes import rollout_driver, standby_driver
from mlkube.backends.kubernetes import status as views
from mlkube.backends.kubernetes.apply import (
    NEVER_PRUNED,
    ObjectKey,
    apply_objects,
    apply_taking_back,
    key_of,
    prune_now,
)
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.diagnose import collect_instances
from mlkube.backends.kubernetes.errors import ApplyError, ObjectNotFoundError, RolloutError
from mlkube.backends.kubernetes.prometheus_query import PrometheusCanary
from mlkube.backends.kubernetes.render import SpecDocument, render, with_namespace
from mlkube.backends.kubernetes.render.manifest import (
    KINDS,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Manifest,
    apply_rank,
    kind_info,
)
from mlkube.backends.kubernetes.render.pipelines import TEKTON, Engine, engine_for
from mlkube.backends.kubernetes.render.rollout_controller import COMPONENT
from mlkube.backends.kubernetes.wait import wait_for_rollouts
from mlkube.clock import Clock, SystemClock
from mlkube.desired.capabilities import BackendKind, notes
from mlkube.errors import UnsupportedOperationError
from mlkube.spec import ModelDeployment, load_documents
from mlkube.spec.job import TrainingJob
from mlkube.spec.pipeline import Pipeline

STATUS_KINDS = (
    "Deployment",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "Service",
    *views.JOB_KINDS,
)
WORKLOAD_KINDS = ("Deployment", *views.JOB_KINDS)
"""What makes a name an mlkube deployment or job on the cluster."""
SCALING_KINDS = ("Deployment", "HorizontalPodAutoscaler", "ScaledObject")
KEPT = "kept (it holds data or other workloads; delete it yourself)"
ACCEPTED = "accepted"
"""A dry run's action: the API server's dry run accepted the object."""
NOT_CHECKED = "not checked"
"""A dry run's action for an object in a namespace that does not exist yet (never sent)."""
KEPT_UNTIL_READY = "kept until ready"
"""An object to prune, kept until the new Deployments are rolled out."""
HELD_UNTIL_READY = "held until ready"
"""A Service not applied yet (its new selector matches no available pod), until the new
Deployments are rolled out."""


class KubernetesBackend:
    """Deployments on the cluster of a kubeconfig ``context``, in ``namespace``.

    None for either means the kubeconfig's current context and that context's namespace.
    """

    def __init__(
        self,
        context: str | None = None,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        clock: Clock | None = None,
        prometheus_url: str | None = None,
    ) -> None:
        self.target = Target(context=context, namespace=namespace, kubeconfig=kubeconfig)
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        self.measure = None if prometheus_url is None else PrometheusCanary(prometheus_url)
        """Canary analysis: the cluster's Prometheus, when the user names one."""
        self._held: dict[ObjectRef, Manifest] = {}
        """The Services the last ``apply`` held back (``HELD_UNTIL_READY``), as rendered: its
        ``wait_for_rollouts`` applies them once the new Deployments are rolled out."""

    @contextmanager
    def _connect(self) -> Iterator[tuple[Cluster, str]]:
        """A connection and the namespace to act in; closed on the way out."""
        cluster = Cluster(self.target)
        try:
            yield cluster, self.namespace or cluster.namespace
        finally:
            cluster.close()

    # apply ---------------------------------------------------------------------------------
    def apply(self, paths: Sequence[str], *, dry_run: bool = False) -> ApplyReport:
        """Render the specs, server-side apply them in order and prune what they dropped.

        The warnings name every spec field the cluster does not honour as written.
        """
        documents = with_namespace(load_documents(*paths), self.namespace)
        render(documents)  # a spec the cluster cannot express fails before connecting
        deployments = [d for d in documents if isinstance(d, ModelDeployment)]
        force = any(d.spec.kubernetes.force_conflicts for d in deployments)
        prune = all(d.spec.kubernetes.prune for d in deployments)
        with self._connect() as (cluster, _):
            documents = _keep_live_job_kinds(cluster, documents)
            served = _pytorch_job_served(cluster, documents)
            engine, engine_lines = _pipeline_engine(cluster, documents)
            rendered = render(documents, pytorch_job_served=served, pipeline_engine=engine)
            try:
                result = apply_objects(
                    cluster, rendered.objects, dry_run=dry_run, force=force, prune=prune
                )
            except ApplyError as error:
                raise _job_template_changed(error) or error from error
        unsupported = [n.text() for n in notes(documents, BackendKind.KUBERNETES)]
        done = ACCEPTED if dry_run else "applied"
        self._held = {_ref(key_of(obj)): obj for obj in result.held}
        return ApplyReport(
            changes=(
                *(ObjectChange(_ref(key), done) for key in result.applied),
                *(ObjectChange(_ref(key), NOT_CHECKED) for key in result.unchecked),
                *(ObjectChange(ref, HELD_UNTIL_READY) for ref in self._held),
                *(ObjectChange(_ref(key), KEPT_UNTIL_READY) for key in result.kept),
            ),
            pruned=tuple(_ref(key) for key in result.pruned),
            warnings=(*engine_lines, *unsupported, *result.warnings),
            dry_run=dry_run,
        )

    def wait_for_rollouts(self, applied: ApplyReport, *, timeout_s: float, report: Report) -> None:
        """Poll every applied Deployment until it is rolled out (``kubectl rollout status``),
        then prune the objects ``apply`` kept until then."""
        deployments = [
            (c.object.namespace, c.object.name)
            for c in applied.changes
            if c.object.kind == "Deployment" and c.action == "applied"
        ]
        kept = [c.object for c in applied.changes if c.action == KEPT_UNTIL_READY]
        held = [
            self._held[c.object]
            for c in applied.changes
            if c.action == HELD_UNTIL_READY and c.object in self._held
        ]
        if applied.dry_run or not (deployments or kept or held):
            return
        with self._connect() as (cluster, _):
            try:
                asyncio.run(
                    wait_for_rollouts(
                        cluster, deployments, timeout_s=timeout_s, clock=self.clock, report=report
                    )
                )
            except RolloutError as error:
                waiting = [str(_ref(key_of(obj))) for obj in held] + [str(r) for r in kept]
                if waiting:
                    raise RolloutError(
                        f"{error}; kept as they were until the new Deployments are rolled out: "
                        f"{', '.join(waiting)}"
                    ) from error
                raise
            for obj in held:  # the Services' switch, now that the new pods serve
                apply_taking_back(cluster, obj, dry_run=False, force=False)
                report(f"{_ref(key_of(obj))} applied (the new Deployments are rolled out)")
            stale = [ObjectKey(ref.kind, ref.namespace, ref.name) for ref in kept]
            prune_now(cluster, stale, dry_run=False)
        for ref in kept:
            report(f"{ref} pruned (the new Deployments are rolled out)")

    # status, scale, delete -----------------------------------------------------------------
    def status(self, name: str | None = None) -> StatusReport:
        """One summary per deployment instance: its Deployments, autoscalers and Services."""
        with self._connect() as (cluster, namespace):
            objects = _owned(cluster, namespace, name, STATUS_KINDS)
            if name is not None and not any(o["kind"] in WORKLOAD_KINDS for o in objects):
                raise _not_found(name, namespace)
            why = collect_instances(cluster, objects, views.not_rolled_out(objects))
        summaries = views.summarize(objects, why)
        rows = tuple(views.table_rows(summaries))
        job_rows = tuple(views.job_rows(summaries))
        tables = []
        if rows or not job_rows:
            tables.append(Table(views.TABLE_COLUMNS, rows))
        if job_rows:
            tables.append(Table(views.JOB_COLUMNS, job_rows, title="jobs"))
        return StatusReport(
            document=summaries,
            tables=tuple(tables),
            notes=tuple(views.problem_notes(summaries, why)),
        )

    def scale(self, name: str, replicas: int) -> ScaleReport:
        """Set the replica count of the Deployment ``name`` (through its scale subresource)."""
        with self._connect() as (cluster, namespace):
            owned = _owned(cluster, namespace, name, SCALING_KINDS)
            deployments = [o["metadata"]["name"] for o in owned if o["kind"] == "Deployment"]
            if not deployments:
                raise _not_found(name, namespace)
            if name not in deployments:
                raise ObjectNotFoundError(
                    f"deployment '{name}' runs as {', '.join(sorted(deployments))}; scale one "
                    "of those with kubectl, or change the spec's replicas and apply"
                )
            warnings = []
            if any(o["kind"] != "Deployment" for o in owned):
                warnings.append(
                    f"'{name}' has an autoscaler; it will move the count back within its bounds"
                )
            cluster.scale(name, namespace, replicas)
        return ScaleReport(ObjectRef("Deployment", name, namespace), replicas, tuple(warnings))

    def delete(
        self, name: str | None = None, *, timeout_s: float = 120.0, report: Report | None = None
    ) -> DeleteReport:
        """Delete every object mlkube made for ``name``; claims, volumes, namespaces are kept.

        The API server deletes pods in the background (as ``kubectl delete --wait=false``):
        nothing here waits, so ``timeout_s`` and ``report`` are unused.
        """
        if name is None:
            raise UnsupportedOperationError(
                "kubernetes",
                "delete every deployment at once",
                "give the deployment's NAME (mlkube delete NAME --target kubernetes)",
            )
        with self._connect() as (cluster, namespace):
            # Every kind is listed before anything is deleted: a kind we may not list raises
            # ForbiddenError here, instead of a delete that leaves those objects behind.
            objects = _owned(cluster, namespace, name, [i.kind for i in KINDS])
            if not objects:
                raise _not_found(name, namespace)
            ordered = [key_of(o) for o in sorted(objects, key=lambda o: -apply_rank(o["kind"]))]
            doomed = [key for key in ordered if key.kind not in NEVER_PRUNED]
            # A server-side dry run of every delete first: one the credentials may not do
            # fails here, before anything is gone, instead of half way through.
            for dry_run in (True, False):
                for key in doomed:
                    cluster.delete(
                        kind_info(key.kind), key.name, key.namespace or None, dry_run=dry_run
                    )
            changes = [
                ObjectChange(_ref(key), KEPT if key.kind in NEVER_PRUNED else "deleted")
                for key in ordered
            ]
        return DeleteReport(changes=tuple(changes))

    # logs, events --------------------------------------------------------------------------
    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        since_s: float | None = None,
        follow: bool = False,
        stderr: bool = False,
    ) -> LogStream:
        """The logs of the deployment's pods (one pod: ``replica`` is an index or a pod name)."""
        with self._connect() as (cluster, namespace):
            pods = sorted(p["metadata"]["name"] for p in cluster.pods(namespace, _labels(name)))
        if not pods:
            raise ObjectNotFoundError(f"deployment '{name}' has no pods in namespace '{namespace}'")
        chosen, warnings = _choose_pods(name, pods, replica, follow)
        return LogStream(
            lines=self._pod_lines(chosen, namespace, follow=follow, since_s=since_s),
            warnings=warnings,
        )

    def _pod_lines(
        self, pods: list[str], namespace: str, *, follow: bool, since_s: float | None
    ) -> Iterator[str]:
        with self._connect() as (cluster, _):
            for pod in pods:
                prefix = f"[{pod}] " if len(pods) > 1 else ""
                for line in cluster.logs(pod, namespace, follow=follow, since_s=since_s):
                    yield prefix + line.rstrip("\n")

    def events(self, name: str, *, limit: int = 100) -> tuple[EventRow, ...]:
        """Events about the deployment's Deployments, autoscalers and pods (or the job's Job
        and pods), oldest first."""
        with self._connect() as (cluster, namespace):
            owned = _owned(cluster, namespace, name, (*SCALING_KINDS, *views.JOB_KINDS))
            if not any(o["kind"] in WORKLOAD_KINDS for o in owned):
                raise _not_found(name, namespace)
            names = {o["metadata"]["name"] for o in owned}
            names.update(p["metadata"]["name"] for p in cluster.pods(namespace, _labels(name)))
            rows = [
                views.event_row(event)
                for involved in sorted(names)
                for event in cluster.events(namespace, involved)
            ]
        rows.sort(key=lambda row: row.time)
        return tuple(rows[-limit:]) if limit > 0 else ()

    # rollouts ------------------------------------------------------------------------------
    def rollout_status(self, name: str) -> RolloutStatus:
        """Where the rollout stands; for a Canary, one tick of the rollout driver first (the
        steps move while someone runs this, e.g. ``rollout status --watch``)."""
        with self._connect() as (cluster, namespace):
            tracks = rollout_driver.read_tracks(cluster, namespace, name)
            if tracks is not None:
                return rollout_driver.advance(
                    cluster, tracks, now=self.clock.wall(), measure=self.measure
                )
            owned = _owned(cluster, namespace, name, ("Deployment",))
        if not owned:
            raise _not_found(name, namespace)
        return views.rollout_status(name, owned)

    def promote_standby(self, name: str) -> standby_driver.Promotion:
        """One step of the warm standby pool: relabel ready standby pods into the serving
        pool for serving pods asked for and not ready (``standby_driver``)."""
        with self._connect() as (cluster, namespace):
            return standby_driver.promote_waiting(cluster, namespace, name)

    def rollout_promote(self, name: str, *, full: bool = False) -> RolloutStatus:
        """End the canary's step now (``full``: every step), then tick."""
        with self._connect() as (cluster, namespace):
            tracks = self._canary(cluster, namespace, name)
            record = rollout_driver.promote_rollout(cluster, tracks, full=full)
            tracks = replace(tracks, record=record)
            return rollout_driver.advance(
                cluster, tracks, now=self.clock.wall(), measure=self.measure
            )

    def rollout_abort(self, name: str) -> RolloutStatus:
        """Every request back to the stable Deployment; the canary goes to zero."""
        with self._connect() as (cluster, namespace):
            tracks = self._canary(cluster, namespace, name)
            record = rollout_driver.abort_rollout(cluster, tracks)
        return rollout_driver.status_of(name, record, 0, self.measure is None)

    def _canary(self, cluster: Cluster, namespace: str, name: str) -> rollout_driver.CanaryTracks:
        tracks = rollout_driver.read_tracks(cluster, namespace, name)
        if tracks is None:
            raise ObjectNotFoundError(
                f"deployment '{name}' in namespace '{namespace}' runs no Canary steps (promote "
                "and abort move a Canary's steps; with kubernetes.canaryWeight you move the "
                "weight by applying, and other strategies roll out as Deployments do)"
            )
        return tracks

    # jobs ------------------------------------------------------------------------------------
    def submit(self, paths: Sequence[str]) -> ApplyReport:
        """Jobs are objects like any other on a cluster: applied, then the Job controller (or
        Kueue) queues them."""
        return self.apply(paths)

    def jobs(self, name: str | None = None) -> tuple[JobRow, ...]:
        """mlkube's Jobs and PyTorchJobs in the namespace, from their status."""
        with self._connect() as (cluster, namespace):
            found = _owned(cluster, namespace, name, views.JOB_KINDS)
        if name is not None and not found:
            raise ObjectNotFoundError(f"no mlkube job '{name}' in namespace '{namespace}'")
        return tuple(views.job_row(job) for job in found)

    def cancel(self, name: str) -> JobRow:
        """Delete the job (in the background: its pods go with it)."""
        (row,) = self.jobs(name)
        with self._connect() as (cluster, namespace):
            cluster.delete(kind_info(row.kind), name, namespace, dry_run=False)
        return replace(row, phase="Cancelled", reason="deleted")

    def rollout_history(self, name: str) -> tuple[RevisionRow, ...]:
        raise UnsupportedOperationError(
            "kubernetes",
            "list rollout history",
            "the Deployment controller keeps it: "
            f"kubectl rollout history deployment/{name}{self._kubectl_namespace()}",
        )

    def rollout_undo(self, name: str, *, to_revision: int | None = None) -> UndoReport:
        revision = f" --to-revision {to_revision}" if to_revision is not None else ""
        raise UnsupportedOperationError(
            "kubernetes",
            "undo a rollout",
            f"kubectl rollout undo deployment/{name}{self._kubectl_namespace()}{revision}, "
            "or apply the previous spec (mlkube apply SPEC --target kubernetes)",
        )

    def _kubectl_namespace(self) -> str:
        return f" -n {self.namespace}" if self.namespace else ""


def _keep_live_job_kinds(cluster: Cluster, documents: list[SpecDocument]) -> list[SpecDocument]:
    """TrainingJobs of ``kubernetes.kind: Auto`` that already run as a Job or a PyTorchJob stay
    that kind: installing the training-operator later must not start the same job a second
    time as a PyTorchJob beside the running Job."""
    out: list[SpecDocument] = []
    for document in documents:
        if isinstance(document, TrainingJob) and document.spec.kubernetes.kind == "Auto":
            for info in cluster.served([kind_info("Job"), kind_info("PyTorchJob")]):
                if cluster.get(info, document.metadata.name, document.namespace) is not None:
                    kube = document.spec.kubernetes.model_copy(update={"kind": info.kind})
                    spec = document.spec.model_copy(update={"kubernetes": kube})
                    document = document.model_copy(update={"spec": spec})
                    break
        out.append(document)
    return out


def _pytorch_job_served(cluster: Cluster, documents: Sequence[object]) -> bool:
    """Whether a TrainingJob of ``kubernetes.kind: Auto`` becomes a PyTorchJob here: the
    cluster serves kubeflow.org/v1 pytorchjobs (discovery). Asked only when one is Auto."""
    if not any(isinstance(d, TrainingJob) and d.spec.kubernetes.kind == "Auto" for d in documents):
        return False
    return bool(cluster.served([kind_info("PyTorchJob")]))


def _pipeline_engine(
    cluster: Cluster, documents: Sequence[object]
) -> tuple[Engine, tuple[str, ...]]:
    """Which engine runs the Pipelines here (discovery: Tekton's or Argo's CRDs), and one
    line per pipeline saying which and why. Asked only when there is a Pipeline."""
    pipelines = [d for d in documents if isinstance(d, Pipeline)]
    if not pipelines:
        return TEKTON, ()
    served = {info.kind for info in cluster.served([kind_info("Pipeline"), kind_info("Workflow")])}
    engine, why = engine_for("Pipeline" in served, "Workflow" in served)
    title = "Tekton" if engine == TEKTON else "Argo Workflows"
    return engine, tuple(f"pipeline '{p.metadata.name}' runs on {title}: {why}" for p in pipelines)


_IMMUTABLE_JOB = re.compile(
    r"rejected Job '([^']+)'(?: in namespace '([^']+)')?: .*field is immutable"
)


def _job_template_changed(error: ApplyError) -> ApplyError | None:
    """The API server's "field is immutable" for a Job, said as what to do. A Job's pod
    template cannot change once created; mlkube does not delete and re-create it on its own,
    since that would throw away a running job's pods and logs."""
    match = _IMMUTABLE_JOB.search(str(error))
    if match is None:
        return None
    name, namespace = match.group(1), match.group(2)
    where = f" in namespace '{namespace}'" if namespace else ""
    flag = f" -n {namespace}" if namespace else ""
    return ApplyError(
        f"Job '{name}'{where} already exists with another spec, and Kubernetes cannot change "
        f"a Job's pods once it is created; to run the new spec, delete it first (mlkube delete "
        f"{name} --target kubernetes{flag}; its pods and logs go too), then apply again"
    )


def _ref(key: ObjectKey) -> ObjectRef:
    return ObjectRef(key.kind, key.name, key.namespace)


def _labels(name: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: name}


def _not_found(name: str, namespace: str) -> ObjectNotFoundError:
    return ObjectNotFoundError(f"no mlkube deployment '{name}' in namespace '{namespace}'")


def _owned(
    cluster: Cluster, namespace: str, name: str | None, kinds: Sequence[str]
) -> list[Manifest]:
    """mlkube's objects of ``kinds`` (of instance ``name``, or of every instance).

    Only kinds the cluster serves are listed (discovery): without KEDA or the Gateway API
    nothing of those kinds can be ours. A kind the credentials may not list raises
    ``ForbiddenError``: showing, scaling or deleting what could be seen as if the rest were
    absent would be wrong (an empty table, "no mlkube deployment", half a delete)."""
    labels = _labels(name) if name is not None else {LABEL_MANAGED_BY: MANAGED_BY}
    objects: list[Manifest] = []
    for info in cluster.served(kind_info(kind) for kind in kinds):
        objects.extend(cluster.list_objects(info, namespace, labels))
    if name is None:
        objects = [o for o in objects if o["kind"] != "Namespace"]
    # The in-cluster rollout controller is the deployment's helper, not one of its tracks.
    return [o for o in objects if o["metadata"].get("labels", {}).get(LABEL_COMPONENT) != COMPONENT]


def _choose_pods(
    name: str, pods: list[str], replica: str | None, follow: bool
) -> tuple[list[str], tuple[str, ...]]:
    """The pods to read: ``replica`` by index or name, else all (one when following)."""
    if replica is None:
        if follow and len(pods) > 1:
            return pods[:1], (f"following {pods[0]} only; pass --replica N for another pod",)
        return pods, ()
    if replica.isdigit():
        if int(replica) >= len(pods):
            raise ObjectNotFoundError(
                f"deployment '{name}' has {len(pods)} pods; replica {replica} is not one "
                f"(use 0-{len(pods) - 1})"
            )
        return [pods[int(replica)]], ()
    if replica in pods:
        return [replica], ()
    raise ObjectNotFoundError(
        f"deployment '{name}' has no pod '{replica}' (pods: {', '.join(pods)})"
    )
