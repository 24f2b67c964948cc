"""Enforcing replica limits: cgroups v2, cgroups v1, or rlimits plus CPU affinity.

``detect()`` probes what this machine allows (as root in a container, cgroup v1 hierarchies are
often writable; elsewhere nothing is) and returns an ``Enforcer``; ``status`` reports its
``mode`` so users know whether a limit is a hard one. With cgroups a replica gets its own group
below the controller's (``<own group>/mlkube/<replica>``) with a CFS quota and a memory limit,
and a kill by the memory limit is read back as OOMKilled. Without cgroups, memory becomes
RLIMIT_AS (virtual memory: coarser) and CPU becomes an affinity mask of ceil(limit) cores.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlkube.spec.resources import ResourcesSpec

logger = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000  # the kernel's default CFS period, as kubelet uses
CGROUP_ROOT = Path("/sys/fs/cgroup")


class Mode(enum.StrEnum):
    """How limits are enforced on this machine."""

    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    RLIMITS = "rlimits+affinity"


@dataclass(frozen=True, slots=True)
class Limits:
    """A replica's limits; None means unlimited."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None


def limits_of(resources: ResourcesSpec) -> Limits:
    """The cpu and memory limits a replica of ``resources`` runs under. Pure."""
    cpu = resources.limits.get("cpu")
    memory = resources.limits.get("memory")
    return Limits(
        cpu_millis=cpu.millis if cpu is not None else None,
        memory_bytes=memory.whole if memory is not None else None,
    )


def affinity_for(cpu_millis: int | None, cpus: list[int], offset: int) -> list[int] | None:
    """ceil(limit) cores out of ``cpus``, rotated by ``offset`` so replicas spread. Pure."""
    if cpu_millis is None or not cpus:
        return None
    count = min(len(cpus), max(1, math.ceil(cpu_millis / 1000)))
    if count == len(cpus):
        return None
    return [cpus[(offset + i) % len(cpus)] for i in range(count)]


class Enforcer:
    """Puts a replica under its limits and tells afterwards whether it was OOM-killed."""

    def __init__(self, mode: Mode, groups: dict[str, Path]) -> None:
        self.mode = mode
        self._groups = groups
        """Controller → the directory replica groups are made in (cgroups only)."""
        self._cpus = sorted(os.sched_getaffinity(0))

    def preexec(self, limits: Limits, offset: int) -> Callable[[], None] | None:
        """What the child runs before exec: rlimits and affinity in the fallback mode."""
        if self.mode is not Mode.RLIMITS:
            return None
        cpus = affinity_for(limits.cpu_millis, self._cpus, offset)
        memory = limits.memory_bytes

        def apply() -> None:
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        return apply if (cpus is not None or memory is not None) else None

    def attach(self, name: str, pid: int, limits: Limits) -> None:
        """Create ``name``'s groups with ``limits`` and move ``pid`` in (cgroup modes)."""
        if self.mode is Mode.RLIMITS:
            return
        for controller, base in self._groups.items():
            group = base / name
            group.mkdir(parents=True, exist_ok=True)
            for file, value in self._settings(controller, limits):
                (group / file).write_text(value)
            (group / "cgroup.procs").write_text(str(pid))

    def _settings(self, controller: str, limits: Limits) -> list[tuple[str, str]]:
        if self.mode is Mode.CGROUP_V2:
            cpu = (
                f"{limits.cpu_millis * CFS_PERIOD_US // 1000} {CFS_PERIOD_US}"
                if limits.cpu_millis
                else "max"
            )
            memory = str(limits.memory_bytes) if limits.memory_bytes else "max"
            return [("cpu.max", cpu), ("memory.max", memory)]
        if controller == "cpu":
            quota = limits.cpu_millis * CFS_PERIOD_US // 1000 if limits.cpu_millis else -1
            return [("cpu.cfs_period_us", str(CFS_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]
        memory = str(limits.memory_bytes) if limits.memory_bytes else "-1"
        return [("memory.limit_in_bytes", memory)]

    def oom_killed(self, name: str) -> bool:
        """Whether the memory limit killed a process of ``name``'s group."""
        base = self._groups.get("memory")
        if base is None:
            return False
        events = (
            base / name / ("memory.events" if self.mode is Mode.CGROUP_V2 else "memory.oom_control")
        )
        try:
            text = events.read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def release(self, name: str) -> None:
        """Remove ``name``'s groups (they must be empty: the process has exited)."""
        for base in self._groups.values():
            try:
                (base / name).rmdir()
            except OSError:
                logger.debug("cgroup %s/%s not removed", base, name)

    def usage_bytes(self, name: str) -> int | None:
        base = self._groups.get("memory")
        if base is None:
            return None
        file = "memory.current" if self.mode is Mode.CGROUP_V2 else "memory.usage_in_bytes"
        try:
            return int((base / name / file).read_text())
        except (OSError, ValueError):
            return None


def _own_groups(text: str) -> dict[str, str]:
    """controller → path from /proc/self/cgroup. Pure."""
    groups: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else ["unified"]:
            groups[controller] = parts[2]
    return groups


def detect(root: Path = CGROUP_ROOT, tag: str = "mlkube") -> Enforcer:
    """The strongest enforcement this machine allows, probed by creating a test group."""
    try:
        own = _own_groups(Path("/proc/self/cgroup").read_text())
    except OSError:
        own = {}
    v1 = {c: root / c / own.get(c, "/").lstrip("/") / tag for c in ("cpu", "memory")}
    if all((root / c / "cgroup.procs").exists() for c in ("cpu", "memory")) and _probe(v1):
        return Enforcer(Mode.CGROUP_V1, v1)
    unified = root if (root / "cgroup.controllers").exists() else root / "unified"
    if (unified / "cgroup.controllers").exists():
        base = unified / own.get("unified", "/").lstrip("/") / tag
        controllers = (unified / "cgroup.controllers").read_text().split()
        if {"cpu", "memory"} <= set(controllers) and _probe({"memory": base}):
            return Enforcer(Mode.CGROUP_V2, {"memory": base})
    return Enforcer(Mode.RLIMITS, {})


def _probe(groups: dict[str, Path]) -> bool:
    try:
        for base in groups.values():
            probe = base / f"probe-{os.getpid()}"
            probe.mkdir(parents=True, exist_ok=True)
            probe.rmdir()
    except OSError:
        return False
    return True
