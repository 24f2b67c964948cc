"""The commands a pipeline's pods run on the cluster (``python -m`` this module).

``render.pipelines`` puts them in the Tekton tasks / Argo templates; each prints one line per
thing it did and exits non-zero with one line saying why when it fails (the engine shows the
step as failed, with that line in its log):

- ``outputs``: after a job step's container, read its ``metrics.json`` and write each
  declared output as a file in the engine's folder (Tekton results, Argo output parameters):
  the metrics, ``outputDir``, and for a registered model ``modelName``, ``modelVersion`` (the
  run's name) and ``modelUri`` (``pvc://CLAIM/<run>/<step>/<file>``);
- ``gate``: check a step's metrics against its gates; fail with the reason;
- ``deploy``: ``mlkube apply`` of the target ModelDeployment pointed at the new model, wait
  for its rollout (a Canary's steps and analysis: the rollout driver, ticked here until the
  rollout ends); a failed or aborted rollout fails the step, and the old version serves;
- ``trigger``: server-side apply a PipelineRun named after the scheduled minute (the
  CronJob of a scheduled pipeline; a retried trigger pod does not start a second run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from mlkube.backends.base import RolloutStatus
from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.render.documents import render_deployment
from mlkube.backends.kubernetes.render.manifest import Manifest
from mlkube.clock import Clock, SystemClock
from mlkube.errors import MlkubeError
from mlkube.pipelines.gates import failure, judge
from mlkube.spec import ModelDeployment, parse_documents
from mlkube.spec.model import ModelFormat
from mlkube.spec.pipeline import Gate

DEPLOYED = "deployed"
ROLLOUT_TICK_S = 10.0
DONE_PHASES = ("Complete", "ABTest")


class StepFailedError(Exception):
    """A step's failure, said in one line."""


def _say(line: str) -> None:
    """One line of the step's log (stdout: the engine shows it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --- outputs ---------------------------------------------------------------------------------
def step_outputs(
    directory: Path,
    *,
    metrics_file: str,
    metrics: Sequence[str],
    step: str,
    run: str,
    claim: str | None,
    model: str | None,
    model_file: str | None,
) -> dict[str, str]:
    """The values of a job step's outputs, read from its output ``directory``."""
    out: dict[str, str] = {}
    base = f"pvc://{claim}/{run}/{step}" if claim else str(directory)
    out["outputDir"] = base
    if metrics:
        path = directory / metrics_file
        try:
            reported = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise StepFailedError(f"step '{step}': cannot read {metrics_file}: {error}") from error
        if not isinstance(reported, dict):
            raise StepFailedError(f"step '{step}': {metrics_file} is not a JSON object")
        for name in metrics:
            value = reported.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StepFailedError(
                    f"step '{step}': {metrics_file} has no number '{name}' (it promised it "
                    "in outputs)"
                )
            out[name] = repr(float(value))
    if model is not None and model_file is not None:
        if not (directory / model_file).exists():
            raise StepFailedError(f"step '{step}': the model file {model_file} was not written")
        out["modelName"] = model
        out["modelVersion"] = run
        out["modelUri"] = f"{base}/{model_file}"
    return out


def _outputs(args: argparse.Namespace) -> None:
    values = step_outputs(
        Path(args.dir),
        metrics_file=args.metrics_file,
        metrics=[m for m in args.metrics.split(",") if m],
        step=args.step,
        run=args.run,
        claim=args.claim,
        model=args.model,
        model_file=args.model_file,
    )
    target = Path(args.to)
    target.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (target / name).write_text(value, encoding="utf-8")
        _say(f"{name} = {value}")


# --- gate ------------------------------------------------------------------------------------
def parse_check(text: str) -> tuple[str, str, str]:
    """``accuracy>=0.95`` → (metric, op, threshold text)."""
    for op in (">=", "<=", "==", ">", "<"):
        metric, found, threshold = text.partition(op)
        if found and metric and threshold:
            return metric, op, threshold
    raise StepFailedError(f"not a gate: '{text}' (METRIC OP VALUE, e.g. accuracy>=0.95)")


NO_REGISTRY = (
    "no model registry on a cluster: the deployed version has no recorded metric to compare"
)


def gate_verdict(step: str, check: str, actual: str) -> tuple[bool, str]:
    """(passed, the line that says so), judged as the local runner judges
    (``mlkube.pipelines.gates``). Pure."""
    metric, op, threshold = parse_check(check)
    try:
        value = float(actual)
    except ValueError:
        return False, f"step '{step}': gate failed: {metric} is '{actual}', not a number"
    try:
        gate = Gate.model_validate({"metric": metric, "op": op, "value": threshold})
    except ValueError as error:
        raise StepFailedError(f"not a gate: '{check}': {error}") from error
    result = judge(gate, {metric: value}, None, NO_REGISTRY)
    if not result.passed:
        return False, f"step '{step}': gate failed: {failure([result])}"
    note = f": {result.note}" if result.note else ""
    return True, f"step '{step}': gate {result.text} passed ({value:g}){note}"


def _gate(args: argparse.Namespace) -> None:
    failed: list[str] = []
    for check, actual in args.check:
        passed, line = gate_verdict(args.step, check, actual)
        _say(line)
        if not passed:
            failed.append(line)
    if failed:
        raise StepFailedError("; ".join(failed) + "; the pipeline stops here")


# --- deploy ----------------------------------------------------------------------------------
def pointed_document(text: str, uri: str, fmt: str) -> ModelDeployment:
    """The ModelDeployment of ``text`` serving the model at ``uri``."""
    (document,) = parse_documents(text, "deployment.yaml")
    if not isinstance(document, ModelDeployment):
        raise StepFailedError(f"expected a ModelDeployment, found {document.kind}")
    model = document.spec.model.model_copy(update={"uri": uri, "format": ModelFormat(fmt)})
    return document.model_copy(update={"spec": document.spec.model_copy(update={"model": model})})


