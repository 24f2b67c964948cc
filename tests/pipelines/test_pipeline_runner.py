"""The runner in a real controller object: steps run as real job processes of its queue.

The controller is driven by calling ``reconcile`` (what its loop does) instead of running its
loops, so no replica or balancer starts; the jobs are real processes running small scripts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.clock import Clock, ManualClock, SystemClock
from mlkube.pipelines.state import PipelineRun, RunPhase, StepPhase
from mlkube.spec import Pipeline, load_documents

SCORE = """
import json, os, sys
out = os.environ["MLKUBE_OUTPUT_DIR"]
value = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
json.dump({"score": value}, open(os.path.join(out, "metrics.json"), "w"))
print("score", value)
"""
FAIL = "import sys; print('failing on purpose'); sys.exit(3)\n"
SLEEP = "import time; time.sleep(60)\n"

PIPELINE = """
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: demo}
spec:
  steps:
    - name: first
      outputs: [score]
      job: {run: {script: score.py}}
    - name: second
      dependsOn: [first]
      outputs: [score]
      job: {run: {script: score.py, args: ["{{steps.first.outputs.score}}"]}}
"""


def _controller(path: Path, clock: Clock) -> Controller:
    return Controller(path / "state", ControllerSettings(), clock)


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = _controller(tmp_path, SystemClock())
    yield controller
    for job in controller.job_queue.jobs.values():
        if job.gang is not None:
            job.gang.kill()
    controller.store.close()


def _pipeline(folder: Path, text: str, scripts: dict[str, str]) -> Pipeline:
    for name, code in scripts.items():
        (folder / name).write_text(code, encoding="utf-8")
    (folder / "pipeline.yaml").write_text(text, encoding="utf-8")
    (doc,) = [d for d in load_documents(folder / "pipeline.yaml") if isinstance(d, Pipeline)]
    return doc


def _run(ctrl: Controller, doc: Pipeline, *, no_cache: bool = False) -> PipelineRun:
    reg = ctrl.pipelines.register(doc, [doc], triggers=False)
    run = ctrl.pipelines.start(reg.key, "manual", no_cache=no_cache)
    deadline = time.monotonic() + 30
    while not run.phase.finished and time.monotonic() < deadline:
        ctrl.reconcile()
        time.sleep(0.05)
    assert run.phase.finished, run.to_json()
    return run


def _phases(run: PipelineRun) -> dict[str, str]:
    return {name: str(step.phase) for name, step in run.steps.items()}


def test_outputs_flow_downstream_and_a_second_run_is_all_cache_hits(
    ctrl: Controller, tmp_path: Path
) -> None:
    doc = _pipeline(
        tmp_path,
        PIPELINE.replace("score.py}}", "score.py, args: ['0.75']}}", 1),
        {"score.py": SCORE},
    )
    first = _run(ctrl, doc)
    assert first.phase is RunPhase.SUCCEEDED, first.to_json()
    assert first.steps["second"].metrics == {"score": 0.75}  # passed as an argument
    assert not any(s.cache_hit for s in first.steps.values())
    again = _run(ctrl, doc)
    assert _phases(again) == {"first": "Cached", "second": "Cached"}
    assert again.steps["second"].outputs == first.steps["second"].outputs
    forced = _run(ctrl, doc, no_cache=True)
    assert _phases(forced) == {"first": "Succeeded", "second": "Succeeded"}


def test_a_change_of_code_runs_the_step_and_what_follows_again(
    ctrl: Controller, tmp_path: Path
) -> None:
    doc = _pipeline(tmp_path, PIPELINE, {"score.py": SCORE})
    _run(ctrl, doc)
    (tmp_path / "score.py").write_text(SCORE.replace("0.5", "0.25"), encoding="utf-8")
    changed = _run(ctrl, doc)
    assert _phases(changed) == {"first": "Succeeded", "second": "Succeeded"}
    assert changed.steps["second"].metrics == {"score": 0.25}


def test_a_failing_step_is_retried_then_fails_the_run_and_skips_the_rest(
    ctrl: Controller, tmp_path: Path
) -> None:
    text = PIPELINE.replace(
        "job: {run: {script: score.py}}",
        "retries: 1\n      job: {run: {script: fail.py}, backoffLimit: 0}",
    )
    doc = _pipeline(tmp_path, text, {"score.py": SCORE, "fail.py": FAIL})
    run = _run(ctrl, doc)
    assert run.phase is RunPhase.FAILED
    first = run.steps["first"]
    assert (first.phase, first.attempts) == (StepPhase.FAILED, 2)
    assert run.steps["second"].phase is StepPhase.SKIPPED
    assert run.steps["second"].reason == "first failed"
    reasons = [e.reason for e in ctrl.store.events("pipeline/default/demo")]
    assert "StepRetrying" in reasons and "RunFailed" in reasons


def test_a_gate_that_fails_stops_the_run_with_its_reason(ctrl: Controller, tmp_path: Path) -> None:
    text = PIPELINE.replace(
        "      job: {run: {script: score.py}}",
        "      job: {run: {script: score.py}}\n"
        "      gates: [{metric: score, op: '>=', value: 0.9}]",
    )
    doc = _pipeline(tmp_path, text, {"score.py": SCORE})
    run = _run(ctrl, doc)
    assert run.phase is RunPhase.STOPPED
    assert run.reason == "gate of first: score >= 0.9 failed (got 0.5)"
    (gate,) = run.steps["first"].gates
    assert (gate.passed, gate.actual) == (False, 0.5)
    assert run.steps["second"].phase is StepPhase.SKIPPED
    assert run.steps["second"].reason == "first stopped at its gate"


def test_a_step_past_its_timeout_is_stopped_and_fails(ctrl: Controller, tmp_path: Path) -> None:
    text = PIPELINE.replace(
        "job: {run: {script: score.py}}",
        "timeout: 1s\n      job: {run: {script: sleep.py}, terminationGracePeriod: 1s}",
    )
    doc = _pipeline(tmp_path, text, {"score.py": SCORE, "sleep.py": SLEEP})
    run = _run(ctrl, doc)
    assert run.phase is RunPhase.FAILED
    assert run.steps["first"].reason == "timed out after 1s"
    job = ctrl.job_queue.jobs["default/demo-first"]
    assert str(job.state.phase) == "Cancelled"


def test_a_missing_promised_metric_fails_the_step(ctrl: Controller, tmp_path: Path) -> None:
    doc = _pipeline(tmp_path, PIPELINE, {"score.py": SCORE.replace('"score"', '"other"', 1)})
    run = _run(ctrl, doc)
    assert run.steps["first"].phase is StepPhase.FAILED
    assert run.steps["first"].reason == "the job did not report score in its metrics.json"


# triggers, on the controller's clock ---------------------------------------------------------
def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_a_schedule_starts_runs_at_its_minutes(tmp_path: Path) -> None:
    clock = ManualClock(_at("2026-12-01T21:58:30"))
    ctrl = _controller(tmp_path, clock)
    try:
        text = PIPELINE.replace("spec:\n", "spec:\n  schedule: '*/5 * * * *'\n", 1)
        doc = _pipeline(tmp_path, text, {"score.py": SCORE})
        reg = ctrl.pipelines.register(doc, [doc], triggers=True)
        assert reg.next_schedule == _at("2026-12-01T22:00:00")
        ctrl.pipelines.tick()
        assert reg.runs == []
        clock.advance(90)
        ctrl.pipelines.tick()
        assert [r.trigger for r in reg.runs] == ["schedule"]
        assert reg.next_schedule == _at("2026-12-01T22:05:00")
    finally:
        ctrl.store.close()


def test_a_change_in_a_watched_path_starts_a_run(tmp_path: Path) -> None:
    clock = ManualClock(_at("2026-12-01T21:58:30"))
    ctrl = _controller(tmp_path, clock)
    try:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "rows.csv").write_text("a\n1\n", encoding="utf-8")
        text = PIPELINE.replace("spec:\n", "spec:\n  watch: [data]\n", 1)
        doc = _pipeline(tmp_path, text, {"score.py": SCORE})
        reg = ctrl.pipelines.register(doc, [doc], triggers=True)
        ctrl.pipelines.tick()
        assert reg.runs == []  # registering is no change
        (tmp_path / "data" / "rows.csv").write_text("a\n1\n2\n", encoding="utf-8")
        clock.advance(5)
        ctrl.pipelines.tick()
        assert [r.trigger for r in reg.runs] == ["watch"]
    finally:
        ctrl.store.close()


def test_runs_survive_a_controller_restart(ctrl: Controller, tmp_path: Path) -> None:
    doc = _pipeline(tmp_path, PIPELINE, {"score.py": SCORE})
    run = _run(ctrl, doc)
    again = _controller(tmp_path, SystemClock())
    try:
        again.pipelines.restore()
        reg = again.pipelines.find("demo")
        assert [r.to_json() for r in reg.runs] == [run.to_json()]
    finally:
        again.store.close()


REFERENCING = """
apiVersion: mlkube.dev/v1alpha1
kind: TrainingJob
metadata: {name: scorer}
spec:
  run: {script: score.py}
