"""A ModelDeployment names a registered version (``models:/NAME/VERSION``) and serves it."""

import http.client
import json
import socket

import numpy as np
import pytest
import yaml

from mlkube.backends.local.backend import local_problems
from mlkube.backends.local.controller.deployment import revision_of
from mlkube.errors import ModelLoadError
from mlkube.registry import Registry, registry_root
from mlkube.runtimes.loader import load_runtime
from mlkube.spec import load_spec
from mlkube.spec.loading import load_documents
from mlkube.testing.local import LocalController
from mlkube.testing.models import iris_classifier, save_onnx

ROW = [5.1, 3.5, 1.4, 0.2]


def _spec(tmp_path, uri: str, fmt: str = "onnx", port: int = 8501):
    path = tmp_path / "iris.yaml"
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"uri": uri, "format": fmt},
            "service": {"port": port},
            "server": {"drainTimeout": "2s"},
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def registered(tmp_path):
    """Version 1: not a model at all (loading it fails); version 2: the iris classifier."""
    state = tmp_path / "state"
    registry = Registry(registry_root(state))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    registry.register("iris", broken, "onnx")
    built = save_onnx(iris_classifier(), tmp_path / "built", "iris")
    registry.register("iris", built.path, "onnx")
    return state, built


def test_the_revision_pins_the_resolved_file(tmp_path, registered):
    state, _ = registered
    doc = load_spec(_spec(tmp_path, "models:/iris/latest"))
    data = revision_of(doc, state)
    assert data["spec"]["model"]["uri"] == str(Registry(registry_root(state)).get("iris", 2).path)


def test_preflight_names_what_the_registry_lacks(tmp_path, registered):
    state, _ = registered
    assert local_problems([load_spec(_spec(tmp_path, "models:/iris/2"))], state) == []
    problems = local_problems([load_spec(_spec(tmp_path, "models:/iris/7"))], state)
    assert problems == [
        "deployment 'iris': model.uri: model 'iris' has no version 7 (versions: 1, 2)"
    ]
    wrong = local_problems([load_spec(_spec(tmp_path, "models:/iris/2", "sklearn"))], state)
    assert wrong == [
        "deployment 'iris': model.uri: models:/iris/2 was registered as format onnx, "
        "not sklearn (set model.format: onnx)"
    ]


def test_preflight_checks_a_batch_jobs_version_too(tmp_path, registered):
    state, _ = registered
    path = tmp_path / "batch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "BatchInference",
                "metadata": {"name": "score"},
                "spec": {
                    "model": {"uri": "models:/rose/1", "format": "onnx"},
                    "input": {"path": "data/"},
                },
            }
        )
    )
    problems = local_problems(load_documents(path), state)
    assert problems == [
        "batch job 'score': model.uri: no registered model 'rose' in "
        f"{registry_root(state)} (registered: iris)"
    ]


def test_serve_loads_a_registered_version(tmp_path, registered, monkeypatch):
    state, built = registered
    monkeypatch.setenv("MLKUBE_STATE_DIR", str(state))
    runtime = load_runtime(load_spec(_spec(tmp_path, "models:/iris/2")))
    out = runtime.predict({"input": np.asarray([ROW], dtype=np.float32)})
    assert int(out["label"][0]) == int(built.model.predict([ROW])[0])
    with pytest.raises(ModelLoadError, match="no registered model 'rose'"):
        load_runtime(load_spec(_spec(tmp_path, "models:/rose/1")))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_up_serves_the_version_the_spec_names(tmp_path, registered):
    state, built = registered
    port = _free_port()
    local = LocalController(state, {"MLKUBE_RECONCILE_PERIOD_S": "0.1"})
    try:
        local.run("up", "-d", str(_spec(tmp_path, "models:/iris/2", port=port)))
        local.wait("a ready replica", lambda: local.deployment("default/iris")["ready"] == 1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/models/iris:predict", json.dumps({"instances": [ROW]}))
        answer = json.loads(conn.getresponse().read())
        conn.close()
        assert answer["predictions"][0]["label"] == int(built.model.predict([ROW])[0])
    finally:
        local.cleanup()
