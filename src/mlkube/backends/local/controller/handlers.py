"""What the control API does: apply, scale, down, status, events, usage, rollout
status/history/undo.

Each handler decides what changes in the controller's desired state and hands the changes
(``changes``) to the controller, the one writer, then lets the reconcile loop act; only
``down`` waits, for the replicas it stops.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlkube.backends.local.controller import monitoring
from mlkube.backends.local.controller.changes import (
    AddRevision,
    AnalysisResult,
    Change,
    Event,
    SetDesired,
    SetRollout,
    SetSpec,
)
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import (
    APPLIED_FILE,
    Deployment,
    revision_of,
    write_revision_file,
)
from mlkube.backends.local.controller.jobs import as_training_job
from mlkube.backends.local.controller.loops import demand_callback
from mlkube.backends.local.controller.pipelines import referenced_jobs
from mlkube.backends.local.controller.placement import machine_capacity
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.ports import PortInUseError, check_free
from mlkube.backends.local.prometheus import running as prometheus_running
from mlkube.backends.local.store import RevisionRow
from mlkube.desired.revision import revision_hash
from mlkube.desired.rollout import (
    BLUE_GREEN_KEEP_S,
    RolloutState,
    abort_rollout,
    skip_step,
    start_rollout,
    undo_target,
)
from mlkube.desired.scaling import replicas_after_apply
from mlkube.errors import BackendError
from mlkube.spec.deployment import ModelDeployment, PriorityClass, Quota
from mlkube.spec.job import BatchInference, TrainingJob
from mlkube.spec.loading import load_documents
from mlkube.spec.pipeline import Pipeline
from mlkube.spec.rollout import RolloutStrategy


class NotFoundError(BackendError):
    """No deployment of that name."""


def events(ctrl: Controller, dep: Deployment, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` events of ``dep``, oldest first."""
    return [asdict(e) for e in ctrl.store.events(dep.key, limit)]


