"""What ``status``, ``rollout status`` and ``events`` show for ``--target kubernetes``.

Pure: the live objects (JSON) in, plain data out: one summary per deployment instance (printed
as a table, JSON or YAML) with the problems ``diagnose`` found (conditions and Warning events:
the reason behind the counts, shown under the table), a ``RolloutStatus`` from an instance's
Deployments, an ``EventRow`` from a core/v1 Event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from mlkube.backends.base import EventRow, JobRow, RolloutStatus
from mlkube.backends.kubernetes.diagnose import Problem, lines
from mlkube.backends.kubernetes.render.manifest import LABEL_INSTANCE, Manifest
from mlkube.backends.kubernetes.wait import rollout_state

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
"""Set on a Deployment by its controller: the revision of its newest ReplicaSet."""

TABLE_COLUMNS = ("NAME", "NAMESPACE", "DEPLOYMENT", "READY", "UP-TO-DATE", "AUTOSCALER", "SERVICE")
JOB_COLUMNS = ("NAME", "NAMESPACE", "KIND", "STATE", "ACTIVE", "SUCCEEDED", "FAILED", "REASON")
JOB_KINDS = ("Job", "PyTorchJob")


def summarize(
    objects: Sequence[Manifest],
    problems: Mapping[tuple[str, str], Sequence[Problem]] | None = None,
) -> list[dict[str, Any]]:
    """One entry per instance: its Deployments, autoscalers and Services, by name, and the
    ``problems`` found for it (keyed by (namespace, instance)). Pure."""
    by_instance: dict[tuple[str, str], list[Manifest]] = {}
    for obj in objects:
        meta = obj["metadata"]
        instance = meta.get("labels", {}).get(LABEL_INSTANCE, meta["name"])
        by_instance.setdefault((meta.get("namespace", ""), instance), []).append(obj)
    found = problems or {}
    return [
        {**_instance(ns, name, objs), "problems": [p.text() for p in found.get((ns, name), ())]}
        for (ns, name), objs in sorted(by_instance.items())
    ]


def not_rolled_out(objects: Sequence[Manifest]) -> list[Manifest]:
    """The Deployments among ``objects`` that are not rolled out. Pure."""
    return [o for o in objects if o["kind"] == "Deployment" and not rollout_state(o).done]


def problem_notes(
    summaries: Sequence[dict[str, Any]],
    problems: Mapping[tuple[str, str], Sequence[Problem]],
) -> list[str]:
    """Lines under the table: for each instance with problems, each one wrapped to 80
    columns. Pure."""
    notes: list[str] = []
    for summary in summaries:
        found = problems.get((summary["namespace"], summary["name"]), ())
        if found:
            notes.append(f"why {summary['name']} is not healthy:")
            notes.extend(line for problem in found for line in lines(problem))
    return notes


def _instance(namespace: str, name: str, objects: list[Manifest]) -> dict[str, Any]:
    deployments = []
    autoscalers = []
    services = []
    jobs = []
    for obj in sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"])):
        kind = obj["kind"]
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        if kind == "Deployment":
            deployments.append(
                {
                    "name": obj["metadata"]["name"],
                    "replicas": spec.get("replicas", 1),
                    "ready": status.get("readyReplicas", 0),
                    "updated": status.get("updatedReplicas", 0),
                    "available": status.get("availableReplicas", 0),
                    "rollout": rollout_state(obj).message,
                }
            )
        elif kind == "HorizontalPodAutoscaler":
            autoscalers.append(
                {
                    "name": obj["metadata"]["name"],
                    "kind": kind,
                    "min": spec.get("minReplicas", 1),
                    "max": spec.get("maxReplicas"),
                    "current": status.get("currentReplicas"),
                    "desired": status.get("desiredReplicas"),
                }
            )
        elif kind == "ScaledObject":
            autoscalers.append(
                {
                    "name": obj["metadata"]["name"],
                    "kind": kind,
                    "min": spec.get("minReplicaCount", 0),
                    "max": spec.get("maxReplicaCount"),
                    "ready": _condition(status, "Ready"),
                    "active": _condition(status, "Active"),
                }
            )
        elif kind in JOB_KINDS:
            jobs.append(job_view(obj))
        elif kind == "Service":
            ports = [
                f"{p.get('port')}" + (f":{p['nodePort']}" if p.get("nodePort") else "")
                for p in spec.get("ports", [])
            ]
            services.append(
                {
                    "name": obj["metadata"]["name"],
                    "type": spec.get("type", "ClusterIP"),
                    "ports": ports,
                }
            )
    return {
        "name": name,
        "namespace": namespace,
        "deployments": deployments,
        "autoscalers": autoscalers,
        "services": services,
        "jobs": jobs,
    }


def job_view(obj: Manifest) -> dict[str, Any]:
    """Where a Job or PyTorchJob stands: its state, pod counts and the reason. Pure.

    A Job's state is its condition that is True (Complete, Failed with its reason such as
    BackoffLimitExceeded or DeadlineExceeded, Suspended while Kueue holds it), else Running
    with active pods, else Pending
    (https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup).
    A PyTorchJob's is its latest True condition (Created, Running, Restarting, Succeeded,
    Failed), its counts the sum over its replica types.
    """
    status = obj.get("status") or {}
    true = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    if obj["kind"] == "PyTorchJob":
        counts = {"active": 0, "succeeded": 0, "failed": 0}
        for replica in (status.get("replicaStatuses") or {}).values():
            for key in counts:
                counts[key] += int(replica.get(key) or 0)
        states = {"Succeeded": "Complete", "Failed": "Failed", "Restarting": "Restarting"}
        last = true[-1] if true else None
        state = states.get(str(last.get("type")), "Running") if last else "Pending"
        if last is not None and last.get("type") == "Created":
            state = "Pending"
    else:
        counts = {key: int(status.get(key) or 0) for key in ("active", "succeeded", "failed")}
        by_type = {str(c.get("type")): c for c in true}
        last = next(
            (
                by_type[t]
                for t in ("Failed", "Complete", "Suspended", "FailureTarget")
                if t in by_type
            ),
            None,
        )
        if last is not None:
            state = {"FailureTarget": "Failing"}.get(str(last["type"]), str(last["type"]))
        else:
            state = "Running" if counts["active"] else "Pending"
    reason = ""
    if last is not None and state not in ("Running", "Complete"):
        reason = ": ".join(str(x) for x in (last.get("reason"), last.get("message")) if x)
    return {
        "name": obj["metadata"]["name"],
        "kind": obj["kind"],
        "state": state,
        **counts,
        "reason": reason,
    }


def job_rows(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows under ``JOB_COLUMNS``: one per Job or PyTorchJob. Pure."""
    return [
        (
            summary["name"],
            summary["namespace"],
            job["kind"],
            job["state"],
            str(job["active"]),
            str(job["succeeded"]),
            str(job["failed"]),
            job["reason"] or "-",
        )
        for summary in summaries
        for job in summary.get("jobs", [])
    ]


