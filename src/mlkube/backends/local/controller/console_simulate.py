"""The console's simulate page: ``mlkube simulate``'s code on a running deployment's spec.

The same replica model (``model_from``, the built-in one: no profile), the same traces and
policy presets as the CLI; the answer is the per-second series the page charts, not a PNG
(matplotlib is an optional extra and slow to import in the controller).
"""

from __future__ import annotations

from typing import Any

from mlkube.autoscale import presets, traces
from mlkube.autoscale.profile import model_from
from mlkube.autoscale.simulator import simulate
from mlkube.errors import MlkubeError
from mlkube.spec.deployment import ModelDeployment


def input_problem(trace: str, policies: list[str]) -> str | None:
    """What is wrong with a simulate request's trace or policies, or None. Pure."""
    if trace not in traces.BUILTIN:
        return f"unknown trace '{trace}'; built-in traces are {', '.join(traces.BUILTIN)}"
    unknown = [p for p in policies if p not in presets.NAMES]
    if unknown or not policies:
        named = ", ".join(unknown) or "(none)"
        return f"unknown policy '{named}'; policies are {', '.join(presets.NAMES)}"
    return None


def run_simulation(doc: ModelDeployment, trace: str, policies: list[str]) -> dict[str, Any]:
    """Each policy on the built-in ``trace``: summaries, series and decisions (JSON)."""
    problem = input_problem(trace, policies)
    if problem is not None:
        raise MlkubeError(problem)
    model = model_from(doc)
    rates = traces.builtin(trace, model.capacity_at_slo())
    results = [
        simulate(presets.policy(p, model, doc.spec.autoscaling), rates, model, trace=trace)
        for p in policies
    ]
    return {
        "title": f"{doc.name}: trace {trace}, SLO p95 {model.slo_ms:.0f} ms "
        "(built-in replica model)",
        "capacityAtSlo": round(model.capacity_at_slo(), 2),
        "sloMs": model.slo_ms,
        "traces": list(traces.BUILTIN),
        "policies": list(presets.NAMES),
        "results": [
            {
                "summary": r.summary(),
                "t": [s.t for s in r.seconds],
                "rate": [round(s.rate, 3) for s in r.seconds],
                "replicas": [s.replicas for s in r.seconds],
                "p95Ms": [round(s.p95_ms, 1) for s in r.seconds],
                "decisions": [list(d) for d in r.decisions],
            }
            for r in results
        ],
    }
