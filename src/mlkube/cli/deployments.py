"""``mlkube apply / status / scale / down / delete / logs / events / rollout``: the shared commands.

Each command gets its backend once, from ``--target local|kubernetes`` (``targets.py``), calls
one method of the ``Backend`` protocol and prints what it returns through ``output``. Which
backend it is never matters here: an operation a backend cannot do raises
``UnsupportedOperationError``, printed as ``error: ...`` like every ``MlkubeError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import click

from mlkube.backends.base import (
    ApplyReport,
    Backend,
    BackendSelection,
    DeleteReport,
    EventRow,
    ObjectChange,
    RevisionRow,
    RolloutStatus,
    Table,
)
from mlkube.cli.output import print_data, print_info, print_tables, print_warning, show_live
from mlkube.cli.targets import backend_options, open_backend, prometheus_option
from mlkube.clock import Clock, SystemClock
from mlkube.errors import MlkubeError, UnsupportedOperationError
from mlkube.spec.quantity import parse_duration

OUTPUT_FORMATS = click.Choice(["table", "json", "yaml"])


# what the commands print (pure: data in, lines out) --------------------------------------
def change_line(change: ObjectChange, *, dry_run: bool = False) -> str:
    """``modeldeployment/default/iris created (revision 1)``, ``Service/x in ml applied``."""
    revision = f" (revision {change.revision})" if change.revision is not None else ""
    return f"{change.object} {change.action}{revision}{' (dry run)' if dry_run else ''}"


def apply_lines(report: ApplyReport) -> list[str]:
    """One line per object applied (accepted, not checked, kept) and pruned, then the totals
    by action where the backend prunes."""
    lines = [change_line(c, dry_run=report.dry_run) for c in report.changes]
    if report.pruned is None:
        return lines
    suffix = " (dry run)" if report.dry_run else ""
    lines.extend(f"{ref} pruned{suffix}" for ref in report.pruned)
    counts = Counter(c.action for c in report.changes) or Counter({"applied": 0})
    if len(counts) == 1:
        ((action, count),) = counts.items()
        done = f"{count} objects {action}"
    else:  # e.g. a dry run: "9 objects: 2 accepted, 7 not checked"
        done = f"{len(report.changes)} objects: " + ", ".join(
            f"{count} {action}" for action, count in counts.items()
        )
    lines.append(f"{'dry run: ' if report.dry_run else ''}{done}, {len(report.pruned)} pruned")
    return lines


def delete_lines(report: DeleteReport) -> list[str]:
    """One line per object stopped, deleted or kept, then each process that stopped."""
    lines = [change_line(c) for c in report.changes]
    return lines + [f"{process} stopped" for process in report.stopped_processes]


def event_line(row: EventRow) -> str:
    """``12:00:01  Normal   ScalingReplicaSet    scaled from 1 to 2: manual`` (time in UTC)."""
    when = dt.datetime.fromtimestamp(row.time, tz=dt.UTC).strftime("%H:%M:%S")
    about = f"{row.object}: " if row.object else ""
    times = f" (x{row.count})" if row.count > 1 else ""
    return f"{when}  {row.type:<8} {row.reason:<20} {about}{row.message}{times}"


def rollout_line(status: RolloutStatus) -> str:
    """``revision 2 serves all traffic (Complete)`` or ``Canary 1 → 2: Progressing, step 1 ...``."""
    if status.target is None and status.revision is not None:
        serving = f"revision {status.revision} serves all traffic"
        return f"{serving} ({status.phase}) {status.reason}".rstrip()
    if status.revision is not None:
        moving = f"{status.revision} → {status.target}"
    elif status.target is not None:
        moving = f"to revision {status.target}"
    else:
        moving = "rollout"
    details = [status.phase]
    if status.step is not None:
        details.append(f"step {status.step}")
    if status.weights is not None:
        total = sum(weight for _, weight in status.weights) or 1.0
        shares = ", ".join(
            f"{_track(revision)} {100 * weight / total:.0f}%" for revision, weight in status.weights
        )
        details.append(f"traffic: {shares}")
    return f"{status.strategy} {moving}: {', '.join(details)} {status.reason}".rstrip()


def _track(revision: str) -> str:
    """``revision 2`` locally; a cluster's tracks by name (``stable``, ``canary``)."""
    return f"revision {revision}" if revision.isdigit() else revision


