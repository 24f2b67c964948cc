"""Grafana dashboards: the JSON model Grafana imports, and queries that name catalogue metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mlkube.observability import dashboards
from mlkube.observability.catalogue import base_name
from mlkube.observability.promql import metric_names

from .conftest import deployment

SPECS = {
    "minimal": None,
    "autoscaled-limited": {
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
    },
    "gpu": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
}


def all_dashboards() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "fleet", dashboards.fleet_dashboard([deployment()])
    for name, spec in SPECS.items():
        yield name, dashboards.deployment_dashboard(deployment(spec))


@pytest.mark.parametrize(("name", "board"), list(all_dashboards()))
def test_dashboard_follows_the_grafana_json_model(name, board):
    assert json.loads(json.dumps(board)) == board  # plain JSON
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["title"] and len(board["uid"]) <= 40
    assert board["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert all(isinstance(v, int) and v >= 0 for v in grid.values())
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(t["expr"] for t in panel["targets"])


@pytest.mark.parametrize(("name", "board"), list(all_dashboards()))
def test_panels_do_not_overlap(name, board):
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


@pytest.mark.parametrize(("name", "board"), list(all_dashboards()))
def test_every_query_names_only_catalogue_metrics(name, board):
    exprs = dashboards.queries(board)
    assert len(exprs) > 10
    for expr in exprs:
        unknown = {n for n in metric_names(expr) if base_name(n) is None}
        assert unknown == set(), expr


def test_the_deployment_dashboard_shows_what_the_issue_lists():
    board = dashboards.deployment_dashboard(deployment(SPECS["autoscaled-limited"]))
    text = json.dumps(board)
    titles = [p["title"] for p in board["panels"]]
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) "
            "(rate(mlkube_request_duration_seconds_bucket" in text
        )
    assert "Canary vs stable (by revision)" in titles
    assert "vector(4)" in text  # maxReplicas line
    assert "vector(0.5)" in text and "vector(2)" in text  # cpu request / limit
    assert "vector(2147483648)" in text  # memory limit
    assert board["annotations"]["list"][1]["expr"].startswith("changes(mlkube_deployment_desired")
    assert "GPU" not in titles


def test_the_gpu_row_appears_only_with_a_gpu():
    titles = [
        p["title"] for p in dashboards.deployment_dashboard(deployment(SPECS["gpu"]))["panels"]
    ]
    assert "GPU" in titles


def test_dashboards_are_deterministic():
    assert dashboards.deployment_dashboard(deployment()) == dashboards.deployment_dashboard(
        deployment()
    )
    assert dashboards.fleet_dashboard()["uid"] == "mlkube-fleet"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (code) (rate(mlkube_requests_total{namespace="a",code=~"5.."}[5m]))',
            {"mlkube_requests_total"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ("a / on (namespace) group_left () min by (namespace) (b) > 1e3", {"a", "b"}),
        ('vector(3) or absent(up{job="x"}) offset 5m', {"up"}),
        ("rate(foo:bar[1m]) and bool nan", {"foo:bar"}),
    ],
)
def test_metric_names(expr, names):
    from mlkube.observability.promql import metric_names

    assert metric_names(expr) == names
