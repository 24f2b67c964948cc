"""Kubernetes' container restart back-off, as a pure function.

Pure: no I/O, no clock. A replica that exits is restarted after 10 s, then 20 s, 40 s ... capped
at 5 min; once it has run for 10 min without exiting the delay resets (kubelet's behaviour).
While a replica waits out a delay its state reads ``CrashLoopBackOff``.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_DELAY_S = 10.0  # kubelet's initial container restart back-off
MAX_DELAY_S = 300.0  # kubelet caps the back-off at five minutes
RESET_AFTER_S = 600.0  # ten minutes of running resets the back-off


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The three numbers of the back-off; tests shrink them, production keeps the defaults."""

    base_s: float = BASE_DELAY_S
    max_s: float = MAX_DELAY_S
    reset_after_s: float = RESET_AFTER_S


@dataclass(frozen=True, slots=True)
class BackoffState:
    """What a replica remembers between restarts."""

    restart_count: int = 0
    """Restarts since the replica was created (never reset, as in Kubernetes)."""
    streak: int = 0
    """Exits since the back-off was last reset; drives the delay."""


def next_restart(
    state: BackoffState, *, ran_for_s: float, policy: BackoffPolicy
) -> tuple[float, BackoffState]:
    """The delay before restarting a replica that just exited, and the new state.

    Pure. ``ran_for_s`` is how long the process had been running when it exited.
    The first exit after a long run restarts after ``base_s``, as kubelet does.
    """
    streak = 0 if ran_for_s >= policy.reset_after_s else state.streak
    delay = min(policy.max_s, policy.base_s * (2.0**streak))
    return delay, BackoffState(restart_count=state.restart_count + 1, streak=streak + 1)
