"""Several models in one deployment on a cluster: one model volume, a path for each."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render import render
from mlkube.spec import ModelDeployment, load_documents, parse_documents

SPEC = Path(__file__).parent / "specs" / "multi-model.yaml"

_BASE = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: shop, namespace: ml}
spec:
  models:
    - {name: a, uri: FIRST, format: onnx}
    - {name: b, uri: SECOND, format: onnx}
"""


def test_each_model_is_fetched_into_its_own_folder_and_the_config_names_it():
    objects = render(load_documents(SPEC)).objects
    assert [p for obj in objects for p in validate(obj, VERSIONS[-1])] == []
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    (served,) = parse_documents(config["data"]["spec.yaml"])
    assert isinstance(served, ModelDeployment)
    assert [(m.name, m.uri) for m in served.spec.all_models] == [
        ("iris", "/models/iris/iris"),
        ("churn", "/models/churn/churn.skops"),
        ("ranker", "/models/ranker/ranker.json"),
    ]
    assert served.spec.all_models[0].version_policy.latest == 2
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    fetches = pod["initContainers"]
    assert [f["name"] for f in fetches] == ["fetch-model-0", "fetch-model-1", "fetch-model-2"]
    assert [f["command"][-1] for f in fetches] == [
        "/models/iris/iris",
        "https://example.com/models/churn.skops",
        "/models/ranker/ranker.json",
    ]
    assert [v["name"] for v in pod["volumes"]] == ["model-storage", "config", "tmp"]


def test_models_on_one_claim_share_its_volume():
    text = _BASE.replace("FIRST", "pvc://models/a.onnx").replace("SECOND", "pvc://models/b/")
    objects = render(parse_documents(text)).objects
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    (served,) = parse_documents(config["data"]["spec.yaml"])
    assert isinstance(served, ModelDeployment)
    assert [m.uri for m in served.spec.all_models] == ["/models/a.onnx", "/models/b"]


@pytest.mark.parametrize(
    ("first", "second", "needle"),
    [
        ("pvc://one/a.onnx", "pvc://two/b.onnx", "spec.models[1].uri 'pvc://two/b.onnx'"),
        ("pvc://one/a.onnx", "s3://bucket/b.onnx", "share one model volume"),
        ("pvc://one/m.onnx", "pvc://one/m.onnx", "would both be read from /models/m.onnx"),
        ("s3://bucket/a.onnx", "./b.onnx", "(spec.models[1], model 'b')"),
    ],
)
def test_models_that_cannot_share_a_volume_fail_with_the_field_named(first, second, needle):
    text = _BASE.replace("FIRST", first).replace("SECOND", second)
    with pytest.raises(RenderError) as error:
        render(parse_documents(text))
    assert needle in str(error.value)
