"""Which steps of a run start now, which are skipped, and when the run is over.

Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlkube.pipelines.state import PipelineRun, RunPhase, StepPhase
from mlkube.spec.pipeline import PipelineSpec, topological_order


@dataclass(frozen=True, slots=True)
class Progress:
    """What the runner does next: start ``ready``; the run ends with ``finished`` (a phase
    and a reason) when it is set."""

    ready: tuple[str, ...]
    finished: tuple[RunPhase, str] | None = None


def new_steps(spec: PipelineSpec) -> list[str]:
    """Step names in the order they are shown and started (dependencies first)."""
    return topological_order(spec)


def progress(spec: PipelineSpec, run: PipelineRun, now: float) -> Progress:
    """Skip what can no longer run (marking it, with why), then say what is ready.

    A step is ready when every step it depends on passed (Succeeded or Cached). A step after
    one that failed, or whose gate failed, is Skipped. The run ends once no step is pending
    or running: Failed when a step failed, Stopped when a gate stopped it, else Succeeded.
    """
    steps = run.steps
    by_name = {s.name: s for s in spec.steps}
    changed = True
    while changed:  # a skip can make the steps after it skippable too
        changed = False
        for name in new_steps(spec):
            step = steps[name]
            if step.phase is not StepPhase.PENDING:
                continue
            blocked = [
                d for d in by_name[name].depends_on if steps[d].phase.finished and _blocks(run, d)
            ]
            if blocked:
                step.phase = StepPhase.SKIPPED
                step.finished_at = now
                step.reason = f"{blocked[0]} {_why(run, blocked[0])}"
                changed = True
    ready = tuple(
        name
        for name in new_steps(spec)
        if steps[name].phase is StepPhase.PENDING
        and all(steps[d].phase.passed and _gates_passed(run, d) for d in by_name[name].depends_on)
    )
    if ready or any(not s.phase.finished for s in steps.values()):
        return Progress(ready)
    failed = [s for s in steps.values() if s.phase is StepPhase.FAILED]
    if failed:
        return Progress((), (RunPhase.FAILED, f"step {failed[0].name} failed: {failed[0].reason}"))
    gated = [s for s in steps.values() if s.phase.passed and not _gates_passed(run, s.name)]
    if gated:
        return Progress((), (RunPhase.STOPPED, f"gate of {gated[0].name}: {gated[0].reason}"))
    return Progress((), (RunPhase.SUCCEEDED, ""))


def _gates_passed(run: PipelineRun, name: str) -> bool:
    return all(g.passed for g in run.steps[name].gates)


def _blocks(run: PipelineRun, name: str) -> bool:
    step = run.steps[name]
    return not step.phase.passed or not _gates_passed(run, name)


def _why(run: PipelineRun, name: str) -> str:
    step = run.steps[name]
    if step.phase.passed:
        return "stopped at its gate"
    return str(step.phase).lower()


def stop_run(run: PipelineRun, now: float, reason: str) -> None:
    """End the run's pending steps (Skipped) before it is marked over (timeout, cancel)."""
    for step in run.steps.values():
        if step.phase is StepPhase.PENDING:
            step.phase = StepPhase.SKIPPED
            step.finished_at = now
            step.reason = reason
