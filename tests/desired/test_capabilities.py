"""The capability table: it covers every spec field, names only real ones, is the docs page,
and what it says a backend refuses, that backend really refuses."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, RootModel

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render import render
from mlkube.cli import cli
from mlkube.cli.capabilities import capability_page, readme_block
from mlkube.desired.capabilities import CAPABILITIES, BackendKind, Support, notes
from mlkube.errors import ModelLoadError
from mlkube.runtimes.loader import load_runtime
from mlkube.spec import ModelDeployment, parse_documents
from mlkube.spec.deployment import PriorityClass, Quota
from mlkube.spec.job import BatchInference, TrainingJob
from mlkube.spec.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
KINDS: dict[str, type[BaseModel]] = {
    "ModelDeployment": ModelDeployment,
    "Quota": Quota,
    "PriorityClass": PriorityClass,
    "TrainingJob": TrainingJob,
    "BatchInference": BatchInference,
    "Pipeline": Pipeline,
}


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not issubclass(annotation, RootModel):
            yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        yield path
        for inner in _models_in(info.annotation):
            yield from _fields(inner, f"{path}.")


def _schema_fields(kind: str) -> set[str]:
    fields = set(_fields(KINDS[kind]))
    return {f for f in fields if f.startswith(("metadata.", "spec."))}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_field_of_the_spec_is_covered_by_a_row_or_a_section_above_it(kind):
    rows = {row.field for row in CAPABILITIES if row.kind == kind}
    uncovered = sorted(
        field
        for field in _schema_fields(kind)
        if not any(field == row or field.startswith(row + ".") for row in rows)
    )
    assert uncovered == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_row_names_a_field_of_the_spec(kind):
    fields = _schema_fields(kind) | {"spec", "metadata"}
    stale = sorted({row.field for row in CAPABILITIES if row.kind == kind} - fields)
    assert stale == []


def test_docs_page_is_generated_from_the_table():
    page = (ROOT / "docs" / "capabilities.md").read_text(encoding="utf-8")
    assert page == capability_page(), "run: mlkube capabilities > docs/capabilities.md"


def test_the_command_prints_the_page():
    result = CliRunner().invoke(cli, ["capabilities"])
    assert result.exit_code == 0
    assert result.output == capability_page()


def test_readme_shows_the_rows_that_are_not_honoured():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_block() in readme, "update README.md's capability block from readme_block()"


_BASE = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m, namespace: ml}
spec:
  model: {uri: URI, format: onnx}
"""


def _doc(extra: str = "", uri: str = "s3://b/m.onnx") -> ModelDeployment:
    document = parse_documents(_BASE.replace("URI", uri) + extra)[0]
    assert isinstance(document, ModelDeployment)
    return document


# For each row a cluster refuses: a spec that hits it, and the error the renderer raises.
KUBERNETES_REFUSES = [
    pytest.param("", "./m.onnx", "path on this machine", id="local-path"),
    pytest.param("", "models:/m/2", "machine's model registry", id="registry-version"),
    pytest.param(
        "  storage: {pvc: {name: models}}\n",
        "models:/m/latest",
        "machine's model registry",
        id="registry-latest-with-a-claim",
    ),
    pytest.param(
        "  autoscaling: {metrics: [{type: latency, targetMs: 100}]}\n",
        "s3://b/m.onnx",
        "needs autoscaling.engine: keda",
        id="latency-with-hpa",
    ),
    pytest.param(
        "  autoscaling: {minReplicas: 0, maxReplicas: 2, scaleToZero: {}}\n",
        "s3://b/m.onnx",
        "cannot scale to zero",
        id="scale-to-zero-with-hpa",
    ),
]


@pytest.mark.parametrize(("extra", "uri", "message"), KUBERNETES_REFUSES)
def test_what_the_table_says_a_cluster_refuses_the_renderer_refuses(extra, uri, message):
    document = _doc(extra, uri)
    assert any(n.is_error for n in notes([document], BackendKind.KUBERNETES))
    with pytest.raises(RenderError, match=message):
        render([document])


SEVERAL_WITH_TENSORFLOW = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m, namespace: ml}
spec:
  models:
    - {name: a, uri: "s3://b/a.onnx", format: onnx}
    - {name: b, uri: "s3://b/saved/", format: tensorflow}
