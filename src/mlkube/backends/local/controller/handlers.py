"""What the control API does: apply, scale, down, status, events, usage, rollout
status/history/undo.

Each handler changes the controller's desired state and lets the reconcile loop act; only
``down`` waits, for the replicas it stops.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlkube.backends.local.controller import monitoring
from mlkube.backends.local.controller.controller import Controller, start_router
from mlkube.backends.local.controller.deployment import (
    APPLIED_FILE,
    Deployment,
    revision_of,
    write_revision_file,
)
from mlkube.backends.local.controller.loops import demand_callback
from mlkube.backends.local.controller.placement import machine_capacity
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.rollout import (
    BLUE_GREEN_KEEP_S,
    RolloutPhase,
    RolloutState,
    abort_rollout,
    start_rollout,
)
from mlkube.backends.local.ports import PortInUseError, check_free
from mlkube.backends.local.prometheus import running as prometheus_running
from mlkube.backends.local.proxy import Router
from mlkube.backends.local.store import RevisionRow
from mlkube.desired.revision import revision_hash
from mlkube.desired.scaling import replicas_after_apply
from mlkube.errors import BackendError
from mlkube.spec.deployment import ModelDeployment, PriorityClass, Quota
from mlkube.spec.loading import load_documents
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
    for doc in documents:
        key = f"{doc.metadata.namespace}/{doc.metadata.name}"
        if isinstance(doc, Quota | PriorityClass):
            ctrl.store.put_document(doc.kind, key, doc.model_dump(mode="json", by_alias=True))
            results.append({"kind": doc.kind, "name": key, "action": "configured"})
            continue
        if key in ctrl.deployments:
            results.append(await _update(ctrl, ctrl.deployments[key], doc))
        else:
            results.append(await _create(ctrl, key, doc))
    ctrl.reconcile()
    await monitoring.refresh(ctrl)
    return {"results": results}


def _check_port(ctrl: Controller, port: int, key: str) -> None:
    for other in ctrl.deployments.values():
        if other.port == port and other.key != key:
            raise PortInUseError(port, f"deployment '{key}'", f"used by deployment '{other.key}'")
    check_free(port, f"deployment '{key}'")


async def _bind(ctrl: Controller, dep: Deployment, port: int) -> None:
    _check_port(ctrl, port, dep.key)
    dep.port = port
    try:
        await start_router(dep)
    except OSError as error:
        raise PortInUseError(port, f"deployment '{dep.key}'", str(error)) from error


async def _create(ctrl: Controller, key: str, doc: ModelDeployment) -> dict[str, Any]:
    router = ctrl.new_router(key)
    dep = Deployment(key=key, doc=doc, router=router, rollout=RolloutState(stable=1), desired=0)
    dep.desired = doc.spec.initial_replicas
    router.on_demand = demand_callback(ctrl, dep)
    apply_hold(router, doc, ctrl.settings.hold_s)
    await _bind(ctrl, dep, doc.spec.service.port)
    add_revision(ctrl, dep, 1, revision_of(doc), doc.source_dir)
    ctrl.deployments[key] = dep
    write_applied(ctrl, dep)
    ctrl.event(dep, "Normal", "Created", f"revision 1, {dep.desired} replicas, port {dep.port}")
    ctrl.persist(dep)
    return {"kind": "ModelDeployment", "name": key, "action": "created", "revision": 1}


def apply_hold(router: Router, doc: ModelDeployment, default_s: float) -> None:
    """How long the router holds requests with no ready replica: the spec's activationTimeout
    when it scales to zero, else the controller's setting. Applied on create, apply and restore."""
    autoscaling = doc.spec.autoscaling
    if autoscaling is not None and autoscaling.scale_to_zero is not None:
        router.hold_s = autoscaling.scale_to_zero.activation_timeout
    else:
        router.hold_s = default_s


