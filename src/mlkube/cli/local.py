"""``mlkube up``: run deployments on this machine, with a live view until Ctrl-C.

Local only: it finds the controller of the state directory or starts one
(``LocalBackend.ensure_controller``), applies the specs, and shows their status until they stop.
The commands shared with Kubernetes (apply, status, down ...) are in ``deployments.py``.
"""

from __future__ import annotations

import click

from mlkube.backends.local import prometheus
from mlkube.backends.local.backend import DEPLOYMENT_KIND, LocalBackend
from mlkube.cli.deployments import show_apply
from mlkube.cli.observability import alerting_options, alertmanager_request, print_monitoring
from mlkube.cli.output import print_info, show_live
from mlkube.cli.targets import state_dir_option
from mlkube.errors import BackendError
from mlkube.spec.loading import load_documents

VIEW_REFRESH_S = 1.0


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
@click.option(
    "--wait",
    is_flag=True,
    help="With -d: return once every deployment serves all its replicas (exit 1 on failure).",
)
@click.option(
    "--timeout", "timeout_s", type=float, default=300.0, show_default=True, help="--wait limit (s)."
)
@alerting_options
@state_dir_option
def up(
    specs: tuple[str, ...],
    detach: bool,
    with_prometheus: bool,
    alert_webhooks: tuple[str, ...],
    alertmanager_config: str | None,
    wait: bool,
    timeout_s: float,
    state_dir: str | None,
) -> None:
    """Run deployments on this machine: replicas, load balancer, autoscaler, rollouts.

    \b
    Example:
      mlkube up examples/iris/iris.yaml           live status; Ctrl-C stops everything
      mlkube up -d examples/iris/                 in the background; `mlkube down` stops
      mlkube up -d --prometheus examples/iris/    with a local Prometheus (prints its URL)
      mlkube up -d --wait examples/iris/          return once every replica is ready
    Alerts to a webhook, through a local Alertmanager (docs/alerts.md):
      mlkube up --prometheus --alert-webhook http://127.0.0.1:9000/ examples/iris/
    """
    if wait and not detach:
        raise click.UsageError("--wait goes with -d (the live view already shows progress)")
    backend = LocalBackend(state_dir)
    load_documents(*specs)
    binary = prometheus.find_binary() if with_prometheus else None  # fail before any start
    alerting = alertmanager_request(alert_webhooks, alertmanager_config, with_prometheus)
    started = backend.ensure_controller()
    try:
        applied = backend.apply(specs)
        show_apply(applied)
        if binary is not None:
            print_monitoring(backend.start_prometheus(binary, alerting), alerting)
    except BackendError:
        if started:  # leave nothing behind: the controller we started has nothing to run
            backend.delete(None)
        raise
    keys = [c.object.name for c in applied.changes if c.object.kind == DEPLOYMENT_KIND]
    if detach:
        if wait:
            backend.wait_for_rollouts(applied, timeout_s=timeout_s, report=print_info)
        print_info(f"controller pid {backend.controller_pid()}; state in {backend.state}")
        return
    try:
        show_live((r.tables, r.notes) for r in backend.watch_status(keys, VIEW_REFRESH_S))
    except KeyboardInterrupt:
        for key in keys:  # the last one stops the controller, its replicas and Prometheus
            backend.delete(key, report=print_info)
        print_info("stopped " + ", ".join(keys))


COMMANDS: list[click.Command] = [up]
