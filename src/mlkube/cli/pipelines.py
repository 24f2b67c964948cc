"""``mlkube pipeline run|status|history|logs``: train → evaluate → gate → deploy, locally.

A pipeline runs in the local controller (started when none runs): its steps are jobs of the
controller's queue, its deploy step a rollout of a running ModelDeployment. ``run --wait``
follows the run step by step and exits 1 unless it succeeded (a gate that stopped it
included). docs/pipelines.md has the whole story.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from mlkube.backends.local.backend import LocalBackend
from mlkube.cli.output import print_info
from mlkube.cli.targets import state_dir_option
from mlkube.clock import SystemClock
from mlkube.errors import BackendError
from mlkube.spec.loading import load_documents
from mlkube.spec.pipeline import Pipeline

WIDTH = 80
EVENTS_SHOWN = 5
FINISHED = ("Succeeded", "Failed", "Stopped")


@click.group()
def pipeline() -> None:
    """Pipelines: steps run as jobs, gates on their metrics, then a rollout.

    \b
    Examples:
      mlkube pipeline run examples/iris-pipeline/pipeline.yaml --wait
      mlkube pipeline status iris
    """


@pipeline.command("run")
@click.argument("file", type=click.Path(exists=True))
@click.option("--no-cache", is_flag=True, help="Run every step, even those whose inputs match.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 1 unless it succeeds.")
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after this many seconds."
)
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between looks."
)
@state_dir_option
def run_command(
    file: str,
    no_cache: bool,
    wait: bool,
    timeout: float | None,
    interval: float,
    state_dir: str | None,
) -> None:
    """Run the Pipeline in FILE now, in the local controller.

    Steps whose inputs (spec, code, parameters, upstream outputs, watched data) match an
    earlier run reuse its outputs (Cached) unless --no-cache is given.

    \b
    Examples:
      mlkube pipeline run examples/iris-pipeline/pipeline.yaml
      mlkube pipeline run examples/iris-pipeline/pipeline.yaml --wait --no-cache
    """
    path = str(Path(file).resolve())
    if not any(isinstance(d, Pipeline) for d in load_documents(path)):  # spec errors: exit 2
        raise BackendError(f"{file} holds no Pipeline (mlkube run takes TrainingJobs)")
    backend = LocalBackend(state_dir)
    backend.ensure_controller()
    with backend.session() as client:
        answer = client.call("POST", "/pipelines/run", {"paths": [path], "noCache": no_cache})
    failed = False
    for result in answer["results"]:
        print_info(f"pipeline/{result['name']} run {result['run']} started")
        if wait:
            row = follow(backend, result["name"], int(result["run"]), timeout, interval)
            failed = failed or row["run"]["phase"] != "Succeeded"
    if failed:
        raise SystemExit(1)


@pipeline.command()
@click.argument("name")
@click.option("--run", "run_number", type=int, default=None, help="This run [default: latest].")
@state_dir_option
def status(name: str, run_number: int | None, state_dir: str | None) -> None:
    """The DAG of a pipeline's run: each step's state, time, cache hit and gates.

    \b
    Examples:
      mlkube pipeline status iris
      mlkube pipeline status iris --run 1
    """
    row = _get(LocalBackend(state_dir), name, run_number)
    for line in status_lines(row, now=SystemClock().wall()):
        print_info(line)


@pipeline.command()
@click.argument("name")
@state_dir_option
def history(name: str, state_dir: str | None) -> None:
    """The kept runs of a pipeline, newest first.

    \b
    Examples:
      mlkube pipeline history iris
    """
    with LocalBackend(state_dir).session() as client:
        runs = client.call("GET", f"/pipelines/history?name={quote(name)}")["runs"]
    for line in history_lines(runs):
        print_info(line)


@pipeline.command()
@click.argument("name")
@click.option("--step", default=None, help="Only this step [default: every step].")
@state_dir_option
def logs(name: str, step: str | None, state_dir: str | None) -> None:
    """The log of each step's job in the latest run (worker 0).

    \b
    Examples:
      mlkube pipeline logs iris
      mlkube pipeline logs iris --step evaluate
    """
    query = f"name={quote(name)}" + (f"&step={quote(step)}" if step else "")
    with LocalBackend(state_dir).session() as client:
        steps = client.call("GET", f"/pipelines/logs?{query}")["steps"]
    for entry in steps:
        if len(steps) > 1:
            print_info(f"== {entry['step']} ==")
        if entry["note"]:
            print_info(f"({entry['note']})")
        if not entry["file"]:
            continue
        try:
            with Path(entry["file"]).open("rb") as log:
                log.seek(int(entry.get("offset", 0)))  # this run's part of the job's log
                text = log.read().decode("utf-8", "replace")
        except OSError:
            print_info("(no log yet)")
            continue
        for line in text.splitlines():
            print_info(line)


def _get(backend: LocalBackend, name: str, run_number: int | None) -> dict[str, Any]:
    query = f"name={quote(name)}" + (f"&run={run_number}" if run_number else "")
    with backend.session() as client:
        row: dict[str, Any] = client.call("GET", f"/pipelines?{query}")
    return row


def follow(
    backend: LocalBackend, name: str, number: int, timeout_s: float | None, interval_s: float
) -> dict[str, Any]:
    """Print each step's state changes until the run ends, then its status."""
    clock = SystemClock()
    deadline = None if timeout_s is None else clock.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        row = _get(backend, name, number)
        run = row["run"]
        for step in run["steps"]:
            if seen.get(step["name"]) != step["phase"] and step["phase"] != "Pending":
                seen[step["name"]] = step["phase"]
                why = f": {step['reason']}" if step["reason"] and step["phase"] != "Running" else ""
                print_info(_cut(f"  {step['name']}: {step['phase']}{why}"))
        if run["phase"] in FINISHED:
            print_info(run_line(run))
            return row
        if deadline is not None and clock.monotonic() > deadline:
            raise BackendError(f"pipeline '{name}' run {number} still running after {timeout_s:g}s")
        clock.sleep_blocking(interval_s)


