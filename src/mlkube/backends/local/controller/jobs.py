"""The local job queue: TrainingJobs admitted by priority and quota, run as gangs of workers.

Thin I/O around ``decisions.jobs`` (the state machine) and ``job_runner.Gang`` (the processes).
Admission is the replicas' own (``placement.admit_all``): a queued job is one gang claim
beside the replicas' claims, so serving and training share one budget (the machine and each
namespace's Quota), and priorities preempt across both. Every tick (``tick``) steps the
running jobs; stopping a gang never blocks the loop: SIGTERM now, SIGKILL once the job's
grace period has passed, the next attempt's workers once the old ones are gone.

Jobs are kept in the store (``documents`` of kind ``Job``), so ``mlkube jobs`` survives a
controller restart; the workers of a running job are re-adopted by pid and start time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlkube.backends.local import supervisor
from mlkube.backends.local.controller.placement import priority_by_name
from mlkube.backends.local.decisions.admission import Claim, gang_claim
from mlkube.backends.local.decisions.jobs import (
    CLAIM_PREFIX,
    GroupAction,
    JobPhase,
    JobState,
    JobStep,
    admitted,
    cancelled,
    preempted,
    step_job,
    waiting,
)
from mlkube.backends.local.job_runner import Gang, JobPaths, read_metrics
from mlkube.backends.local.store import EventRow
from mlkube.errors import BackendError
from mlkube.observability.job_metrics import JobSnapshot
from mlkube.registry.jobs import register_job_output
from mlkube.registry.uri import RegistryError
from mlkube.spec.job import BatchInference, TrainingJob

if TYPE_CHECKING:
    from mlkube.backends.local.controller.controller import Controller

logger = logging.getLogger(__name__)

STORE_KIND = "Job"


@dataclass
class LocalJob:
    """One submitted job and its workers."""

    key: str
    doc: TrainingJob
    state: JobState
    gang: Gang | None = None
    kill_at: float | None = None
    """Set while the gang is stopping: when SIGKILL follows the SIGTERM."""
    start_after_stop: bool = False
    """A failed attempt: start the next one once the old workers are gone."""
    gpus: tuple[int, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    kind: str = "TrainingJob"
    """``BatchInference`` runs as a TrainingJob of one process (``as_training_job``)."""
    claim_workers: int = 0
    """Workers the gang claim counts (a batch job's shard processes); 0: ``spec.workers``."""

    @property
    def claim_name(self) -> str:
        return CLAIM_PREFIX + self.key


class JobQueue:
    """Every job the controller knows, and what happens to them each tick."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl
        self.jobs: dict[str, LocalJob] = {}

    # submit / cancel -----------------------------------------------------------------------
    def submit(
        self, doc: TrainingJob, *, kind: str = "TrainingJob", claim_workers: int = 0
    ) -> dict[str, Any]:
        key = f"{doc.namespace}/{doc.metadata.name}"
        found = self.jobs.get(key)
        if found is not None and not found.state.phase.finished:
            raise BackendError(
                f"job '{key}' is {found.state.phase}; cancel it first (mlkube cancel "
                f"{doc.metadata.name}) to submit it again"
            )
        job = LocalJob(
            key,
            doc,
            JobState(submitted_at=self.ctrl.clock.wall()),
            kind=kind,
            claim_workers=claim_workers,
        )
        self.jobs[key] = job
        self._event(job, "Normal", "Queued", f"{self._workers(job)} worker(s) queued")
        self.persist(job)
        return {"kind": kind, "name": key, "action": "submitted"}

    def _workers(self, job: LocalJob) -> int:
        return job.claim_workers or job.doc.spec.workers

    def cancel(self, name: str) -> LocalJob:
        job = self.find(name)
        self._apply(job, cancelled(job.state, now=self.ctrl.clock.wall()))
        return job

    def find(self, name: str) -> LocalJob:
        if name in self.jobs:
            return self.jobs[name]
        matches = [j for j in self.jobs.values() if j.doc.metadata.name == name]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise BackendError(f"no job named '{name}' (mlkube jobs lists them)")
        raise BackendError(f"several jobs are named '{name}'; say namespace/name")

    # admission (called by placement.admit_all) ---------------------------------------------
    def placed_claims(self) -> list[Claim]:
        """The gangs that hold resources: running jobs, and stopping ones until they exit."""
        return [
            self._claim(job)
            for job in self.jobs.values()
            if job.gang is not None or job.state.phase is JobPhase.RUNNING
        ]

    def queued(self) -> list[tuple[Claim, LocalJob]]:
        """Queued jobs whose old workers (a preemption) are gone, as gang claims."""
        return [
            (self._claim(job), job)
            for job in self.jobs.values()
            if job.state.phase is JobPhase.QUEUED and job.gang is None
        ]

    def start(self, job: LocalJob, gpus: tuple[int, ...]) -> None:
        """Admitted: start every worker now."""
        job.gpus = gpus
        self._apply(job, admitted(job.state, now=self.ctrl.clock.wall()))

    def keep_waiting(self, job: LocalJob, reason: str) -> None:
        if job.state.reason != reason:
            job.state = waiting(job.state, reason)
            self._event(job, "Normal", "Waiting", reason)
            self.persist(job)

    def preempt(self, claim_name: str, by: str) -> None:
        job = self.jobs[claim_name.removeprefix(CLAIM_PREFIX)]
        self._apply(job, preempted(job.state, by))

    # the tick ------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.ctrl.clock.wall()
        for job in list(self.jobs.values()):
            if job.kill_at is not None:
                self._finish_stop(job, now)
                continue
            if job.gang is None or job.state.phase is not JobPhase.RUNNING:
                continue
            self._apply(job, step_job(job.doc.spec, job.state, job.gang.poll(), now=now))

    def _apply(self, job: LocalJob, step: JobStep) -> None:
        before = job.state
        job.state = step.state
        for kind, reason, message in step.events:
            self._event(job, kind, reason, message)
        if step.action is GroupAction.START and job.gang is None:
            self._start_gang(job)
        elif step.action is GroupAction.START:  # a failed attempt: stop, then start again
            job.start_after_stop = True
            self._begin_stop(job)
        elif step.action is GroupAction.STOP and job.gang is not None:
            self._begin_stop(job)
        if job.state.phase is JobPhase.SUCCEEDED and before.phase is not JobPhase.SUCCEEDED:
            self._succeeded(job)
        self.persist(job)

    def _start_gang(self, job: LocalJob) -> None:
        per_worker = job.doc.spec.resources.gpus
        env = {}
        if job.gpus or per_worker == 0:
            env = {
                rank: {
                    "CUDA_VISIBLE_DEVICES": ",".join(
                        str(g) for g in job.gpus[rank * per_worker : (rank + 1) * per_worker]
                    )
                }
                for rank in range(job.doc.spec.workers)
            }
        gang = Gang(job.doc, self.paths(job), attempt=job.state.restarts, worker_env=env)
        gang.start()
        job.gang = gang
        pids = ", ".join(str(pid) for pid in gang.pids.values())
        self._event(job, "Normal", "Started", f"attempt {job.state.restarts}: workers pid {pids}")

    def _begin_stop(self, job: LocalJob) -> None:
        if job.gang is None:
            return
        job.gang.terminate()
        job.kill_at = self.ctrl.clock.wall() + job.doc.spec.termination_grace_period

    def _finish_stop(self, job: LocalJob, now: float) -> None:
        gang = job.gang
        if gang is not None and gang.running():
            if job.kill_at is not None and now >= job.kill_at:
                gang.kill()
            return
        job.gang = None
        job.kill_at = None
        if job.start_after_stop and job.state.phase is JobPhase.RUNNING:
            job.start_after_stop = False
            self._start_gang(job)
        self.persist(job)

    def _succeeded(self, job: LocalJob) -> None:
        output = self.paths(job).output
        job.metrics = read_metrics(job.doc, output)
        if job.metrics:
            text = ", ".join(f"{k}={v:.4g}" for k, v in sorted(job.metrics.items()))
            self._event(job, "Normal", "Metrics", text)
        if job.kind == "TrainingJob" and job.doc.spec.output.model is not None:
            self._register(job, output)
        if job.gang is not None:  # children a worker left behind go with the gang
            self._begin_stop(job)

    def _register(self, job: LocalJob, output: Path) -> None:
        """The job's output becomes the next version of ``output.model`` (its metrics, what
        it ran and its lineage with it)."""
        run_id = f"{job.key}@{job.state.started_at or 0:.0f}"
        try:
            version = register_job_output(
                job.doc,
                run_id=run_id,
                metrics=job.metrics,
                output_dir=output,
                state_dir=self.ctrl.state,
            )
        except RegistryError as error:
            self._event(job, "Warning", "RegistrationFailed", str(error))
            return
        if version is not None:
            job.model_version = f"{version.name}/{version.version}"
            self._event(
                job,
                "Normal",
                "ModelRegistered",
                f"models:/{job.model_version} from {output}",
            )

    # files, events, persistence -------------------------------------------------------------
    def paths(self, job: LocalJob) -> JobPaths:
        folder = self.ctrl.state / "jobs" / job.doc.namespace / job.doc.metadata.name
        return JobPaths(folder / "logs", Path(job.doc.local_path(job.doc.spec.output.path)))

    def _event(self, job: LocalJob, kind: str, reason: str, message: str) -> None:
        self.ctrl.store.add_event(
            f"job/{job.key}", EventRow(self.ctrl.clock.wall(), kind, reason, message)
        )

    def events(self, job: LocalJob, limit: int = 50) -> list[EventRow]:
        return self.ctrl.store.events(f"job/{job.key}", limit)

    def persist(self, job: LocalJob) -> None:
        workers = (
            {
                str(rank): [handle.pid, handle.start_time]
                for rank, handle in job.gang.handles.items()
            }
            if job.gang is not None
            else {}
        )
        data = {
            "doc": job.doc.model_dump(mode="json", by_alias=True),
            "sourceDir": job.doc.source_dir,
            "state": _state_json(job.state),
            "workers": workers,
            "metrics": job.metrics,
            "modelVersion": job.model_version,
            "kind": job.kind,
            "claimWorkers": job.claim_workers,
        }
        self.ctrl.store.put_document(STORE_KIND, job.key, data)

    def restore(self) -> None:
        """The jobs of the store; a running job's workers are re-adopted by pid."""
        for key, data in self.ctrl.store.documents(STORE_KIND).items():
            doc = TrainingJob.model_validate(data["doc"])
            doc._source_dir = data.get("sourceDir", ".")
            job = LocalJob(key, doc, _state_from(data["state"]))
            job.metrics = {str(k): float(v) for k, v in data.get("metrics", {}).items()}
            job.model_version = str(data.get("modelVersion", ""))
            job.kind = str(data.get("kind", "TrainingJob"))
            job.claim_workers = int(data.get("claimWorkers", 0))
            workers = data.get("workers") or {}
            if workers:
                gang = Gang(doc, self.paths(job), attempt=job.state.restarts)
                for rank, (pid, started) in workers.items():
                    handle = supervisor.adopt(int(pid), float(started))
                    if handle is not None:
                        gang.handles[int(rank)] = handle
                if gang.handles:
                    job.gang = gang
            if job.state.phase is JobPhase.RUNNING and job.gang is None:
                # Its workers are gone (the machine restarted): the attempt failed.
                job.state = replace(job.state, reason="workers lost while the controller was down")
            self.jobs[key] = job

    def _claim(self, job: LocalJob) -> Claim:
        spec = job.doc.spec
        requests = spec.resources.effective_requests()
        cpu, memory = requests.get("cpu"), requests.get("memory")
        priority, preempts = priority_by_name(self.ctrl, spec.placement.priority_class_name)
        worker = Claim(
            replica=job.claim_name,
            namespace=job.doc.namespace,
            priority=priority,
            cpu_millis=cpu.millis if cpu is not None else 0,
            memory_bytes=memory.whole if memory is not None else 0,
            gpu_count=spec.resources.gpus,
            preempts=preempts,
        )
        gang = gang_claim(job.claim_name, [worker] * self._workers(job))
        return replace(gang, gpus=job.gpus)

    def row(self, job: LocalJob) -> dict[str, Any]:
        """The control API's view of one job (``JobRow`` on the client)."""
        state = job.state
        priority, _ = priority_by_name(self.ctrl, job.doc.spec.placement.priority_class_name)
        return {
            "name": job.doc.metadata.name,
            "namespace": job.doc.namespace,
            "kind": job.kind,
            "phase": str(state.phase),
            "workers": self._workers(job),
            "priority": priority,
            "submitted": state.submitted_at,
            "started": state.started_at,
            "finished": state.finished_at,
            "restarts": state.restarts,
            "preemptions": state.preemptions,
            "reason": state.reason,
            "metrics": job.metrics,
            "modelVersion": job.model_version,
            "events": [
                {"ts": e.ts, "type": e.type, "reason": e.reason, "message": e.message}
                for e in self.events(job)
            ],
        }

    def snapshots(self) -> list[JobSnapshot]:
        """Every job as plain values, for ``/metrics``."""
        now = self.ctrl.clock.wall()
        out = []
        for job in self.jobs.values():
            state = job.state
            queued = now - state.submitted_at if state.phase is JobPhase.QUEUED else 0.0
            end = state.finished_at if state.finished_at is not None else now
            run = end - state.started_at if state.started_at is not None else 0.0
            out.append(
                JobSnapshot(
                    job.doc.namespace,
                    job.doc.metadata.name,
                    str(state.phase),
                    max(0.0, queued),
                    max(0.0, run),
                    state.restarts,
                    state.preemptions,
                )
            )
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Queued first in admission order, then running, then finished (newest first)."""

        def order(job: LocalJob) -> tuple[int, float, float]:
            rank = {JobPhase.QUEUED: 0, JobPhase.RUNNING: 1}.get(job.state.phase, 2)
            priority, _ = priority_by_name(self.ctrl, job.doc.spec.placement.priority_class_name)
            if rank == 2:
                return rank, 0.0, -(job.state.finished_at or 0.0)
            return rank, -priority, job.state.submitted_at

        return [self.row(job) for job in sorted(self.jobs.values(), key=order)]


def _state_json(state: JobState) -> dict[str, Any]:
    return {
        "phase": str(state.phase),
        "submittedAt": state.submitted_at,
        "startedAt": state.started_at,
        "attemptStartedAt": state.attempt_started_at,
        "restarts": state.restarts,
        "preemptions": state.preemptions,
        "reason": state.reason,
        "finishedAt": state.finished_at,
    }


def _state_from(data: dict[str, Any]) -> JobState:
    return JobState(
        phase=JobPhase(data["phase"]),
        submitted_at=float(data["submittedAt"]),
        started_at=data.get("startedAt"),
        attempt_started_at=data.get("attemptStartedAt"),
        restarts=int(data.get("restarts", 0)),
        preemptions=int(data.get("preemptions", 0)),
        reason=str(data.get("reason", "")),
        finished_at=data.get("finishedAt"),
    )


def as_training_job(batch: BatchInference, state_dir: Path) -> TrainingJob:
    """A BatchInference as the queue runs it: one process, ``python -m mlkube.batch`` on the
    spec file (its shard workers are that process's children, counted by the gang claim),
    printing JSON progress lines to its log; shard retries are the batch runner's own."""
    document = {
        "apiVersion": batch.api_version,
        "kind": "TrainingJob",
        "metadata": batch.metadata.model_dump(mode="json", by_alias=True),
        "spec": {
            "run": {
                "module": "mlkube.batch",
                "args": [
                    batch._source_file,
                    "--name",
                    f"{batch.namespace}/{batch.metadata.name}",
                    "--json",
                    "--state-dir",
                    str(state_dir),
                ],
            },
            "workers": 1,
            "backoffLimit": 0,
            "resources": batch.spec.resources.model_dump(mode="json", by_alias=True),
            "placement": batch.spec.placement.model_dump(mode="json", by_alias=True),
            "output": {"path": batch.spec.output.path},
        },
    }
    job = TrainingJob.model_validate(document)
    job._source_dir = batch.source_dir
    return job
