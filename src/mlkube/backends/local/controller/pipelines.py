"""The local pipeline runner: each step a job of the job queue, then a gate, then a rollout.

Thin I/O around ``mlkube.pipelines`` (the DAG, gates, templates and cache keys). Every
reconcile tick (``tick``) moves each active run: a ready step is a cache hit (its previous
outputs reused) or a TrainingJob submitted to the controller's queue (so it waits for room,
and priorities and quotas hold for it as for any job); a finished job gives the step its
outputs (the model version it registered, the metrics it wrote to ``metrics.json``) and its
gates are judged. The deploy step points the ModelDeployment at the new version
(``models:/NAME/VERSION``), as ``mlkube apply`` would, and waits for that deployment's own
rollout: a failed rollout fails the run, and the old version keeps serving.

A step's output directory is its cache entry (``<state>/pipelines/cache/<key>/output``):
what a later run with the same inputs reuses. Triggers: ``start`` (``mlkube pipeline run``),
and for a pipeline registered by ``mlkube apply``/``up`` its cron ``schedule`` (UTC, on the
controller's clock) and its ``watch`` paths (checked every ``WATCH_PERIOD_S``).

Pipelines and runs are kept in the store (``documents`` of kind ``Pipeline`` and
``PipelineRun``), so status and history survive a controller restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlkube.backends.local.decisions.jobs import JobPhase
from mlkube.backends.local.store import EventRow
from mlkube.desired.rollout import RolloutPhase
from mlkube.errors import BackendError
from mlkube.observability.pipeline_metrics import PipelineSnapshot
from mlkube.pipelines.cache import cache_key, code_hash, data_hash, fingerprint
from mlkube.pipelines.dag import new_steps, progress, stop_run
from mlkube.pipelines.gates import failure, judge
from mlkube.pipelines.state import PipelineRun, RunPhase, StepPhase, StepRun
from mlkube.pipelines.templates import MissingValueError, filled_job
from mlkube.registry import ModelVersion, RegistryError, open_registry
from mlkube.spec.cron import parse_cron
from mlkube.spec.deployment import Metadata
from mlkube.spec.job import TrainingJob, TrainingJobSpec
from mlkube.spec.loading import SpecDocument, load_documents
from mlkube.spec.pipeline import Pipeline, PipelineStep, upstream

if TYPE_CHECKING:
    from mlkube.backends.local.controller.controller import Controller
    from mlkube.backends.local.controller.deployment import Deployment

logger = logging.getLogger(__name__)

STORE_PIPELINE = "Pipeline"
STORE_RUN = "PipelineRun"
RUNS_KEPT = 20
"""Runs kept per pipeline (the oldest go first; their cache entries stay)."""
WATCH_PERIOD_S = 2.0
DEPLOY_POLL_S = 0.2
JOB_NAME_MAX = 53  # a TrainingJob's metadata.name limit


@dataclass
class RegisteredPipeline:
    """A pipeline the controller knows: its document, the jobs its steps run, its triggers."""

    key: str
    doc: Pipeline
    jobs: dict[str, tuple[TrainingJobSpec, str]]
    """Per job step: the job spec (inline, or the referenced TrainingJob's) and the folder
    its relative paths resolve against."""
    triggers: bool = False
    """Registered by ``apply``/``up``: its schedule and watch paths start runs."""
    next_schedule: float | None = None
    watch_seen: tuple[tuple[str, int, int], ...] | None = None
    runs: list[PipelineRun] = field(default_factory=list)
    waiting: tuple[Pipeline, dict[str, tuple[TrainingJobSpec, str]]] | None = None
    """A newer document applied during a run: it takes over when the run ends (the run keeps
    the steps it started with)."""

    @property
    def watch_paths(self) -> list[str]:
        return [self.doc.local_path(p) for p in self.doc.spec.watch]

    @property
    def active(self) -> PipelineRun | None:
        return next((r for r in self.runs if not r.phase.finished), None)


class PipelineRunner:
    """Every registered pipeline and its runs, moved each reconcile tick."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl
        self.pipelines: dict[str, RegisteredPipeline] = {}
        self._next_watch_at = 0.0
        self._deploying: set[tuple[str, int]] = set()
        self.cache_hits = 0
        self.cache_misses = 0

    # registering and starting ----------------------------------------------------------------
    def register(
        self, doc: Pipeline, documents: list[SpecDocument], *, triggers: bool
    ) -> RegisteredPipeline:
        """Know ``doc`` (replacing an earlier version; its runs are kept). ``documents``: the
        files it was loaded with, where its ``jobRef`` TrainingJobs are."""
        key = f"{doc.namespace}/{doc.metadata.name}"
        refs = {
            d.metadata.name: d
            for d in documents
            if isinstance(d, TrainingJob) and d.namespace == doc.namespace
        }
        jobs: dict[str, tuple[TrainingJobSpec, str]] = {}
        for step in doc.spec.steps:
            if step.job is not None:
                jobs[step.name] = (step.job, doc.source_dir)
            elif step.job_ref is not None:
                ref = refs[step.job_ref]  # the loader checked it is there
                jobs[step.name] = (ref.spec, ref.source_dir)
        old = self.pipelines.get(key)
        if old is not None and old.active is not None:
            old.waiting = (doc, jobs)
            old.triggers = old.triggers or triggers
            self._event(old, "Normal", "Updated", "the new spec takes over after this run")
            return old
        reg = RegisteredPipeline(
            key, doc, jobs, triggers=triggers or (old is not None and old.triggers)
        )
        if old is not None:
            reg.runs = old.runs
            reg.watch_seen = old.watch_seen
        now = self.ctrl.clock.wall()
        reg.next_schedule = self._next_fire(doc, now) if reg.triggers else None
        if reg.triggers and doc.spec.watch and reg.watch_seen is None:
            reg.watch_seen = fingerprint(reg.watch_paths)
        self.pipelines[key] = reg
        self._persist_pipeline(reg)
        return reg

    def start(self, key: str, trigger: str, *, no_cache: bool = False) -> PipelineRun:
        """A new run of ``key`` now; an error when one is still running."""
        reg = self.pipelines[key]
        active = reg.active
        if active is not None:
            raise BackendError(
                f"pipeline '{key}' is already running (run {active.number}); "
                f"see mlkube pipeline status {reg.doc.metadata.name}"
            )
        number = max((r.number for r in reg.runs), default=0) + 1
        steps = {name: StepRun(name) for name in new_steps(reg.doc.spec)}
        run = PipelineRun(key, number, trigger, self.ctrl.clock.wall(), steps, no_cache=no_cache)
        reg.runs.append(run)
        for old in reg.runs[:-RUNS_KEPT]:
            self.ctrl.store.put_document(STORE_RUN, _run_key(old), {})
        reg.runs = reg.runs[-RUNS_KEPT:]
        cached = " (no cache)" if no_cache else ""
        self._event(reg, "Normal", "RunStarted", f"run {number} started by {trigger}{cached}")
        self._advance(reg, run)
        return run

    def run_files(self, paths: list[str], *, no_cache: bool) -> list[dict[str, Any]]:
        """Register the Pipelines of ``paths`` (without triggers unless ``apply`` gave them)
        and start a run of each now."""
        documents = load_documents(*paths)
        pipelines = registered_documents(documents)
        if not pipelines:
            raise BackendError(
                f"{', '.join(paths)} holds no Pipeline (mlkube run takes TrainingJobs)"
            )
        for doc in pipelines:
            old = self.pipelines.get(f"{doc.namespace}/{doc.metadata.name}")
            active = old.active if old is not None else None
            if old is not None and active is not None:
                raise BackendError(
                    f"pipeline '{old.key}' is already running (run {active.number}); "
                    f"see mlkube pipeline status {doc.metadata.name}"
                )
        results = []
        for doc in pipelines:
            reg = self.register(doc, documents, triggers=False)
            run = self.start(reg.key, "manual", no_cache=no_cache)
            results.append(
                {"kind": "Pipeline", "name": reg.key, "action": "started", "run": run.number}
            )
        return results

    def find(self, name: str) -> RegisteredPipeline:
        if name in self.pipelines:
            return self.pipelines[name]
        matches = [p for p in self.pipelines.values() if p.doc.metadata.name == name]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise BackendError(f"no pipeline named '{name}' (mlkube pipeline run FILE starts one)")
        raise BackendError(f"several pipelines are named '{name}'; say namespace/name")

    # the tick --------------------------------------------------------------------------------
    def tick(self) -> None:
        """Move every active run; fire the schedules and watches that are due."""
        for reg in list(self.pipelines.values()):
            run = reg.active
            if run is not None:
                self._advance(reg, run)
        self._triggers()

    def _triggers(self) -> None:
        now = self.ctrl.clock.wall()
        watch_due = now >= self._next_watch_at
        if watch_due:
            self._next_watch_at = now + WATCH_PERIOD_S
        for reg in self.pipelines.values():
            if not reg.triggers:
                continue
            if reg.next_schedule is not None and now >= reg.next_schedule:
                reg.next_schedule = self._next_fire(reg.doc, now)
                self._fire(reg, "schedule")
            if watch_due and reg.doc.spec.watch:
                seen = fingerprint(reg.watch_paths)
                if reg.watch_seen is not None and seen != reg.watch_seen:
                    self._fire(reg, "watch")
                reg.watch_seen = seen

    def _fire(self, reg: RegisteredPipeline, trigger: str) -> None:
        if reg.active is not None:
            self._event(reg, "Normal", "TriggerSkipped", f"{trigger}: a run is still going")
            return
        self.start(reg.key, trigger)

    @staticmethod
    def _next_fire(doc: Pipeline, now: float) -> float | None:
        if doc.spec.schedule is None:
            return None
        after = dt.datetime.fromtimestamp(now, dt.UTC)
        found = parse_cron(doc.spec.schedule).next_after(after)
        return found.timestamp() if found is not None else None

    def _advance(self, reg: RegisteredPipeline, run: PipelineRun) -> None:
        before = json.dumps(run.to_json(), sort_keys=True)
        now = self.ctrl.clock.wall()
        limit = reg.doc.spec.timeout
        if limit is not None and now - run.started_at > limit:
            self._fail_run(reg, run, f"the run took longer than its timeout ({limit:g}s)")
        else:
            for step in run.steps.values():
                if step.phase is StepPhase.RUNNING and step.job:
                    self._poll_job(reg, run, step, now)
            for _ in range(len(run.steps)):  # a cache hit can make the next step ready at once
                moved = progress(reg.doc.spec, run, now)
                started = [n for n in moved.ready if self._start_step(reg, run, n, now)]
                if moved.finished is not None:
                    self._finish_run(reg, run, *moved.finished)
                    break
                if not started:
                    break
        if json.dumps(run.to_json(), sort_keys=True) != before:
            self._persist_run(run)

    def _finish_run(
        self, reg: RegisteredPipeline, run: PipelineRun, phase: RunPhase, why: str
    ) -> None:
        run.phase = phase
        run.reason = why
        run.finished_at = self.ctrl.clock.wall()
        took = run.finished_at - run.started_at
        hits = sum(1 for s in run.steps.values() if s.phase is StepPhase.CACHED)
        text = f"run {run.number} {phase} in {took:.0f}s; {hits}/{len(run.steps)} cached"
        kind = "Normal" if phase is RunPhase.SUCCEEDED else "Warning"
        self._event(reg, kind, f"Run{phase}", text + (f"; {why}" if why else ""))
        if reg.waiting is not None:  # the spec applied during the run takes over now
            reg.doc, reg.jobs = reg.waiting
            reg.waiting = None
            reg.next_schedule = self._next_fire(reg.doc, run.finished_at) if reg.triggers else None
            self._persist_pipeline(reg)

    def _fail_run(self, reg: RegisteredPipeline, run: PipelineRun, why: str) -> None:
        now = self.ctrl.clock.wall()
        for step in run.steps.values():
            if step.phase is StepPhase.RUNNING:
                if step.job:
                    with contextlib.suppress(BackendError):
                        self.ctrl.job_queue.cancel(step.job)
                step.phase = StepPhase.FAILED
                step.reason = why
                step.finished_at = now
        stop_run(run, now, why)
        self._finish_run(reg, run, RunPhase.FAILED, why)

    # job steps --------------------------------------------------------------------------------
    def _start_step(self, reg: RegisteredPipeline, run: PipelineRun, name: str, now: float) -> bool:
        """Start ``name`` (a cache hit ends it at once); False when it must wait a tick."""
        step = run.steps[name]
        spec_step = reg.doc.step(name)
        if spec_step.deploy is not None:
            step.phase = StepPhase.RUNNING
            step.started_at = step.attempt_started_at = now
            step.attempts = 1
            self.ctrl.spawn_task(self._deploy(reg, run, step, spec_step))
            return True
        job, source_dir = reg.jobs[name]
        outputs = {d: run.steps[d].outputs for d in upstream(reg.doc.spec, name)}
        try:
            filled = filled_job(job, reg.doc.spec.parameters, outputs)
        except MissingValueError as error:
            self._end_step(reg, step, StepPhase.FAILED, str(error.args[0]), now)
            return True
        step.cache_key = cache_key(
            reg.key,
            name,
            filled,
            code_hash(filled, source_dir),
            reg.doc.spec.parameters,
            outputs,
            data_hash(reg.watch_paths),
        )
        entry = self._entry(step.cache_key)
        if spec_step.cache and not run.no_cache and self._reuse(reg, step, spec_step, entry, now):
            return True
        job_name = _job_name(reg.doc.metadata.name, name)
        queued = self.ctrl.job_queue.jobs.get(f"{reg.doc.namespace}/{job_name}")
        if queued is not None and (queued.gang is not None or not queued.state.phase.finished):
            return False  # the last run's job of this name is still stopping
        shutil.rmtree(entry, ignore_errors=True)
        (entry / "output").mkdir(parents=True, mode=0o700)
        doc = TrainingJob(
            metadata=Metadata(
                name=job_name,
                namespace=reg.doc.namespace,
                labels={"mlkube.dev/pipeline": reg.doc.metadata.name, "mlkube.dev/step": name},
            ),
            spec=filled.model_copy(
                update={"output": filled.output.model_copy(update={"path": str(entry / "output")})}
            ),
        )
        doc._source_dir = source_dir
        doc._source_file = reg.doc._source_file
        try:
            self.ctrl.job_queue.submit(doc)
        except BackendError as error:
            self._end_step(reg, step, StepPhase.FAILED, str(error), now)
            return True
        self.cache_misses += 1
        step.job = f"{reg.doc.namespace}/{job_name}"
        if step.attempts == 0:  # this run's log starts here (retries append to it)
            step.log_offset = _size(self._job_log(step.job))
        step.phase = StepPhase.RUNNING
        step.started_at = step.started_at or now
        step.attempt_started_at = now
        step.attempts += 1
        self._event(reg, "Normal", "StepStarted", f"run {run.number}: {name} as job {job_name}")
        return True

    def _reuse(
        self,
        reg: RegisteredPipeline,
        step: StepRun,
        spec_step: PipelineStep,
        entry: Path,
        now: float,
    ) -> bool:
        try:
            saved = json.loads((entry / "outputs.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        step.outputs = {str(k): str(v) for k, v in saved.get("outputs", {}).items()}
        step.metrics = {str(k): float(v) for k, v in saved.get("metrics", {}).items()}
        step.cache_hit = True
        step.started_at = now
        self.cache_hits += 1
        self._judge(reg, step, spec_step)
        self._end_step(reg, step, StepPhase.CACHED, step.reason or "inputs unchanged", now)
        return True

    def _poll_job(
        self, reg: RegisteredPipeline, run: PipelineRun, step: StepRun, now: float
    ) -> None:
        spec_step = reg.doc.step(step.name)
        job = self.ctrl.job_queue.jobs.get(step.job)
        if job is None:
            self._end_step(reg, step, StepPhase.FAILED, "its job is gone", now)
            return
        timeout = spec_step.timeout
        if (
            timeout is not None
            and not job.state.phase.finished
            and step.attempt_started_at is not None
            and now - step.attempt_started_at > timeout
        ):
            self.ctrl.job_queue.cancel(step.job)
            self._attempt_failed(reg, run, step, f"timed out after {timeout:g}s", now)
            return
        if job.state.phase is JobPhase.SUCCEEDED:
            self._job_succeeded(reg, step, spec_step, job.metrics, job.model_version, now)
        elif job.state.phase.finished:
            why = job.state.reason or str(job.state.phase).lower()
            self._attempt_failed(reg, run, step, why, now)

    def _attempt_failed(
        self, reg: RegisteredPipeline, run: PipelineRun, step: StepRun, why: str, now: float
    ) -> None:
        retries = reg.doc.step(step.name).retries
        if step.attempts <= retries:
            self._event(
                reg,
                "Warning",
                "StepRetrying",
                f"run {run.number}: {step.name} attempt {step.attempts} failed: {why}",
            )
            step.reason = f"retrying after: {why}"
            step.phase = StepPhase.PENDING  # started again once its old job has stopped
            return
        self._end_step(reg, step, StepPhase.FAILED, why, now)

    def _job_succeeded(
        self,
        reg: RegisteredPipeline,
        step: StepRun,
        spec_step: PipelineStep,
        metrics: dict[str, float],
        model_version: str,
        now: float,
    ) -> None:
        entry = self._entry(step.cache_key)
        outputs = {"outputDir": str(entry / "output")}
        job, _ = reg.jobs[step.name]
        if job.output.model is not None:
            if not model_version:
                why = "the job succeeded but registered no model version (see its events)"
                self._end_step(reg, step, StepPhase.FAILED, why, now)
                return
            name, _, version = model_version.rpartition("/")
            outputs.update(
                modelName=name, modelVersion=version, modelUri=f"models:/{name}/{version}"
            )
        missing = [m for m in spec_step.outputs if m not in metrics]
        if missing:
            file = job.metrics.file
            why = f"the job did not report {', '.join(missing)} in its {file}"
            self._end_step(reg, step, StepPhase.FAILED, why, now)
            return
        outputs.update({m: format(metrics[m], ".10g") for m in spec_step.outputs})
        step.outputs, step.metrics = outputs, dict(metrics)
        saved = {"outputs": outputs, "metrics": metrics}
        (entry / "outputs.json").write_text(json.dumps(saved), encoding="utf-8")
        # a hit later shows the log of the run that made its outputs
        with contextlib.suppress(OSError), self._job_log(step.job).open("rb") as log:
            log.seek(step.log_offset)
            (entry / "worker-0.log").write_bytes(log.read())
        self._judge(reg, step, spec_step)
        self._end_step(reg, step, StepPhase.SUCCEEDED, step.reason, now)

    def _judge(self, reg: RegisteredPipeline, step: StepRun, spec_step: PipelineStep) -> None:
        if not spec_step.gates:
            return
        results = []
        for gate in spec_step.gates:
            deployed, note = (None, "")
            if gate.value == "deployed":
                deployed, note = self._deployed_metric(reg, gate.metric)
            results.append(judge(gate, step.metrics, deployed, note))
        step.gates = results
        step.reason = failure(results)
        summary = "; ".join(f"{r.text}: {'pass' if r.passed else 'FAIL'}" for r in results)
        kind = "Normal" if not step.reason else "Warning"
        self._event(
            reg, kind, "GatePassed" if not step.reason else "GateFailed", f"{step.name}: {summary}"
        )

    def _deployed_metric(self, reg: RegisteredPipeline, metric: str) -> tuple[float | None, str]:
        """The metric of the version the deploy step's deployment serves now, or None with
        why there is nothing to compare."""
        deploy = next(s.deploy for s in reg.doc.spec.steps if s.deploy is not None)
        dep = self.ctrl.deployments.get(f"{reg.doc.namespace}/{deploy.deployment}")
        if dep is None:
            return None, f"deployment {deploy.deployment} is not running"
        version = self._served_version(dep, deploy.model)
        if version is None:
            return None, f"{deploy.deployment} serves no version of model {deploy.model}"
        if metric not in version.metrics:
            return None, f"{version.uri} has no metric {metric}"
        return version.metrics[metric], version.uri

    def _served_version(self, dep: Deployment, model: str) -> ModelVersion | None:
        """The registered version of ``model`` the stable revision of ``dep`` loads (a
        revision holds the resolved file, so the version is found by its path)."""
        path = dep.revisions[dep.rollout.stable].spec.model.uri
        try:
            versions = open_registry(self.ctrl.state).show(model)
        except RegistryError:
            return None
        return next((v for v in versions if str(v.path) == path), None)

    def _end_step(
        self, reg: RegisteredPipeline, step: StepRun, phase: StepPhase, why: str, now: float
    ) -> None:
        step.phase = phase
        step.reason = why
        step.finished_at = now
        if step.started_at is None:
            step.started_at = now
        kind = "Warning" if phase is StepPhase.FAILED else "Normal"
        self._event(reg, kind, f"Step{phase}", f"{step.name}" + (f": {why}" if why else ""))

    # the deploy step -------------------------------------------------------------------------
    async def _deploy(
        self, reg: RegisteredPipeline, run: PipelineRun, step: StepRun, spec_step: PipelineStep
    ) -> None:
        try:
            phase, why = await asyncio.wait_for(
                self._roll_out(reg, run, spec_step), timeout=spec_step.timeout
            )
        except TimeoutError:
            phase, why = (
                StepPhase.FAILED,
                f"the rollout did not end within {spec_step.timeout or 0:g}s",
            )
        except Exception as error:  # the step fails with the reason; the loop goes on
            logger.exception("pipeline %s deploy failed", reg.key)
            phase, why = StepPhase.FAILED, f"{type(error).__name__}: {error}"
        if run.phase.finished:  # the run timed out meanwhile
            return
        self._end_step(reg, step, phase, why, self.ctrl.clock.wall())
        self._advance(reg, run)

    async def _roll_out(
        self, reg: RegisteredPipeline, run: PipelineRun, spec_step: PipelineStep
    ) -> tuple[StepPhase, str]:
        # handlers imports the controller module, which builds this runner: import it here
        from mlkube.backends.local.controller.handlers import update_deployment

        deploy = spec_step.deploy
        if deploy is None:
            return StepPhase.FAILED, "not a deploy step"
        source = next(
            run.steps[a]
            for a in upstream(reg.doc.spec, spec_step.name)
            if run.steps[a].outputs.get("modelName") == deploy.model
        )
        uri = source.outputs["modelUri"]
        key = f"{reg.doc.namespace}/{deploy.deployment}"
        dep = self.ctrl.deployments.get(key)
        if dep is None:
            return StepPhase.FAILED, f"no deployment '{key}' is running (mlkube up it first)"
        serving = self._served_version(dep, deploy.model)
        if serving is not None and serving.uri == uri and not dep.rollout.active:
            return StepPhase.CACHED, f"{deploy.deployment} already serves {uri}"
        model = dep.doc.spec.model.model_copy(update={"uri": uri})
        doc = dep.doc.model_copy(update={"spec": dep.doc.spec.model_copy(update={"model": model})})
        doc._source_dir = dep.doc.source_dir
        doc._source_file = dep.doc._source_file
        result = await update_deployment(self.ctrl, dep, doc)
        revision = result.get("revision")
        self._event(reg, "Normal", "Deploying", f"{key} to {uri} (revision {revision})")
        self.ctrl.reconcile()
        if revision is None:
            return StepPhase.SUCCEEDED, f"{deploy.deployment} serves {uri}"
        return await self._await_rollout(key, int(revision), uri)

    async def _await_rollout(self, key: str, revision: int, uri: str) -> tuple[StepPhase, str]:
        while not self.ctrl.stopping.is_set():
            dep = self.ctrl.deployments.get(key)
            if dep is None:
                return StepPhase.FAILED, f"deployment '{key}' was deleted during the rollout"
            state = dep.rollout
            if state.stable == revision and not state.active:
                return StepPhase.SUCCEEDED, f"rolled out {uri} (revision {revision})"
            if state.phase is RolloutPhase.AB_TEST and state.target == revision:
                return StepPhase.SUCCEEDED, f"{uri} takes its A/B share (revision {revision})"
            if state.phase in (RolloutPhase.FAILED, RolloutPhase.ROLLED_BACK) or (
                state.target != revision and state.stable != revision
            ):
                why = state.reason or str(state.phase)
                return (
                    StepPhase.FAILED,
                    f"rollout of {uri} failed: {why}; revision {state.stable} serves",
                )
            await self.ctrl.clock.sleep(DEPLOY_POLL_S)
        return StepPhase.FAILED, "the controller stopped during the rollout"

    # files, events, persistence -------------------------------------------------------------
    def _entry(self, key: str) -> Path:
        return self.ctrl.state / "pipelines" / "cache" / key

    def _job_log(self, job: str) -> Path:
        namespace, _, name = job.partition("/")
        return self.ctrl.state / "jobs" / namespace / name / "logs" / "worker-0.log"

    def _event(self, reg: RegisteredPipeline, kind: str, reason: str, message: str) -> None:
        self.ctrl.store.add_event(
            f"pipeline/{reg.key}", EventRow(self.ctrl.clock.wall(), kind, reason, message)
        )
        log = logger.warning if kind == "Warning" else logger.info
        log("pipeline %s %s: %s", reg.key, reason, message)

    def events(self, reg: RegisteredPipeline, limit: int = 50) -> list[EventRow]:
        return self.ctrl.store.events(f"pipeline/{reg.key}", limit)

    def _persist_pipeline(self, reg: RegisteredPipeline) -> None:
        data = {
            "doc": reg.doc.model_dump(mode="json", by_alias=True),
            "sourceDir": reg.doc.source_dir,
            "sourceFile": reg.doc._source_file,
            "jobs": {
                step: {"spec": spec.model_dump(mode="json", by_alias=True), "sourceDir": folder}
                for step, (spec, folder) in reg.jobs.items()
            },
            "triggers": reg.triggers,
        }
        self.ctrl.store.put_document(STORE_PIPELINE, reg.key, data)

    def _persist_run(self, run: PipelineRun) -> None:
        self.ctrl.store.put_document(STORE_RUN, _run_key(run), run.to_json())

    def restore(self) -> None:
        """The pipelines and runs of the store. A run whose deploy was in progress when the
        controller stopped failed (its rollout goes on, or was rolled back, on its own)."""
        for key, data in self.ctrl.store.documents(STORE_PIPELINE).items():
            doc = Pipeline.model_validate(data["doc"])
            doc._source_dir = str(data.get("sourceDir", "."))
            doc._source_file = str(data.get("sourceFile", "<string>"))
            jobs = {
                step: (TrainingJobSpec.model_validate(value["spec"]), str(value["sourceDir"]))
                for step, value in data.get("jobs", {}).items()
            }
            reg = RegisteredPipeline(key, doc, jobs, triggers=bool(data.get("triggers")))
            now = self.ctrl.clock.wall()
            reg.next_schedule = self._next_fire(doc, now) if reg.triggers else None
            if reg.triggers and doc.spec.watch:
                reg.watch_seen = fingerprint(reg.watch_paths)
            self.pipelines[key] = reg
        runs = [
            PipelineRun.from_json(d) for d in self.ctrl.store.documents(STORE_RUN).values() if d
        ]
        for run in sorted(runs, key=lambda r: r.number):
            owner = self.pipelines.get(run.pipeline)
            if owner is None:
                continue
            deploying = [
                s for s in run.steps.values() if s.phase is StepPhase.RUNNING and not s.job
            ]
            if not run.phase.finished and deploying:
                for step in deploying:
                    step.phase = StepPhase.FAILED
                    step.reason = "the controller stopped during the rollout"
                stop_run(run, self.ctrl.clock.wall(), "the controller stopped")
                run.phase = RunPhase.FAILED
                run.reason = "the controller stopped during the deploy step"
            owner.runs.append(run)

    # views -------------------------------------------------------------------------------------
    def row(self, reg: RegisteredPipeline, run_number: int | None = None) -> dict[str, Any]:
        """The control API's view of a pipeline and one run (default: the latest)."""
        runs = reg.runs
        run = runs[-1] if runs else None
        if run_number is not None:
            run = next((r for r in runs if r.number == run_number), None)
            if run is None:
                raise BackendError(f"pipeline '{reg.key}' has no run {run_number}")
        spec = reg.doc.spec
        return {
            "name": reg.doc.metadata.name,
            "namespace": reg.doc.namespace,
            "schedule": spec.schedule if reg.triggers else None,
            "nextScheduled": reg.next_schedule,
            "watch": list(spec.watch) if reg.triggers else [],
            "steps": [
                {
                    "name": s.name,
                    "dependsOn": list(s.depends_on),
                    "kind": "deploy" if s.deploy is not None else "job",
                }
                for s in spec.steps
            ],
            "run": run.to_json() if run is not None else None,
            "events": [
                {"ts": e.ts, "type": e.type, "reason": e.reason, "message": e.message}
                for e in self.events(reg)
            ],
        }

    def history(self, reg: RegisteredPipeline) -> list[dict[str, Any]]:
        """Every kept run, newest first, without its steps' details."""
        out = []
        for run in reversed(reg.runs):
            data = run.to_json()
            data["cached"] = sum(1 for s in run.steps.values() if s.phase is StepPhase.CACHED)
            data["stepCount"] = len(run.steps)
            del data["steps"]
            out.append(data)
        return out

    def log_files(self, reg: RegisteredPipeline, step_name: str | None) -> list[dict[str, Any]]:
        """Per step of the latest run: its job's worker-0 log file, or why it has none."""
        run = reg.runs[-1] if reg.runs else None
        if run is None:
            return []
        names = [step_name] if step_name is not None else list(run.steps)
        out = []
        for name in names:
            if name not in run.steps:
                raise BackendError(f"pipeline '{reg.key}' has no step '{name}'")
            step = run.steps[name]
            note, file, offset = "", "", 0
            if step.cache_hit:
                file = str(self._entry(step.cache_key) / "worker-0.log")
                note = "a cache hit: the log of the run that made its outputs"
            elif not step.job:
                note = step.reason or str(step.phase).lower()
            else:
                file, offset = str(self._job_log(step.job)), step.log_offset
            out.append({"step": name, "file": file, "offset": offset, "note": note})
        return out

    def snapshots(self) -> list[PipelineSnapshot]:
        """Every pipeline as plain values, for ``/metrics``."""
        out = []
        now = self.ctrl.clock.wall()
        for reg in self.pipelines.values():
            counts: dict[str, int] = {}
            for run in reg.runs:
                counts[str(run.phase)] = counts.get(str(run.phase), 0) + 1
            last = reg.runs[-1] if reg.runs else None
            duration = 0.0
            if last is not None:
                duration = (last.finished_at or now) - last.started_at
            out.append(
                PipelineSnapshot(
                    reg.doc.namespace,
                    reg.doc.metadata.name,
                    counts,
                    str(last.phase) if last is not None else "",
                    max(0.0, duration),
                    sum(
                        1 for r in reg.runs for s in r.steps.values() if s.phase is StepPhase.CACHED
                    ),
                    sum(1 for r in reg.runs for s in r.steps.values() if s.job),
                )
            )
        return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _run_key(run: PipelineRun) -> str:
    return f"{run.pipeline}#{run.number:06d}"


def _job_name(pipeline: str, step: str) -> str:
    """``PIPELINE-STEP``, cut to a job name's 53 characters (a hash keeps it unique)."""
    name = f"{pipeline}-{step}"
    if len(name) <= JOB_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: JOB_NAME_MAX - 7].rstrip('-')}-{digest}"


def registered_documents(documents: list[SpecDocument]) -> list[Pipeline]:
    """The Pipelines among ``documents``."""
    return [d for d in documents if isinstance(d, Pipeline)]


def referenced_jobs(documents: list[SpecDocument]) -> set[tuple[str, str]]:
    """(namespace, name) of every TrainingJob a Pipeline of ``documents`` refers to: part of
    the pipeline, so ``apply`` does not refuse them as jobs."""
    return {
        (p.namespace, s.job_ref)
        for p in registered_documents(documents)
        for s in p.spec.steps
        if s.job_ref is not None
    }
