"""A real `mlkube up` of an s3:// ONNX model from moto's S3 server: two replicas, one download."""

from __future__ import annotations

import http.client
import json
import os
import socket

import numpy as np
import pytest
import yaml

from mlkube.testing.local import LocalController
from mlkube.testing.models import iris_classifier, save_onnx

from .conftest import BUCKET, s3_client

ROW = [5.1, 3.5, 1.4, 0.2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _predict(port: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/models/iris:predict", json.dumps({"instances": [ROW]}))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_up_serves_an_s3_model_downloaded_once_for_two_replicas(s3, tmp_path):
    built = save_onnx(iris_classifier(), tmp_path / "built", "iris")
    s3_client(s3).put_object(Bucket=BUCKET, Key="iris/v3/model.onnx", Body=built.path.read_bytes())
    s3.faults.pending = ["corrupt"]  # the first download is spoilt: caught and fetched again
    port = _free_port()
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {
                    "model": {"uri": f"s3://{BUCKET}/iris/v3/model.onnx", "format": "onnx"},
                    "replicas": 2,
                    "service": {"port": port},
                    "server": {"drainTimeout": "2s"},
                },
            }
        )
    )
    state = tmp_path / "state"
    # the replicas inherit the environment: the endpoint and the test credentials
    local = LocalController(state, {"MLKUBE_RECONCILE_PERIOD_S": "0.1", **_aws_env()})
    try:
        local.run("up", "-d", str(spec))
        local.wait(
            "two ready replicas",
            lambda: local.deployment("default/iris")["ready"] == 2,
            timeout_s=120,
        )
        status, answer = _predict(port)
        assert status == 200, answer
        expected = int(built.model.predict(np.asarray([ROW]))[0])
        assert answer["predictions"][0]["label"] == expected
    finally:
        local.cleanup()
    # one good download (after the spoilt one) served both replicas
    assert s3.faults.gets["/models/iris/v3/model.onnx"] == 2
    (cached,) = (state / "model-cache").glob("*/model.onnx")
    assert cached.read_bytes() == built.path.read_bytes()
    logs = [p.read_text() for p in (state / "logs" / "default" / "iris").glob("*.err")]
    assert len(logs) == 2
    assert sum(log.count("mlkube: downloading s3://") for log in logs) == 1


def _aws_env() -> dict[str, str]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {name: os.environ[name] for name in (*names, "MLKUBE_S3_ENDPOINT")}


def test_a_prefix_of_version_folders_serves_its_newest_version(s3, tmp_path, monkeypatch):
    import httpx

    from mlkube.spec import load_spec
    from mlkube.testing.server import running_replica

    built = save_onnx(iris_classifier(), tmp_path / "built", "iris")
    client = s3_client(s3)
    for version in (1, 2):
        key = f"iris/{version}/model.onnx"
        client.put_object(Bucket=BUCKET, Key=key, Body=built.path.read_bytes())
    monkeypatch.setenv("MLKUBE_MODEL_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\n"
        f"spec:\n  model: {{uri: 's3://{BUCKET}/iris/', format: onnx}}\n"
    )
    with (
        running_replica(load_spec(spec)) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as http,
    ):
        status = http.get("/v1/models/iris").json()
        assert [v["version"] for v in status["model_version_status"]] == ["2"]
        answer = http.post("/v1/models/iris:predict", json={"instances": [ROW]})
        assert answer.status_code == 200, answer.text
