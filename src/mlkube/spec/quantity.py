"""Kubernetes resource quantities and durations, parsed exactly.

Pure: no I/O. ``Quantity`` keeps the exact rational value (``fractions.Fraction``), so
``500m`` is exactly one half and ``1Gi`` exactly 2**30, and the original text for round-trips
into manifests. The grammar is the one in k8s.io/apimachinery ``resource.Quantity``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_BINARY_SI = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SI = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$"
)
QUANTITY_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity such as ``500m``, ``2``, ``512Mi`` or ``1e3``.

    Raises ValueError with the offending text when it does not follow the grammar.
    """
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(
            f"'{text}' is not a Kubernetes quantity "
            "(expected a number with an optional suffix: m, k, M, G, Ki, Mi, Gi, e3 ...)"
        )
    value = Fraction(match["number"] if not match["number"].endswith(".") else match["number"][:-1])
    if match["exp"]:
        value *= Fraction(10) ** int(match["exp"][1:])
    else:
        suffix = match["suffix"] or ""
        value *= _BINARY_SI[suffix] if suffix in _BINARY_SI else _DECIMAL_SI[suffix]
    return -value if match["sign"] == "-" else value


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact Kubernetes quantity; ``text`` is what the user wrote, ``value`` its exact value."""

    text: str
    value: Fraction

    @classmethod
    def parse(cls, raw: str | int | float) -> Quantity:
        if isinstance(raw, bool):
            raise ValueError(f"'{raw}' is not a Kubernetes quantity")
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise ValueError(f"'{raw}' is not a Kubernetes quantity")
            text = repr(raw)
        else:
            text = str(raw).strip()
        return cls(text=text, value=parse_quantity(text))

    @property
    def millis(self) -> int:
        """The value in thousandths, rounded up as Kubernetes does for CPU (``1.5m`` → 2)."""
        return math.ceil(self.value * 1000)

    @property
    def whole(self) -> int:
        """The value rounded up to a whole number (bytes for memory, devices for GPUs)."""
        return math.ceil(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_quantity,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda q: q.text),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "number"}],
            "description": "A Kubernetes quantity such as 500m, 2, 512Mi or 1G.",
        }


def _validate_quantity(raw: Any) -> Quantity:
    if isinstance(raw, Quantity):
        return raw
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ValueError(f"expected a Kubernetes quantity such as 500m or 2Gi, got {raw!r}")
    return Quantity.parse(raw)


def parse_duration(raw: str | int | float) -> float:
    """Seconds in a duration such as ``60s``, ``5m``, ``1h30m``, ``250ms`` or a bare number."""
    if isinstance(raw, bool):
        raise ValueError(f"expected a duration such as 30s or 5m, got {raw!r}")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        text = raw.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"'{raw}' is not a duration (expected e.g. 30s, 5m, 1h30m, 250ms)"
                ) from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"'{raw}' is not a non-negative duration")
    return seconds