def deploy(
    backend: KubernetesBackend,
    document: ModelDeployment,
    *,
    timeout_s: float,
    clock: Clock,
    say: Callable[[str], None] | None = None,
) -> RolloutStatus:
    """Apply ``document``, wait for its Deployments, then tick a Canary's steps until the
    rollout ends; StepFailedError unless it completed."""
    say = say or _say
    data = document.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    data = {"apiVersion": document.api_version, "kind": document.kind, **data}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deployment.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
        report = backend.apply([str(path)])
    for warning in quiet_prune_warnings(report.warnings, document):
        say(f"warning: {warning}")
    for change in report.changes:
        say(f"{change.object} {change.action}")
    deadline = clock.monotonic() + timeout_s
    try:
        backend.wait_for_rollouts(report, timeout_s=timeout_s, report=say)
    except MlkubeError as error:
        raise StepFailedError(f"deployment '{document.name}': {error}") from error
    status = backend.rollout_status(document.name)
    shown = ""
    while status.phase == "Progressing":
        line = f"rollout: {status.phase} {status.reason}".rstrip()
        if line != shown:  # one line per change, as rollout status --watch
            say(line)
            shown = line
        if clock.monotonic() > deadline:
            raise StepFailedError(
                f"deployment '{document.name}': the rollout did not end within "
                f"{timeout_s:g}s ({status.phase} {status.reason})"
            )
        clock.sleep_blocking(ROLLOUT_TICK_S)
        status = backend.rollout_status(document.name)
    if status.phase not in DONE_PHASES:
        raise StepFailedError(
            f"deployment '{document.name}': the rollout ended {status.phase}: {status.reason} "
            "(the previous version keeps serving)"
        )
    say(f"deployment '{document.name}' serves {document.spec.model.uri} ({status.phase})")
    return status


def quiet_prune_warnings(warnings: Sequence[str], document: ModelDeployment) -> list[str]:
    """``warnings`` without "not pruning KIND objects: forbidden" for the kinds the step's
    Role leaves out on purpose (it allows only the kinds ``document`` renders), and one line
    saying so instead. Pure."""
    managed = {obj["kind"] for obj in render_deployment(document).objects}
    kept: list[str] = []
    skipped = 0
    for warning in warnings:
        kind = warning.removeprefix("not pruning ").split(" ", 1)[0]
        if warning.startswith("not pruning ") and kind not in managed:
            skipped += 1
            continue
        kept.append(warning)
    if skipped:
        kept.append(
            f"prune looked only at the {len(managed)} kinds this deployment renders (the "
            f"step's Role allows no other; {skipped} kinds not listed)"
        )
    return kept


def _deploy(args: argparse.Namespace) -> None:
    text = Path(args.file).read_text(encoding="utf-8")
    document = pointed_document(text, args.model_uri, args.format)
    # a Canary's analysis queries the cluster's Prometheus, as the in-cluster controller does
    analysis = document.spec.rollout.analysis is not None
    url = document.spec.kubernetes.prometheus_url if analysis else None
    backend = KubernetesBackend(namespace=document.namespace, prometheus_url=url)
    deploy(backend, document, timeout_s=float(args.timeout), clock=SystemClock())


# --- trigger ---------------------------------------------------------------------------------
def scheduled_run(template: Manifest, now: dt.datetime) -> Manifest:
    """The run ``template`` named ``<name>-<YYYYmmddHHMM>`` (UTC). Pure."""
    meta = dict(template["metadata"])
    meta["name"] = f"{meta['name']}-{now.astimezone(dt.UTC):%Y%m%d%H%M}"
    return {**template, "metadata": meta}


def _trigger(args: argparse.Namespace) -> None:
    template = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
    run = scheduled_run(template, dt.datetime.now(dt.UTC))
    cluster = Cluster(Target())
    try:
        cluster.apply(run, dry_run=False, force=False)
    finally:
        cluster.close()
    meta = run["metadata"]
    _say(f"{run['kind']}/{meta['name']} in {meta['namespace']} applied")


# --- entry -----------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    outputs = commands.add_parser("outputs", help="write a job step's outputs")
    outputs.add_argument("--dir", required=True)
    outputs.add_argument("--to", required=True)
    outputs.add_argument("--metrics-file", default="metrics.json")
    outputs.add_argument("--metrics", default="")
    outputs.add_argument("--step", required=True)
    outputs.add_argument("--run", required=True)
    outputs.add_argument("--claim")
    outputs.add_argument("--model")
    outputs.add_argument("--model-file")
    outputs.set_defaults(run_command=_outputs)
    gate = commands.add_parser("gate", help="check a step's gates")
    gate.add_argument("--step", required=True)
    gate.add_argument("--check", nargs=2, action="append", required=True, metavar=("GATE", "VALUE"))
    gate.set_defaults(run_command=_gate)
    deploy_command = commands.add_parser("deploy", help="roll the new model out")
    deploy_command.add_argument("file")
    deploy_command.add_argument("--model-uri", required=True)
    deploy_command.add_argument("--format", required=True)
    deploy_command.add_argument("--timeout", type=float, default=600.0)
    deploy_command.set_defaults(run_command=_deploy)
    trigger = commands.add_parser("trigger", help="start a scheduled run")
    trigger.add_argument("file")
    trigger.set_defaults(run_command=_trigger)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run_command(args)
    except (StepFailedError, MlkubeError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - the pods' entry point
    sys.exit(main())
