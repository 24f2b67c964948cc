"""The base of every spec model: camelCase keys, unknown keys rejected, immutable.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from mlkube.spec.quantity import parse_duration


class SpecModel(BaseModel):
    """Every spec section: YAML keys are camelCase, Python fields snake_case, by one rule.

    Fields are documented by attribute docstrings. pydantic's ``use_attribute_docstrings``
    would read them at import, which costs a quarter of a second of every replica's cold
    start; ``spec/schema.py`` reads them only when a schema is asked for. ``defer_build``
    likewise builds a model's validator on its first use instead of when its class is
    defined: a replica validates one ModelDeployment, so building a validator for each of
    the ~40 section classes at import was time its cold start spent for nothing.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
        defer_build=True,
    )


def _duration(raw: Any) -> float:
    if isinstance(raw, str | int | float):
        return parse_duration(raw)
    raise ValueError(f"expected a duration such as 30s or 5m, got {raw!r}")


Seconds = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|h|m|s))+$|^\d+(\.\d+)?$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or seconds as a number.",
        }
    ),
]
"""A duration in seconds, written as ``30s``, ``5m``, ``1h30m`` or a number of seconds."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
