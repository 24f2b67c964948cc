"""``mlkube simulate``, ``mlkube recommend`` and ``mlkube profile``: thin wrappers.

The work happens in ``mlkube.autoscale``; this module reads and writes files and prints.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from mlkube.autoscale import presets, traces
from mlkube.autoscale.profile import Profile, ProfileError, model_from, slo_ms
from mlkube.autoscale.simulator import ReplicaModel, SimResult, simulate
from mlkube.cli.output import print_data, print_info, print_status
from mlkube.errors import MlkubeError
from mlkube.spec import ModelDeployment, load_spec


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise MlkubeError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise MlkubeError(f"{what} {path} is not valid JSON: {exc}") from exc


def _load_profile(path: str | None) -> Profile | None:
    if path is None:
        return None
    return Profile.from_json(_read_json(path, "profile"), path)


def _write(path: str, data: bytes | str) -> None:
    """Write atomically: a temporary file beside the target, then rename."""
    target = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rates(trace: str, model: ReplicaModel) -> tuple[str, tuple[float, ...]]:
    if trace in traces.BUILTIN:
        return trace, traces.builtin(trace, model.capacity_at_slo())
    try:
        text = Path(trace).read_text()
    except OSError as exc:
        raise traces.TraceError(
            f"'{trace}' is neither a built-in trace ({', '.join(traces.BUILTIN)}) "
            f"nor a readable file: {exc.strerror}"
        ) from exc
    return Path(trace).stem, traces.parse_trace(text, trace)


def _table(results: list[SimResult]) -> str:
    columns = ("policy", "secondsOverSlo", "replicaSeconds", "maxReplicas", "meanReplicas",
               "maxBacklog", "p99OfP95Ms", "scaleChanges")  # fmt: skip
    rows = [[_cell(r.summary()[c]) for c in columns] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@click.command("simulate")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--trace",
    "trace",
    default="spike",
    show_default=True,
    help=f"A trace file (JSON or CSV seconds,rps) or a built-in: {', '.join(traces.BUILTIN)}.",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    help=f"Policies side by side (repeatable): {', '.join(presets.NAMES)} "
    "[default: mlkube and hpa-cpu70].",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    help="A profile JSON from 'mlkube profile' for the replica model.",
)
@click.option(
    "--capacity-rps",
    type=click.FloatRange(min=0, min_open=True),
    help="Override: most req/s per replica.",
)
@click.option(
    "--startup",
    type=click.FloatRange(min=0),
    help="Override: seconds for a replica to become ready.",
)
@click.option(
    "--cpu-per-request", type=click.FloatRange(min=0), help="Override: core-seconds per request."
)
@click.option(
    "--slo-ms", type=click.FloatRange(min=0, min_open=True), help="Override: the p95 latency SLO."
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG figure.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write an HTML report.")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def simulate_command(
    spec: str,
    trace: str,
    policies: tuple[str, ...],
    profile_path: str | None,
    capacity_rps: float | None,
    startup: float | None,
    cpu_per_request: float | None,
    slo_ms: float | None,
    plot_path: str | None,
    html_path: str | None,
    output: str,
) -> None:
    """Replay a request-rate trace through a replica model and autoscaling policies.

    Reports, per policy, the seconds whose p95 latency was over the SLO and the
    replica-seconds spent. 'hpa-cpu70' is plain HPA at 70% CPU with 1-3 replicas, as the
    Kubernetes-for-ML guide configures it; 'spec' is the spec's own autoscaling section.

    \b
    Example:
      mlkube simulate examples/iris/iris.yaml --trace spike --plot spike.png
      mlkube simulate spec.yaml --trace load.csv --policy mlkube --policy spec -o json
    """
    deployment = load_spec(spec)
    overrides = {k: v for k, v in (("capacity_rps", capacity_rps), ("startup_s", startup),
                                   ("cpu_per_request", cpu_per_request), ("slo_ms", slo_ms))
                 if v is not None}  # fmt: skip
    model = model_from(deployment, _load_profile(profile_path), **overrides)
    name, rates = _rates(trace, model)
    chosen = policies or ("mlkube", "hpa-cpu70")
    autoscaling = deployment.spec.autoscaling
    results = [
        simulate(presets.policy(p, model, autoscaling), rates, model, trace=name) for p in chosen
    ]
    title = f"{deployment.name}: trace {name}, SLO p95 {model.slo_ms:.0f} ms"
    if plot_path or html_path:
        from mlkube.autoscale.plot import render_html, render_png

        png = render_png(results, model, title)
        if plot_path:
            _write(plot_path, png)
            print_status(f"wrote {plot_path}")
        if html_path:
            _write(html_path, render_html(results, png, title))
            print_status(f"wrote {html_path}")
    if output == "json":
        print_data(_simulation_json(results, model), "json")
    else:
        print_info(f"{title}; replica capacity at SLO {model.capacity_at_slo():.1f} req/s")
        print_info(_table(results))


def _simulation_json(results: list[SimResult], model: ReplicaModel) -> dict[str, Any]:
    return {
        "model": {k: getattr(model, k) for k in model.__dataclass_fields__},
        "capacityAtSloRps": model.capacity_at_slo(),
        "results": [
            {
                **r.summary(),
                "timeline": {
                    "t": [s.t for s in r.seconds],
                    "rps": [round(s.rate, 3) for s in r.seconds],
                    "replicas": [s.replicas for s in r.seconds],
                    "ready": [s.ready for s in r.seconds],
                    "p95Ms": [round(s.p95_ms, 1) for s in r.seconds],
                    "backlog": [round(s.backlog, 2) for s in r.seconds],
                },
                "decisions": [{"t": t, "replicas": n, "reason": why} for t, n, why in r.decisions],
            }
            for r in results
        ],
    }


@click.command("recommend")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--samples",
    "samples_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Usage samples JSON: {samples: [{t, cpuCores, memoryBytes, rps, latencyP95Ms}], "
    "ooms: [{t, memoryBytes}]}.",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    help="A profile JSON from 'mlkube profile' (capacity at the SLO for the target).",
)
@click.option(
    "--apply", "apply", is_flag=True, help="Write requests, limits and the rps target into SPEC."
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
def recommend_command(
    spec: str, samples_path: str, profile_path: str | None, apply: bool, output: str
) -> None:
    """Right-size a deployment from observed usage, the way the VPA recommender does.

    Requests come from decaying histograms (24 h half-life): p90 plus a 15% margin, with
    p50/p95 bounds widened by how much history there is; an OOM kill bumps memory. The
    suggested rps target keeps each replica at 70% of its capacity at the SLO.

    \b
    Example:
      mlkube recommend examples/iris/iris.yaml --samples usage.json
      mlkube recommend examples/iris/iris.yaml --samples usage.json --apply
    """
    from mlkube.autoscale.rightsize import apply_to_yaml, parse_samples, recommend

    deployment = load_spec(spec)
    samples, ooms = parse_samples(_read_json(samples_path, "samples file"), samples_path)
    rec = recommend(samples, ooms, deployment=deployment, slo_ms=slo_ms(deployment),
                    profile=_load_profile(profile_path))  # fmt: skip
    print_data(rec.to_json(), output)
    if apply:
        text = Path(spec).read_text()
        updated = apply_to_yaml(text, rec)
        _check_spec_text(updated, spec)
        _write(spec, updated)
        print_status(f"updated {spec}")


def _check_spec_text(text: str, path: str) -> None:
    """Refuse to write a spec that would no longer validate."""
    from mlkube.spec import parse_documents

    documents = parse_documents(text, source=path)
    if not any(isinstance(d, ModelDeployment) for d in documents):
        raise MlkubeError(f"{path}: the updated spec lost its ModelDeployment; nothing written")


@click.command("profile")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out_path", default="profile.json", show_default=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 [default: a free one].",
)
@click.option(
    "--step-seconds",
    type=click.FloatRange(0.5, 60),
    default=3.0,
    show_default=True,
    help="Load duration at each concurrency level.",
)
@click.option("--max-concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option(
    "--timeout",
    "timeout",
    type=click.FloatRange(5, 900),
    default=120.0,
    show_default=True,
    help="Bound on the whole load test, in seconds.",
)
def profile_command(
    spec: str, out_path: str, port: int, step_seconds: float, max_concurrency: int, timeout: float
) -> None:
    """Load-test one local replica on 127.0.0.1 and write its profile for 'mlkube simulate'.

    Starts 'python -m mlkube serve SPEC', measures start-up time, then drives rising
    concurrency (1, 2, 4, ...) for a few seconds each: throughput, p50/p95 latency, CPU and
    memory of the replica's processes. Bounded in time and in requests per step.

    \b
    Example:
      mlkube profile examples/iris/iris.yaml --out iris-profile.json
      mlkube simulate examples/iris/iris.yaml --profile iris-profile.json --trace spike
    """
    from mlkube.autoscale.profiler import ProfileSettings, free_port, run_profile

    deployment = load_spec(spec)
    port = port or free_port()
    levels = tuple(c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256) if c <= max_concurrency)
    settings = ProfileSettings(
        slo_ms=slo_ms(deployment), concurrency_levels=levels, step_seconds=step_seconds,
        startup_timeout_s=timeout, total_timeout_s=timeout,
    )  # fmt: skip
    command = [sys.executable, "-m", "mlkube", "serve", spec, "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    print_status(f"profiling {deployment.name} on 127.0.0.1:{port} ...")
    result = run_profile(command, deployment.model_name, port, settings)
    _write(out_path, json.dumps(result.to_json(), indent=2))
    print_status(f"wrote {out_path}")
    print_data(result.to_json(), "yaml")


COMMANDS = [simulate_command, recommend_command, profile_command]

__all__ = ["COMMANDS", "ProfileError"]
