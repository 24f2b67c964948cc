"""How a new revision replaces the old one: rolling, blue-green, canary or a fixed A/B split.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from mlkube.spec.base import Seconds, SpecModel

_INT_OR_PERCENT = re.compile(r"^\d+%?$")


class RolloutStrategy(enum.StrEnum):
    """The four ways a new revision takes over."""

    ROLLING_UPDATE = "RollingUpdate"
    BLUE_GREEN = "BlueGreen"
    CANARY = "Canary"
    AB_TEST = "ABTest"


class CanaryStep(SpecModel):
    """Send ``weight`` percent to the new revision, then wait ``pause``.

    Without ``pause`` the step ends after one passed analysis interval (at once when there is
    no analysis). On Kubernetes the steps move while `mlkube rollout status --watch` runs.
    """

    weight: Annotated[int, Field(ge=0, le=100)]
    """Percent of requests sent to the new revision during this step (0-100)."""
    pause: Seconds | None = None
    """How long the step lasts (e.g. 60s) before the next; unset: one passed analysis interval."""


class AnalysisSpec(SpecModel):
    """Thresholds the canary's own metrics must stay within, or it is rolled back."""

    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Highest 5xx share of the canary's requests in an interval (0-1) before it is rolled back."""
    max_p99_latency_ms: Annotated[float, Field(gt=0)] | None = None
    """Highest p99 latency of the canary in an interval, in milliseconds; unset: not judged."""
    interval: Seconds = 10.0
    min_requests: Annotated[int, Field(ge=0)] = 20
    """Fewer requests than this in an interval: no verdict yet."""


class ABTestSpec(SpecModel):
    """A fixed split: by weight, or every request with ``header`` set goes to the new one."""

    weight: Annotated[int, Field(ge=0, le=100)] = 50
    """Percent of requests sent to the new revision when no header is set (0-100)."""
    header: str | None = None
    """Route by this request header instead of by weight (case-insensitive)."""
    header_value: str | None = None
    """The value the header must have; unset: any value of the header matches."""


class RolloutSpec(SpecModel):
    """How revisions roll out."""

    strategy: RolloutStrategy = RolloutStrategy.ROLLING_UPDATE
    max_surge: int | str = "25%"
    """Replicas above the desired count during a rolling update: a count or a percent (25%)."""
    max_unavailable: int | str = "25%"
    """Replicas that may be unready during a rolling update: a count or a percent (25%)."""
    steps: tuple[CanaryStep, ...] = ()
    """Canary only: the weight steps, in order; the last passing step promotes the canary."""
    analysis: AnalysisSpec | None = None
    """Canary only: thresholds the canary's own metrics must meet at each interval."""
    ab_test: ABTestSpec | None = None
    """ABTest only: the fixed split, by weight or by header."""
    progress_deadline: Seconds = 600.0
    """A rollout not done by then is marked failed (Deployment's progressDeadlineSeconds)."""

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"must be >= 0, got {value}")
            return value
        if not _INT_OR_PERCENT.match(value):
            raise ValueError(f"expected a count or a percent such as 25%, got '{value}'")
        return value

    @model_validator(mode="after")
    def _strategy_fields(self) -> RolloutSpec:
        if self.strategy is RolloutStrategy.CANARY and not self.steps:
            raise ValueError("strategy Canary needs steps: [{weight: 10, pause: 60s}, ...]")
        if self.strategy is not RolloutStrategy.CANARY and self.steps:
            raise ValueError(f"steps are only used with strategy Canary, not {self.strategy}")
        if self.strategy is RolloutStrategy.AB_TEST and self.ab_test is None:
            raise ValueError("strategy ABTest needs abTest: {weight: 50} or {header: ...}")
        weights = [step.weight for step in self.steps]
        if weights != sorted(weights):
            raise ValueError(f"canary step weights must not decrease, found {weights}")
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        return self