def run_line(run: dict[str, Any]) -> str:
    """``run 2 Succeeded in 41s (manual); 3/4 steps cached``, within 80 columns."""
    took = ""
    if run.get("finishedAt") is not None:
        took = f" in {_age(run['finishedAt'] - run['startedAt'])}"
    cached = sum(1 for s in run["steps"] if s["phase"] == "Cached")
    text = f"run {run['number']} {run['phase']}{took} ({run['trigger']}); "
    text += f"{cached}/{len(run['steps'])} steps cached"
    if run.get("reason"):
        text += f"; {run['reason']}"
    return _cut(text)


STATUS_HEADER = f"{'STEP':<22} {'STATE':<10} {'TIME':>5}  {'CACHE':<5}  AFTER"


def status_lines(row: dict[str, Any], *, now: float) -> list[str]:
    """``mlkube pipeline status``: the run, then the DAG (a step indented below what it
    depends on) with each step's details; every line within 80 columns."""
    lines = [f"pipeline {row['namespace']}/{row['name']}"]
    if row.get("schedule"):
        when = ""
        if row.get("nextScheduled"):
            stamp = dt.datetime.fromtimestamp(row["nextScheduled"], dt.UTC)
            when = f" (next {stamp:%Y-%m-%d %H:%M} UTC)"
        lines.append(f"schedule {row['schedule']}{when}")
    if row.get("watch"):
        lines.append("watching " + ", ".join(row["watch"]))
    run = row.get("run")
    if run is None:
        lines.append("no run yet (mlkube pipeline run FILE)")
        return [_cut(line) for line in lines]
    lines.append(run_line(run))
    lines.append(STATUS_HEADER)
    depth = _depths(row["steps"])
    after = {s["name"]: s["dependsOn"] for s in row["steps"]}
    for step in run["steps"]:
        name = step["name"]
        shown = ("  " * depth.get(name, 0) + name)[:22]
        took = _step_time(step, now)
        cache = "-" if not step.get("cacheKey") else ("hit" if step["cacheHit"] else "miss")
        lines.append(
            f"{shown:<22} {step['phase']:<10} {took:>5}  {cache:<5}  "
            + (", ".join(after.get(name, [])) or "-")
        )
        lines.extend(_details(step))
    events = row.get("events") or []
    if events:
        lines.append("EVENTS (latest)")
        for event in events[-EVENTS_SHOWN:]:
            stamp = dt.datetime.fromtimestamp(event["ts"], dt.UTC)
            lines.append(f"  {stamp:%H:%M:%S} {event['reason']}: {event['message']}")
    return [_cut(line) for line in lines]


def _details(step: dict[str, Any]) -> list[str]:
    out = []
    outputs = step.get("outputs") or {}
    if outputs.get("modelUri"):
        out.append(f"    model {outputs['modelUri']}")
    for gate in step.get("gates") or []:
        verdict = "pass" if gate["passed"] else "FAIL"
        seen = f" (got {gate['actual']:.4g})" if gate["actual"] is not None else ""
        note = f"; {gate['note']}" if gate.get("note") else ""
        out.append(f"    gate {gate['text']}: {verdict}{seen}{note}")
    if step.get("reason") and not step.get("gates") and step["phase"] != "Running":
        out.append(f"    {step['reason']}")
    if step.get("attempts", 0) > 1:
        out.append(f"    {step['attempts']} attempts")
    return out


def _depths(steps: list[dict[str, Any]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for step in steps:  # the controller lists them dependencies first
        depth[step["name"]] = 1 + max((depth.get(d, 0) for d in step["dependsOn"]), default=-1)
    return depth


def _step_time(step: dict[str, Any], now: float) -> str:
    start = step.get("startedAt")
    if start is None:
        return "-"
    end = step.get("finishedAt") or now
    return _age(end - start)


HISTORY_HEADER = (
    f"{'RUN':>4}  {'STATE':<10} {'TRIGGER':<8} {'STARTED (UTC)':<16} {'TOOK':>5}  CACHED"
)


def history_lines(runs: list[dict[str, Any]]) -> list[str]:
    """``mlkube pipeline history``: one line per run, within 80 columns."""
    lines = [HISTORY_HEADER]
    for run in runs:
        started = dt.datetime.fromtimestamp(run["startedAt"], dt.UTC)
        took = _age(run["finishedAt"] - run["startedAt"]) if run.get("finishedAt") else "-"
        line = (
            f"{run['number']:>4}  {run['phase']:<10} {run['trigger']:<8} "
            f"{started:%Y-%m-%d %H:%M} {took:>5}  {run['cached']}/{run['stepCount']}"
        )
        if run.get("reason"):
            line += f"  {run['reason']}"
        lines.append(_cut(line))
    if not runs:
        lines.append("no run yet")
    return lines


def _cut(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


COMMANDS: list[click.Command] = [pipeline]