HISTORY_HEADER = "  REV  STATUS      CHANGE            MODEL"


def history_line(row: RevisionRow) -> str:
    """``*   2  Complete    batching          models/iris.onnx`` (``*``: the current one)."""
    mark = "*" if row.current else " "
    change = row.change or "-"
    text = f"{mark} {row.revision:>3}  {row.status or '-':<11} {change:<17} {row.model}"
    return f"{text}  {row.reason}".rstrip()


def show_apply(report: ApplyReport) -> None:
    for warning in report.warnings:
        print_warning(warning)
    for line in apply_lines(report):
        print_info(line)


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print_warning(warning)


# the commands ----------------------------------------------------------------------------
@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--dry-run", is_flag=True, help="kubernetes: server-side dry run; nothing changes.")
@click.option("--wait", is_flag=True, help="Wait until the deployments have rolled out.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds --wait waits before it fails.",
)
@backend_options
def apply(
    specs: tuple[str, ...], dry_run: bool, wait: bool, timeout_s: float, backend: Backend
) -> None:
    """Change running deployments: a changed model or server makes a new revision and a rollout.

    \b
    Examples:
      mlkube apply examples/iris/iris.yaml                   the local controller
      mlkube apply spec.yaml --target kubernetes --wait      server-side apply, then wait
      mlkube apply spec.yaml --target kubernetes --dry-run   what the API server would accept
    """
    report = backend.apply(specs, dry_run=dry_run)
    show_apply(report)
    if wait and not dry_run:
        backend.wait_for_rollouts(report, timeout_s=timeout_s, report=print_info)


def watch_frames(
    backend: Backend, name: str | None, every_s: float, clock: Clock, limit: int | None = None
) -> Iterator[tuple[Sequence[Table], Sequence[str]]]:
    """The status tables every ``every_s`` (``limit`` frames, or until interrupted)."""
    shown = 0
    while limit is None or shown < limit:
        report = backend.status(name)
        yield report.tables, (*report.notes, *report.warnings)
        shown += 1
        if limit is None or shown < limit:
            clock.sleep_blocking(every_s)


@click.command()
@click.argument("name", required=False)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@click.option("-w", "--watch", is_flag=True, help="Redraw the tables until Ctrl-C.")
@click.option(
    "--interval", "interval_s", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
    help="--watch: seconds between redraws.",
)  # fmt: skip
@backend_options
def status(name: str | None, output: str, watch: bool, interval_s: float, backend: Backend) -> None:
    """Show deployments: revisions, replicas, traffic, resources, autoscaler reason.

    \b
    Examples:
      mlkube status                                   every local deployment
      mlkube status iris -o json                      one, for a program
      mlkube status iris --watch                      redrawn every 2 s until Ctrl-C
      mlkube status --target kubernetes -n ml         what runs in namespace ml
    """
    if watch:
        if output != "table":
            raise click.UsageError("--watch redraws the table; it does not go with -o")
        with contextlib.suppress(KeyboardInterrupt):
            show_live(watch_frames(backend, name, interval_s, SystemClock()))
        return
    report = backend.status(name)
    _warn(report.warnings)
    if output != "table":
        print_data(report.document, output)
        return
    print_tables(report.tables, report.notes)


@click.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(min=0))
@backend_options
def scale(name: str, replicas: int, backend: Backend) -> None:
    """Set a deployment's replica count (an autoscaler may change it again).

    \b
    Examples:
      mlkube scale iris 3
      mlkube scale ml-model 2 --target kubernetes -n ml
    """
    report = backend.scale(name, replicas)
    _warn(report.warnings)
    print_info(f"{report.object} scaled to {report.replicas}")


@click.command()
@click.argument("name", required=False)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="local: seconds to wait for the replicas (and the controller) to exit.",
)
@backend_options
def down(name: str | None, timeout_s: float, backend: Backend) -> None:
    """Stop a deployment (or all, and the controller); no process is left behind.

    Locally it returns once every replica process it stopped (and the controller, when it
    stops too) has exited, or fails after --timeout naming what still runs.

    \b
    Examples:
      mlkube down iris                                stop one local deployment
      mlkube down                                     stop all, and the controller
      mlkube delete ml-model --target kubernetes -n ml   delete its objects (claims are kept)
    """
    try:
        report = backend.delete(name, timeout_s=timeout_s, report=print_info)
    except UnsupportedOperationError as error:
        if name is None:  # this backend needs a NAME: a usage error, exit 2
            raise click.UsageError(str(error)) from error
        raise
    _warn(report.warnings)
    for line in delete_lines(report):
        print_info(line)


