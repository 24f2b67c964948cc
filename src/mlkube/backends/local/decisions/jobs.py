"""A job's life as a pure state machine: queued, running its gang of workers, and done.

Pure: no I/O, no clock. ``step_job`` is called with what the workers did; it returns the new
state, what to do with the process group (start it, stop it) and the events to record. The
rules are a Kubernetes Job's with gang semantics (as torchrun and the training operators run
distributed jobs):

- every worker starts together, and one worker that fails fails the whole attempt: the others
  are stopped and the group restarts, at most ``backoffLimit`` times, then the job fails with
  the first failure's reason;
- the job succeeds when every worker has exited 0;
- ``activeDeadlineSeconds`` counts from the first start, retries included (a Job's rule);
- a preempted job goes back to its queue (its attempt is not spent: it did not fail).

``queue_order`` is the admission order: priority, then submission time (Kueue's
``StrictFIFO`` within priorities).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mlkube.spec.job import TrainingJobSpec

CLAIM_PREFIX = "job:"
"""A job's gang claim is named ``job:<namespace>/<name>`` beside the replicas' names."""


class JobPhase(enum.StrEnum):
    """Where a job stands."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED)


class GroupAction(enum.StrEnum):
    """What the runner does with the worker processes after a step."""

    NONE = "none"
    START = "start"
    """Start every worker (a first start or a restart of the group)."""
    STOP = "stop"
    """Stop the workers still running: SIGTERM, the grace period, then SIGKILL."""


@dataclass(frozen=True, slots=True)
class JobState:
    """One job's state; persisted between ticks."""

    phase: JobPhase = JobPhase.QUEUED
    submitted_at: float = 0.0
    started_at: float | None = None
    """When the first attempt started (the deadline counts from here)."""
    attempt_started_at: float | None = None
    restarts: int = 0
    """Group restarts after a failure (``backoffLimit`` bounds them)."""
    preemptions: int = 0
    reason: str = ""
    """Why it waits, why it failed, or how it ended."""
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """How one worker ended: an exit code, or killed by a signal."""

    rank: int
    code: int | None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.signal is None

    def text(self) -> str:
        how = f"killed by signal {self.signal}" if self.signal is not None else f"code {self.code}"
        return f"worker {self.rank} exited with {how}"


@dataclass(frozen=True, slots=True)
class JobStep:
    """What one step decided."""

    state: JobState
    action: GroupAction = GroupAction.NONE
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message)."""


def admitted(state: JobState, *, now: float) -> JobStep:
    """The queue admitted the job: start its workers. Pure."""
    started = state.started_at if state.started_at is not None else now
    running = replace(
        state,
        phase=JobPhase.RUNNING,
        started_at=started,
        attempt_started_at=now,
        reason="",
    )
    message = "admitted: every worker fits" + (
        f" (after {state.preemptions} preemption(s))" if state.preemptions else ""
    )
    return JobStep(running, GroupAction.START, [("Normal", "Admitted", message)])


def waiting(state: JobState, reason: str) -> JobState:
    """A queued job that does not fit yet, with the reason people see. Pure."""
    return replace(state, reason=reason)


def preempted(state: JobState, by: str) -> JobStep:
    """A higher-priority job needs the room: stop the workers and queue again. Pure."""
    queued = replace(
        state,
        phase=JobPhase.QUEUED,
        attempt_started_at=None,
        preemptions=state.preemptions + 1,
        reason=f"preempted by {by}; waiting to be admitted again",
    )
    return JobStep(queued, GroupAction.STOP, [("Warning", "Preempted", f"preempted by {by}")])


def cancelled(state: JobState, *, now: float) -> JobStep:
    """``mlkube cancel``: stop the workers; the job ends. Pure."""
    if state.phase.finished:
        return JobStep(state)
    done = replace(state, phase=JobPhase.CANCELLED, reason="cancelled", finished_at=now)
    action = GroupAction.STOP if state.phase is JobPhase.RUNNING else GroupAction.NONE
    return JobStep(done, action, [("Normal", "Cancelled", "cancelled by the user")])


def step_job(
    spec: TrainingJobSpec, state: JobState, exits: Sequence[WorkerExit], *, now: float
) -> JobStep:
    """One step of a running job, given the workers that have exited so far. Pure.

    ``exits`` holds one entry per worker that exited during this attempt (in any order); a
    worker absent from it is still running.
    """
    if state.phase is not JobPhase.RUNNING:
        return JobStep(state)
    deadline = spec.active_deadline_seconds
    if deadline is not None and state.started_at is not None and now - state.started_at > deadline:
        reason = f"DeadlineExceeded: ran longer than activeDeadlineSeconds ({deadline:g}s)"
        failed = replace(state, phase=JobPhase.FAILED, reason=reason, finished_at=now)
        return JobStep(failed, GroupAction.STOP, [("Warning", "DeadlineExceeded", reason)])
    failures = sorted((e for e in exits if not e.ok), key=lambda e: e.rank)
    if failures:
        first = failures[0].text()
        if state.restarts < spec.backoff_limit:
            restarted = replace(state, restarts=state.restarts + 1, attempt_started_at=now)
            message = (
                f"{first}; restarting every worker "
                f"(restart {restarted.restarts} of backoffLimit {spec.backoff_limit})"
            )
            return JobStep(restarted, GroupAction.START, [("Warning", "WorkerFailed", message)])
        reason = f"BackoffLimitExceeded: {first} (backoffLimit {spec.backoff_limit} reached)"
        failed = replace(state, phase=JobPhase.FAILED, reason=reason, finished_at=now)
        return JobStep(failed, GroupAction.STOP, [("Warning", "BackoffLimitExceeded", reason)])
    if len({e.rank for e in exits}) >= spec.workers:
        done = replace(
            state,
            phase=JobPhase.SUCCEEDED,
            reason=f"every worker exited 0 ({spec.workers})",
            finished_at=now,
        )
        return JobStep(done, GroupAction.NONE, [("Normal", "Completed", done.reason)])
    return JobStep(state)


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """What the queue orders by."""

    key: str
    priority: int
    submitted_at: float


def queue_order(jobs: Sequence[QueuedJob]) -> list[QueuedJob]:
    """Admission order: higher priority first, then earlier submission, then name. Pure."""
    return sorted(jobs, key=lambda j: (-j.priority, j.submitted_at, j.key))


def torchrun_env(
    rank: int, world_size: int, master_port: int, *, master_addr: str = "127.0.0.1"
) -> dict[str, str]:
    """The environment torchrun gives each worker of a single-node job. Pure."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "GROUP_RANK": "0",
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }
