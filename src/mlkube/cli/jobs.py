"""``mlkube run``, ``mlkube jobs`` and ``mlkube cancel``: jobs that run to completion.

A job is queued by priority and quota (locally by the controller, on a cluster by the Job
controller or Kueue); ``run --wait`` follows it: its phase changes and worker 0's log lines
as they come, then the outcome, its metrics and the model version it registered.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

import click

from mlkube.backends.base import Backend, JobRow
from mlkube.cli.deployments import OUTPUT_FORMATS
from mlkube.cli.output import print_data, print_info, print_warning
from mlkube.cli.targets import backend_options
from mlkube.clock import SystemClock
from mlkube.errors import BackendError

FINISHED = ("Succeeded", "Failed", "Cancelled")
WIDTH = 80


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--wait", is_flag=True, help="Follow the job: phases and worker 0's log.")
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after this many seconds."
)
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between looks."
)
@backend_options
def run(
    files: tuple[str, ...], wait: bool, timeout: float | None, interval: float, backend: Backend
) -> None:
    """Submit the jobs in FILES (TrainingJob, BatchInference) to their queue.

    A job waits until all its workers fit (machine and namespace quota), higher priority
    first; with --wait the command exits 0 when the job succeeds and 1 when it fails.

    \b
    Examples:
      mlkube run train.yaml
      mlkube run train.yaml --wait
      mlkube run train.yaml --target kubernetes -n ml
    """
    report = backend.submit(list(files))
    for change in report.changes:
        print_info(f"{change.object.kind.lower()}/{change.object.name} {change.action}")
    for warning in report.warnings:
        print_warning(warning)
    if not wait:
        return
    failed = False
    for change in report.changes:
        row = follow(backend, change.object.name, timeout_s=timeout, interval_s=interval)
        print_info(outcome_line(row))
        failed = failed or row.phase != "Succeeded"
    if failed:
        raise SystemExit(1)


@click.command()
@click.argument("name", required=False)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@backend_options
def jobs(name: str | None, output: str, backend: Backend) -> None:
    """The jobs: queued ones in admission order with why they wait, then the rest.

    \b
    Examples:
      mlkube jobs
      mlkube jobs train-iris -o yaml
    """
    rows = backend.jobs(name)
    if output != "table":
        document: list[dict[str, Any]] = [asdict(row) for row in rows]
        print_data(document, output)
        return
    now = SystemClock().wall()
    print_info(JOBS_HEADER)
    for row in rows:
        print_info(job_line(row, now=now))


@click.command()
@click.argument("name")
@backend_options
def cancel(name: str, backend: Backend) -> None:
    """Stop a queued or running job (its workers get SIGTERM, then the grace period).

    \b
    Examples:
      mlkube cancel train-iris
    """
    row = backend.cancel(name)
    print_info(f"job/{row.name}: {row.phase}")


JOBS_HEADER = f"{'NAME':<20} {'STATE':<10} {'WORKERS':>7} {'PRIO':>5} {'AGE':>6}  REASON"


def job_line(row: JobRow, *, now: float) -> str:
    """One row of ``mlkube jobs``, within 80 columns."""
    age = _age(now - row.submitted)
    start = f"{row.name[:20]:<20} {row.phase:<10} {row.workers:>7} {row.priority:>5} {age:>6}  "
    room = WIDTH - len(start)
    reason = row.reason if len(row.reason) <= room else row.reason[: room - 1] + "…"
    return (start + reason).rstrip()


def outcome_line(row: JobRow) -> str:
    """``job train-iris Succeeded in 42s; loss=0.012; model iris/3``."""
    parts = [f"job {row.name} {row.phase}"]
    if row.started is not None and row.finished is not None:
        parts[0] += f" in {_age(row.finished - row.started)}"
    if row.restarts or row.preemptions:
        parts.append(f"{row.restarts} restart(s), {row.preemptions} preemption(s)")
    if row.phase != "Succeeded" and row.reason:
        parts.append(row.reason)
    if row.metrics:
        parts.append(", ".join(f"{k}={v:.4g}" for k, v in row.metrics))
    if row.model_version:
        parts.append(f"model {row.model_version}")
    return "; ".join(parts)


def follow(backend: Backend, name: str, *, timeout_s: float | None, interval_s: float) -> JobRow:
    """Print the job's phase changes and worker 0's new log lines until it finishes."""
    clock = SystemClock()
    deadline = None if timeout_s is None else clock.monotonic() + timeout_s
    phase, printed = "", 0
    while True:
        (row,) = backend.jobs(name)
        if row.phase != phase:
            phase = row.phase
            why = f" ({row.reason})" if row.reason and phase not in FINISHED else ""
            print_info(f"job/{name}: {phase}{why}")
        printed += _print_new_lines(backend, name, printed)
        if row.phase in FINISHED:
            return row
        if deadline is not None and clock.monotonic() > deadline:
            raise BackendError(f"job '{name}' still {row.phase} after {timeout_s:g}s")
        clock.sleep_blocking(interval_s)


def _print_new_lines(backend: Backend, name: str, printed: int) -> int:
    lines: list[str] = []
    with contextlib.suppress(BackendError):  # no log yet (still queued)
        lines = list(backend.logs(f"job/{name}", replica="0").lines)
    for line in lines[printed:]:
        print_info(f"  {line}")
    return max(0, len(lines) - printed)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


COMMANDS: list[click.Command] = [run, jobs, cancel]
