"""Desired replicas per revision vs the replicas that exist → Start / Stop / Restart actions.

Pure: no I/O, no clock (``now`` is an argument). The controller executes the actions through
the supervisor and observes the result on its next tick; nothing here waits.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Phase(enum.StrEnum):
    """The life of one replica, named as Kubernetes names pod and container states."""

    PENDING = "Pending"
    """Not admitted yet (resources, quota or GPUs), or not started yet."""
    STARTING = "Starting"
    """The process runs; readiness has not passed yet."""
    READY = "Ready"
    NOT_READY = "NotReady"
    """Was ready, now fails its readiness check; gets no traffic."""
    BACKOFF = "CrashLoopBackOff"
    """Exited; waits out its restart back-off."""
    TERMINATING = "Terminating"
    """Draining, then stopped."""


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What the plan needs to know about one replica."""

    name: str
    revision: int
    phase: Phase
    created_at: float
    restart_at: float | None = None
    """When a replica in back-off may start again."""


@dataclass(frozen=True, slots=True)
class Start:
    """Create a new replica of ``revision`` (it is Pending until admitted and spawned)."""

    revision: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Drain and stop ``name``, then forget it."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the exited replica ``name`` again (its back-off has elapsed)."""

    name: str


Action = Start | Stop | Restart

# Which replicas go first when scaling down: those doing no work before those serving.
_STOP_ORDER = {
    Phase.PENDING: 0,
    Phase.BACKOFF: 1,
    Phase.STARTING: 2,
    Phase.NOT_READY: 3,
    Phase.READY: 4,
}


def plan_actions(
    targets: Mapping[int, int], replicas: Sequence[ReplicaView], *, now: float
) -> list[Action]:
    """The actions that bring ``replicas`` to ``targets`` (replica count per revision).

    Pure. Replicas of a revision not in ``targets`` are stopped. Within a revision, scaling
    down stops the least useful first (pending, crash-looping, starting, not ready), and
    among equals the newest, as a ReplicaSet does.
    """
    actions: list[Action] = []
    live = [r for r in replicas if r.phase is not Phase.TERMINATING]
    for replica in live:
        if replica.revision not in targets:
            actions.append(Stop(replica.name, f"revision {replica.revision} is not wanted"))
    for revision, count in sorted(targets.items()):
        mine = [r for r in live if r.revision == revision]
        if len(mine) < count:
            actions.extend(Start(revision) for _ in range(count - len(mine)))
        elif len(mine) > count:
            ordered = sorted(mine, key=lambda r: (_STOP_ORDER[r.phase], -r.created_at))
            actions.extend(Stop(r.name, "scaled down") for r in ordered[: len(mine) - count])
            mine = ordered[len(mine) - count :]
        for replica in mine:
            if (
                replica.phase is Phase.BACKOFF
                and replica.restart_at is not None
                and now >= replica.restart_at
            ):
                actions.append(Restart(replica.name))
    return actions


def count_by_phase(replicas: Sequence[ReplicaView], revision: int) -> Mapping[Phase, int]:
    """How many replicas of ``revision`` are in each phase. Pure."""
    counts = dict.fromkeys(Phase, 0)
    for replica in replicas:
        if replica.revision == revision:
            counts[replica.phase] += 1
    return counts
