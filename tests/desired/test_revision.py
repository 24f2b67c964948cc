"""The revision template: which changes need new replicas (on both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.desired.revision import revision_document, revision_hash
from mlkube.spec import ModelDeployment, parse_documents

from .conftest import deployment


def _hash(spec: dict[str, Any]) -> str:
    return revision_hash(revision_document(deployment(spec)))


KEEP = [
    pytest.param({"replicas": 3}, id="replicas"),
    pytest.param({"autoscaling": {"minReplicas": 1, "maxReplicas": 9}}, id="autoscaling"),
    pytest.param({"rollout": {"strategy": "BlueGreen"}}, id="rollout"),
    pytest.param({"service": {"port": 9000}}, id="service"),
    pytest.param({"monitoring": {"alerts": {"errorRate": 0.05}}}, id="monitoring"),
    pytest.param({"logging": {"files": {"maxSize": "1Mi"}}}, id="logging-files"),
    pytest.param({"kubernetes": {"image": "example/other:1"}}, id="kubernetes-only"),
    pytest.param({"batching": {"maxBatchSize": 1024}}, id="a-default-written-out"),
]
CHANGE = [
    pytest.param({"model": {"uri": "s3://models/iris-2.onnx", "format": "onnx"}}, id="model"),
    pytest.param({"resources": {"limits": {"memory": "1Gi"}}}, id="resources"),
    pytest.param({"batching": {"maxBatchSize": 8}}, id="batching"),
    pytest.param({"server": {"workers": 2}}, id="server"),
    pytest.param({"logging": {"level": "debug"}}, id="logging-level"),
    pytest.param({"protocol": ["v2"]}, id="protocol"),
    pytest.param({"placement": {"priorityClassName": "high"}}, id="placement"),
]


@pytest.mark.parametrize("change", KEEP)
def test_changes_that_keep_the_revision(change):
    assert _hash(change) == _hash({})


@pytest.mark.parametrize("change", CHANGE)
def test_changes_that_cut_a_new_revision(change):
    assert _hash(change) != _hash({})


def test_the_revision_document_is_a_loadable_spec_with_the_template_only():
    doc = deployment({"replicas": 4, "batching": {"maxBatchSize": 8}})
    data = revision_document(doc, model_uri="/models/iris.onnx")
    loaded = ModelDeployment.model_validate(data)
    assert loaded.spec.model.uri == "/models/iris.onnx"
    assert loaded.spec.batching.max_batch_size == 8
    assert "replicas" not in data["spec"]
    assert set(data["spec"]) <= {
        "model",
        "protocol",
        "resources",
        "batching",
        "server",
        "logging",
        "placement",
    }


def test_key_order_in_the_file_does_not_change_the_hash():
    a = parse_documents(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec: {model: {uri: s3://b/m.onnx, format: onnx}, batching: {maxBatchSize: 4, "
        "maxLatencyMs: 2}}\n"
    )[0]
    b = parse_documents(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec: {batching: {maxLatencyMs: 2, maxBatchSize: 4}, model: {format: onnx, "
        "uri: s3://b/m.onnx}}\n"
    )[0]
    assert isinstance(a, ModelDeployment) and isinstance(b, ModelDeployment)
    assert revision_hash(revision_document(a)) == revision_hash(revision_document(b))
