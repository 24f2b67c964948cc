"""Resource requests and limits, with Kubernetes' rules.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, RootModel, field_validator, model_validator

from mlkube.spec.base import SpecModel
from mlkube.spec.quantity import Quantity

GPU = "nvidia.com/gpu"
_STANDARD = {"cpu", "memory", "ephemeral-storage"}
# Extended resources are domain-qualified names such as nvidia.com/gpu or amd.com/gpu.
_EXTENDED = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]+/[A-Za-z0-9]([-A-Za-z0-9_.]*)$")


class ResourceList(RootModel[dict[str, Quantity]]):
    """A map of resource name to quantity, e.g. ``{cpu: 500m, memory: 512Mi}``."""

    root: dict[str, Quantity] = Field(default_factory=dict)

    @field_validator("root")
    @classmethod
    def _known_names(cls, values: dict[str, Quantity]) -> dict[str, Quantity]:
        for name, quantity in values.items():
            if name not in _STANDARD and not _EXTENDED.match(name):
                raise ValueError(
                    f"unknown resource '{name}' (expected cpu, memory, ephemeral-storage "
                    "or a domain-qualified extended resource such as nvidia.com/gpu)"
                )
            if quantity.value < 0:
                raise ValueError(f"{name} must not be negative, got '{quantity.text}'")
            if name not in _STANDARD and quantity.value.denominator != 1:
                raise ValueError(f"{name} must be a whole number, got '{quantity.text}'")
            if name == "memory" and quantity.value.denominator != 1 and quantity.value < 1:
                raise ValueError(f"memory below one byte makes no sense, got '{quantity.text}'")
        return values

    def get(self, name: str) -> Quantity | None:
        return self.root.get(name)

    def items(self) -> list[tuple[str, Quantity]]:
        return list(self.root.items())


class ResourcesSpec(SpecModel):
    """What each replica asks for (requests, used for placement) and may use (limits)."""

    requests: ResourceList = ResourceList()
    """Reserved per replica; placement admits a replica only where these fit."""

    limits: ResourceList = ResourceList()
    """Enforced per replica: CPU is throttled, memory over the limit is OOMKilled."""

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourcesSpec:
        problems: list[str] = []
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and request.value > limit.value:
                problems.append(
                    f"requests.{name} ({request.text}) must not exceed limits.{name} ({limit.text})"
                )
            if name not in _STANDARD and (limit is None or limit.value != request.value):
                problems.append(
                    f"{name} is an extended resource: Kubernetes requires limits.{name} "
                    f"equal to requests.{name} ({request.text})"
                )
        if problems:  # every one at once, not the first
            raise ValueError("; ".join(problems))
        return self

    @property
    def gpus(self) -> int:
        """Whole GPUs each replica needs (extended resources are set by their limit)."""
        limit = self.limits.get(GPU)
        return limit.whole if limit is not None else 0

    def effective_requests(self) -> dict[str, Quantity]:
        """Requests with Kubernetes' defaulting: a missing request takes the limit's value."""
        merged = dict(self.limits.root)
        merged.update(self.requests.root)
        return merged


PositiveQuota = Annotated[int, Field(ge=0)]
