"""The README's example, as a user runs it: train, validate, serve, ask for the three classes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlkube.spec import load_spec
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris"
README_INSTANCES = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]


def test_the_iris_example_answers_the_three_classes(tmp_path):
    shutil.copy(EXAMPLE / "iris.yaml", tmp_path / "iris.yaml")
    subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), str(tmp_path / "models")],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "models" / "iris.skops").exists()
    validate = subprocess.run(
        [sys.executable, "-m", "mlkube", "validate", str(tmp_path / "iris.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stderr
    deployment = load_spec(tmp_path / "iris.yaml")
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        v1 = client.post("/v1/models/iris:predict", json={"instances": README_INSTANCES})
        assert [p["label"] for p in v1.json()["predictions"]] == [0, 1, 2]
        v2 = client.post(
            "/v2/models/iris/infer",
            json={
                "inputs": [
                    {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": README_INSTANCES[0]}
                ]
            },
        )
        assert v2.json()["outputs"][0]["data"] == [0]
