"""Request-rate traces for the simulator: built-in shapes and trace files.

Pure apart from ``parse_trace`` reading text handed to it. A trace is requests per second at
one-second resolution. Built-in traces are shaped in units of one replica's capacity at the SLO
(``unit_rps``), so they exercise one to three replicas whatever the replica model is.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable

from mlkube.errors import MlkubeError

BUILTIN = ("step", "spike", "diurnal", "sawtooth")
"""The built-in trace names, in the order reports list them."""

DURATION = 1800
"""Length of every built-in trace, in seconds."""


class TraceError(MlkubeError):
    """A trace file or name that cannot be used."""


def _step(t: int) -> float:
    return 2.4 if 300 <= t < 1200 else 0.3


def _spike(t: int) -> float:
    if 300 <= t < 360 or 1200 <= t < 1290:
        return 2.6
    return 0.5


def _diurnal(t: int) -> float:
    return 0.3 + 2.2 * (1 - math.cos(2 * math.pi * t / DURATION)) / 2


def _sawtooth(t: int) -> float:
    return 0.3 + 2.3 * ((t % 300) / 300)


_SHAPES: dict[str, Callable[[int], float]] = {
    "step": _step,
    "spike": _spike,
    "diurnal": _diurnal,
    "sawtooth": _sawtooth,
}


def builtin(name: str, unit_rps: float) -> tuple[float, ...]:
    """The built-in trace ``name`` in requests per second, for ``unit_rps`` per unit."""
    shape = _SHAPES.get(name)
    if shape is None:
        raise TraceError(f"unknown trace '{name}'; built-in traces are {', '.join(BUILTIN)}")
    return tuple(shape(t) * unit_rps for t in range(DURATION))


def parse_trace(text: str, source: str) -> tuple[float, ...]:
    """A trace from a file's text: JSON ``{"stepSeconds": s, "rps": [...]}`` or a list of
    rates, or CSV rows ``seconds,rps`` (each rate holds until the next row)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _from_json(stripped, source)
    return _from_csv(text, source)


def _from_json(text: str, source: str) -> tuple[float, ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{source}: not valid JSON ({exc})") from exc
    step = 1.0
    if isinstance(data, dict):
        step = float(data.get("stepSeconds", 1))
        data = data.get("rps")
    if not isinstance(data, list) or not data:
        raise TraceError(f"{source}: expected a non-empty list of request rates under 'rps'")
    if step <= 0 or step != int(step):
        raise TraceError(f"{source}: stepSeconds must be a whole positive number, got {step}")
    rates = [_rate(v, source) for v in data]
    return tuple(r for r in rates for _ in range(int(step)))


def _from_csv(text: str, source: str) -> tuple[float, ...]:
    rows: list[tuple[float, float]] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].strip().startswith("#"):
            continue
        try:
            rows.append((float(row[0]), _rate(row[1], source)))
        except (ValueError, IndexError):
            if rows:
                raise TraceError(f"{source}: bad row {row!r}; expected 'seconds,rps'") from None
    if not rows:
        raise TraceError(f"{source}: no 'seconds,rps' rows found")
    rows.sort()
    end = int(rows[-1][0]) + 1
    out: list[float] = []
    index = 0
    for t in range(end):
        while index + 1 < len(rows) and rows[index + 1][0] <= t:
            index += 1
        out.append(rows[index][1] if rows[index][0] <= t else 0.0)
    return tuple(out)


def _rate(value: object, source: str) -> float:
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TraceError(f"{source}: request rate {value!r} is not a number") from None
    if rate < 0 or math.isnan(rate) or math.isinf(rate):
        raise TraceError(f"{source}: request rate {value!r} must be a finite number >= 0")
    return rate