---
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: demo}
spec:
  schedule: "@daily"
  steps:
    - {name: first, jobRef: scorer, outputs: [score]}
"""


def test_apply_registers_a_pipeline_with_its_triggers_and_its_referenced_job(
    ctrl: Controller, tmp_path: Path
) -> None:
    from mlkube.backends.local.controller import handlers

    _pipeline(tmp_path, REFERENCING, {"score.py": SCORE})
    answer = asyncio.run(handlers.apply(ctrl, [str(tmp_path / "pipeline.yaml")]))
    assert answer["results"] == [
        {"kind": "Pipeline", "name": "default/demo", "action": "registered"}
    ]  # the TrainingJob it names is part of it, not refused as a job to `mlkube run`
    reg = ctrl.pipelines.find("demo")
    assert reg.triggers and reg.next_schedule is not None
    run = ctrl.pipelines.start(reg.key, "manual")
    deadline = time.monotonic() + 30
    while not run.phase.finished and time.monotonic() < deadline:
        ctrl.reconcile()
        time.sleep(0.05)
    assert run.phase is RunPhase.SUCCEEDED, run.to_json()
    assert run.steps["first"].metrics == {"score": 0.5}


def test_a_spec_applied_during_a_run_takes_over_after_it_and_a_run_timeout_ends_it(
    tmp_path: Path,
) -> None:
    clock = ManualClock(_at("2026-12-01T21:58:30"))
    ctrl = _controller(tmp_path, clock)
    try:
        text = PIPELINE.replace("spec:\n", "spec:\n  timeout: 10s\n", 1)
        doc = _pipeline(tmp_path, text, {"score.py": SCORE})
        reg = ctrl.pipelines.register(doc, [doc], triggers=False)
        run = ctrl.pipelines.start(reg.key, "manual")  # its first job waits in the queue
        newer = _pipeline(tmp_path, text.replace("first", "one"), {"score.py": SCORE})
        assert ctrl.pipelines.register(newer, [newer], triggers=True) is reg
        ctrl.pipelines.tick()
        assert reg.doc is doc and list(run.steps) == ["first", "second"]
        clock.advance(11)
        ctrl.pipelines.tick()
        assert run.phase is RunPhase.FAILED
        assert run.reason == "the run took longer than its timeout (10s)"
        assert _phases(run) == {"first": "Failed", "second": "Skipped"}
        assert str(ctrl.job_queue.jobs["default/demo-first"].state.phase) == "Cancelled"
        assert reg.doc is newer and reg.triggers
    finally:
        ctrl.store.close()