def _condition(status: Manifest, kind: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def table_rows(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows under ``TABLE_COLUMNS``: one per Deployment of each instance. Pure."""
    rows: list[tuple[str, ...]] = []
    for summary in summaries:
        if summary.get("jobs") and not summary["deployments"]:
            continue  # a job's instance: its row is in the jobs table
        autoscaler = (
            ", ".join(
                f"{(a['kind'] == 'ScaledObject' and 'keda') or 'hpa'} {a['min']}-{a['max']}"
                for a in summary["autoscalers"]
            )
            or "-"
        )
        service = (
            ", ".join(
                f"{s['name']} {s['type']} {'/'.join(s['ports'])}" for s in summary["services"]
            )
            or "-"
        )
        for deployment in summary["deployments"] or [
            {"name": "-", "ready": 0, "replicas": 0, "updated": 0}
        ]:
            rows.append(
                (
                    summary["name"],
                    summary["namespace"],
                    deployment["name"],
                    f"{deployment['ready']}/{deployment['replicas']}",
                    str(deployment["updated"]),
                    autoscaler,
                    service,
                )
            )
    return rows


def rollout_status(name: str, deployments: Sequence[Manifest]) -> RolloutStatus:
    """The rollout of instance ``name`` from its Deployments (at least one), as kubectl judges
    each. Pure.

    ``revision`` is set once the rollout is complete (that revision serves everything);
    while it progresses or after it failed, the revision being rolled out is the ``target``.
    """
    states = [rollout_state(d) for d in deployments]
    main = next((d for d in deployments if d["metadata"]["name"] == name), deployments[0])
    revision = _revision(main)
    if any(s.failed for s in states):
        phase = "Failed"
    elif all(s.done for s in states):
        phase = "Complete"
    else:
        phase = "Progressing"
    strategy = ((main.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    return RolloutStatus(
        name=name,
        phase=phase,
        revision=revision if phase == "Complete" else None,
        target=None if phase == "Complete" else revision,
        strategy=strategy,
        reason="; ".join(s.message for s in states),
    )


def _revision(deployment: Manifest) -> int | None:
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    return int(value) if value is not None and str(value).isdigit() else None


def event_row(event: Manifest) -> EventRow:
    """One core/v1 Event as an ``EventRow``. Pure.

    Its time is the last time it happened (``lastTimestamp``; ``eventTime`` for events written
    through events.k8s.io/v1), else when it was first seen or created.
    """
    involved = event.get("involvedObject") or {}
    return EventRow(
        time=_event_time(event),
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or "").strip(),
        object=f"{involved.get('kind', '?')}/{involved.get('name', '?')}",
        count=int(event.get("count") or 1),
    )


def _event_time(event: Manifest) -> float:
    meta = event.get("metadata") or {}
    for value in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        meta.get("creationTimestamp"),
    ):
        if value:
            return _epoch(value)
    return 0.0


def _epoch(value: object) -> float:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def job_row(job: Manifest) -> JobRow:
    """A Job or PyTorchJob as ``mlkube jobs`` shows it, in the local queue's phases: the
    cluster's state (``job_view``) read as Queued, Running, Succeeded or Failed. Pure."""
    view = job_view(job)
    phase = {
        "Complete": "Succeeded",
        "Failed": "Failed",
        "Suspended": "Queued",
        "Pending": "Queued",
    }.get(view["state"], "Running")
    reason = view["reason"]
    if view["state"] == "Suspended" and not reason:
        reason = "suspended (waiting for Kueue to admit it)"
    meta, spec = job["metadata"], job.get("spec") or {}
    status = job.get("status") or {}
    workers = int(spec.get("parallelism") or 0) or sum(
        int(r.get("replicas") or 0) for r in (spec.get("pytorchReplicaSpecs") or {}).values()
    )
    return JobRow(
        name=meta["name"],
        kind=job["kind"],
        phase=phase,
        workers=workers or 1,
        priority=0,
        submitted=_epoch_or_none(meta.get("creationTimestamp")) or 0.0,
        started=_epoch_or_none(status.get("startTime")),
        finished=_epoch_or_none(status.get("completionTime")),
        restarts=int(view["failed"]),
        reason=reason,
    )


def _epoch_or_none(stamp: str | None) -> float | None:
    return _epoch(stamp) if stamp else None
