"""Admission of Pending replicas: requests vs allocatable, quotas, priorities, GPUs.

Thin: gathers claims from every deployment, asks ``backends.local.admission.admit``, and hands
what it decided (``Unschedulable``, ``Placed``, preemption events) to ``Controller.apply``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from mlkube.backends.local.controller.changes import Event, Placed, Unschedulable
from mlkube.backends.local.decisions.admission import Capacity, Claim, QuotaLimits, admit
from mlkube.backends.local.decisions.jobs import CLAIM_PREFIX
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.standby import STANDBY_PRIORITY
from mlkube.backends.local.gpu import detect_gpus
from mlkube.spec.deployment import PriorityClass, Quota

if TYPE_CHECKING:
    from mlkube.backends.local.controller.controller import Controller
    from mlkube.backends.local.controller.deployment import Deployment
    from mlkube.backends.local.controller.jobs import LocalJob
    from mlkube.backends.local.controller.replica import Replica

_capacity: Capacity | None = None


def machine_capacity(cpu_reserve_millis: int, memory_reserve_bytes: int) -> Capacity:
    """Allocatable = what this process may use (affinity, memory cgroup) minus the reserve."""
    global _capacity  # detected once per process: GPUs and cores do not change
    if _capacity is None:
        cpus = len(os.sched_getaffinity(0)) * 1000
        memory = int(psutil.virtual_memory().total)
        limit = _cgroup_memory_limit()
        if limit is not None:
            memory = min(memory, limit)
        _capacity = Capacity(
            cpu_millis=max(0, cpus - cpu_reserve_millis),
            memory_bytes=max(0, memory - memory_reserve_bytes),
            gpus=detect_gpus(),
        )
    return _capacity


def _cgroup_memory_limit() -> int | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                file = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"
                value = int(file.read_text())
                return value if value < 2**60 else None
    except (OSError, ValueError):
        return None
    return None


def quota_limits(quota: Quota) -> QuotaLimits:
    hard = quota.spec.hard

    def pick(*names: str) -> int | None:
        for name in names:
            if name in hard:
                value = hard[name]
                return value.millis if "cpu" in name else value.whole
        return None

    return QuotaLimits(
        cpu_millis=pick("requests.cpu", "cpu"),
        memory_bytes=pick("requests.memory", "memory"),
        gpus=pick("requests.nvidia.com/gpu"),
        pods=pick("pods"),
    )


def priority_of(ctrl: Controller, dep: Deployment) -> tuple[int, bool]:
    """(priority value, may preempt) from the deployment's priorityClassName."""
    return priority_by_name(ctrl, dep.doc.spec.placement.priority_class_name)


def priority_by_name(ctrl: Controller, name: str | None) -> tuple[int, bool]:
    """(priority value, may preempt) of a PriorityClass name (None: the global default)."""
    # A PriorityClass is cluster-scoped: deployments name it by name alone, whatever
    # namespace its document carried (it is stored as namespace/name like the others).
    classes = {
        found.metadata.name: found
        for found in map(
            PriorityClass.model_validate, ctrl.store.documents("PriorityClass").values()
        )
    }
    chosen = classes.get(name) if name else None
    if chosen is None:
        chosen = next((c for c in classes.values() if c.spec.global_default), None)
    if chosen is None:
        return 0, True
    return chosen.spec.value, chosen.spec.preemption_policy == "PreemptLowerPriority"


def claim_of(ctrl: Controller, dep: Deployment, replica: Replica) -> Claim:
    resources = dep.revisions[replica.revision].spec.resources
    requests = resources.effective_requests()
    cpu, memory = requests.get("cpu"), requests.get("memory")
    priority, preempts = priority_of(ctrl, dep)
    if replica.standby:  # below every serving replica: first preempted, never preempting
        priority, preempts = STANDBY_PRIORITY, False
    return Claim(
        replica=replica.name,
        namespace=dep.namespace,
        priority=priority,
        cpu_millis=cpu.millis if cpu is not None else 0,
        memory_bytes=memory.whole if memory is not None else 0,
        gpu_count=resources.gpus,
        gpus=replica.gpus,
        preempts=preempts,
        standby=replica.standby,
    )