delete = click.Command(
    "delete",
    callback=down.callback,
    params=down.params,
    help="Same as `mlkube down NAME`.\n\n\b\nExamples:\n  mlkube delete iris\n"
    "  mlkube delete ml-model --target kubernetes -n ml",
)


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--replica", default=None, help="A replica index (0, 1 ...) or name.")
@click.option("--worker", default=None, help="job/NAME: one worker's rank (default: all).")
@click.option("--since", default=None, help="Only lines newer than this (e.g. 5m).")
@click.option(
    "--stderr",
    is_flag=True,
    help="Also the replicas' stderr (tracebacks, a model that failed to load), labelled and "
    "not JSON. On a cluster the container logs hold it already.",
)
@backend_options
def logs(
    name: str,
    follow: bool,
    replica: str | None,
    worker: str | None,
    since: str | None,
    stderr: bool,
    backend: Backend,
) -> None:
    """Print the replicas' JSON log lines, merged in time order (job/NAME: a job's workers).

    \b
    Examples:
      mlkube logs iris --since 5m
      mlkube logs iris --replica 0 -f
      mlkube logs iris --stderr        also what replicas wrote to stderr (a failed load)
      mlkube logs ml-model --target kubernetes -n ml
      mlkube logs job/train-iris --worker 1
    """
    replica = worker if worker is not None else replica
    since_s = parse_duration(since) if since else None
    stream = backend.logs(name, replica=replica, since_s=since_s, follow=follow, stderr=stderr)
    _warn(stream.warnings)
    for line in stream.lines:
        print_info(line)


@click.command()
@click.argument("name")
@click.option("--limit", type=int, default=100, show_default=True, help="The newest N events.")
@backend_options
def events(name: str, limit: int, backend: Backend) -> None:
    """Events of a deployment, oldest first (like kubectl describe); times in UTC.

    \b
    Examples:
      mlkube events iris
      mlkube events ml-model --target kubernetes -n ml --limit 20
    """
    for row in backend.events(name, limit=limit):
        print_info(event_line(row))


@click.group()
def rollout() -> None:
    """Rollout status, history, undo, and a canary's promote and abort.

    \b
    Examples:
      mlkube rollout status iris
      mlkube rollout history iris
      mlkube rollout undo iris --to-revision 1
      mlkube rollout promote iris
    """


@rollout.command("status")
@click.argument("name")
@click.option(
    "--watch", "-w", is_flag=True, help="Print each change until the rollout ends (Ctrl-C stops)."
)
@click.option(
    "--interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between looks with --watch.",
)
@backend_options
@prometheus_option
def rollout_status(name: str, watch: bool, interval: float, backend: Backend) -> None:
    """Where the current rollout stands.

    On a cluster, this is also what moves a Canary's steps and runs its analysis (against
    --prometheus, or MLKUBE_PROMETHEUS_URL): keep --watch running until the rollout ends.

    \b
    Examples:
      mlkube rollout status iris
      mlkube rollout status iris --watch
      mlkube rollout status ml-model --target kubernetes -n ml --watch
    """
    status = backend.rollout_status(name)
    print_info(rollout_line(status))
    if not watch:
        return
    clock = SystemClock()
    line = rollout_line(status)
    with contextlib.suppress(KeyboardInterrupt):
        while status.phase in ("Progressing",):
            clock.sleep_blocking(interval)
            status = backend.rollout_status(name)
            if rollout_line(status) != line:
                line = rollout_line(status)
                print_info(line)


@rollout.command("promote")
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip every remaining step: promote now.")
@backend_options
@prometheus_option
def rollout_promote(name: str, full: bool, backend: Backend) -> None:
    """End the canary's current step now, without waiting for its pause or analysis.

    \b
    Examples:
      mlkube rollout promote iris
      mlkube rollout promote iris --full
      mlkube rollout promote ml-model --target kubernetes -n ml
    """
    print_info(rollout_line(backend.rollout_promote(name, full=full)))


