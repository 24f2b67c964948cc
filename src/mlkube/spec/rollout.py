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
    no analysis). On Kubernetes, canary weights move only when the spec is applied again.
    """

    weight: Annotated[int, Field(ge=0, le=100)]
    pause: Seconds | None = None


class AnalysisSpec(SpecModel):
    """Thresholds the canary's own metrics must stay within, or it is rolled back."""

    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_p99_latency_ms: Annotated[float, Field(gt=0)] | None = None
    interval: Seconds = 10.0
    min_requests: Annotated[int, Field(ge=0)] = 20
    """Fewer requests than this in an interval: no verdict yet."""


class ABTestSpec(SpecModel):
    """A fixed split: by weight, or every request with ``header`` set goes to the new one."""

    weight: Annotated[int, Field(ge=0, le=100)] = 50
    header: str | None = None
    header_value: str | None = None


class RolloutSpec(SpecModel):
    """How revisions roll out."""

    strategy: RolloutStrategy = RolloutStrategy.ROLLING_UPDATE
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    steps: tuple[CanaryStep, ...] = ()
    analysis: AnalysisSpec | None = None
    ab_test: ABTestSpec | None = None
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
