"""End to end on a real controller: the iris pipeline trains, evaluates, passes its gates and
rolls the new version out to a running deployment under a paced load with no failed request;
with a gate it cannot pass it stops before the deploy and the old version keeps serving; a
second run with nothing changed is all cache hits."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.ports import free_port
from mlkube.registry import open_registry
from mlkube.testing.local import LoadClient, LocalController
from mlkube.testing.models import iris_classifier, save_onnx

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalController, Path, int]]:
    """A controller serving version 1 of iris (registered by hand, accuracy 0.9) through the
    example's deployment, and a copy of the example pipeline."""
    root = tmp_path_factory.mktemp("pipeline")
    for name in ("iris-pipeline",):
        shutil.copytree(
            EXAMPLES / name, root / name, ignore=shutil.ignore_patterns("models", "trained")
        )
    local = LocalController(root / "state")
    model = save_onnx(iris_classifier(), root / "v1", "iris")
    local.run(
        "models",
        "register",
        "iris",
        str(model.path),
        "--format",
        "onnx",
        "--metric",
        "accuracy=0.9",
    )
    port = free_port()
    spec = root / "iris-pipeline" / "deployment.yaml"
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    document["spec"]["service"]["port"] = port
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    local.run("up", "-d", "--wait", str(spec))
    yield local, root, port
    local.cleanup()


def _serving_version(local: LocalController) -> int:
    """The registry version the deployment's current revision loads."""
    rows = Client(local.state).call("GET", "/rollout/history?name=iris-live")
    (current,) = [r for r in rows if r["current"]]
    versions = open_registry(local.state).show("iris")
    (version,) = [v.version for v in versions if str(v.path) == current["model"]]
    return version


def _run(local: LocalController, pipeline: Path) -> tuple[int, dict[str, Any]]:
    done = local.run("pipeline", "run", str(pipeline), "--wait", "--interval", "0.3", check=False)
    row = Client(local.state).call("GET", "/pipelines?name=iris")
    return done.returncode, row["run"]


def test_a_new_version_is_trained_gated_and_rolled_out_under_load(
    served: tuple[LocalController, Path, int],
) -> None:
    local, root, port = served
    assert _serving_version(local) == 1
    with LoadClient(port, "iris-live", workers=2, pause_s=0.05) as load:
        code, run = _run(local, root / "iris-pipeline" / "pipeline.yaml")
    assert code == 0, run
    assert run["phase"] == "Succeeded"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["train"]["outputs"]["modelUri"] == "models:/iris/2"
    assert [g["passed"] for g in steps["evaluate"]["gates"]] == [True, True]
    assert steps["evaluate"]["gates"][1]["text"] == "accuracy >= deployed (0.9)"
    assert steps["deploy"]["phase"] == "Succeeded"
    assert _serving_version(local) == 2
    assert load.total > 50
    assert load.failed == 0, (load.codes, load.errors)


def test_a_second_run_with_nothing_changed_is_all_cache_hits(
    served: tuple[LocalController, Path, int],
) -> None:
    local, root, _ = served
    pipeline = root / "iris-pipeline" / "pipeline.yaml"
    _run(local, pipeline)  # a first run, unless the test above made it
    code, run = _run(local, pipeline)
    assert code == 0, run
    assert {s["name"]: s["phase"] for s in run["steps"]} == {
        "train": "Cached",
        "evaluate": "Cached",
        "deploy": "Cached",
    }
    status = local.run("pipeline", "status", "iris").stdout
    assert "3/3 steps cached" in status
    assert all(len(line) <= 80 for line in status.splitlines())


def test_a_gate_that_fails_stops_before_the_deploy_and_the_old_version_serves(
    served: tuple[LocalController, Path, int],
) -> None:
    local, root, _ = served
    before = _serving_version(local)
    source = root / "iris-pipeline" / "pipeline.yaml"
    strict = root / "iris-pipeline" / "strict.yaml"
    strict.write_text(
        source.read_text(encoding="utf-8").replace("value: 0.9}", "value: 0.999}"),
        encoding="utf-8",
    )
    code, run = _run(local, strict)
    assert code == 1
    assert run["phase"] == "Stopped"
    assert run["reason"].startswith("gate of evaluate: accuracy >= 0.999 failed")
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["deploy"]["phase"] == "Skipped"
    assert _serving_version(local) == before
    history = local.run("pipeline", "history", "iris").stdout
    assert "Stopped" in history


BROKEN = """
apiVersion: mlkube.dev/v1alpha1
kind: Pipeline
metadata: {name: broken, namespace: ml}
spec:
  steps:
    - name: train
      job:
        run: {script: corrupt.py}
        output: {model: {name: iris, file: iris.onnx, format: onnx}}
    - name: deploy
      dependsOn: [train]
      deploy: {deployment: iris-live, model: iris}
"""
CORRUPT = """
import os
open(os.path.join(os.environ["MLKUBE_OUTPUT_DIR"], "iris.onnx"), "wb").write(b"not onnx")
"""


def test_a_failed_rollout_fails_the_pipeline_and_the_old_version_keeps_serving(
    served: tuple[LocalController, Path, int],
) -> None:
    local, root, port = served
    before = _serving_version(local)
    folder = root / "broken"
    folder.mkdir()
    (folder / "corrupt.py").write_text(CORRUPT, encoding="utf-8")
    (folder / "pipeline.yaml").write_text(BROKEN, encoding="utf-8")
    with LoadClient(port, "iris-live", workers=2, pause_s=0.05) as load:
        done = local.run(
            "pipeline",
            "run",
            str(folder / "pipeline.yaml"),
            "--wait",
            "--interval",
            "0.3",
            check=False,
        )
    assert done.returncode == 1, done.stdout
    run = Client(local.state).call("GET", "/pipelines?name=broken")["run"]
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["train"]["phase"] == "Succeeded"  # it registered a version that cannot load
    assert steps["deploy"]["phase"] == "Failed"
    assert "rollout of models:/iris/" in steps["deploy"]["reason"]
    assert run["phase"] == "Failed"
    assert _serving_version(local) == before
    assert load.failed == 0, (load.codes, load.errors)


def test_the_pipeline_endpoints_need_the_token_and_refuse_bad_requests(
    served: tuple[LocalController, Path, int],
) -> None:
    local, _, _ = served
    client = Client(local.state)
    api = f"http://127.0.0.1:{client.port}"
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"{api}/pipelines?name=iris").status_code == 401
        assert http.post(f"{api}/pipelines/run", json={"paths": []}).status_code == 401
        token = {"Authorization": f"Bearer {client.token}"}
        bad = http.get(f"{api}/pipelines?name=iris&run=x", headers=token)
        assert bad.status_code == 400 and "run" in bad.json()["error"]
        relative = http.post(f"{api}/pipelines/run", json={"paths": ["p.yaml"]}, headers=token)
        assert relative.status_code == 400
        unknown = http.get(f"{api}/pipelines/history?name=nope", headers=token)
        assert unknown.status_code == 409
        assert unknown.json() == {
            "error": "no pipeline named 'nope' (mlkube pipeline run FILE starts one)"
        }
    client.close()
    done = local.run("pipeline", "status", "nope", check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: no pipeline named 'nope' (mlkube pipeline run FILE starts one)"
    ]