@rollout.command("abort")
@click.argument("name")
@backend_options
def rollout_abort(name: str, backend: Backend) -> None:
    """Stop the rollout in progress: every request goes back to the stable revision.

    \b
    Examples:
      mlkube rollout abort iris
      mlkube rollout abort ml-model --target kubernetes -n ml
    """
    print_info(rollout_line(backend.rollout_abort(name)))


@rollout.command("controller")
@click.argument("name")
@click.option("--namespace", "-n", default=None, help="The namespace [default: the context's].")
@click.option("--context", default=None, help="The kubeconfig context [default: current].")
@click.option(
    "--interval", type=float, default=10.0, show_default=True, help="Seconds between steps."
)
@click.option(
    "--ticks", type=int, default=None, help="Stop after this many steps [default: never]."
)
@click.option(
    "--standby", is_flag=True, help="Also promote warm standby pods (autoscaling.standby)."
)
@click.option("--canary/--no-canary", default=True, show_default=True, help="Run a Canary's steps.")
@prometheus_option
def rollout_controller(
    name: str,
    namespace: str | None,
    context: str | None,
    interval: float,
    ticks: int | None,
    standby: bool,
    canary: bool,
    prometheus: str | None,
) -> None:
    """Drive a Canary's steps on a cluster until stopped: what the in-cluster rollout
    controller runs (kubernetes.rolloutController: true renders it, with a Role that may
    only patch this deployment's objects). In a pod it uses the service account.

    With --standby (autoscaling.standby renders it) each step also promotes warm standby
    pods into the serving pool while the serving Deployment has pods not ready.

    A failed step (the API server briefly unreachable) is printed and retried at the next
    interval; the controller keeps running.

    \b
    Examples:
      mlkube rollout controller iris -n ml
      mlkube rollout controller iris -n ml --ticks 3 --interval 1
      mlkube rollout controller iris -n ml --standby --no-canary --interval 1
    """
    # Imported here, as cli/kubernetes.py does: the Kubernetes client loads only when used.
    from mlkube.backends.kubernetes.backend import KubernetesBackend

    backend = open_backend(BackendSelection("kubernetes", None, context, namespace, prometheus))
    clock = SystemClock()
    line = ""
    done = 0
    with contextlib.suppress(KeyboardInterrupt):
        while ticks is None or done < ticks:
            if done:
                clock.sleep_blocking(interval)
            done += 1
            try:
                if standby and isinstance(backend, KubernetesBackend):
                    promotion = backend.promote_standby(name)
                    if promotion.promoted:
                        print_info(f"standby: {promotion.reason}")
                if not canary:
                    continue
                now = rollout_line(backend.rollout_status(name))
            except MlkubeError as failed:
                print_warning(f"step failed, retrying in {interval:g}s: {failed}")
                continue
            if now != line:
                line = now
                stamp = dt.datetime.fromtimestamp(clock.wall(), dt.UTC).strftime("%H:%M:%S")
                print_info(f"{stamp}  {line}")


@rollout.command("history")
@click.argument("name")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@backend_options
def rollout_history(name: str, output: str, backend: Backend) -> None:
    """Every revision, its status and the reason when it failed (``*``: the current one).

    \b
    Example:
      mlkube rollout history iris -o yaml
    """
    rows = backend.rollout_history(name)
    if output != "table":
        document: list[dict[str, Any]] = [asdict(row) for row in rows]
        print_data(document, output)
        return
    print_info(HISTORY_HEADER)
    for row in rows:
        print_info(history_line(row))


@rollout.command("undo")
@click.argument("name")
@click.option("--to-revision", type=int, default=None, help="Default: the previous good one.")
@backend_options
def rollout_undo(name: str, to_revision: int | None, backend: Backend) -> None:
    """Go back to the previous revision (or abort the rollout in progress).

    \b
    Examples:
      mlkube rollout undo iris
      mlkube rollout undo iris --to-revision 1
    """
    report = backend.rollout_undo(name, to_revision=to_revision)
    print_info(f"{report.object}: {report.action} to revision {report.revision}")


COMMANDS: list[click.Command] = [down, delete, status, scale, apply, rollout, events, logs]