def write_applied(ctrl: Controller, dep: Deployment) -> None:
    """The whole applied spec beside the revision files (they hold the template only)."""
    folder = ctrl.state / "deployments" / dep.namespace / dep.name
    data = dep.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    write_revision_file(folder / APPLIED_FILE, data)


def add_revision(
    ctrl: Controller, dep: Deployment, revision: int, data: dict[str, Any], source_dir: str
) -> None:
    file = ctrl.state / "deployments" / dep.namespace / dep.name / f"rev-{revision}.yaml"
    write_revision_file(file, data)
    doc = ModelDeployment.model_validate(data)
    dep.revisions[revision] = doc
    dep.revision_files[revision] = file
    dep.revision_hashes[revision] = revision_hash(data)
    row = RevisionRow(revision, data, source_dir, ctrl.clock.wall(), "", "")
    ctrl.store.add_revision(dep.key, row)


async def _update(ctrl: Controller, dep: Deployment, doc: ModelDeployment) -> dict[str, Any]:
    now = ctrl.clock.monotonic()
    data = revision_of(doc)
    old = dep.doc
    result: dict[str, Any] = {"kind": "ModelDeployment", "name": dep.key, "action": "unchanged"}
    if doc.spec.service.port != dep.port:
        if dep.server is not None:
            dep.server.close()
        await _bind(ctrl, dep, doc.spec.service.port)
    if doc.spec != old.spec:
        result["action"] = "configured"
    dep.doc = doc
    write_applied(ctrl, dep)
    apply_hold(dep.router, doc, ctrl.settings.hold_s)
    # As on a cluster: the autoscaler's count survives an apply (clamped into new bounds).
    desired = replicas_after_apply(old.spec, doc.spec, dep.desired)
    if desired != dep.desired:
        ctrl.event(
            dep, "Normal", "ScalingReplicaSet", f"scaled from {dep.desired} to {desired}: apply"
        )
        dep.desired = desired
    identity = revision_hash(data)
    newest = dep.newest_revision
    if identity == dep.revision_hashes.get(dep.rollout.stable):
        if dep.rollout.active:
            dep.rollout = abort_rollout(dep.rollout, "the applied spec matches the stable revision")
            ctrl.event(dep, "Normal", "RolloutAborted", dep.rollout.reason)
            result["action"] = "configured"
        return result
    if dep.rollout.active and identity == dep.revision_hashes.get(newest):
        return result
    revision = newest + 1
    add_revision(ctrl, dep, revision, data, doc.source_dir)
    dep.rollout = start_rollout(dep.rollout, revision, doc.spec.rollout.strategy, now=now)
    ctrl.event(
        dep,
        "Normal",
        "RolloutStarted",
        f"{doc.spec.rollout.strategy} from revision {dep.rollout.stable} to {revision}",
    )
    result.update(action="configured", revision=revision)
    return result


# scale, down -------------------------------------------------------------------------------
def scale(ctrl: Controller, name: str, replicas: int) -> dict[str, Any]:
    if replicas < 0:
        raise BackendError(f"replicas must be >= 0, got {replicas}")
    dep = find(ctrl, name)
    ctrl.event(
        dep, "Normal", "ScalingReplicaSet", f"scaled from {dep.desired} to {replicas}: manual"
    )
    dep.desired = replicas
    if dep.doc.spec.autoscaling is not None:
        ctrl.event(
            dep,
            "Normal",
            "AutoscalerActive",
            "autoscaling is on: the autoscaler may change this count at its next sync",
        )
    ctrl.reconcile()
    return {"name": dep.key, "replicas": replicas}