def find(ctrl: Controller, name: str) -> Deployment:
    """A deployment by ``name`` or ``namespace/name``."""
    if "/" in name and name in ctrl.deployments:
        return ctrl.deployments[name]
    matches = [d for d in ctrl.deployments.values() if d.name == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(sorted(ctrl.deployments)) or "none"
        raise NotFoundError(f"no deployment named '{name}' is running (running: {known})")
    raise NotFoundError(f"'{name}' exists in several namespaces; write it as namespace/{name}")


# apply -----------------------------------------------------------------------------------
async def apply(ctrl: Controller, paths: list[str]) -> dict[str, Any]:
    documents = load_documents(*paths)
    results = []
    part_of_pipelines = referenced_jobs(documents)
    for doc in documents:
        key = f"{doc.metadata.namespace}/{doc.metadata.name}"
        if isinstance(doc, Pipeline):  # registered with its schedule and watch triggers
            ctrl.pipelines.register(doc, documents, triggers=True)
            results.append({"kind": doc.kind, "name": key, "action": "registered"})
            continue
        if isinstance(doc, TrainingJob) and (doc.namespace, doc.metadata.name) in part_of_pipelines:
            continue  # a step of a pipeline above: it runs when the pipeline does
        if isinstance(doc, Quota | PriorityClass):
            ctrl.store.put_document(doc.kind, key, doc.model_dump(mode="json", by_alias=True))
            results.append({"kind": doc.kind, "name": key, "action": "configured"})
            continue
        if not isinstance(doc, ModelDeployment):
            raise BackendError(
                f"{doc.kind} '{doc.metadata.name}' is a job: submit it with mlkube run, not apply"
            )
        if key in ctrl.deployments:
            results.append(await _update(ctrl, ctrl.deployments[key], doc))
        else:
            results.append(await _create(ctrl, key, doc))
    ctrl.reconcile()
    await monitoring.refresh(ctrl)
    return {"results": results}


def submit_jobs(ctrl: Controller, paths: list[str]) -> dict[str, Any]:
    """Queue the TrainingJobs of ``paths``; admission happens at once where they fit."""
    documents = load_documents(*paths)
    results = []
    for doc in documents:
        if isinstance(doc, BatchInference):
            runner = as_training_job(doc, ctrl.state)
            queue = ctrl.job_queue
            results.append(queue.submit(runner, kind=doc.kind, claim_workers=doc.spec.workers))
            continue
        if not isinstance(doc, TrainingJob):
            raise BackendError(
                f"{doc.kind} '{doc.metadata.name}' cannot be queued: mlkube run takes "
                "TrainingJob and BatchInference documents"
            )
        results.append(ctrl.job_queue.submit(doc))
    ctrl.reconcile()
    return {"results": results}


def _check_port(ctrl: Controller, port: int, key: str) -> None:
    for other in ctrl.deployments.values():
        if other.port == port and other.key != key:
            raise PortInUseError(port, f"deployment '{key}'", f"used by deployment '{other.key}'")
    check_free(port, f"deployment '{key}'")


async def _bind(ctrl: Controller, dep: Deployment, port: int) -> None:
    _check_port(ctrl, port, dep.key)
    try:
        await ctrl.listen(dep, port)
    except OSError as error:
        raise PortInUseError(port, f"deployment '{dep.key}'", str(error)) from error


def _grpc_port(doc: ModelDeployment) -> int | None:
    return doc.spec.service.grpc_port if doc.spec.server.grpc.enabled else None


async def _bind_grpc(ctrl: Controller, dep: Deployment) -> None:
    try:
        await ctrl.listen(dep, dep.port)
    except OSError as error:
        port = _grpc_port(dep.doc) or 0
        raise PortInUseError(port, f"deployment '{dep.key}'", str(error)) from error


async def _create(ctrl: Controller, key: str, doc: ModelDeployment) -> dict[str, Any]:
    dep = Deployment(
        key=key,
        doc=doc,
        router=ctrl.new_router(key),
        rollout=RolloutState(stable=1),
        desired=doc.spec.initial_replicas,
    )
    ctrl.configure_router(dep, demand_callback(ctrl, dep))
    await _bind(ctrl, dep, doc.spec.service.port)
    add_revision(ctrl, dep, 1, revision_of(doc, ctrl.state), doc.source_dir)
    created = f"revision 1, {dep.desired} replicas, port {dep.port}"
    ctrl.add(dep, Event("Normal", "Created", created))
    write_applied(ctrl, dep)
    ctrl.persist(dep)
    return {"kind": "ModelDeployment", "name": key, "action": "created", "revision": 1}


def write_applied(ctrl: Controller, dep: Deployment) -> None:
    """The whole applied spec beside the revision files (they hold the template only)."""
    folder = ctrl.state / "deployments" / dep.namespace / dep.name
    data = dep.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    write_revision_file(folder / APPLIED_FILE, data)


def add_revision(
    ctrl: Controller, dep: Deployment, revision: int, data: dict[str, Any], source_dir: str
) -> None:
    """Cut revision ``revision`` of ``dep`` from ``data``: the controller writes its file, its
    hash and its store row (``AddRevision``)."""
    ctrl.apply(dep, [AddRevision(revision, data, source_dir)])


async def update_deployment(
    ctrl: Controller, dep: Deployment, doc: ModelDeployment
) -> dict[str, Any]:
    """Apply ``doc`` to the running ``dep``, as ``mlkube apply`` does (a pipeline's deploy
    step): its result, with the new revision when a rollout started."""
    return await _update(ctrl, dep, doc)


async def _update(ctrl: Controller, dep: Deployment, doc: ModelDeployment) -> dict[str, Any]:
    now = ctrl.clock.monotonic()
    data = revision_of(doc, ctrl.state)
    old = dep.doc
    result: dict[str, Any] = {"kind": "ModelDeployment", "name": dep.key, "action": "unchanged"}
    if doc.spec.service.port != dep.port:
        ctrl.stop_listening(dep)
        await _bind(ctrl, dep, doc.spec.service.port)
    if doc.spec != old.spec:
        result["action"] = "configured"
    ctrl.apply(dep, [SetSpec(doc)])
    if _grpc_port(doc) != _grpc_port(old):  # the balancer's gRPC listener follows the spec
        await _bind_grpc(ctrl, dep)
    write_applied(ctrl, dep)
    # As on a cluster: the autoscaler's count survives an apply (clamped into new bounds).
    desired = replicas_after_apply(old.spec, doc.spec, dep.desired)
    if desired != dep.desired:
        ctrl.apply(dep, [SetDesired(desired, "apply")])
    changes, outcome = rollout_on_apply(dep, data, doc, now)
    ctrl.apply(dep, changes)
    result.update(outcome)
    return result


def rollout_on_apply(
    dep: Deployment, data: dict[str, Any], doc: ModelDeployment, now: float
) -> tuple[list[Change], dict[str, Any]]:
    """What applying ``doc`` (its revision document ``data``) does to the rollout. Pure.

    The changes and what the apply's result says besides: nothing when the template is the
    stable one with no rollout, or the one already rolling out; ``configured`` when it is the
    stable one again (the rollout is aborted); ``configured`` and the new revision's number
    otherwise (a revision is cut and its rollout starts).
    """
    identity = revision_hash(data)
    rollout = dep.rollout
    if identity == dep.revision_hashes.get(rollout.stable):
        if not rollout.active:
            return [], {}
        state = abort_rollout(rollout, "the applied spec matches the stable revision")
        aborted = SetRollout(state, (Event("Normal", "RolloutAborted", state.reason),))
        return [aborted], {"action": "configured"}
    newest = dep.newest_revision
    if rollout.active and identity == dep.revision_hashes.get(newest):
        return [], {}
    revision = newest + 1
    strategy = doc.spec.rollout.strategy
    state = start_rollout(rollout, revision, strategy, now=now)
    message = f"{strategy} from revision {state.stable} to {revision}"
    started = SetRollout(state, (Event("Normal", "RolloutStarted", message),))
    cut = AddRevision(revision, data, doc.source_dir)
    return [cut, started], {"action": "configured", "revision": revision}


# scale, down -------------------------------------------------------------------------------
def scale(ctrl: Controller, name: str, replicas: int) -> dict[str, Any]:
    if replicas < 0:
        raise BackendError(f"replicas must be >= 0, got {replicas}")
    dep = find(ctrl, name)
    changes: list[Change] = [SetDesired(replicas, "manual")]
    if dep.doc.spec.autoscaling is not None:
        changes.append(
            Event(
                "Normal",
                "AutoscalerActive",
                "autoscaling is on: the autoscaler may change this count at its next sync",
            )
        )
    ctrl.apply(dep, changes)
    ctrl.reconcile()
    return {"name": dep.key, "replicas": replicas}


async def down(ctrl: Controller, name: str | None) -> dict[str, Any]:
    targets = [find(ctrl, name)] if name else list(ctrl.deployments.values())
    for dep in targets:
        ctrl.begin_delete(dep)
    deadline = ctrl.clock.monotonic() + 60.0
    while any(d.replicas for d in targets) and ctrl.clock.monotonic() < deadline:
        await ctrl.clock.sleep(0.05)
    for dep in targets:
        ctrl.end_delete(dep)
    ctrl.write_targets()
    if name is None:  # everything goes: jobs are cancelled, their workers stopped
        await _stop_jobs(ctrl)
    exiting = not ctrl.deployments
    stopped = {"prometheusStopped": False, "alertmanagerStopped": False}
    if exiting:
        stopped = await monitoring.stop(ctrl)
        ctrl.stopping.set()
    else:
        await monitoring.refresh(ctrl)
    return {
        "stopped": [d.key for d in targets],
        "controllerExiting": exiting,
        **stopped,
    }


async def _stop_jobs(ctrl: Controller) -> None:
    queue = ctrl.job_queue
    for job in list(queue.jobs.values()):
        if not job.state.phase.finished:
            queue.cancel(job.key)
    while any(job.gang is not None for job in queue.jobs.values()):
        queue.tick()  # SIGKILL follows SIGTERM once a job's grace period has passed
        await ctrl.clock.sleep(0.05)


# rollouts ---------------------------------------------------------------------------------
def history(ctrl: Controller, dep: Deployment) -> list[dict[str, Any]]:
    rows = ctrl.store.revisions(dep.key)
    return [
        {
            "revision": row.revision,
            "created": row.created,
            "status": row.status or ("Complete" if row.revision == dep.rollout.stable else ""),
            "reason": row.reason,
            "model": _models_of(row.spec["spec"]),
            "current": row.revision == dep.rollout.stable,
            "change": changed_sections(before.spec if before else None, row.spec),
        }
        for before, row in zip([None, *rows[:-1]], rows, strict=True)
    ]


def _models_of(spec: dict[str, Any]) -> str:
    """What a history row shows as the model: its URI, or the names of several models."""
    if "models" in spec:
        return "models " + ", ".join(str(m.get("name")) for m in spec["models"])
    return str(spec["model"]["uri"])


def changed_sections(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """The spec sections in which two revision documents differ: ``model, batching``. Pure."""
    if before is None:
        return "created"
    old, new = before.get("spec", {}), after.get("spec", {})
    return ", ".join(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


def rollout_status(dep: Deployment) -> dict[str, Any]:
    data = dep.rollout.to_json()
    data["weights"] = {str(k): v for k, v in dep.weights.items()}
    data["desired"] = dep.desired
    return data


def undo(ctrl: Controller, dep: Deployment, revision: int | None) -> dict[str, Any]:
    now = ctrl.clock.monotonic()
    if dep.rollout.active:
        state = abort_rollout(dep.rollout, "rollout undone by the user")
        aborted = Event("Normal", "RolloutAborted", f"back to revision {state.stable}")
        ctrl.apply(dep, [SetRollout(state, (aborted,))])
        return {"name": dep.key, "revision": state.stable, "action": "aborted"}
    target = _undo_target(dep, ctrl.store.revisions(dep.key), revision, now=now)
    if dep.rollout.previous == target and now < dep.rollout.previous_until:
        state = RolloutState(
            stable=target, previous=dep.rollout.stable, previous_until=now + BLUE_GREEN_KEEP_S
        )
        back = Event("Normal", "RolledBack", f"traffic switched back to revision {target}")
        ctrl.apply(dep, [SetRollout(state, (back,))])
        return {"name": dep.key, "revision": target, "action": "switched"}
    strategy = dep.doc.spec.rollout.strategy
    if strategy in (RolloutStrategy.CANARY, RolloutStrategy.AB_TEST):
        strategy = RolloutStrategy.ROLLING_UPDATE  # an undo goes straight back, no analysis
    state = start_rollout(dep.rollout, target, strategy, now=now)
    started = Event("Normal", "RolloutStarted", f"undo: {strategy} back to revision {target}")
    ctrl.apply(dep, [SetRollout(state, (started,))])
    ctrl.reconcile()
    return {"name": dep.key, "revision": target, "action": "rolling back"}


def promote(ctrl: Controller, dep: Deployment, *, full: bool) -> dict[str, Any]:
    """End the canary's current step now (``full``: every step); the analysis starts over."""
    state = dep.rollout
    if not state.active or state.strategy is not RolloutStrategy.CANARY:
        raise BackendError(
            f"deployment '{dep.key}' has no canary in progress ({state.phase}); "
            "promote moves a Canary's steps"
        )
    skipped = skip_step(dep.doc.spec.rollout, state, full=full)
    what = "every step" if full else f"step {state.step + 1}"
    event = Event("Normal", "CanaryPromoted", f"rollout promote: {what} ended by the user")
    ctrl.apply(dep, [SetRollout(skipped, (event,)), AnalysisResult(None, False, None)])
    return rollout_status(dep)  # the next tick scales the canary to the new step


def abort(ctrl: Controller, dep: Deployment) -> dict[str, Any]:
    """Stop the rollout in progress: all traffic back to the stable revision."""
    if not dep.rollout.active:
        raise BackendError(
            f"deployment '{dep.key}' has no rollout in progress to abort ({dep.rollout.phase})"
        )
    state = abort_rollout(dep.rollout, "aborted by rollout abort")
    aborted = Event("Warning", "RolloutAborted", f"back to revision {state.stable}")
    ctrl.apply(dep, [SetRollout(state, (aborted,))])
    return rollout_status(dep)  # the next tick stops the new revision's replicas


def _undo_target(
    dep: Deployment, rows: list[RevisionRow], revision: int | None, *, now: float
) -> int:
    """The revision an undo goes back to: the one asked for, else ``desired.rollout.
    undo_target`` (the kept colour, else the newest revision that served all traffic)."""
    statuses = {row.revision: row.status for row in rows}
    target = revision
    if target is None:
        target = undo_target(statuses, dep.rollout, now=now)
    if target is None or target not in dep.revisions or target == dep.rollout.stable:
        raise BackendError(f"deployment '{dep.key}' has no earlier revision to go back to")
    return target


# status ------------------------------------------------------------------------------------
def status(ctrl: Controller, name: str | None) -> dict[str, Any]:
    deps = [find(ctrl, name)] if name else list(ctrl.deployments.values())
    capacity = machine_capacity(
        ctrl.settings.cpu_reserve_millis, ctrl.settings.memory_reserve_bytes
    )
    return {
        "controller": {
            "stateDir": str(ctrl.state),
            "enforcement": str(ctrl.enforcer.mode),
            "allocatable": {
                "cpuMillis": capacity.cpu_millis,
                "memoryBytes": capacity.memory_bytes,
                "gpus": list(capacity.gpus),
            },
            "prometheusTargets": str(Path(ctrl.state) / "prometheus" / "targets.json"),
            "prometheus": prometheus_url(ctrl.state),
            "alertmanager": monitoring.alertmanager_url(ctrl.state),
            "metrics": f"http://127.0.0.1:{ctrl.api_port}/metrics",
        },
        "deployments": [_deployment_status(ctrl, d) for d in deps],
    }


def prometheus_url(state: Path) -> str | None:
    """The URL of the local Prometheus of ``mlkube up --prometheus``, while it runs."""
    info = prometheus_running(state)
    return info.url if info is not None else None


def _deployment_status(ctrl: Controller, dep: Deployment) -> dict[str, Any]:
    replicas = sorted(dep.replicas.values(), key=lambda r: (r.revision, r.name))
    total = sum(dep.weights.values()) or 1.0
    resources = dep.doc.spec.resources
    return {
        "name": dep.name,
        "namespace": dep.namespace,
        "port": dep.port,
        "grpcPort": _grpc_port(dep.doc),
        "desired": dep.desired,
        "ready": sum(1 for r in replicas if r.phase is Phase.READY and not r.standby),
        "standby": {
            "replicas": sum(1 for r in replicas if r.standby),
            "ready": sum(1 for r in replicas if r.standby and r.phase is Phase.READY),
            "replicaSeconds": round(ctrl.standby_cost(dep), 1),
        },
        "revision": dep.rollout.stable,
        "rollout": rollout_status(dep),
        "traffic": {str(k): round(100.0 * v / total, 1) for k, v in dep.weights.items()},
        "requestsPerSecond": round(dep.rps, 2),
        "p50Ms": dep.router.latency_quantile_ms(0.5),
        "p99Ms": dep.router.latency_quantile_ms(0.99),
        "errors": dep.router.stats.errors,
        "lbFailed": dep.router.stats.failed,
        "requests": {k: v.text for k, v in resources.requests.items()},
        "limits": {k: v.text for k, v in resources.limits.items()},
        "enforcement": str(ctrl.enforcer.mode),
        "autoscaler": dep.last_decision,
        "lastEvent": dep.last_event,
        "replicas": [_replica_status(r) for r in replicas],
    }


def _replica_status(replica: Any) -> dict[str, Any]:
    latest = replica.snapshots[-1] if replica.snapshots else None
    cpu = None
    if len(replica.snapshots) >= 2:
        a, b = replica.snapshots[-2], replica.snapshots[-1]
        if a.cpu_seconds is not None and b.cpu_seconds is not None and b.at > a.at:
            cpu = round((b.cpu_seconds - a.cpu_seconds) / (b.at - a.at), 3)
    return {
        "name": replica.name,
        "revision": replica.revision,
        "phase": str(replica.phase),
        "port": replica.port,
        "grpcPort": replica.grpc_port or None,
        "pid": replica.handle.pid if replica.handle else None,
        "restarts": replica.backoff.restart_count,
        "lastReason": replica.last_reason,
        "lastError": replica.failed_before_ready,
        "pendingReason": replica.pending_reason,
        "gpus": list(replica.gpus),
        "cpuCores": cpu,
        "memoryBytes": latest.rss_bytes if latest else None,
        "inFlight": latest.in_flight if latest else None,
        "standby": replica.standby,
    }
