"""`mlkube dashboard / alerts / metrics-catalogue` in process (click's runner)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from mlkube.cli import cli
from mlkube.observability.catalogue import render_markdown

from .conftest import tool

SPEC: dict[str, Any] = {
    "apiVersion": "mlkube.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml"},
    "spec": {
        "model": {"uri": "./iris.onnx", "format": "onnx"},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
    },
}


def write(tmp_path: Path, *docs: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_dashboard_of_a_spec_file(tmp_path):
    result = run("dashboard", str(write(tmp_path, SPEC)))
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["title"] == "mlkube / ml / iris"


def test_dashboard_with_several_deployments_needs_a_name(tmp_path):
    other = {**SPEC, "metadata": {"name": "other", "namespace": "ml"}}
    path = write(tmp_path, SPEC, other)
    result = run("dashboard", str(path))
    assert result.exit_code == 2 and "pick one with --name" in result.output
    out = tmp_path / "d.json"
    assert run("dashboard", str(path), "--name", "other", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["title"] == "mlkube / ml / other"


def test_fleet_dashboard_without_arguments():
    assert json.loads(run("dashboard").output)["uid"] == "mlkube-fleet"


def test_dashboard_by_name_reads_the_local_state(tmp_path):
    state = tmp_path / "state"
    revision = state / "deployments" / "ml" / "iris"
    revision.mkdir(parents=True)
    for n, top in ((1, 2), (2, 7), (10, 9)):
        spec = {**SPEC, "spec": {**SPEC["spec"], "autoscaling": {"maxReplicas": top}}}
        (revision / f"rev-{n}.yaml").write_text(yaml.safe_dump(spec))
    result = run("dashboard", "iris", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    assert "vector(9)" in result.output  # the newest revision (10, not 2)


@pytest.mark.integration  # runs a Prometheus tool
def test_alerts_rule_file_passes_promtool(tmp_path):
    out = tmp_path / "rules.yml"
    assert run("alerts", str(write(tmp_path, SPEC)), "-o", str(out)).exit_code == 0
    rules = yaml.safe_load(out.read_text())
    assert rules["groups"][0]["name"] == "mlkube.ml.iris"
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration  # runs a Prometheus tool
def test_alerts_as_prometheusrule_holds_the_same_rules(tmp_path):
    path = write(tmp_path, SPEC)
    plain = yaml.safe_load(run("alerts", str(path)).output)
    (obj,) = yaml.safe_load_all(run("alerts", str(path), "--format", "prometheusrule").output)
    assert obj["kind"] == "PrometheusRule"
    assert obj["spec"]["groups"] == plain["groups"]
    groups = tmp_path / "groups.yml"
    groups.write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}))
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(groups)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_catalogue_markdown_and_json():
    assert run("metrics-catalogue").output == render_markdown()
    rows = json.loads(run("metrics-catalogue", "--format", "json").output)
    assert {"name": "mlkube_requests_total"}.items() <= rows[0].items()
