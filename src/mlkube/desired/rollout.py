"""Rollouts as a pure state machine: how many replicas of each revision, and who gets traffic.

Pure: no I/O, no clock. Both backends run it: the local controller on every tick, and the
cluster's rollout driver (``backends.kubernetes.progression``) for Canary steps and analysis.
``step_rollout`` is called with what was observed; it returns the replica targets and the
traffic weights per revision, the new rollout state and the events to record. The strategies:

- RollingUpdate: surge new replicas, remove old ones as new ones pass readiness, never below
  ``replicas - maxUnavailable`` ready (Deployment semantics).
- BlueGreen: a full set of new replicas; traffic switches at once when all are ready; the old
  set is kept for ``keep_previous_s`` so an undo is instant.
- Canary: weight steps with pauses; at each analysis interval the canary's own error rate and
  p99 are judged; a failure rolls back, the last step passing promotes.
- ABTest: a fixed split by weight or by header until the next apply or undo.

In every strategy a new revision whose replica exits before it was ever ready (its model does
not load) fails the rollout at once: it never received traffic, the old revision keeps serving.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from mlkube.desired.traffic import ab_split, ab_test_of, canary_replicas, header_route
from mlkube.spec.rollout import RolloutSpec, RolloutStrategy


class RolloutPhase(enum.StrEnum):
    """Where a rollout stands."""

    PROGRESSING = "Progressing"
    COMPLETE = "Complete"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    AB_TEST = "ABTest"


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A rollout from revision ``stable`` to ``target``; persisted between ticks as JSON."""

    stable: int
    target: int | None = None
    strategy: RolloutStrategy = RolloutStrategy.ROLLING_UPDATE
    phase: RolloutPhase = RolloutPhase.COMPLETE
    step: int = 0
    step_started_at: float | None = None
    started_at: float = 0.0
    reason: str = ""
    previous: int | None = None
    """BlueGreen: the old revision kept running after the switch, until ``previous_until``."""
    previous_until: float = 0.0

    @property
    def active(self) -> bool:
        return self.target is not None and self.phase in (
            RolloutPhase.PROGRESSING,
            RolloutPhase.AB_TEST,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "stable": self.stable,
            "target": self.target,
            "strategy": str(self.strategy),
            "phase": str(self.phase),
            "step": self.step,
            "stepStartedAt": self.step_started_at,
            "startedAt": self.started_at,
            "reason": self.reason,
            "previous": self.previous,
            "previousUntil": self.previous_until,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RolloutState:
        def opt_int(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(str(value))

        step_started = data.get("stepStartedAt")
        return cls(
            stable=int(str(data["stable"])),
            target=opt_int("target"),
            strategy=RolloutStrategy(str(data["strategy"])),
            phase=RolloutPhase(str(data["phase"])),
            step=int(str(data.get("step", 0))),
            step_started_at=None if step_started is None else float(str(step_started)),
            started_at=float(str(data.get("startedAt", 0.0))),
            reason=str(data.get("reason", "")),
            previous=opt_int("previous"),
            previous_until=float(str(data.get("previousUntil", 0.0))),
        )


@dataclass(frozen=True, slots=True)
class RevisionCounts:
    """Observed replicas of one revision."""

    total: int = 0
    """Replicas that exist and are not terminating."""
    ready: int = 0
    failed_reason: str | None = None
    """Set when a replica of this revision exited before it was ever ready."""


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """A/B by header: requests whose ``header`` equals ``value`` go to ``revision``."""

    header: str
    value: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """What one tick decided."""

    state: RolloutState
    targets: dict[int, int]
    weights: dict[int, float]
    header_rule: HeaderRule | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message), e.g. ("Warning", "RolloutFailed", "...")."""


@dataclass(frozen=True, slots=True)
class Observed:
    """The inputs of one tick."""

    now: float
    replicas: int
    """The deployment's desired replica count."""
    counts: dict[int, RevisionCounts]
    analysis_failure: str | None = None
    """Set by the caller when the canary's analysis failed this interval."""
    analysis_passed: bool = False
    """True when an analysis interval completed with enough requests and no failure."""


def start_rollout(
    state: RolloutState, target: int, strategy: RolloutStrategy, *, now: float
) -> RolloutState:
    """A new rollout to ``target`` from the current stable revision. Pure."""
    return RolloutState(
        stable=state.stable,
        target=target,
        strategy=strategy,
        phase=RolloutPhase.PROGRESSING,
        started_at=now,
        previous=state.previous,
        previous_until=state.previous_until,
    )


def step_rollout(spec: RolloutSpec, state: RolloutState, seen: Observed) -> RolloutStep:
    """One tick of the rollout state machine. Pure."""
    if not state.active or state.target is None:
        return _steady(state, seen)
    new = seen.counts.get(state.target, RevisionCounts())
    if new.failed_reason is not None:
        return _fail(state, seen, f"revision {state.target} failed to start: {new.failed_reason}")
    if (
        state.phase is RolloutPhase.PROGRESSING
        and seen.now - state.started_at > spec.progress_deadline
    ):
        return _fail(
            state,
            seen,
            f"revision {state.target} made no progress within {spec.progress_deadline:g}s "
            f"(progressDeadline); {new.ready}/{seen.replicas} ready",
        )
    if state.strategy is RolloutStrategy.BLUE_GREEN:
        return _blue_green(state, seen, new)
    if state.strategy is RolloutStrategy.CANARY:
        return _canary(spec, state, seen, new)
    if state.strategy is RolloutStrategy.AB_TEST:
        return _ab_test(spec, state, seen)
    return _rolling(spec, state, seen, new)


def _steady(state: RolloutState, seen: Observed) -> RolloutStep:
    targets = {state.stable: seen.replicas}
    if state.previous is not None and seen.now < state.previous_until:
        targets[state.previous] = seen.replicas
        return RolloutStep(state, targets, {state.stable: 100.0})
    if state.previous is not None:
        state = replace(state, previous=None)
    return RolloutStep(state, targets, {state.stable: 100.0})


def _fail(state: RolloutState, seen: Observed, reason: str) -> RolloutStep:
    failed = replace(state, phase=RolloutPhase.FAILED, reason=reason)
    return RolloutStep(
        failed,
        {state.stable: seen.replicas},
        {state.stable: 100.0},
        events=[("Warning", "RolloutFailed", reason)],
    )


def _complete(
    state: RolloutState, seen: Observed, message: str, *, keep_s: float = 0.0
) -> RolloutStep:
    target = state.target if state.target is not None else state.stable
    done = RolloutState(
        stable=target,
        target=None,
        strategy=state.strategy,
        phase=RolloutPhase.COMPLETE,
        started_at=state.started_at,
        reason=message,
        previous=state.stable if keep_s > 0 else None,
        previous_until=seen.now + keep_s if keep_s > 0 else 0.0,
    )
    targets = {target: seen.replicas}
    if keep_s > 0:
        targets[state.stable] = seen.replicas
    return RolloutStep(
        done, targets, {target: 100.0}, events=[("Normal", "RolloutComplete", message)]
    )


def _target(state: RolloutState) -> int:
    return state.target if state.target is not None else state.stable


def resolve_surge(value: int | str, replicas: int, *, round_up: bool) -> int:
    """A count or percent of ``replicas``; percents round up for surge, down for unavailable."""
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _rolling(
    spec: RolloutSpec, state: RolloutState, seen: Observed, new: RevisionCounts
) -> RolloutStep:
    target = _target(state)
    n = seen.replicas
    old = seen.counts.get(state.stable, RevisionCounts())
    surge = resolve_surge(spec.max_surge, n, round_up=True)
    unavailable = resolve_surge(spec.max_unavailable, n, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Kubernetes' rule: both rounding to zero would deadlock
    if new.ready >= n and old.total == 0:
        return _complete(state, seen, f"revision {target} rolled out to {n} replicas")
    min_available = max(0, n - unavailable)
    removable = max(0, old.ready + new.ready - min_available)
    unready_old = old.total - old.ready
    old_target = max(0, old.total - unready_old - removable)
    old_target = min(old_target, max(0, n - new.ready))
    # Terminating replicas do not count against the surge, as in a Deployment.
    new_target = min(n, max(new.total, n + surge - old_target))
    targets = {state.stable: old_target, target: new_target}
    weights = {state.stable: float(old.ready), target: float(new.ready)}
    return RolloutStep(state, targets, weights)


def _blue_green(state: RolloutState, seen: Observed, new: RevisionCounts) -> RolloutStep:
    target = _target(state)
    n = seen.replicas
    if new.ready >= n:
        return _complete(
            state,
            seen,
            f"revision {target} took all traffic; revision {state.stable} kept for rollback",
            keep_s=BLUE_GREEN_KEEP_S,
        )
    return RolloutStep(state, {state.stable: n, target: n}, {state.stable: 100.0})


BLUE_GREEN_KEEP_S = 300.0  # Argo Rollouts keeps the old colour 30 s; undo wants longer


def _canary(
    spec: RolloutSpec, state: RolloutState, seen: Observed, new: RevisionCounts
) -> RolloutStep:
    target = _target(state)
    n = seen.replicas
    if seen.analysis_failure is not None:
        reason = f"canary revision {target} failed analysis: {seen.analysis_failure}"
        rolled = replace(state, phase=RolloutPhase.ROLLED_BACK, reason=reason)
        return RolloutStep(
            rolled,
            {state.stable: n},
            {state.stable: 100.0},
            events=[("Warning", "CanaryRolledBack", reason)],
        )
    if state.step >= len(spec.steps):
        # Promotion: scale the canary to full size, then move all traffic to it.
        if new.ready >= n:
            return _complete(state, seen, f"canary revision {target} promoted")
        return RolloutStep(
            state,
            {state.stable: n, target: n},
            {state.stable: float(n), target: float(new.ready)},
        )
    step = spec.steps[state.step]
    canary_n = canary_replicas(n, step.weight)
    targets = {state.stable: n, target: canary_n}
    weights = {state.stable: float(100 - step.weight), target: float(step.weight)}
    events: list[tuple[str, str, str]] = []
    if new.ready < canary_n:
        return RolloutStep(replace(state, step_started_at=None), targets, weights)
    if state.step_started_at is None:
        message = f"canary revision {target} at weight {step.weight}%"
        started = replace(state, step_started_at=seen.now)
        return RolloutStep(started, targets, weights, events=[("Normal", "CanaryStep", message)])
    pause = step.pause if step.pause is not None else 0.0
    analysed = spec.analysis is None or seen.analysis_passed
    if seen.now - state.step_started_at >= pause and analysed:
        advanced = replace(state, step=state.step + 1, step_started_at=None)
        return _canary(spec, advanced, seen, new)
    return RolloutStep(state, targets, weights, events=events)


def _ab_test(spec: RolloutSpec, state: RolloutState, seen: Observed) -> RolloutStep:
    target = _target(state)
    ab = ab_test_of(spec)
    now = ab_split(ab, seen.replicas)
    running = replace(state, phase=RolloutPhase.AB_TEST)
    events = []
    if state.phase is not RolloutPhase.AB_TEST:
        events.append(
            ("Normal", "ABTestStarted", _ab_text(target, state.stable, ab.weight, ab.header))
        )
    targets = {state.stable: now.stable_replicas, target: now.canary_replicas}
    shares = {state.stable: float(100 - now.weight), target: float(now.weight)}
    weights = {revision: share for revision, share in shares.items() if share > 0}
    route = header_route(spec)
    rule = None if route is None else HeaderRule(route.header, route.value, target)
    return RolloutStep(running, targets, weights, header_rule=rule, events=events)


def _ab_text(target: int, stable: int, weight: int, header: str | None) -> str:
    if header is not None:
        return f"A/B test: requests with header {header} go to revision {target}"
    return f"A/B test: {weight}% to revision {target}, {100 - weight}% to revision {stable}"


def skip_step(spec: RolloutSpec, state: RolloutState, *, full: bool) -> RolloutState:
    """``rollout promote``: end the canary's current step now, its pause and analysis not
    awaited (``full``: every remaining step, straight to promotion). Pure."""
    if not state.active or state.strategy is not RolloutStrategy.CANARY:
        return state
    step = len(spec.steps) if full else min(state.step + 1, len(spec.steps))
    return replace(state, step=step, step_started_at=None)


def abort_rollout(state: RolloutState, reason: str) -> RolloutState:
    """Stop an active rollout and go back to the stable revision. Pure."""
    return replace(state, phase=RolloutPhase.ROLLED_BACK, reason=reason)


def undo_target(revisions: Mapping[int, str], state: RolloutState, *, now: float) -> int | None:
    """The revision ``rollout undo`` goes back to, or None when there is none. Pure.

    ``revisions`` maps each revision to its recorded status. While a BlueGreen switch keeps the
    old colour running, that one (an instant switch back). Otherwise the newest revision below
    the stable one that once served all traffic: a rollout to it completed, or it was the first.
    An A/B test's B or a canary that never got promoted is not a revision to go back to.
    """
    if state.previous is not None and now < state.previous_until:
        return state.previous
    first = min(revisions, default=None)
    served = [
        revision
        for revision, status in revisions.items()
        if revision < state.stable and (status == RolloutPhase.COMPLETE or revision == first)
    ]
    return max(served, default=None)


class CanaryRates(Protocol):
    """What one analysis interval measured of the canary (local scrapes or a cluster's
    Prometheus)."""

    @property
    def requests(self) -> float: ...

    @property
    def error_rate(self) -> float: ...

    @property
    def p99_ms(self) -> float | None: ...


def judge_canary(
    merged: CanaryRates, *, max_error_rate: float, max_p99_ms: float | None, min_requests: int
) -> tuple[bool, str | None]:
    """(enough data, failure reason or None) for one analysis interval. Pure."""
    if merged.requests < max(1, min_requests):
        return False, None
    if merged.error_rate > max_error_rate:
        return True, (
            f"error rate {merged.error_rate:.3f} over {merged.requests:.0f} requests "
            f"exceeds maxErrorRate {max_error_rate:g}"
        )
    if max_p99_ms is not None and merged.p99_ms is not None and merged.p99_ms > max_p99_ms:
        return True, f"p99 latency {merged.p99_ms:.1f} ms exceeds maxP99LatencyMs {max_p99_ms:g}"
    return True, None
