"""Admission of replicas against the machine's allocatable resources, quotas and priorities.

Pure: no I/O. A job's workers are one ``gang_claim``: all of them fit, or none starts.
The machine's allocatable CPU, memory and GPUs (capacity minus a reserve for the
system, as kubelet's ``--system-reserved``) are shared out by *requests*, never by use, as the
Kubernetes scheduler does. A replica that does not fit is Pending with a reason; a replica of a
higher priority may preempt lower-priority ones (fewest, lowest first) when that makes it fit.
A namespace Quota caps the sum of requests, and preemption never helps against a quota.
A warm standby replica (``standby``) yields to every serving replica: a serving one that does
not fit (resources or quota) stops standby replicas first, whatever its preemption policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Capacity:
    """What replicas may request in total on this machine."""

    cpu_millis: int
    memory_bytes: int
    gpus: tuple[int, ...] = ()
    """GPU indices (as CUDA_VISIBLE_DEVICES numbers them)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One replica's requests: either placed already, or asking to be."""

    replica: str
    namespace: str
    priority: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0
    gpu_count: int = 0
    gpus: tuple[int, ...] = ()
    """The GPUs a placed replica holds."""
    preempts: bool = True
    """False for preemptionPolicy: Never."""
    pods: int = 1
    """Pods the claim counts as against a quota's ``pods`` (a job's gang: its workers)."""
    standby: bool = False
    """A warm standby replica: it never blocks a serving claim (see ``admit``)."""


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A namespace's hard caps; None means no cap on that resource."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None
    gpus: int | None = None
    pods: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Admitted with ``gpus`` after preempting ``victims``, or Pending with ``reason``."""

    admitted: bool
    reason: str = ""
    gpus: tuple[int, ...] = ()
    victims: tuple[str, ...] = field(default=())


def admit(
    claim: Claim,
    placed: Sequence[Claim],
    capacity: Capacity,
    quotas: Mapping[str, QuotaLimits],
) -> Verdict:
    """Whether ``claim`` fits beside ``placed``; which replicas to preempt if it only fits so.

    Pure.
    """
    if not claim.standby:
        yielded = _yield_standby(claim, placed, capacity, quotas)
        if yielded is not None:
            return yielded
    quota_problem = _quota_problem(claim, placed, quotas.get(claim.namespace))
    if quota_problem:
        return Verdict(False, quota_problem)
    problem = _fit_problem(claim, placed, capacity)
    if not problem:
        return Verdict(True, gpus=_free_gpus(claim, placed, capacity))
    if not claim.preempts:
        return Verdict(False, problem)
    victims: list[Claim] = []
    candidates = sorted(
        (c for c in placed if c.priority < claim.priority), key=lambda c: (c.priority, c.replica)
    )
    remaining = list(placed)
    for candidate in candidates:
        victims.append(candidate)
        remaining.remove(candidate)
        if not _fit_problem(claim, remaining, capacity):
            names = tuple(v.replica for v in victims)
            return Verdict(True, gpus=_free_gpus(claim, remaining, capacity), victims=names)
    return Verdict(False, problem)


def _yield_standby(
    claim: Claim,
    placed: Sequence[Claim],
    capacity: Capacity,
    quotas: Mapping[str, QuotaLimits],
) -> Verdict | None:
    """Admitted by stopping standby replicas (none when it fits without: the plain path then
    admits it), or None when stopping every standby replica would not be enough."""
    quota = quotas.get(claim.namespace)
    if not _quota_problem(claim, placed, quota) and not _fit_problem(claim, placed, capacity):
        return None
    remaining = list(placed)
    victims: list[str] = []
    for candidate in sorted((c for c in placed if c.standby), key=lambda c: c.replica):
        victims.append(candidate.replica)
        remaining.remove(candidate)
        if not _quota_problem(claim, remaining, quota) and not _fit_problem(
            claim, remaining, capacity
        ):
            gpus = _free_gpus(claim, remaining, capacity)
            return Verdict(True, gpus=gpus, victims=tuple(victims))
    return None


def gang_claim(name: str, workers: Sequence[Claim]) -> Claim:
    """The claim of a gang (a job's workers), admitted all together or not at all: the sum of
    its workers' requests, the highest priority among them, one pod each. Pure."""
    first = workers[0]
    return Claim(
        replica=name,
        namespace=first.namespace,
        priority=max(w.priority for w in workers),
        cpu_millis=sum(w.cpu_millis for w in workers),
        memory_bytes=sum(w.memory_bytes for w in workers),
        gpu_count=sum(w.gpu_count for w in workers),
        preempts=all(w.preempts for w in workers),
        pods=sum(w.pods for w in workers),
    )


def _fit_problem(claim: Claim, placed: Sequence[Claim], capacity: Capacity) -> str:
    cpu = sum(c.cpu_millis for c in placed)
    memory = sum(c.memory_bytes for c in placed)
    problems = []
    if cpu + claim.cpu_millis > capacity.cpu_millis:
        problems.append(
            f"insufficient cpu (requests {claim.cpu_millis}m, "
            f"{max(0, capacity.cpu_millis - cpu)}m of {capacity.cpu_millis}m allocatable free)"
        )
    if memory + claim.memory_bytes > capacity.memory_bytes:
        free = max(0, capacity.memory_bytes - memory)
        problems.append(
            f"insufficient memory (requests {_mib(claim.memory_bytes)}, "
            f"{_mib(free)} of {_mib(capacity.memory_bytes)} allocatable free)"
        )
    if claim.gpu_count > len(_free_gpu_list(placed, capacity)):
        problems.append(
            f"insufficient nvidia.com/gpu (requests {claim.gpu_count}, "
            f"{len(_free_gpu_list(placed, capacity))} of {len(capacity.gpus)} free)"
        )
    return "; ".join(problems)


def _quota_problem(claim: Claim, placed: Sequence[Claim], quota: QuotaLimits | None) -> str:
    if quota is None:
        return ""
    same = [c for c in placed if c.namespace == claim.namespace]
    checks = (
        ("requests.cpu", quota.cpu_millis, sum(c.cpu_millis for c in same), claim.cpu_millis),
        (
            "requests.memory",
            quota.memory_bytes,
            sum(c.memory_bytes for c in same),
            claim.memory_bytes,
        ),
        ("requests.nvidia.com/gpu", quota.gpus, sum(c.gpu_count for c in same), claim.gpu_count),
        ("pods", quota.pods, sum(c.pods for c in same), claim.pods),
    )
    for name, hard, used, asked in checks:
        if hard is not None and used + asked > hard:
            return (
                f"exceeded quota in namespace '{claim.namespace}': {name} "
                f"used {used} + requested {asked} > hard {hard}"
            )
    return ""


def _free_gpu_list(placed: Sequence[Claim], capacity: Capacity) -> list[int]:
    held = {gpu for c in placed for gpu in c.gpus}
    return [gpu for gpu in capacity.gpus if gpu not in held]


def _free_gpus(claim: Claim, placed: Sequence[Claim], capacity: Capacity) -> tuple[int, ...]:
    return tuple(_free_gpu_list(placed, capacity)[: claim.gpu_count])


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f}Mi"
