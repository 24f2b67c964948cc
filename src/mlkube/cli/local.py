"""``mlkube up / down / status / scale / logs / apply / rollout / events``: the local backend.

Thin: every command finds the controller through the state directory and calls its control
API (``mlkube.backends.local.controller.api.Client``). ``up`` starts a controller first when
none runs. The commands that also exist for a cluster take ``--target kubernetes`` and then call
``mlkube.backends.kubernetes.commands`` instead.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mlkube.backends.local import prometheus, supervisor
from mlkube.backends.local.controller.api import Client, ControllerNotRunningError
from mlkube.backends.local.controller.settings import state_dir as resolve_state_dir
from mlkube.cli.output import print_data, print_info
from mlkube.clock import SystemClock
from mlkube.errors import BackendError
from mlkube.observability.logfiles import rotated_files
from mlkube.observability.logs import line_time, merge_log_lines
from mlkube.spec.loading import load_documents
from mlkube.spec.quantity import parse_duration

CONTROLLER_START_TIMEOUT_S = 30.0
CLOCK = SystemClock()
VIEW_REFRESH_S = 1.0
FOLLOW_POLL_S = 0.2

F = TypeVar("F", bound=Callable[..., Any])


def _state_option(func: F) -> F:
    return click.option(
        "--state-dir",
        default=None,
        envvar="MLKUBE_STATE_DIR",
        help="Where the local controller keeps its state [default: ~/.mlkube].",
    )(func)


def _target_options(func: F) -> F:
    func = click.option("--namespace", "-n", default=None, help="Kubernetes namespace.")(func)
    func = click.option("--context", default=None, help="Kubeconfig context (kubernetes).")(func)
    return click.option(
        "--target",
        type=click.Choice(["local", "kubernetes"]),
        default="local",
        show_default=True,
        help="Where the deployment runs.",
    )(func)


def _client(state: str | None) -> Client:
    return Client(resolve_state_dir(state))


def _running_client(state: Path) -> Client | None:
    try:
        client = Client(state)
        client.call("GET", "/healthz")
    except (ControllerNotRunningError, BackendError):
        return None
    return client


def _start_controller(state: Path) -> Client:
    state.mkdir(parents=True, exist_ok=True)
    (state / "controller.json").unlink(missing_ok=True)
    env = dict(os.environ)
    handle = supervisor.spawn(
        [sys.executable, "-m", "mlkube.backends.local.controller", "--state-dir", str(state)],
        env=env,
        log_path=state / "controller.log",
    )
    deadline = CLOCK.monotonic() + CONTROLLER_START_TIMEOUT_S
    while CLOCK.monotonic() < deadline:
        client = _running_client(state)
        if client is not None:
            return client
        if handle.poll() is not None:
            break
        CLOCK.sleep_blocking(0.1)
    tail = (state / "controller.log").read_text(errors="replace").splitlines()[-5:]
    raise BackendError(
        f"the controller did not start (see {state / 'controller.log'}): " + " | ".join(tail)
    )


def _wait_exit(client: Client) -> None:
    """Wait until the controller process has exited (it stops its replicas first)."""
    deadline = CLOCK.monotonic() + CONTROLLER_START_TIMEOUT_S
    while supervisor.pid_alive(client.pid) and CLOCK.monotonic() < deadline:
        CLOCK.sleep_blocking(0.05)


def _apply(client: Client, specs: tuple[str, ...]) -> list[dict[str, Any]]:
    paths = [str(Path(p).resolve()) for p in specs]
    load_documents(*paths)  # validate here: spec errors are shown with exit code 2
    results: list[dict[str, Any]] = client.call("POST", "/apply", {"paths": paths})["results"]
    for result in results:
        revision = f" (revision {result['revision']})" if "revision" in result else ""
        print_info(f"{result['kind'].lower()}/{result['name']} {result['action']}{revision}")
    return results


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-d", "--detach", is_flag=True, help="Return at once; the controller keeps running.")
@click.option(
    "--prometheus",
    "with_prometheus",
    is_flag=True,
    help="Also run a local Prometheus (installed separately) that scrapes every replica and "
    "the controller, with the alert rules; it stops with the controller.",
)
@_state_option
def up(specs: tuple[str, ...], detach: bool, with_prometheus: bool, state_dir: str | None) -> None:
    """Run deployments on this machine: replicas, load balancer, autoscaler, rollouts.

    \b
    Example:
      mlkube up examples/iris/iris.yaml           live status; Ctrl-C stops everything
      mlkube up -d examples/iris/                 in the background; `mlkube down` stops
      mlkube up -d --prometheus examples/iris/    with a local Prometheus (prints its URL)
    """
    state = resolve_state_dir(state_dir)
    load_documents(*specs)
    binary = prometheus.find_binary() if with_prometheus else None  # fail before any start
    client = _running_client(state)
    started = client is None
    if client is None:
        client = _start_controller(state)
    try:
        results = _apply(client, specs)
        if binary is not None:
            answer = client.call("POST", "/prometheus", {"binary": binary})
            print_info(f"prometheus {answer['action']}: {answer['url']}")
    except BackendError:
        if started:  # leave nothing behind: the controller we started has nothing to run
            client.call("POST", "/down", {})
            _wait_exit(client)
        raise
    names = [r["name"] for r in results if r["kind"] == "ModelDeployment"]
    if detach:
        print_info(f"controller pid {client.pid}; state in {state}")
        return
    try:
        _live_view(client, names)
    except KeyboardInterrupt:
        exiting = False
        for name in names:
            exiting = client.call("POST", "/down", {"name": name})["controllerExiting"]
        if exiting:  # the controller stops its replicas and the local Prometheus, then exits
            _wait_exit(client)
        print_info("stopped " + ", ".join(names))


def _live_view(client: Client, names: list[str]) -> None:
    console = Console()
    with Live(console=console, refresh_per_second=2, screen=False) as live:
        while True:
            data = client.call("GET", "/status")
            deployments = [
                d for d in data["deployments"] if f"{d['namespace']}/{d['name']}" in names
            ]
            live.update(render_status(data["controller"], deployments))
            if not deployments:
                return
            CLOCK.sleep_blocking(VIEW_REFRESH_S)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render_status(controller: dict[str, Any], deployments: list[dict[str, Any]]) -> Group:
    """Tables of deployments and their replicas (pure: builds rich renderables)."""
    top = Table(title=f"mlkube · limits enforced by {controller['enforcement']}", expand=True)
    for column in (
        "deployment",
        "revision",
        "ready",
        "req/s",
        "p50/p99 ms",
        "cpu",
        "memory",
        "last event",
    ):
        top.add_column(column)
    replicas = Table(expand=True)
    for column in ("replica", "rev", "phase", "port", "pid", "restarts", "cpu", "memory", "reason"):
        replicas.add_column(column)
    for dep in deployments:
        rollout = dep["rollout"]
        revision = str(dep["revision"])
        if rollout.get("target") is not None:
            revision += f" → {rollout['target']} {rollout['strategy']} {rollout['phase']}"
        elif rollout.get("phase") in ("Failed", "RolledBack"):
            revision += f" ({rollout['phase']})"
        cpu = sum(r["cpuCores"] or 0.0 for r in dep["replicas"])
        memory = sum(r["memoryBytes"] or 0 for r in dep["replicas"])
        req, lim = dep["requests"], dep["limits"]
        top.add_row(
            f"{dep['namespace']}/{dep['name']} :{dep['port']}",
            revision,
            f"{dep['ready']}/{dep['desired']}",
            f"{dep['requestsPerSecond']:.1f}",
            f"{_ms(dep['p50Ms'])}/{_ms(dep['p99Ms'])}",
            f"{cpu:.2f} (req {req.get('cpu', '-')}, lim {lim.get('cpu', '-')})",
            f"{memory / 2**20:.0f}Mi (req {req.get('memory', '-')}, lim {lim.get('memory', '-')})",
            dep["lastEvent"][:60],
        )
        for rep in dep["replicas"]:
            replicas.add_row(
                rep["name"],
                str(rep["revision"]),
                rep["phase"],
                str(rep["port"] or "-"),
                str(rep["pid"] or "-"),
                str(rep["restarts"]),
                "-" if rep["cpuCores"] is None else f"{rep['cpuCores']:.2f}",
                "-" if rep["memoryBytes"] is None else f"{rep['memoryBytes'] / 2**20:.0f}Mi",
                (rep["pendingReason"] or rep["lastReason"])[:60],
            )
    lines = [line for line in map(autoscaler_line, deployments) if line is not None]
    return Group(top, replicas, *(Text(line) for line in lines))


@click.command()
@click.argument("name", required=False)
@_target_options
@_state_option
def down(
    name: str | None, target: str, context: str | None, namespace: str | None, **kw: Any
) -> None:
    """Stop a deployment (or all, and the controller); no process is left behind."""
    if target == "kubernetes":
        if name is None:
            raise click.UsageError("--target kubernetes needs a deployment NAME")
        from mlkube.backends.kubernetes import commands

        commands.delete_kubernetes(name, context=context, namespace=namespace)
        return
    client = _client(kw.get("state_dir"))
    result = client.call("POST", "/down", {"name": name} if name else {})
    for key in result["stopped"]:
        print_info(f"modeldeployment/{key} stopped")
    if result.get("prometheusStopped"):
        print_info("prometheus stopped")
    if result["controllerExiting"]:
        _wait_exit(client)
        print_info("controller stopped")


delete = click.Command(
    "delete", callback=down.callback, params=down.params, help="Same as `mlkube down NAME`."
)


@click.command()
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@_target_options
@_state_option
def status(
    name: str | None,
    output: str,
    target: str,
    context: str | None,
    namespace: str | None,
    **kw: Any,
) -> None:
    """Show deployments: revisions, replicas, traffic, resources, autoscaler reason."""
    if target == "kubernetes":
        from mlkube.backends.kubernetes import commands

        commands.status_kubernetes(name, context=context, namespace=namespace, output=output)
        return
    query = f"?name={name}" if name else ""
    data = _client(kw.get("state_dir")).call("GET", f"/status{query}")
    if output != "table":
        print_data(data, output)
        return
    Console().print(render_status(data["controller"], data["deployments"]))
    if data["controller"].get("prometheus"):
        print_info(f"prometheus: {data['controller']['prometheus']}")


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def autoscaler_line(dep: dict[str, Any]) -> str | None:
    """Why the replica count is what it is: the autoscaler's last decision. Pure.

    ``iris: autoscaler wants 3 (desired 3, min 1, max 5): cpu 83% > 70% target
    [cpu_utilization=83, desired_by_cpu=3]; limited by maxReplicas``.
    """
    decision = dep.get("autoscaler")
    if not decision:
        return None
    values = ", ".join(f"{k}={_value(v)}" for k, v in (decision.get("metrics") or {}).items())
    text = (
        f"{dep['name']}: autoscaler wants {decision['desiredReplicas']} "
        f"(desired {dep['desired']}): {decision['reason']}"
    )
    if values:
        text += f" [{values}]"
    if decision.get("limitedBy"):
        text += f"; limited by {decision['limitedBy']}"
    return text


@click.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(min=0))
@_target_options
@_state_option
def scale(
    name: str, replicas: int, target: str, context: str | None, namespace: str | None, **kw: Any
) -> None:
    """Set a deployment's replica count."""
    if target == "kubernetes":
        from mlkube.backends.kubernetes import commands

        commands.scale_kubernetes(name, replicas, context=context, namespace=namespace)
        return
    result = _client(kw.get("state_dir")).call(
        "POST", "/scale", {"name": name, "replicas": replicas}
    )
    print_info(f"modeldeployment/{result['name']} scaled to {replicas}")


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--dry-run", is_flag=True, help="kubernetes: server-side dry run.")
@click.option("--wait", is_flag=True, help="kubernetes: wait until rolled out.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, help="kubernetes: wait limit.")
@_target_options
@_state_option
def apply(
    specs: tuple[str, ...],
    dry_run: bool,
    wait: bool,
    timeout_s: float,
    target: str,
    context: str | None,
    namespace: str | None,
    **kw: Any,
) -> None:
    """Change running deployments: a changed model or server makes a new revision and a rollout."""
    if target == "kubernetes":
        from mlkube.backends.kubernetes import commands

        commands.apply_kubernetes(
            specs,
            context=context,
            namespace=namespace,
            dry_run=dry_run,
            wait=wait,
            timeout_s=timeout_s,
        )
        return
    _apply(_client(kw.get("state_dir")), specs)


@click.group()
def rollout() -> None:
    """Rollout status, history and undo."""


@rollout.command("status")
@click.argument("name")
@_state_option
def rollout_status(name: str, **kw: Any) -> None:
    """Where the current rollout stands."""
    data = _client(kw.get("state_dir")).call("GET", f"/rollout/status?name={name}")
    target = data["target"]
    if target is None:
        print_info(
            f"revision {data['stable']} serves all traffic ({data['phase']}) "
            f"{data['reason']}".rstrip()
        )
    else:
        print_info(
            f"{data['strategy']} {data['stable']} → {target}: {data['phase']}, "
            f"step {data['step']}, "
            f"weights {data['weights']} {data['reason']}".rstrip()
        )


@rollout.command("history")
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@_state_option
def rollout_history(name: str, output: str, **kw: Any) -> None:
    """Every revision, its status and the reason when it failed."""
    rows = _client(kw.get("state_dir")).call("GET", f"/rollout/history?name={name}")
    if output != "table":
        print_data(rows, output)
        return
    for row in rows:
        mark = "*" if row["current"] else " "
        print_info(
            f"{mark} {row['revision']:>3}  {row['status'] or '-':<11} "
            f"{row['model']}  {row['reason']}"
        )


@rollout.command("undo")
@click.argument("name")
@click.option("--to-revision", type=int, default=None, help="Default: the previous good one.")
@_state_option
def rollout_undo(name: str, to_revision: int | None, **kw: Any) -> None:
    """Go back to the previous revision (or abort the rollout in progress)."""
    body: dict[str, Any] = {"name": name}
    if to_revision is not None:
        body["revision"] = to_revision
    result = _client(kw.get("state_dir")).call("POST", "/rollout/undo", body)
    print_info(
        f"modeldeployment/{result['name']}: {result['action']} to revision {result['revision']}"
    )


@click.command()
@click.argument("name")
@click.option("--limit", type=int, default=100)
@_state_option
def events(name: str, limit: int, **kw: Any) -> None:
    """Events of a deployment, oldest first (like kubectl describe)."""
    rows = _client(kw.get("state_dir")).call("GET", f"/events?name={name}&limit={limit}")
    for row in rows:
        when = dt.datetime.fromtimestamp(row["ts"], tz=dt.UTC).strftime("%H:%M:%S")
        print_info(f"{when}  {row['type']:<8} {row['reason']:<20} {row['message']}")


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--replica", default=None, help="A replica index (0, 1 ...) or name.")
@click.option("--since", default=None, help="Only lines newer than this (e.g. 5m).")
@_target_options
@_state_option
def logs(
    name: str,
    follow: bool,
    replica: str | None,
    since: str | None,
    target: str,
    context: str | None,
    namespace: str | None,
    **kw: Any,
) -> None:
    """Print the replicas' JSON log lines."""
    since_s = parse_duration(since) if since else None
    if target == "kubernetes":
        from mlkube.backends.kubernetes import commands

        index = int(replica) if replica is not None and replica.isdigit() else None
        commands.logs_kubernetes(
            name,
            context=context,
            namespace=namespace,
            follow=follow,
            since_s=since_s,
            replica=index,
        )
        return
    state = resolve_state_dir(kw.get("state_dir"))
    files = _log_files(state, name, replica)
    cutoff = SystemClock().wall() - since_s if since_s is not None else None
    positions = _print_history(files, cutoff)
    while follow:
        CLOCK.sleep_blocking(FOLLOW_POLL_S)
        for file in files:
            positions[file] = _print_new(file, positions[file], cutoff)


def _print_history(files: list[Path], cutoff: float | None) -> dict[Path, int]:
    """Print every replica's lines so far, rotated files included, merged in time order.

    Returns how far each live file was read, where ``--follow`` goes on from.
    """
    positions = {file: _size(file) for file in files}
    streams = {file.stem: _lines_until(file, positions[file]) for file in files}
    for line in merge_log_lines(streams):
        if cutoff is None or line.ts >= cutoff:
            print_info(line.text)
    return positions


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _lines_until(file: Path, size: int) -> Iterator[str]:
    """The lines of ``file``'s rotated files, then of ``file`` up to byte ``size``."""
    for older in rotated_files(file):
        if older == file:
            break
        try:
            with open(older, encoding="utf-8", errors="replace") as lines:
                yield from lines
        except OSError:  # rotated away while we read: its lines moved to the next backup
            continue
    try:
        with open(file, "rb") as handle:
            data = handle.read(size)
    except OSError:
        return
    end = data.rfind(b"\n") + 1
    yield from data[:end].decode(errors="replace").splitlines()


def _log_files(state: Path, name: str, replica: str | None) -> list[Path]:
    try:
        data = Client(state).call("GET", f"/status?name={name}")
        dep = data["deployments"][0]
        names = [r["name"] for r in dep["replicas"]]
        folder = state / "logs" / dep["namespace"] / dep["name"]
    except (ControllerNotRunningError, BackendError):
        folders = sorted((state / "logs").glob(f"*/{name.split('/')[-1]}"))
        if not folders:
            raise BackendError(f"no logs for deployment '{name}' in {state / 'logs'}") from None
        folder = folders[0]
        names = sorted(p.stem for p in folder.glob("*.log"))
    if replica is not None:
        if replica.isdigit():
            if int(replica) >= len(names):
                raise BackendError(
                    f"replica index {replica} is out of range: {len(names)} replicas"
                )
            names = [names[int(replica)]]
        elif replica in names:
            names = [replica]
        else:
            raise BackendError(f"no replica '{replica}' in '{name}' (replicas: {', '.join(names)})")
    return [folder / f"{n}.log" for n in names]


def _print_new(file: Path, position: int, cutoff: float | None) -> int:
    """Print the whole lines appended to ``file`` since ``position``; return the new one."""
    if _size(file) < position:
        position = 0  # rotated (copied to .1 and truncated): the file starts again
    try:
        with open(file, "rb") as handle:
            handle.seek(position)
            data = handle.read()
    except OSError:
        return position
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode(errors="replace").splitlines():
        ts = line_time(line)
        if cutoff is not None and ts is not None and ts < cutoff:
            continue
        print_info(line)
    return position + end


COMMANDS: list[click.Command] = [up, down, delete, status, scale, apply, rollout, events, logs]
