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
from mlkube.autoscale.vpa import OomEvent, UsageSample
from mlkube.cli.output import print_data, print_info, print_status
from mlkube.clock import SystemClock
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
        # mkstemp creates 0600; a plot or report is an ordinary file (umask decides).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
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


TABLE_COLUMNS = (
    ("policy", "policy"),
    ("secondsOverSlo", "s over SLO"),
    ("replicaSeconds", "replica-s"),
    ("maxReplicas", "max"),
    ("meanReplicas", "mean"),
    ("maxBacklog", "backlog"),
    ("p99OfP95Ms", "p99 ms"),
    ("scaleChanges", "changes"),
)
"""Summary key → a header short enough for the table to fit 80 columns (-o json has the keys)."""


def _table(results: list[SimResult]) -> str:
    headers = [label for _, label in TABLE_COLUMNS]
    rows = [[_cell(r.summary()[key]) for key, _ in TABLE_COLUMNS] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
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
    source = _capacity_source(profile_path, capacity_rps)
    title = f"{deployment.name}: trace {name}, SLO p95 {model.slo_ms:.0f} ms"
    if profile_path is None and capacity_rps is None:
        title += " (built-in replica model)"
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
        print_data({**_simulation_json(results, model), "capacitySource": source}, "json")
    else:
        print_info(title)
        print_info(f"replica capacity at SLO {model.capacity_at_slo():.1f} req/s: {source}")
        if profile_path is None and capacity_rps is None:
            print_info(f"  measure yours: mlkube profile {spec} --out profile.json")
            print_info("  then: mlkube simulate ... --profile profile.json")
        print_info(_table(results))


def _capacity_source(profile_path: str | None, capacity_rps: float | None) -> str:
    """Where the replica model's capacity comes from, in words a user can act on."""
    if capacity_rps is not None:
        return "from --capacity-rps"
    if profile_path is not None:
        return f"measured: {profile_path}"
    return "a built-in default, not your model"


def _simulation_json(results: list[SimResult], model: ReplicaModel) -> dict[str, Any]:
    return {
        "model": {k: getattr(model, k) for k in model.__dataclass_fields__},
        "capacityAtSloRps": round(model.capacity_at_slo(), 3),
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
@click.argument("target", metavar="SPEC|NAME")
@click.option(
    "--samples",
    "samples_path",
    type=click.Path(dir_okay=False),
    help="With SPEC: usage samples JSON: {samples: [{t, cpuCores, memoryBytes, rps, "
    "latencyP95Ms}], ooms: [{t, memoryBytes}]}.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="With NAME: the spec file to rewrite with --apply (the controller keeps a snapshot "
    "of each revision, not the path of the file it came from).",
)
@click.option(
    "--since",
    type=click.FloatRange(min=0),
    help="With NAME: only samples from the last SECONDS [default: all kept, up to 8 days].",
)
@click.option(
    "--state-dir",
    default=None,
    envvar="MLKUBE_STATE_DIR",
    help="With NAME: where the local controller keeps its state [default: ~/.mlkube].",
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
    target: str,
    samples_path: str | None,
    spec_path: str | None,
    since: float | None,
    state_dir: str | None,
    profile_path: str | None,
    apply: bool,
    output: str,
) -> None:
    """Right-size a deployment from observed usage, the way the VPA recommender does.

    SPEC is a spec file, with --samples FILE. NAME is a deployment that 'mlkube up' runs:
    the local controller's recorded usage (CPU and RSS of every replica at every metrics
    scrape, OOM kills, request rate and p95) is used, and --apply needs --spec FILE.

    Requests come from decaying histograms (24 h half-life): p90 plus a 15% margin, with
    p50/p95 bounds widened by how much history there is; an OOM kill bumps memory. The
    suggested rps target keeps each replica at 70% of its capacity at the SLO.

    \b
    Example:
      mlkube recommend examples/iris/iris.yaml --samples usage.json --apply
      mlkube recommend iris -o json
      mlkube recommend iris --apply --spec examples/iris/iris.yaml
    """
    from mlkube.autoscale.rightsize import apply_to_yaml, observed, recommend

    if Path(target).is_file() or target.endswith(SPEC_SUFFIXES):
        spec_file, deployment, samples, ooms, source = _from_file(
            target, samples_path, spec_path, profile_path
        )
    else:
        spec_file, deployment, samples, ooms, source = _from_controller(
            target, samples_path, spec_path, since, state_dir, apply
        )
    rec = recommend(samples, ooms, deployment=deployment, slo_ms=slo_ms(deployment),
                    profile=_load_profile(profile_path), machine=_machine())  # fmt: skip
    data = rec.to_json()
    if source is not None:
        data["observed"] = {**source, **observed(samples), "ooms": len(ooms)}
    print_data(data, output)
    if apply and spec_file is not None:  # with a NAME, _from_controller required --spec
        text = Path(spec_file).read_text()
        updated = apply_to_yaml(text, rec)
        _check_spec_text(updated, spec_file)
        _write(spec_file, updated)
        print_status(f"updated {spec_file}")


def _machine() -> tuple[float, int]:
    """This machine's cores and memory: the ceiling of any bound worth printing."""
    import psutil

    return float(os.cpu_count() or 1), int(psutil.virtual_memory().total)


SPEC_SUFFIXES = (".yaml", ".yml", ".json")
"""A TARGET ending so is a spec file even when missing (a NAME never does): its error is
'no such file', not 'no controller'."""
_Inputs = tuple[
    str | None,
    ModelDeployment,
    tuple[UsageSample, ...],
    tuple[OomEvent, ...],
    dict[str, Any] | None,
]


def _from_file(
    spec: str, samples_path: str | None, spec_path: str | None, profile_path: str | None
) -> _Inputs:
    if spec_path is not None:
        raise MlkubeError(f"--spec is for a deployment NAME; '{spec}' is already a spec file")
    from mlkube.autoscale.rightsize import parse_samples, samples_from_profile

    if samples_path is None and profile_path is not None:
        profile = Profile.from_json(_read_json(profile_path, "profile"), profile_path)
        return spec, load_spec(spec), samples_from_profile(profile), (), None
    if samples_path is None:
        raise MlkubeError(
            f"'{spec}' is a spec file: give its usage with --samples FILE or a load test with "
            "--profile FILE (mlkube profile), or name a deployment that 'mlkube up' runs to use "
            "the samples its controller recorded"
        )

    samples, ooms = parse_samples(_read_json(samples_path, "samples file"), samples_path)
    return spec, load_spec(spec), samples, ooms, None


def _from_controller(
    name: str,
    samples_path: str | None,
    spec_path: str | None,
    since: float | None,
    state_dir: str | None,
    apply: bool,
) -> _Inputs:
    from urllib.parse import urlencode

    from mlkube.autoscale.rightsize import parse_samples
    from mlkube.backends.local.controller.api import Client
    from mlkube.backends.local.controller.settings import state_dir as resolve_state_dir

    if samples_path is not None:
        raise MlkubeError(
            f"--samples goes with a spec file, and '{name}' is not a file: with a deployment "
            "NAME the samples come from the running controller"
        )
    query = {"name": name, **({"since": str(SystemClock().wall() - since)} if since else {})}
    data = Client(resolve_state_dir(state_dir)).call("GET", f"/usage?{urlencode(query)}")
    deployment = ModelDeployment.model_validate(data["spec"])
    if not data["samples"]:
        raise MlkubeError(
            f"the controller has no usage samples for '{data['name']}' yet: it records one per "
            f"replica every {data['scrapePeriodSeconds']:g} s scrape; send it traffic and retry"
        )
    samples, ooms = parse_samples(data, f"usage of {data['name']}")
    if apply and spec_path is None:
        raise MlkubeError(
            f"--apply with a deployment NAME needs --spec FILE: the controller keeps a snapshot "
            f"of each revision and the folder it came from ({data['sourceDir']}), not the path "
            "of the spec file, so it cannot tell which file to rewrite"
        )
    if spec_path is not None:
        _same_deployment(spec_path, deployment)
    replicas = sorted({str(s["replica"]) for s in data["samples"]})
    source = {"deployment": data["name"], "revision": data["revision"], "replicas": replicas}
    return spec_path, deployment, samples, ooms, source


def _same_deployment(spec_path: str, running: ModelDeployment) -> None:
    """Refuse to rewrite a spec file of another deployment."""
    doc = load_spec(spec_path)
    if (doc.namespace, doc.name) != (running.namespace, running.name):
        raise MlkubeError(
            f"{spec_path} holds deployment '{doc.namespace}/{doc.name}', not the running "
            f"'{running.namespace}/{running.name}'; nothing written"
        )


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
    from mlkube.backends.local.profiler import ProfileSettings, free_port, run_profile

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
