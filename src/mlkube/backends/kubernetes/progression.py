"""Canary steps and analysis on a cluster, decided by the state machine the local backend runs.

Pure: no I/O, no clock. A Deployment rolls out one template; the weight steps, pauses and
analysis of a Canary are mlkube's. ``tick`` maps what the cluster shows (the stable and canary
Deployments) onto ``desired.rollout.step_rollout`` and says what to set: the canary's replica
count, its share of traffic (HTTPRoute weight, when a Gateway is named) and whether to promote
now. The thin driver (``rollout_driver``) reads the cluster, calls ``tick`` and writes back.

On a cluster the tracks are fixed, so the state machine's two revision numbers name tracks:
``STABLE`` is the ``<name>`` Deployment and ``CANARY`` the ``<name>-canary`` one. A rollout is
identified by the canary's revision hash (``mlkube.dev/config-hash`` on its pod template): a
new hash, from an apply that changed the model, starts the steps again.

Promotion takes two ticks, so traffic never meets a pod that is not ready: the canary is
scaled to full size (the state machine's last step), then the stable Deployment is given the
canary's pod template while the canary carries all traffic, then the canary goes to zero.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from mlkube.desired.rollout import (
    Observed,
    RevisionCounts,
    RolloutPhase,
    RolloutState,
    skip_step,
    start_rollout,
    step_rollout,
)
from mlkube.spec.rollout import RolloutSpec, RolloutStrategy

STABLE = 1
CANARY = 2
Event = tuple[str, str, str]
"""(type, reason, message), as a Kubernetes Event has them."""


@dataclass(frozen=True, slots=True)
class ClusterRollout:
    """The driver's record of one rollout, kept in an annotation of the canary Deployment."""

    target_hash: str
    """The canary revision this record is about."""

    state: RolloutState
    promoting: bool = False
    """The stable Deployment is rolling to the canary's template; the canary serves all."""

    next_analysis_at: float | None = None
    """Seconds since the epoch when the running analysis interval ends; None: none runs."""

    analysis_passed: bool = False
    analysis_failure: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "targetHash": self.target_hash,
                "state": self.state.to_json(),
                "promoting": self.promoting,
                "nextAnalysisAt": self.next_analysis_at,
                "analysisPassed": self.analysis_passed,
                "analysisFailure": self.analysis_failure,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterRollout | None:
        """The record, or None when the annotation is not one (edited by hand, older)."""
        try:
            data: dict[str, Any] = json.loads(text)
            next_at = data.get("nextAnalysisAt")
            failure = data.get("analysisFailure")
            return cls(
                target_hash=str(data["targetHash"]),
                state=RolloutState.from_json(data["state"]),
                promoting=bool(data.get("promoting", False)),
                next_analysis_at=None if next_at is None else float(next_at),
                analysis_passed=bool(data.get("analysisPassed", False)),
                analysis_failure=None if failure is None else str(failure),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class TrackSeen:
    """One Deployment as the cluster shows it."""

    revision_hash: str
    replicas: int
    """``spec.replicas``."""

    ready: int
    rolled_out: bool
    """Every replica runs the current template and is available (``kubectl rollout status``)."""

    failure: str | None = None
    """Why its pods cannot start (progress deadline exceeded), if they cannot."""


@dataclass(frozen=True, slots=True)
class Tick:
    """What one tick decided."""

    record: ClusterRollout
    canary_replicas: int
    canary_weight: int
    """Percent of requests for the canary (the HTTPRoute weight; 0-100)."""

    promote: bool = False
    """Give the stable Deployment the canary's pod template now."""

    events: list[Event] = field(default_factory=list)


def tick(
    spec: RolloutSpec,
    record: ClusterRollout | None,
    stable: TrackSeen,
    canary: TrackSeen,
    *,
    now: float,
) -> Tick:
    """One step of the cluster's canary. Pure."""
    if record is None or record.target_hash != canary.revision_hash:
        record = _new_record(canary.revision_hash, stable, now=now)
        if record.state.phase is RolloutPhase.COMPLETE:
            return Tick(record, 0, 0)
    state = record.state
    if record.promoting:
        return _promoting(record, stable, canary)
    if not state.active:
        return Tick(record, 0, 0)
    seen = Observed(
        now,
        stable.replicas,
        {
            STABLE: RevisionCounts(stable.replicas, stable.ready),
            CANARY: RevisionCounts(canary.replicas, canary.ready, canary.failure),
        },
        record.analysis_failure,
        record.analysis_passed,
    )
    step = step_rollout(spec, state, seen)
    moved = step.state.step != state.step or step.state.phase != state.phase
    record = replace(record, state=step.state)
    if moved:
        record = replace(
            record, analysis_passed=False, analysis_failure=None, next_analysis_at=None
        )
    if step.state.phase is RolloutPhase.COMPLETE:
        # The state machine has the canary at full size and ready: hand its template to the
        # stable Deployment while the canary carries every request.
        promoted = replace(record, promoting=True, state=replace(step.state, stable=STABLE))
        return Tick(promoted, stable.replicas, 100, promote=True, events=step.events)
    if not step.state.active:
        return Tick(record, 0, 0, events=step.events)
    return Tick(
        record,
        step.targets.get(CANARY, 0),
        _percent(step.weights.get(CANARY, 0.0), sum(step.weights.values())),
        events=step.events,
    )


def promote(spec: RolloutSpec, record: ClusterRollout, *, full: bool) -> ClusterRollout:
    """``rollout promote``: ``desired.rollout.skip_step`` on the record, so the next tick
    moves on; the interval's analysis starts over. Pure."""
    if not record.state.active or record.promoting:
        return record
    return replace(
        record,
        state=skip_step(spec, record.state, full=full),
        analysis_passed=False,
        analysis_failure=None,
        next_analysis_at=None,
    )


def abort(record: ClusterRollout, reason: str) -> ClusterRollout:
    """``rollout abort``: all traffic back to the stable Deployment, the canary to zero. Pure."""
    if not record.state.active and not record.promoting:
        return record
    state = replace(record.state, phase=RolloutPhase.ROLLED_BACK, reason=reason)
    return replace(record, state=state, promoting=False)


def analysis_due(spec: RolloutSpec, record: ClusterRollout, *, now: float) -> bool:
    """Whether an analysis interval has just ended, so the canary's metrics should be judged."""
    return (
        spec.analysis is not None
        and record.state.active
        and not record.promoting
        and record.next_analysis_at is not None
        and now >= record.next_analysis_at
    )


def schedule_analysis(spec: RolloutSpec, record: ClusterRollout, *, now: float) -> ClusterRollout:
    """Start an analysis interval when a step runs and none does. Pure."""
    if spec.analysis is None or not record.state.active or record.promoting:
        return record
    if record.next_analysis_at is not None:
        return record
    return replace(record, next_analysis_at=now + spec.analysis.interval)


def with_verdict(record: ClusterRollout, *, enough: bool, failure: str | None) -> ClusterRollout:
    """The record after an interval was judged (``desired.rollout.judge_canary``). Pure.

    A failure is kept (the next tick rolls back); enough good traffic passes the interval;
    too little is no verdict. Either way the next interval starts at the next tick.
    """
    if failure is not None:
        return replace(record, analysis_failure=failure, next_analysis_at=None)
    return replace(record, analysis_passed=record.analysis_passed or enough, next_analysis_at=None)


def _new_record(target_hash: str, stable: TrackSeen, *, now: float) -> ClusterRollout:
    if target_hash == stable.revision_hash:
        # The canary runs what the stable track runs: nothing to roll out.
        done = RolloutState(
            stable=STABLE, strategy=RolloutStrategy.CANARY, reason="no new revision to roll out"
        )
        return ClusterRollout(target_hash, done)
    begin = RolloutState(stable=STABLE, strategy=RolloutStrategy.CANARY)
    return ClusterRollout(
        target_hash, start_rollout(begin, CANARY, RolloutStrategy.CANARY, now=now)
    )


def _promoting(record: ClusterRollout, stable: TrackSeen, canary: TrackSeen) -> Tick:
    if stable.revision_hash != record.target_hash:
        return Tick(record, stable.replicas, 100, promote=True)
    if not stable.rolled_out:
        return Tick(record, max(stable.replicas, canary.replicas), 100)
    done = replace(
        record,
        promoting=False,
        state=replace(
            record.state,
            phase=RolloutPhase.COMPLETE,
            target=None,
            reason="canary promoted: the stable Deployment runs its template",
        ),
    )
    message = "canary promoted; the stable Deployment serves the new revision"
    return Tick(done, 0, 0, events=[("Normal", "CanaryPromoted", message)])


def _percent(share: float, total: float) -> int:
    if total <= 0:
        return 0
    return min(100, max(0, math.floor(100 * share / total + 0.5)))
