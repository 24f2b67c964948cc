"""Gates: conditions on the metrics a step reported.

Pure: no I/O. ``deployed`` values are looked up by the caller and passed in.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping

from mlkube.pipelines.state import GateResult
from mlkube.spec.pipeline import Gate

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
}


def gate_text(gate: Gate, deployed: float | None = None) -> str:
    """``accuracy >= 0.9``, or ``accuracy >= deployed (0.95)``."""
    if gate.value == "deployed":
        seen = f" ({deployed:.4g})" if deployed is not None else ""
        return f"{gate.metric} {gate.op} deployed{seen}"
    return f"{gate.metric} {gate.op} {gate.value:g}"


def judge(
    gate: Gate, metrics: Mapping[str, float], deployed: float | None, deployed_note: str = ""
) -> GateResult:
    """One gate against the step's ``metrics``.

    ``deployed``: the metric of the version the deployment serves now, None when there is
    none to compare (nothing registered is served, or it has no such metric): such a gate
    passes, so a first deploy is not blocked. ``deployed_note`` says which version was
    compared, or why none was.
    """
    actual = metrics.get(gate.metric)
    text = gate_text(gate, deployed)
    if actual is None:
        return GateResult(text, False, None, f"{gate.metric} was not reported")
    if gate.value == "deployed":
        if deployed is None:
            return GateResult(text, True, actual, deployed_note or "nothing deployed to compare")
        return GateResult(text, _OPS[gate.op](actual, deployed), actual, deployed_note)
    return GateResult(text, _OPS[gate.op](actual, float(gate.value)), actual)


def failure(results: list[GateResult]) -> str:
    """Why the gates stopped the run (empty when they all passed)."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return ""
    first = failed[0]
    if first.actual is None:
        return f"{first.text}: {first.note}"
    return f"{first.text} failed (got {first.actual:.4g})"
