"""Benchmark the default mlkube autoscaling policy against HPA at 70% CPU.

    python bench/autoscale.py [--startup 5] [--profile profile.json]

Replays the built-in traces (step, spike, diurnal, sawtooth) through the simulator with both
policies on the same replica model, prints a table, and writes ``bench/results/autoscale.json``.
The beat-HPA criterion: at most half the seconds over the SLO, for no more replica-seconds.
A start-up sensitivity sweep shows where the criterion stops holding.

A short real local run (``mlkube up`` + a load generator, both policies) belongs in
``real_local_run`` below; it is not implemented until the local backend's autoscaler loop
exposes a policy switch, and the JSON says so instead of inventing numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlkube.autoscale import presets, traces
from mlkube.autoscale.profile import Profile, model_from
from mlkube.autoscale.simulator import ReplicaModel, simulate

RESULTS = Path(__file__).parent / "results" / "autoscale.json"
SWEEP_STARTUPS = (2.0, 5.0, 10.0, 20.0)


def compare(model: ReplicaModel) -> list[dict[str, Any]]:
    rows = []
    for trace in traces.BUILTIN:
        rates = traces.builtin(trace, model.capacity_at_slo())
        ours = simulate(presets.policy("mlkube", model, None), rates, model, trace=trace)
        hpa = simulate(presets.policy("hpa-cpu70", model, None), rates, model, trace=trace)
        rows.append(
            {
                "trace": trace,
                "mlkube": ours.summary(),
                "hpaCpu70": hpa.summary(),
                "sloSecondsRatio": _ratio(ours.seconds_over_slo, hpa.seconds_over_slo),
                "replicaSecondsRatio": ours.replica_seconds / hpa.replica_seconds,
                "beatsHpa": ours.seconds_over_slo * 2 <= hpa.seconds_over_slo
                and ours.replica_seconds <= hpa.replica_seconds,
            }
        )
    return rows


def _ratio(a: float, b: float) -> float | None:
    if b == 0:
        return 0.0 if a == 0 else None
    return a / b


def real_local_run() -> dict[str, Any]:
    """Hook for the short real run on the local backend (not implemented yet)."""
    return {
        "status": "not run",
        "why": "the local backend's autoscaler loop does not yet take a policy switch; "
        "wire mlkube up + a bounded load generator here when it does",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup", type=float, default=None, help="replica start-up seconds")
    parser.add_argument("--profile", help="profile JSON from 'mlkube profile'")
    args = parser.parse_args()
    profile = None
    if args.profile:
        profile = Profile.from_json(json.loads(Path(args.profile).read_text()), args.profile)
    model = model_from(None, profile)
    if args.startup is not None:
        model = replace(model, startup_s=args.startup)
    rows = compare(model)
    print(
        f"replica model: capacity {model.capacity_rps:.1f} req/s, "
        f"at SLO {model.capacity_at_slo():.1f}, start-up {model.startup_s:.1f}s, "
        f"SLO p95 {model.slo_ms:.0f} ms"
    )
    header = f"{'trace':9} {'policy':10} {'s over SLO':>10} {'replica-s':>10} {'max':>4}  verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        for key, label in (("mlkube", "mlkube"), ("hpaCpu70", "hpa-cpu70")):
            s = row[key]
            verdict = (
                ("beats HPA" if row["beatsHpa"] else "DOES NOT beat HPA") if key == "mlkube" else ""
            )
            print(
                f"{row['trace']:9} {label:10} {s['secondsOverSlo']:>10} "
                f"{s['replicaSeconds']:>10.0f} {s['maxReplicas']:>4}  {verdict}"
            )
    sweep = []
    for startup in SWEEP_STARTUPS:
        swept = compare(replace(model, startup_s=startup))
        per_trace = {
            r["trace"]: {
                "mlkubeSecondsOverSlo": r["mlkube"]["secondsOverSlo"],
                "hpaSecondsOverSlo": r["hpaCpu70"]["secondsOverSlo"],
                "replicaSecondsRatio": round(r["replicaSecondsRatio"], 3),
            }
            for r in swept
        }
        sweep.append(
            {
                "startupSeconds": startup,
                "allBeatHpa": all(r["beatsHpa"] for r in swept),
                "traces": per_trace,
            }
        )
    print(
        "start-up sweep:",
        ", ".join(
            f"{s['startupSeconds']:.0f}s {'ok' if s['allBeatHpa'] else 'FAILS'}" for s in sweep
        ),
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "autoscale",
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "model": {k: getattr(model, k) for k in model.__dataclass_fields__},
                "capacityAtSloRps": model.capacity_at_slo(),
                "simulated": rows,
                "startupSweep": sweep,
                "realLocalRun": real_local_run(),
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")
    return 0 if all(r["beatsHpa"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
