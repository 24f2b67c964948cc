"""Knative-style scaling for load metrics: stable and panic windows, panic never scales down.

Pure: no I/O. Follows the Knative Pod Autoscaler's ``Scale`` (``/work/shared/autoscaling.md``
§3.3–§3.4): averages over a stable window (default 60 s) and a panic window (10 % of it),
rate bounds ``maxScaleUpRate``/``maxScaleDownRate``, panic mode when the panic-window demand
reaches ``panicThreshold`` times the ready count, held for one stable window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Sample = tuple[float, float, float, float]
"""(time, in-flight demand, request-rate demand, queued requests), totals over the replicas."""


@dataclass(frozen=True, slots=True)
class WindowAverages:
    """Per-metric averages over the stable and panic windows."""

    stable: float
    panic: float


def panic_window(stable_window: float, percentage: float) -> float:
    """The panic window: a percentage of the stable window, whole seconds, at least 1 s."""
    return max(1.0, float(round(stable_window * percentage / 100.0)))


def trim(samples: tuple[Sample, ...], now: float, stable_window: float) -> tuple[Sample, ...]:
    """Keep only samples still inside the stable window."""
    return tuple(s for s in samples if now - s[0] < stable_window)


def averages(samples: tuple[Sample, ...], now: float, window: float, index: int) -> float | None:
    """Mean of one column over samples younger than ``window``; None without any."""
    values = [s[index] for s in samples if now - s[0] < window]
    if not values:
        return None
    return sum(values) / len(values)


@dataclass(frozen=True, slots=True)
class PanicState:
    """Panic bookkeeping carried between ticks."""

    panic_time: float | None = None
    """Last time the panic threshold was met (None: not panicking)."""
    max_panic: int = 0
    """Highest count asked for during this panic."""


@dataclass(frozen=True, slots=True)
class KnativeParams:
    """The knobs of one decision."""

    stable_window: float = 60.0
    panic_threshold: float = 2.0
    """Panic when the panic-window demand is this many times the ready count."""
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0


@dataclass(frozen=True, slots=True)
class KnativeResult:
    """Desired count, whether in panic, and the new panic state."""

    desired: int
    stable_desired: int
    panic_desired: int
    panicking: bool
    state: PanicState


def scale(
    demand: WindowAverages,
    ready: int,
    *,
    now: float,
    params: KnativeParams,
    state: PanicState,
) -> KnativeResult:
    """One tick of Knative's decider. ``demand`` is in replicas (metric ÷ per-replica target)."""
    ready_f = max(1, ready)
    max_up = math.ceil(params.max_scale_up_rate * ready_f)
    max_down = math.floor(ready_f / params.max_scale_down_rate)
    dspc = math.ceil(demand.stable)
    dppc = math.ceil(demand.panic)
    desired_stable = min(max(dspc, max_down), max_up)
    desired_panic = min(max(dppc, max_down), max_up)

    over = dppc / ready_f >= params.panic_threshold
    panic_time, max_panic = state.panic_time, state.max_panic
    if over:
        panic_time = now
    elif panic_time is not None and panic_time + params.stable_window < now:
        panic_time, max_panic = None, 0

    if panic_time is None:
        new_state = PanicState(None, 0)
        return KnativeResult(desired_stable, dspc, dppc, False, new_state)
    max_panic = max(max_panic, desired_stable, desired_panic)
    return KnativeResult(max_panic, dspc, dppc, True, PanicState(panic_time, max_panic))


def fresh_panic_state(ready: int, now: float) -> PanicState:
    """A new decider over more than one ready replica starts in panic, so restarts never shrink."""
    if ready > 1:
        return PanicState(now, ready)
    return PanicState()
