"""A job's output becomes a model version a ModelDeployment serves by name and version, and a
BatchInference runs through the same queue (``mlkube run``), on a real controller."""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.ports import free_port
from mlkube.testing.local import LocalController

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ROW = [5.1, 3.5, 1.4, 0.2]


@dataclass
class Trained:
    """A controller whose registry holds iris/1, made by the example's training job."""

    local: LocalController
    run_output: str
    """What ``mlkube run job.yaml --wait`` printed."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    # One training job for the module: each test reads its outcome or uses its model, and
    # none changes either (a second job would cost a whole training run for no new check).
    folder = tmp_path_factory.mktemp("trained")
    example = _copy_examples(folder)
    controller = LocalController(folder / "state")
    try:
        done = controller.run(
            "run", str(example / "iris-train" / "job.yaml"), "--wait", "--interval", "0.3"
        )
        yield Trained(controller, done.stdout)
    finally:
        controller.cleanup()


def _copy_examples(tmp_path: Path) -> Path:
    """The iris example and its training job, without models a checkout may hold."""
    for name in ("iris", "iris-train"):
        shutil.copytree(
            EXAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("models", "trained")
        )
    return tmp_path


def _job(local: LocalController, name: str) -> dict[str, object]:
    (row,) = Client(local.state).call("GET", f"/jobs?name={name}")["jobs"]
    return dict(row)


def test_a_trained_version_is_registered_and_served_by_name_and_version(
    trained: Trained, tmp_path: Path
) -> None:
    local = trained.local
    assert "job train-iris Succeeded" in trained.run_output
    assert "model iris/1" in trained.run_output  # the outcome line names the version it made
    row = _job(local, "train-iris")
    assert row["modelVersion"] == "iris/1"
    assert "ModelRegistered" in [e["reason"] for e in row["events"]]  # type: ignore[attr-defined]
    shown = local.run("models", "show", "iris", "--version", "1", "-o", "json").stdout
    assert "train-iris" in shown  # lineage: the job that made it
    port = free_port()
    spec = tmp_path / "served.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris", "namespace": "ml"},
                "spec": {
                    "model": {"uri": "models:/iris/1", "format": "onnx"},
                    "service": {"port": port},
                },
            }
        ),
        encoding="utf-8",
    )
    local.run("up", "-d", "--wait", str(spec))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        "/v1/models/iris:predict",
        json.dumps({"instances": [ROW]}),
        {"content-type": "application/json"},
    )
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.status == 200
    assert len(json.loads(body)["predictions"]) == 1


def test_a_batch_inference_runs_through_the_queue(trained: Trained, tmp_path: Path) -> None:
    local = trained.local
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "id,a,b,c,d\n" + "".join(f"r{i},{5 + i % 3},3.5,1.4,0.2\n" for i in range(500)),
        encoding="utf-8",
    )
    batch = tmp_path / "score.yaml"
    batch.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "BatchInference",
                "metadata": {"name": "score", "namespace": "ml"},
                "spec": {
                    "model": {"uri": "models:/iris/latest", "format": "onnx"},
                    "input": {"path": str(rows), "idColumn": "id"},
                    "output": {"path": "scored"},
                    "workers": 2,
                    "shardRows": 100,
                },
            }
        ),
        encoding="utf-8",
    )
    done = local.run("run", str(batch), "--wait", "--interval", "0.3", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job score Succeeded" in done.stdout
    row = _job(local, "score")
    assert (row["kind"], row["workers"]) == ("BatchInference", 2)
    shards = sorted((tmp_path / "scored").glob("*.jsonl"))
    assert len(shards) == 5
    lines = [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(f"r{i}" for i in range(500))