async def down(ctrl: Controller, name: str | None) -> dict[str, Any]:
    targets = [find(ctrl, name)] if name else list(ctrl.deployments.values())
    for dep in targets:
        ctrl.deployments.pop(dep.key, None)
        for replica in list(dep.replicas.values()):
            ctrl.begin_stop(dep, replica, "deployment deleted")
    deadline = ctrl.clock.monotonic() + 60.0
    while any(d.replicas for d in targets) and ctrl.clock.monotonic() < deadline:
        await ctrl.clock.sleep(0.05)
    for dep in targets:
        if dep.server is not None:
            dep.server.close()
        ctrl.store.delete_deployment(dep.key)
        ctrl.store.delete_usage(dep.key)
        ctrl.metrics.forget(dep.namespace, dep.name)
    ctrl.write_targets()
    exiting = not ctrl.deployments
    prometheus_stopped = False
    if exiting:
        prometheus_stopped = await monitoring.stop(ctrl)
        ctrl.stopping.set()
    else:
        await monitoring.refresh(ctrl)
    return {
        "stopped": [d.key for d in targets],
        "controllerExiting": exiting,
        "prometheusStopped": prometheus_stopped,
    }


# rollouts ---------------------------------------------------------------------------------
def history(ctrl: Controller, dep: Deployment) -> list[dict[str, Any]]:
    rows = ctrl.store.revisions(dep.key)
    return [
        {
            "revision": row.revision,
            "created": row.created,
            "status": row.status or ("Complete" if row.revision == dep.rollout.stable else ""),
            "reason": row.reason,
            "model": row.spec["spec"]["model"]["uri"],
            "current": row.revision == dep.rollout.stable,
        }
        for row in rows
    ]


def rollout_status(dep: Deployment) -> dict[str, Any]:
    data = dep.rollout.to_json()
    data["weights"] = {str(k): v for k, v in dep.weights.items()}
    data["desired"] = dep.desired
    return data


def undo(ctrl: Controller, dep: Deployment, revision: int | None) -> dict[str, Any]:
    now = ctrl.clock.monotonic()
    if dep.rollout.active:
        dep.rollout = abort_rollout(dep.rollout, "rollout undone by the user")
        ctrl.event(dep, "Normal", "RolloutAborted", f"back to revision {dep.rollout.stable}")
        return {"name": dep.key, "revision": dep.rollout.stable, "action": "aborted"}
    rows = ctrl.store.revisions(dep.key)
    good = [
        r.revision
        for r in rows
        if r.revision != dep.rollout.stable
        and r.status not in (str(RolloutPhase.FAILED), str(RolloutPhase.ROLLED_BACK))
    ]
    target = (
        revision
        if revision is not None
        else max((r for r in good if r < dep.rollout.stable), default=None)
    )
    if target is None or target not in dep.revisions:
        raise BackendError(f"deployment '{dep.key}' has no earlier revision to go back to")
    if dep.rollout.previous == target and now < dep.rollout.previous_until:
        dep.rollout = RolloutState(
            stable=target, previous=dep.rollout.stable, previous_until=now + BLUE_GREEN_KEEP_S
        )
        ctrl.event(dep, "Normal", "RolledBack", f"traffic switched back to revision {target}")
        return {"name": dep.key, "revision": target, "action": "switched"}
    strategy = dep.doc.spec.rollout.strategy
    if strategy in (RolloutStrategy.CANARY, RolloutStrategy.AB_TEST):
        strategy = RolloutStrategy.ROLLING_UPDATE  # an undo goes straight back, no analysis
    dep.rollout = start_rollout(dep.rollout, target, strategy, now=now)
    ctrl.event(dep, "Normal", "RolloutStarted", f"undo: {strategy} back to revision {target}")
    ctrl.reconcile()
    return {"name": dep.key, "revision": target, "action": "rolling back"}


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
        "desired": dep.desired,
        "ready": sum(1 for r in replicas if r.phase is Phase.READY),
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
        "pid": replica.handle.pid if replica.handle else None,
        "restarts": replica.backoff.restart_count,
        "lastReason": replica.last_reason,
        "pendingReason": replica.pending_reason,
        "gpus": list(replica.gpus),
        "cpuCores": cpu,
        "memoryBytes": latest.rss_bytes if latest else None,
        "inFlight": latest.in_flight if latest else None,
    }