"""
MODELS_REFUSES = [pytest.param(SEVERAL_WITH_TENSORFLOW, "TF Serving's image takes one model")]


@pytest.mark.parametrize(("text", "message"), MODELS_REFUSES)
def test_what_the_table_says_a_cluster_refuses_of_several_models_the_renderer_refuses(
    text, message
):
    (document,) = parse_documents(text)
    assert isinstance(document, ModelDeployment)
    assert any(n.is_error for n in notes([document], BackendKind.KUBERNETES))
    with pytest.raises(RenderError, match=message):
        render([document])


def test_every_unsupported_kubernetes_row_has_a_refusal_test():
    unsupported = [
        r
        for r in CAPABILITIES
        if r.kubernetes.support is Support.UNSUPPORTED and r.kind == "ModelDeployment"
    ]
    # the registry row is tested twice
    assert len(unsupported) == len(KUBERNETES_REFUSES) - 1 + len(MODELS_REFUSES)
    batch_rows = [
        r
        for r in CAPABILITIES
        if r.kubernetes.support is Support.UNSUPPORTED and r.kind == "BatchInference"
    ]
    assert len(batch_rows) == len(BATCH_REFUSES)
    # Pipeline rows: tests/backends/kubernetes/test_k8s_pipelines.py (PIPELINE_REFUSES)


_BATCH = """\
apiVersion: mlkube.dev/v1alpha1
kind: BatchInference
metadata: {name: score}
spec:
  model: {uri: MODEL, format: onnx}
  input: INPUT
"""
BATCH_REFUSES = [
    pytest.param("models:/churn/3", "{path: rows.csv}", "set input.claimName", id="no-input-claim"),
    pytest.param(
        "s3://b/m.onnx", "{path: rows.csv, claimName: data}", "pvc://CLAIM/PATH", id="model-uri"
    ),
]


@pytest.mark.parametrize(("model", "input_", "message"), BATCH_REFUSES)
def test_what_the_table_says_a_cluster_refuses_for_a_batch_job_the_renderer_refuses(
    model, input_, message
):
    document = parse_documents(_BATCH.replace("MODEL", model).replace("INPUT", input_))[0]
    assert any(n.is_error for n in notes([document], BackendKind.KUBERNETES))
    with pytest.raises(RenderError, match=message):
        render([document])


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        pytest.param("pvc://claim/m.onnx", "onnx", id="claim-without-host-path"),
    ],
)
def test_what_the_table_says_runs_nowhere_locally_the_local_runtime_refuses(uri, fmt):
    document = parse_documents(_BASE.replace("URI", uri).replace("onnx}", f"{fmt}}}"))[0]
    assert isinstance(document, ModelDeployment)
    assert any(n.is_error for n in notes([document], BackendKind.LOCAL))
    with pytest.raises(ModelLoadError):
        load_runtime(document)


def test_a_plain_spec_is_honoured_everywhere():
    assert notes([_doc(uri="./m.onnx")], BackendKind.LOCAL) == []
    assert notes([_doc(uri="s3://b/m.onnx")], BackendKind.KUBERNETES) == []


def test_a_header_ab_test_without_a_gateway_is_reported_with_what_happens_instead():
    document = _doc("  rollout: {strategy: ABTest, abTest: {header: x-variant}}\n")
    texts = [n.text() for n in notes([document], BackendKind.KUBERNETES)]
    assert any(
        re.search(r"abTest\.header is ignored on kubernetes: header routing", t) for t in texts
    )


def test_validate_with_a_target_prints_the_rows_and_fails_on_unsupported(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        _BASE.replace("URI", "./m.onnx") + "  autoscaling: {metrics: "
        "[{type: concurrency, target: 4}]}\n"
    )
    (tmp_path / "m.onnx").write_bytes(b"not really a model")
    local = CliRunner().invoke(cli, ["validate", "--target", "local", str(spec)])
    assert local.exit_code == 0, local.output
    kube = CliRunner().invoke(cli, ["validate", "--target", "kubernetes", str(spec)])
    assert kube.exit_code == 1
    assert "kubernetes: spec.autoscaling.stableWindow is approximated" in kube.output
    assert "spec.model.uri is unsupported on kubernetes" in kube.output
    assert all(len(line) <= 80 for line in kube.stdout.splitlines()[1:])


def test_validate_local_reports_a_missing_model_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(_BASE.replace("URI", "./missing.onnx"))
    result = CliRunner().invoke(cli, ["validate", "--target", "local", str(spec)])
    assert result.exit_code == 1
    assert "model.uri: no file or folder at" in result.output


@pytest.mark.parametrize(("fmt", "noted"), [("lightgbm", True), ("onnx", False)])
def test_a_gpu_for_a_model_that_predicts_on_the_cpu_is_reported(fmt, noted):
    text = _BASE.replace("URI", "s3://b/m").replace("onnx", fmt)
    document = parse_documents(text + "  resources: {limits: {nvidia.com/gpu: 1}}\n")[0]
    texts = [n.text() for n in notes([document], BackendKind.KUBERNETES)]
    found = any("predict on the CPU only: the GPU is held but idle" in t for t in texts)
    assert found is noted