def admit_all(ctrl: Controller) -> None:
    """Admit what fits, preempting lower priorities where allowed; the rest stays Pending."""
    settings = ctrl.settings
    capacity = machine_capacity(settings.cpu_reserve_millis, settings.memory_reserve_bytes)
    quotas = {
        Quota.model_validate(data).metadata.namespace: quota_limits(Quota.model_validate(data))
        for data in ctrl.store.documents("Quota").values()
    }
    owners: dict[str, tuple[Deployment, Replica]] = {}
    placed: list[Claim] = []
    pending: list[tuple[Claim, Deployment, Replica]] = []
    for dep in ctrl.deployments.values():
        for replica in dep.replicas.values():
            owners[replica.name] = (dep, replica)
            claim = claim_of(ctrl, dep, replica)
            if replica.phase is Phase.PENDING:
                pending.append((claim, dep, replica))
            else:
                placed.append(claim)
    placed.extend(ctrl.job_queue.placed_claims())
    queued = ctrl.job_queue.queued()
    # One order for replicas and jobs: priority first; at equal priority serving goes first.
    order = sorted(
        [(c.priority, 0, i) for i, (c, _, _) in enumerate(pending)]
        + [(c.priority, 1, i) for i, (c, _) in enumerate(queued)],
        key=lambda item: (-item[0], item[1], item[2]),
    )
    for _, is_job, index in order:
        if is_job:
            placed = _admit_job(ctrl, *queued[index], placed, capacity, quotas, owners)
            continue
        claim, dep, replica = pending[index]
        verdict = admit(claim, placed, capacity, quotas)
        if not verdict.admitted:
            if replica.pending_reason != verdict.reason:
                ctrl.apply(dep, [Unschedulable(replica.name, verdict.reason)])
            continue
        for victim in verdict.victims:
            if victim.startswith(CLAIM_PREFIX):
                ctrl.job_queue.preempt(victim, f"replica {replica.name}")
                placed = [c for c in placed if c.replica != victim]
                continue
            victim_dep, victim_replica = owners[victim]
            message = f"replica {victim} preempted by {replica.name} (priority {claim.priority})"
            ctrl.apply(victim_dep, [Event("Warning", "Preempted", message)])
            if victim_dep is not dep:
                ctrl.apply(dep, [Event("Normal", "Preempting", message)])
            ctrl.begin_stop(victim_dep, victim_replica, "preempted")
            placed = [c for c in placed if c.replica != victim]
        ctrl.apply(dep, [Placed(replica.name, verdict.gpus)])
        ctrl.spawn(dep, replica)
        placed.append(claim_of(ctrl, dep, replica))


def _admit_job(
    ctrl: Controller,
    claim: Claim,
    job: LocalJob,
    placed: list[Claim],
    capacity: Capacity,
    quotas: dict[str, QuotaLimits],
    owners: dict[str, tuple[Deployment, Replica]],
) -> list[Claim]:
    """Admit a queued job's whole gang, preempting lower priorities, or tell it why it waits."""
    verdict = admit(claim, placed, capacity, quotas)
    if not verdict.admitted:
        ctrl.job_queue.keep_waiting(job, verdict.reason)
        return placed
    by = f"job {job.key} (priority {claim.priority})"
    for victim in verdict.victims:
        if victim.startswith(CLAIM_PREFIX):
            ctrl.job_queue.preempt(victim, by)
        else:
            victim_dep, victim_replica = owners[victim]
            ctrl.apply(
                victim_dep, [Event("Warning", "Preempted", f"replica {victim} preempted by {by}")]
            )
            ctrl.begin_stop(victim_dep, victim_replica, "preempted")
    placed = [c for c in placed if c.replica not in verdict.victims]
    ctrl.job_queue.start(job, verdict.gpus)
    return [*placed, replace(claim, gpus=verdict.gpus)]
