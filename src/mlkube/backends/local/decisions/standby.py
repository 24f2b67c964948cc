"""Warm standby replicas (``autoscaling.standby``): which to promote, start or stop. Pure.

A standby replica is a replica of the stable revision that is started and probed like any
other but gets no route; the controller keeps ``wanted`` of them beside the serving ones.
When the serving count of a revision is below its target (a scale-up), standby replicas of
that revision are promoted first, the ready ones before those still starting, so the
scale-up costs a route change instead of a start-up. The arriving rate and the start-up
samples the predictive policy reads are computed here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlkube.backends.local.decisions.plan import Phase, ReplicaView

STANDBY_PRIORITY = -(2**31)
"""A standby replica's admission priority: the lowest Kubernetes allows, so it is preempted
before any serving replica and never preempts one."""

# Which standby replicas go first when there are too many: those doing no work yet.
_STOP_ORDER = {
    Phase.PENDING: 0,
    Phase.BACKOFF: 1,
    Phase.STARTING: 2,
    Phase.NOT_READY: 3,
    Phase.READY: 4,
}
_LIVE = (Phase.PENDING, Phase.STARTING, Phase.READY, Phase.NOT_READY, Phase.BACKOFF)


@dataclass(frozen=True, slots=True)
class StandbyPlan:
    """Start ``starts`` new standby replicas of ``revision``; stop ``stops`` (name, reason)."""

    revision: int
    starts: int
    stops: tuple[tuple[str, str], ...]


def promotions(
    targets: Mapping[int, int],
    serving: Sequence[ReplicaView],
    standby: Sequence[ReplicaView],
) -> list[str]:
    """The standby replicas to promote so each revision's serving count reaches its target.

    Ready ones first (promotion is then only a route), then starting ones (still ahead of a
    fresh process), oldest first; pending or crashed standby replicas are not promoted.
    """
    chosen: list[str] = []
    for revision, target in sorted(targets.items()):
        have = sum(1 for r in serving if r.revision == revision and r.phase in _LIVE)
        candidates = sorted(
            (
                r
                for r in standby
                if r.revision == revision and r.phase in (Phase.READY, Phase.STARTING)
            ),
            key=lambda r: (r.phase is not Phase.READY, r.created_at),
        )
        chosen.extend(r.name for r in candidates[: max(0, target - have)])
    return chosen


def standby_plan(wanted: int, revision: int, standby: Sequence[ReplicaView]) -> StandbyPlan:
    """Keep ``wanted`` standby replicas of ``revision``: start the missing ones, stop those
    of other revisions, crashed ones (a fresh one replaces them; a standby has no back-off
    worth keeping) and the surplus (least useful, then newest, first)."""
    stops: list[tuple[str, str]] = []
    mine: list[ReplicaView] = []
    for replica in standby:
        if replica.phase is Phase.TERMINATING:
            continue
        if replica.revision != revision:
            stops.append((replica.name, f"standby of revision {replica.revision} is not wanted"))
        elif replica.phase is Phase.BACKOFF:
            stops.append((replica.name, "standby replica crashed; a fresh one replaces it"))
        else:
            mine.append(replica)
    surplus = len(mine) - wanted
    if surplus > 0:
        ordered = sorted(mine, key=lambda r: (_STOP_ORDER[r.phase], -r.created_at))
        stops.extend((r.name, "fewer standby replicas wanted") for r in ordered[:surplus])
    return StandbyPlan(revision, max(0, -surplus), tuple(stops))


def arriving_rate(
    previous: Mapping[str, int] | None,
    current: Mapping[str, int],
    holding: int,
    seconds: float,
) -> float:
    """Requests per second that reached the balancer over ``seconds``: each backend's new
    requests since ``previous`` (a backend new since then counts from zero; a counter that
    went back, a restarted balancer, counts from zero too) plus the requests held now (they
    arrived and wait for a replica). ``previous`` None (no look yet): the held ones only."""
    if seconds <= 0:
        return 0.0
    forwarded = 0
    if previous is not None:
        for name, count in current.items():
            before = previous.get(name, 0)
            forwarded += count - before if count >= before else count
    return (forwarded + holding) / seconds
