"""The worker processes of a local TrainingJob: one gang, started and stopped together.

Thin I/O around ``decisions.jobs``: ``Gang`` spawns the N workers of one attempt through the
supervisor (each in its own session, output to ``worker-<rank>.log``), with torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and
``MLKUBE_OUTPUT_DIR``; it reports exits and stops the group (SIGTERM, the grace period, then
SIGKILL, so a worker can checkpoint). ``run_to_end`` drives one job alone with ``step_job``:
the loop the controller's job tick runs for each admitted job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlkube.backends.local import supervisor
from mlkube.backends.local.decisions.jobs import (
    GroupAction,
    JobPhase,
    JobState,
    WorkerExit,
    admitted,
    step_job,
    torchrun_env,
)
from mlkube.backends.local.ports import free_port
from mlkube.clock import Clock
from mlkube.spec.job import TrainingJob

POLL_S = 0.2


def worker_argv(job: TrainingJob) -> list[str]:
    """The command of every worker: ``python -m MODULE ARGS`` or ``python SCRIPT ARGS``."""
    run = job.spec.run
    if run.script is not None:
        return [sys.executable, job.local_path(run.script), *run.args]
    return [sys.executable, "-m", str(run.module), *run.args]  # the spec sets one of the two


@dataclass(frozen=True, slots=True)
class JobPaths:
    """Where a job's files go: worker logs, and the output directory it writes."""

    logs: Path
    output: Path

    def worker_log(self, rank: int) -> Path:
        return self.logs / f"worker-{rank}.log"


class Gang:
    """The processes of one attempt of a job."""

    def __init__(
        self,
        job: TrainingJob,
        paths: JobPaths,
        *,
        attempt: int,
        base_env: Mapping[str, str] | None = None,
        worker_env: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self.job = job
        self.paths = paths
        self.attempt = attempt
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.worker_env = dict(worker_env or {})
        """Per rank, on top of the rest (a worker's CUDA_VISIBLE_DEVICES)."""
        self.handles: dict[int, supervisor.ProcessHandle] = {}
        self.exits: dict[int, WorkerExit] = {}

    def start(self) -> None:
        """Spawn every worker of this attempt."""
        self.paths.output.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        port = free_port()
        workers = self.job.spec.workers
        for rank in range(workers):
            env = {
                **self.base_env,
                **self.job.spec.env,
                **torchrun_env(rank, workers, port),
                "MLKUBE_OUTPUT_DIR": str(self.paths.output),
                "MLKUBE_JOB_NAME": self.job.metadata.name,
                "MLKUBE_JOB_ATTEMPT": str(self.attempt),
                "PYTHONUNBUFFERED": "1",
                **self.worker_env.get(rank, {}),
            }
            log = self.paths.worker_log(rank)
            with open(log, "ab") as header:
                header.write(f"--- attempt {self.attempt}, worker {rank}\n".encode())
            self.handles[rank] = supervisor.spawn(
                worker_argv(self.job), env=env, log_path=log, cwd=self.job.source_dir
            )

    def poll(self) -> list[WorkerExit]:
        """Every worker that has exited in this attempt, so far."""
        for rank, handle in self.handles.items():
            if rank in self.exits:
                continue
            ended = handle.poll()
            if ended is not None:
                self.exits[rank] = WorkerExit(rank, ended.code, ended.signal)
        return sorted(self.exits.values(), key=lambda e: e.rank)

    def running(self) -> list[int]:
        """Ranks whose process group still has a live process."""
        self.poll()
        return [r for r, h in self.handles.items() if r not in self.exits or h.group_alive()]

    def terminate(self) -> None:
        """SIGTERM every worker's process group (a worker may checkpoint, then exit)."""
        for handle in self.handles.values():
            handle.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL what is left of every worker's process group."""
        for rank in self.running():
            self.handles[rank].signal_group(signal.SIGKILL)

    def stop(self, clock: Clock, *, grace_s: float) -> None:
        """Terminate, wait up to ``grace_s``, then kill what is left; returns once all exited.

        Blocking: for ``run_to_end``; the controller's tick does the same steps over ticks.
        """
        self.terminate()
        deadline = clock.monotonic() + grace_s
        while self.running() and clock.monotonic() < deadline:
            clock.sleep_blocking(POLL_S)
        self.kill()
        while self.running():
            clock.sleep_blocking(0.02)

    @property
    def pids(self) -> dict[int, int]:
        return {rank: handle.pid for rank, handle in self.handles.items()}


def read_metrics(job: TrainingJob, output: Path) -> dict[str, float]:
    """The numbers worker 0 wrote to ``metrics.file`` (empty when it wrote none)."""
    path = output / job.spec.metrics.file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def run_to_end(
    job: TrainingJob,
    paths: JobPaths,
    clock: Clock,
    *,
    base_env: Mapping[str, str] | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
) -> JobState:
    """Run ``job`` now (no queue) until it succeeds, fails or passes its deadline."""
    step = admitted(JobState(submitted_at=clock.wall()), now=clock.wall())
    state = step.state
    _report(on_event, step.events)
    gang = Gang(job, paths, attempt=0, base_env=base_env)
    gang.start()
    grace = job.spec.termination_grace_period
    while not state.phase.finished:
        clock.sleep_blocking(POLL_S)
        step = step_job(job.spec, state, gang.poll(), now=clock.wall())
        _report(on_event, step.events)
        if step.action is GroupAction.START:  # a failed attempt: the whole group restarts
            gang.stop(clock, grace_s=grace)
            gang = Gang(job, paths, attempt=step.state.restarts, base_env=base_env)
            gang.start()
        elif step.action is GroupAction.STOP:
            gang.stop(clock, grace_s=grace)
        state = step.state
    if state.phase is JobPhase.SUCCEEDED:
        gang.stop(clock, grace_s=grace)  # children a worker left behind
    return state


def _report(
    on_event: Callable[[str, str, str], None] | None, events: list[tuple[str, str, str]]
) -> None:
    if on_event is None:
        return
    for kind, reason, message in events:
        on_event(kind, reason, message)
