"""Grafana dashboards as JSON: one per deployment, and one for the whole fleet.

Pure: no I/O. The JSON follows Grafana's dashboard model (``schemaVersion`` 39): panels of
type ``timeseries``/``stat``/``row`` with ``gridPos`` on the 24-column grid, Prometheus
``targets`` with ``expr``/``refId``/``legendFormat``, and a ``datasource`` template variable so
the file imports into any Grafana. Every query names only catalogue metrics (a test checks
it); ``$__rate_interval`` is Grafana's own rate window.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlkube.observability.promql import selector
from mlkube.spec.deployment import ModelDeployment

SCHEMA_VERSION = 39
GRID_WIDTH = 24
PANEL_HEIGHT = 8
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
GPU_RESOURCE = "nvidia.com/gpu"
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*\w+\)")


@dataclass(slots=True)
class Panel:
    """A panel before layout: its title, unit, queries (expr, legend) and width."""

    title: str
    unit: str
    queries: list[tuple[str, str]]
    width: int = 12
    kind: str = "timeseries"
    description: str = ""
    thresholds: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Row:
    """A collapsible row of panels."""

    title: str
    panels: list[Panel]


# queries -----------------------------------------------------------------------------------
def _rate(metric: str, sel: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{RATE}]))"


def _quantile(q: float, metric: str, sel: str, by: str = "") -> str:
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({group}) (rate({metric}_bucket{{{sel}}}[{RATE}])))"


def _error_ratio(sel: str, by: str) -> str:
    failed = sel + ',code=~"5.."'
    total = f"sum by ({by}) (rate(mlkube_requests_total{{{sel}}}[{RATE}]))"
    errors = f"sum by ({by}) (rate(mlkube_requests_total{{{failed}}}[{RATE}]))"
    return f"(({errors}) or ({total} * 0)) / {total}"


def _traffic_row(sel: str, dep: ModelDeployment | None) -> Row:
    alerts = dep.spec.monitoring.alerts if dep is not None else None
    latency = [
        (_quantile(q, "mlkube_request_duration_seconds", sel), f"p{round(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]
    return Row(
        "Traffic",
        [
            Panel(
                "Requests per second by status code",
                "reqps",
                [(_rate("mlkube_requests_total", sel, "code"), "{{code}}")],
                width=8,
            ),
            Panel(
                "Error ratio (5xx)",
                "percentunit",
                [(_error_ratio(sel, "deployment"), "5xx ratio")],
                width=8,
                thresholds=[alerts.error_rate] if alerts else [],
            ),
            Panel(
                "Latency p50 / p95 / p99",
                "s",
                latency,
                width=8,
                thresholds=[alerts.p99_latency_ms / 1000] if alerts else [],
            ),
        ],
    )


def _batching_row(sel: str) -> Row:
    return Row(
        "Batching and queue",
        [
            Panel(
                "Batch size (rows per predict)",
                "none",
                [
                    (_quantile(0.5, "mlkube_batch_size", sel), "p50"),
                    (_quantile(0.95, "mlkube_batch_size", sel), "p95"),
                    (
                        f"sum(rate(mlkube_batch_size_sum{{{sel}}}[{RATE}])) / "
                        f"sum(rate(mlkube_batch_size_count{{{sel}}}[{RATE}]))",
                        "mean",
                    ),
                ],
                width=6,
            ),
            Panel(
                "Queue depth and in-flight",
                "none",
                [
                    (f"sum(mlkube_queue_depth{{{sel}}})", "queued"),
                    (f"sum(mlkube_in_flight_requests{{{sel}}})", "in flight"),
                ],
                width=6,
            ),
            Panel(
                "Queue wait and predict time p95",
                "s",
                [
                    (_quantile(0.95, "mlkube_queue_wait_seconds", sel), "queue wait p95"),
                    (_quantile(0.95, "mlkube_predict_duration_seconds", sel), "predict p95"),
                ],
                width=6,
            ),
            Panel(
                "Predict errors per second",
                "ops",
                [
                    (f"sum(rate(mlkube_predict_errors_total{{{sel}}}[{RATE}]))", "failed requests"),
                ],
                width=6,
            ),
        ],
    )


def _replicas_row(sel: str, dep: ModelDeployment | None) -> Row:
    # A replica serving several models has a readiness series per model: count the first's.
    ready_sel = sel
    if dep is not None and dep.spec.models is not None:
        ready_sel = selector({}, model=f'="{dep.model_name}"') + ("," + sel if sel else "")
    queries = [
        (f"count(mlkube_model_ready{{{ready_sel}}})", "running"),
        (f"sum(mlkube_model_ready{{{ready_sel}}})", "ready"),
        (f"max(mlkube_deployment_desired_replicas{{{sel}}})", "desired"),
    ]
    if dep is not None and dep.spec.autoscaling is not None:
        queries.append((f"vector({dep.spec.autoscaling.max_replicas})", "maxReplicas"))
    return Row(
        "Replicas and autoscaler",
        [
            Panel(
                "Replicas: running, ready, desired",
                "none",
                queries,
                width=8,
                description="Autoscaler decisions that changed the count are annotations.",
            ),
            Panel(
                "Autoscaler inputs",
                "none",
                [
                    (f"max by (input) (mlkube_autoscaler_metric_value{{{sel}}})", "{{input}}"),
                ],
                width=8,
            ),
            Panel(
                "Restarts (last hour)",
                "none",
                [
                    (
                        f"sum by (reason) (increase(mlkube_replica_restarts_total{{{sel}}}[1h]))",
                        "{{reason}}",
                    ),
                    (f"sum(changes(process_start_time_seconds{{{sel}}}[1h]))", "process restarts"),
                ],
                width=8,
            ),
        ],
    )


def _resource_queries(
    base: str, legend: str, dep: ModelDeployment | None, resource: str
) -> list[tuple[str, str]]:
    queries = [(base, legend)]
    if dep is None:
        return queries
    resources = dep.spec.resources
    for kind, values in (("request", resources.requests), ("limit", resources.limits)):
        quantity = values.get(resource)
        if quantity is not None:
            amount = f"{float(quantity.value):g}" if resource == "cpu" else str(quantity.whole)
            queries.append((f"vector({amount})", f"{kind} ({quantity.text})"))
    return queries


def _resources_row(sel: str, dep: ModelDeployment | None) -> Row:
    cpu = f"sum by (replica) (rate(process_cpu_seconds_total{{{sel}}}[{RATE}]))"
    memory = f"sum by (replica) (process_resident_memory_bytes{{{sel}}})"
    return Row(
        "Resources",
        [
            Panel(
                "CPU cores vs request and limit",
                "none",
                _resource_queries(cpu, "{{replica}}", dep, "cpu"),
            ),
            Panel(
                "Memory vs request and limit",
                "bytes",
                _resource_queries(memory, "{{replica}}", dep, "memory"),
            ),
        ],
    )


def _gpu_row(sel: str) -> Row:
    return Row(
        "GPU",
        [
            Panel(
                "GPU utilization",
                "percentunit",
                [
                    (
                        f"max by (replica, gpu) (mlkube_gpu_utilization_ratio{{{sel}}})",
                        "{{replica}} gpu {{gpu}}",
                    ),
                ],
            ),
            Panel(
                "GPU memory used vs total",
                "bytes",
                [
                    (
                        f"max by (replica, gpu) (mlkube_gpu_memory_used_bytes{{{sel}}})",
                        "{{replica}} gpu {{gpu}} used",
                    ),
                    (
                        f"max by (replica, gpu) (mlkube_gpu_memory_total_bytes{{{sel}}})",
                        "{{replica}} gpu {{gpu}} total",
                    ),
                ],
            ),
        ],
    )


def _canary_row(sel: str) -> Row:
    return Row(
        "Canary vs stable (by revision)",
        [
            Panel(
                "Requests per second by revision",
                "reqps",
                [(_rate("mlkube_requests_total", sel, "revision"), "revision {{revision}}")],
                width=8,
            ),
            Panel(
                "Error ratio by revision",
                "percentunit",
                [(_error_ratio(sel, "revision"), "revision {{revision}}")],
                width=8,
            ),
            Panel(
                "p99 latency by revision",
                "s",
                [
                    (
                        _quantile(0.99, "mlkube_request_duration_seconds", sel, "revision"),
                        "revision {{revision}}",
                    ),
                ],
                width=8,
            ),
            Panel(
                "Canary weight",
                "percentunit",
                [(f"max(mlkube_rollout_canary_weight_ratio{{{sel}}})", "canary share")],
                width=12,
            ),
            Panel(
                "Model load time by revision",
                "s",
                [
                    (
                        f"max by (revision) (mlkube_model_load_seconds{{{sel}}})",
                        "revision {{revision}}",
                    )
                ],
                width=12,
            ),
        ],
    )


# layout --------------------------------------------------------------------------------------
def _layout(rows: list[Row]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    y = 0
    ids = iter(range(1, 1000))
    for row in rows:
        panels.append(
            {
                "id": next(ids),
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + PANEL_HEIGHT
            panels.append(_panel_json(panel, next(ids), x, y))
            x += panel.width
        y += PANEL_HEIGHT
    return panels


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": "red", "value": t} for t in panel.thresholds]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + index),
                "range": True,
            }
            for index, (expr, legend) in enumerate(panel.queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if panel.thresholds else "off"}},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def _annotation(expr: str) -> dict[str, Any]:
    return {
        "name": "Autoscaler",
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "orange",
        "expr": expr,
        "step": "15s",
        "titleFormat": "Scaled {{deployment}}",
        "textFormat": "desired replicas: {{value}}",
        "tagKeys": "deployment",
    }


def _builtin_annotation() -> dict[str, Any]:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def _dashboard(
    title: str, uid: str, rows: list[Row], annotation_expr: str, variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["mlkube"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "templating": {"list": [_datasource_variable(), *variables]},
        "annotations": {"list": [_builtin_annotation(), _annotation(annotation_expr)]},
        "panels": _layout(rows),
        "links": [],
    }


def _uid(*parts: str) -> str:
    # Grafana uids are at most 40 characters; a hash keeps long names unique and stable.
    return "mlkube-" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def deployment_dashboard(deployment: ModelDeployment) -> dict[str, Any]:
    """The dashboard of one deployment: traffic, batching, replicas, resources, canary. Pure.

    Requests and limits of the spec are drawn as constant lines; the GPU row appears when the
    spec asks for ``nvidia.com/gpu``.
    """
    sel = selector({"namespace": deployment.namespace, "deployment": deployment.name})
    rows = [
        _traffic_row(sel, deployment),
        _batching_row(sel),
        _replicas_row(sel, deployment),
        _resources_row(sel, deployment),
    ]
    gpus = deployment.spec.resources.limits.get(GPU_RESOURCE)
    if gpus is not None and gpus.value > 0:
        rows.append(_gpu_row(sel))
    rows.append(_canary_row(sel))
    return _dashboard(
        f"mlkube / {deployment.namespace} / {deployment.name}",
        _uid(deployment.namespace, deployment.name),
        rows,
        f"changes(mlkube_deployment_desired_replicas{{{sel}}}[1m]) > 0",
        [],
    )


def _query_variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "hide": 0,
        "regex": "",
        "sort": 1,
        "options": [],
    }


def fleet_dashboard(deployments: Iterable[ModelDeployment] = ()) -> dict[str, Any]:
    """One dashboard for every deployment, chosen with namespace / deployment variables. Pure.

    ``deployments`` is only used for the title; the variables list whatever Prometheus sees.
    """
    names = sorted(d.name for d in deployments)
    sel = 'namespace=~"$namespace",deployment=~"$deployment"'
    by = "namespace, deployment"
    rows = [
        Row(
            "Fleet",
            [
                Panel(
                    "Requests per second",
                    "reqps",
                    [(_rate("mlkube_requests_total", sel, by), "{{namespace}}/{{deployment}}")],
                ),
                Panel(
                    "Error ratio (5xx)",
                    "percentunit",
                    [(_error_ratio(sel, by), "{{namespace}}/{{deployment}}")],
                ),
                Panel(
                    "p99 latency",
                    "s",
                    [
                        (
                            _quantile(0.99, "mlkube_request_duration_seconds", sel, by),
                            "{{namespace}}/{{deployment}}",
                        )
                    ],
                ),
                Panel(
                    "Ready replicas vs desired",
                    "none",
                    [
                        (f"sum by ({by}) (mlkube_model_ready{{{sel}}})", "{{deployment}} ready"),
                        (
                            f"max by ({by}) (mlkube_deployment_desired_replicas{{{sel}}})",
                            "{{deployment}} desired",
                        ),
                    ],
                ),
                Panel(
                    "CPU cores",
                    "none",
                    [(_rate("process_cpu_seconds_total", sel, by), "{{namespace}}/{{deployment}}")],
                ),
                Panel(
                    "Memory (RSS)",
                    "bytes",
                    [
                        (
                            f"sum by ({by}) (process_resident_memory_bytes{{{sel}}})",
                            "{{namespace}}/{{deployment}}",
                        )
                    ],
                ),
                Panel(
                    "Queue depth",
                    "none",
                    [
                        (
                            f"sum by ({by}) (mlkube_queue_depth{{{sel}}})",
                            "{{namespace}}/{{deployment}}",
                        )
                    ],
                ),
                Panel(
                    "GPU utilization",
                    "percentunit",
                    [
                        (
                            f"avg by ({by}) (mlkube_gpu_utilization_ratio{{{sel}}})",
                            "{{namespace}}/{{deployment}}",
                        )
                    ],
                ),
            ],
        ),
    ]
    title = "mlkube / fleet" + (f" ({', '.join(names)})" if names else "")
    variables = [
        _query_variable("namespace", "label_values(mlkube_model_ready, namespace)"),
        _query_variable(
            "deployment", 'label_values(mlkube_model_ready{namespace=~"$namespace"}, deployment)'
        ),
    ]
    return _dashboard(
        title,
        "mlkube-fleet",
        rows,
        f"changes(mlkube_deployment_desired_replicas{{{sel}}}[1m]) > 0",
        variables,
    )


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets, annotations, variables. Pure.

    ``$__rate_interval`` and the ``$namespace``/``$deployment`` variables stay as they are.
    """
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    found += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            # label_values(SELECTOR, label) is Grafana's; the selector part is PromQL.
            match = _LABEL_VALUES.fullmatch(query["query"])
            found.append(match.group(1) if match else query["query"])
    return found
