"""HPA normalisation: stabilization, scale-up caps and rate policies, scale-event bookkeeping.

Pure: no I/O. Ages are ``now - at``. Mirrors ``horizontal.go`` (``normalizeDesiredReplicas``,
``normalizeDesiredReplicasWithBehaviors`` and helpers; ``/work/shared/autoscaling.md`` §1.9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mlkube.autoscale.api import Recommendation, ScaleEvent

# The resolved behavior types live in ``desired.scaling`` (both backends read them); they are
# re-exported here because this module is the Go port that consumes them.
from mlkube.desired.scaling import DEFAULT_SCALE_DOWN as DEFAULT_SCALE_DOWN
from mlkube.desired.scaling import DEFAULT_SCALE_UP as DEFAULT_SCALE_UP
from mlkube.desired.scaling import Policy as Policy
from mlkube.desired.scaling import Rules as Rules

MIN_INT32 = -(2**31)
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Limited:
    """A normalised count and the reason HPA reports for it (ScalingLimited's reason)."""

    replicas: int
    reason: str


def stabilize_legacy(
    history: tuple[Recommendation, ...], desired: int, *, now: float, window: float
) -> tuple[int, tuple[Recommendation, ...]]:
    """``stabilizeRecommendation``: max over the window, then record ``desired``."""
    stabilized = desired
    old_index: int | None = None
    for i, rec in enumerate(history):
        if now - rec.at > window:
            old_index = i
        elif rec.replicas > stabilized:
            stabilized = rec.replicas
    return stabilized, _record(history, old_index, Recommendation(desired, now))


def stabilize_with_behavior(
    history: tuple[Recommendation, ...],
    desired: int,
    current: int,
    *,
    now: float,
    up_window: float,
    down_window: float,
) -> tuple[int, tuple[Recommendation, ...]]:
    """``stabilizeRecommendationWithBehaviors``: clamp current into [min of up, max of down]."""
    up = down = desired
    old_index: int | None = None
    for i, rec in enumerate(history):
        age = now - rec.at
        if age < up_window:
            up = min(up, rec.replicas)
        if age < down_window:
            down = max(down, rec.replicas)
        # Go compares against cutoffs taken a moment later, so an age equal to a window is
        # already outside it: obsolete means age >= both windows.
        if age >= up_window and age >= down_window:
            old_index = i
    stabilized = min(max(current, up), down)
    return stabilized, _record(history, old_index, Recommendation(desired, now))


def _record(
    history: tuple[Recommendation, ...], old_index: int | None, rec: Recommendation
) -> tuple[Recommendation, ...]:
    if old_index is None:
        return (*history, rec)
    return (*history[:old_index], rec, *history[old_index + 1 :])


def convert_with_rules(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    *,
    factor: float = 2.0,
    minimum: float = 4.0,
) -> Limited:
    """``convertDesiredReplicasWithRules``: the legacy cap ``max(factor·current, minimum)``."""
    scale_up_limit = int(max(factor * current, minimum))
    if max_replicas > scale_up_limit:
        ceiling, ceiling_reason = scale_up_limit, "ScaleUpLimit"
    else:
        ceiling, ceiling_reason = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return Limited(min_replicas, "TooFewReplicas")
    if desired > ceiling:
        return Limited(ceiling, ceiling_reason)
    return Limited(desired, "DesiredWithinRange")


def change_in_period(events: tuple[ScaleEvent, ...], period: float, now: float) -> int:
    """``getReplicasChangePerPeriod``: replicas changed by events younger than ``period``."""
    return sum(e.change for e in events if now - e.at < period)


def period_start(
    current: int,
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    period: float,
    now: float,
) -> int:
    """The replica count at the start of a policy's period: current minus the ups plus the
    downs recorded within it (shared by both directions' limits, as in the Go controller)."""
    return current - change_in_period(ups, period, now) + change_in_period(downs, period, now)


def scale_up_limit(
    current: int,
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    if rules.select == "Disabled":
        return current
    pick, result = (min, MAX_INT32) if rules.select == "Min" else (max, MIN_INT32)
    for policy in rules.policies:
        start = period_start(current, ups, downs, policy.period, now)
        if policy.type == "Pods":
            proposed = start + policy.value
        else:
            proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit(
    current: int,
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> int:
    """``calculateScaleDownLimitWithBehaviors`` (may be negative)."""
    if rules.select == "Disabled":
        return current
    pick, result = (max, MIN_INT32) if rules.select == "Min" else (min, MAX_INT32)
    for policy in rules.policies:
        start = period_start(current, ups, downs, policy.period, now)
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(float(start) * (1 - float(policy.value) / 100))
        result = pick(result, proposed)
    return result


@dataclass(frozen=True, slots=True)
class RateArgs:
    """Inputs of ``convertDesiredReplicasWithBehaviorRate``."""

    current: int
    desired: int
    min_replicas: int
    max_replicas: int
    scale_up: Rules
    scale_down: Rules
    up_events: tuple[ScaleEvent, ...] = ()
    down_events: tuple[ScaleEvent, ...] = ()


def convert_with_behavior_rate(args: RateArgs, now: float) -> Limited:
    """``convertDesiredReplicasWithBehaviorRate``: apply policies, then min/max."""
    if args.desired > args.current:
        limit = scale_up_limit(args.current, args.up_events, args.down_events, args.scale_up, now)
        limit = max(limit, args.current)
        if args.max_replicas > limit:
            ceiling, reason = limit, "ScaleUpLimit"
        else:
            ceiling, reason = args.max_replicas, "TooManyReplicas"
        if args.desired > ceiling:
            return Limited(ceiling, reason)
    elif args.desired < args.current:
        limit = scale_down_limit(
            args.current, args.up_events, args.down_events, args.scale_down, now
        )
        limit = min(limit, args.current)
        if args.min_replicas < limit:
            floor, reason = limit, "ScaleDownLimit"
        else:
            floor, reason = args.min_replicas, "TooFewReplicas"
        if args.desired < floor:
            return Limited(floor, reason)
    return Limited(args.desired, "DesiredWithinRange")


def store_scale_event(
    events: tuple[ScaleEvent, ...], change: int, rules: Rules, now: float
) -> tuple[ScaleEvent, ...]:
    """``storeScaleEvent`` for one direction: mark outdated, reuse the last outdated slot."""
    longest = rules.longest_period()
    marked = tuple(
        replace(e, outdated=True) if (e.outdated or now - e.at >= longest) else e for e in events
    )
    new = ScaleEvent(change, now)
    slot = max((i for i, e in enumerate(marked) if e.outdated), default=None)
    if slot is None:
        return (*marked, new)
    return (*marked[:slot], new, *marked[slot + 1 :])
