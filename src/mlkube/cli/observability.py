"""``mlkube dashboard / alerts / metrics-catalogue``: generated observability artefacts.

Thin: the dashboards, rules and catalogue are pure functions of ``mlkube.observability``; this
module only finds the spec, picks the output and writes it. It also holds the alerting
options of ``mlkube up`` (``--alert-webhook``, ``--alertmanager-config``), checked here before
anything starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from mlkube.backends.local import alertmanager
from mlkube.backends.local.controller.deployment import APPLIED_FILE
from mlkube.backends.local.controller.settings import state_dir as resolve_state_dir
from mlkube.cli.output import print_data, print_info, print_status
from mlkube.errors import BackendError
from mlkube.observability import alerts, catalogue, dashboards
from mlkube.spec import ModelDeployment
from mlkube.spec.loading import load_documents, load_spec


def _deployments(specs: tuple[str, ...]) -> list[ModelDeployment]:
    docs = [d for d in load_documents(*specs) if isinstance(d, ModelDeployment)]
    if not docs:
        raise BackendError(f"no ModelDeployment in {', '.join(specs)}")
    return docs


def _from_local_state(name: str, state: Path) -> ModelDeployment:
    """The spec the local controller last applied for ``name`` (``ns/name`` or ``name``)."""
    namespace, _, short = name.rpartition("/")
    applied = sorted((state / "deployments").glob(f"{namespace or '*'}/{short}/{APPLIED_FILE}"))
    if applied:
        return load_spec(applied[0])
    pattern = f"{namespace or '*'}/{short}/rev-*.yaml"
    files = sorted(
        (state / "deployments").glob(pattern), key=lambda p: int(p.stem.removeprefix("rev-"))
    )
    if not files:
        raise BackendError(
            f"no deployment '{name}' in {state} and no such spec file: pass a spec file, or "
            "the name of a deployment started with `mlkube up`"
        )
    return load_spec(files[-1])


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        print_info(text.rstrip("\n"))
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    print_status(f"wrote {output}")


@click.command()
@click.argument("target", required=False)
@click.option("--name", default=None, help="The deployment to pick when SPEC holds several.")
@click.option("-o", "--output", default=None, help="Write to this file [default: stdout].")
@click.option("--state-dir", default=None, envvar="MLKUBE_STATE_DIR", help="Local state dir.")
def dashboard(
    target: str | None, name: str | None, output: str | None, state_dir: str | None
) -> None:
    """Grafana dashboard JSON: of a deployment (SPEC file or NAME), or of the fleet.

    \b
    Example:
      mlkube dashboard examples/iris/iris.yaml -o iris-dashboard.json
      mlkube dashboard iris                     a deployment started with `mlkube up`
      mlkube dashboard                          every deployment, with variables
    Import the file in Grafana (Dashboards > New > Import) and pick a Prometheus data source.
    """
    board: dict[str, Any]
    if target is None:
        board = dashboards.fleet_dashboard()
    elif Path(target).exists():
        docs = _deployments((target,))
        if name is not None:
            docs = [d for d in docs if name in (d.name, f"{d.namespace}/{d.name}")]
        if len(docs) != 1:
            names = ", ".join(d.name for d in _deployments((target,)))
            raise click.UsageError(f"{target} holds {names}: pick one with --name")
        board = dashboards.deployment_dashboard(docs[0])
    else:
        board = dashboards.deployment_dashboard(
            _from_local_state(target, resolve_state_dir(state_dir))
        )
    _write(json.dumps(board, indent=2), output)


@click.command("alerts")
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["rules", "prometheusrule"]),
    default="rules",
    show_default=True,
    help="A Prometheus rule file, or Prometheus Operator PrometheusRule objects.",
)
@click.option("-o", "--output", default=None, help="Write to this file [default: stdout].")
def alerts_command(specs: tuple[str, ...], output_format: str, output: str | None) -> None:
    """Alert rules of the deployments in SPECS, thresholds from spec.monitoring.alerts.

    \b
    Example:
      mlkube alerts examples/iris/iris.yaml -o rules.yml && promtool check rules rules.yml
      mlkube alerts examples/iris/iris.yaml --format prometheusrule | kubectl apply -f -
    """
    docs = _deployments(specs)
    if output_format == "rules":
        text = yaml.safe_dump(alerts.rule_file(docs), sort_keys=False, width=1000)
    else:
        from mlkube.backends.kubernetes.render.cluster import prometheus_rule

        objects = [rule for d in docs if (rule := prometheus_rule(d)) is not None]
        text = yaml.safe_dump_all(objects, sort_keys=False, width=1000)
    _write(text, output)


@click.command("metrics-catalogue")
@click.option("-o", "--output", default=None, help="Write to this file [default: stdout].")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
)
def metrics_catalogue(output: str | None, output_format: str) -> None:
    """Every metric mlkube exports: name, type, unit, labels, meaning (docs/metrics.md).

    \b
    Examples:
      mlkube metrics-catalogue -o docs/metrics.md
      mlkube metrics-catalogue --format json
    """
    if output_format == "json":
        rows = [
            {
                "name": m.name,
                "type": m.type,
                "unit": m.unit,
                "labels": list(m.labels),
                "help": m.help,
            }
            for m in catalogue.CATALOGUE
        ]
        if output is None:
            print_data(rows, "json")
            return
        _write(json.dumps(rows, indent=2), output)
        return
    _write(catalogue.render_markdown(), output)


# `mlkube up --prometheus --alert-webhook URL`: where the local alerts go ------------------
F = TypeVar("F", bound=Callable[..., Any])


def alerting_options(func: F) -> F:
    """``--alert-webhook`` (repeatable) and ``--alertmanager-config`` of ``mlkube up``."""
    func = click.option(
        "--alertmanager-config",
        "alertmanager_config",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="With --prometheus: run a local Alertmanager with this alertmanager.yml (any "
        "receivers: Slack, email, PagerDuty, webhooks).",
    )(func)
    return click.option(
        "--alert-webhook",
        "alert_webhooks",
        multiple=True,
        metavar="URL",
        help="With --prometheus: run a local Alertmanager that posts firing and resolved "
        "alerts to URL (repeatable).",
    )(func)


def alertmanager_request(
    webhooks: tuple[str, ...], config_file: str | None, with_prometheus: bool
) -> dict[str, Any] | None:
    """The Alertmanager part of ``up``'s request to the controller, or None when not asked.

    Checked here, before the controller starts: the binary, the URLs, the user's file.
    """
    if not webhooks and config_file is None:
        return None
    if not with_prometheus:
        raise click.UsageError(
            "--alert-webhook and --alertmanager-config go with --prometheus "
            "(Prometheus evaluates the alert rules)"
        )
    if webhooks and config_file is not None:
        raise click.UsageError(
            "use --alert-webhook or --alertmanager-config, not both "
            "(add the webhook to your alertmanager.yml)"
        )
    if config_file is not None:
        config = alertmanager.user_config(Path(config_file))
    else:
        config = alertmanager.webhook_config(webhooks, group_wait_s=alertmanager.group_wait_from())
    return {"binary": alertmanager.find_binary(), "config": config}


def print_monitoring(answer: dict[str, Any], request: dict[str, Any] | None) -> None:
    """Where Prometheus and Alertmanager listen, and where the alerts go."""
    print_info(f"prometheus {answer['action']}: {answer['url']}")
    if request is None or not answer.get("alertmanagerUrl"):
        return
    print_info(f"alertmanager {answer['alertmanagerAction']}: {answer['alertmanagerUrl']}")
    for receiver in request["config"]["receivers"]:
        print_info(f"  alerts to receiver {receiver['name']}: {_destinations(receiver)}")


def _destinations(receiver: dict[str, Any]) -> str:
    """A webhook receiver's URLs; the kinds of any other (``slack, email``)."""
    urls = [w.get("url") for w in receiver.get("webhook_configs") or () if isinstance(w, dict)]
    kinds = [key.removesuffix("_configs") for key in receiver if key.endswith("_configs")]
    return ", ".join(u for u in urls if u) or ", ".join(kinds) or "nowhere (no configs)"


COMMANDS: list[click.Command] = [dashboard, alerts_command, metrics_catalogue]
