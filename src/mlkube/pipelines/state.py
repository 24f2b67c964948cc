"""What a pipeline run and its steps are, as plain values that round-trip through JSON.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class StepPhase(enum.StrEnum):
    """Where one step of a run stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CACHED = "Cached"

    @property
    def finished(self) -> bool:
        return self not in (StepPhase.PENDING, StepPhase.RUNNING)

    @property
    def passed(self) -> bool:
        """Its outputs are there for the steps after it."""
        return self in (StepPhase.SUCCEEDED, StepPhase.CACHED)


class RunPhase(enum.StrEnum):
    """Where a run stands: Stopped is a gate that failed (not an error of a step)."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def finished(self) -> bool:
        return self is not RunPhase.RUNNING


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate judged: its text (``accuracy >= 0.9``), the value seen, and the verdict."""

    text: str
    passed: bool
    actual: float | None
    note: str = ""


@dataclass
class StepRun:
    """One step in one run."""

    name: str
    phase: StepPhase = StepPhase.PENDING
    attempts: int = 0
    started_at: float | None = None
    attempt_started_at: float | None = None
    finished_at: float | None = None
    cache_key: str = ""
    cache_hit: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    reason: str = ""
    job: str = ""
    """The queue's ``namespace/name`` of the job this step ran (empty for a deploy or a hit)."""
    log_offset: int = 0
    """Where this run's part of the job's log file (appended to by every run) begins."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": str(self.phase),
            "attempts": self.attempts,
            "startedAt": self.started_at,
            "attemptStartedAt": self.attempt_started_at,
            "finishedAt": self.finished_at,
            "cacheKey": self.cache_key,
            "cacheHit": self.cache_hit,
            "outputs": dict(self.outputs),
            "metrics": dict(self.metrics),
            "gates": [asdict(g) for g in self.gates],
            "reason": self.reason,
            "job": self.job,
            "logOffset": self.log_offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRun:
        return cls(
            name=str(data["name"]),
            phase=StepPhase(data["phase"]),
            attempts=int(data.get("attempts", 0)),
            started_at=data.get("startedAt"),
            attempt_started_at=data.get("attemptStartedAt"),
            finished_at=data.get("finishedAt"),
            cache_key=str(data.get("cacheKey", "")),
            cache_hit=bool(data.get("cacheHit", False)),
            outputs={str(k): str(v) for k, v in data.get("outputs", {}).items()},
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            gates=[GateResult(**g) for g in data.get("gates", [])],
            reason=str(data.get("reason", "")),
            job=str(data.get("job", "")),
            log_offset=int(data.get("logOffset", 0)),
        )


@dataclass
class PipelineRun:
    """One run of a pipeline: its trigger, phase and steps (in topological order)."""

    pipeline: str
    """``namespace/name``."""
    number: int
    trigger: str
    """``manual``, ``schedule`` or ``watch``."""
    started_at: float
    steps: dict[str, StepRun]
    phase: RunPhase = RunPhase.RUNNING
    finished_at: float | None = None
    reason: str = ""
    no_cache: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "number": self.number,
            "trigger": self.trigger,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "phase": str(self.phase),
            "reason": self.reason,
            "noCache": self.no_cache,
            "steps": [s.to_json() for s in self.steps.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineRun:
        steps = [StepRun.from_json(s) for s in data["steps"]]
        return cls(
            pipeline=str(data["pipeline"]),
            number=int(data["number"]),
            trigger=str(data["trigger"]),
            started_at=float(data["startedAt"]),
            steps={s.name: s for s in steps},
            phase=RunPhase(data["phase"]),
            finished_at=data.get("finishedAt"),
            reason=str(data.get("reason", "")),
            no_cache=bool(data.get("noCache", False)),
        )
