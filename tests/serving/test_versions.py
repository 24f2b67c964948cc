"""Several models and versions per replica, hot reload, and the v2 repository extension.

Real servers on 127.0.0.1 (``mlkube serve`` as a process, or the replica in a thread), real
ONNX and scikit-learn models in TF Serving's layout (``iris/1/model.onnx``, ``iris/2/...``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from mlkube.errors import SpecError
from mlkube.spec import load_spec
from mlkube.spec.loading import parse_documents
from mlkube.testing import models
from mlkube.testing.local import IRIS_ROW, LoadClient
from mlkube.testing.server import running_replica

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"  # noqa: S105 - a test's own token
WAIT_S = 60.0
SPEC = {
    "apiVersion": "mlkube.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "shop"},
    "spec": {
        "models": [
            {"name": "iris", "uri": "iris", "format": "onnx", "versionPolicy": {"latest": 2}},
            {
                "name": "hgb",
                "uri": "hgb/model.skops",
                "format": "sklearn",
                "batching": {"maxBatchSize": 8},
            },
            {"name": "reg", "uri": "reg.onnx", "format": "onnx", "version": 7},
        ],
        "server": {"versionPollInterval": 0.1},
    },
}


@dataclass(frozen=True)
class Built:
    """A model repository folder (with its spec) and what the libraries predict."""

    folder: Path
    iris: Any
    hgb: Any
    reg: Any


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("repository")
    iris = models.iris_classifier()
    for version in ("1", "2"):
        models.save_onnx(iris, root / "iris" / version)
    hgb = models.hgb_classifier(n_samples=300)
    models.save_sklearn(hgb, root / "hgb", kind="skops")
    reg = models.regressor()
    models.save_onnx(reg, root, "reg")
    (root / "shop.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return Built(root, iris, hgb, reg)


@pytest.fixture
def repo(built: Built, tmp_path: Path) -> Path:
    """A fresh copy of the repository: tests add and remove versions in it."""
    return Path(shutil.copytree(built.folder, tmp_path / "repo"))


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def states(client: httpx.Client, model: str) -> dict[str, str]:
    body = client.get(f"/v1/models/{model}").json()
    return {s["version"]: s["state"] for s in body["model_version_status"]}


def newest(client: httpx.Client, model: str = "iris") -> str:
    """The version a v2 infer naming no version reaches."""
    answer = client.post(f"/v2/models/{model}/infer", json=iris_infer())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"])


def iris_infer() -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}


def drop_in(source: Path, target: Path) -> None:
    """Copy a version directory in as TF Serving's docs advise: aside, then one rename."""
    staging = target.with_name(f".{target.name}.staging")
    shutil.copytree(source, staging)
    os.rename(staging, target)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served_process(repo: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mlkube serve`` on the repository's spec, in its own process, with a token."""
    port = free_port()
    env = {**os.environ, "MLKUBE_MANAGEMENT_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlkube", "serve", str(repo / "shop.yaml"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("the server to be ready", ready)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_one_replica_serves_three_models_of_two_formats_and_two_versions(built, served_process):
    url, process = served_process
    with httpx.Client(base_url=url, timeout=30) as client:
        # three models, each answering as its library does
        rows = {"iris": built.iris.rows[::30], "hgb": built.hgb.rows[:5], "reg": built.reg.rows[:5]}
        for name, trained in (("iris", built.iris), ("hgb", built.hgb), ("reg", built.reg)):
            answer = client.post(
                f"/v1/models/{name}:predict", json={"instances": rows[name].tolist()}
            )
            assert answer.status_code == 200, answer.text
            predictions = answer.json()["predictions"]
            if name == "reg":
                got = np.array(predictions).reshape(-1)
                np.testing.assert_allclose(got, trained.model.predict(rows[name]), rtol=1e-4)
            else:
                labels = [p["label"] for p in predictions]
                assert labels == trained.model.predict(rows[name]).tolist()
        # two versions of iris, each reachable; no version (and `default`) reach the newest
        for version in ("1", "2"):
            answer = client.post(f"/v2/models/iris/versions/{version}/infer", json=iris_infer())
            assert answer.json()["model_version"] == version
        assert newest(client) == "2"
        assert newest(client, "default") == "2"
        assert client.post("/v1/models/iris/versions/1:predict", json={"instances": [IRIS_ROW]})
        assert states(client, "iris") == {"2": "AVAILABLE", "1": "AVAILABLE"}
        assert states(client, "reg") == {"7": "AVAILABLE"}
        assert client.get("/v2/models/iris").json()["versions"] == ["1", "2"]
        assert client.get("/v2/models/iris/versions/1").json()["versions"] == ["1"]
        assert client.get("/v1/models/iris/versions/1/metadata").status_code == 200
        missing = client.post("/v2/models/iris/versions/3/infer", json=iris_infer())
        assert missing.status_code == 404
        assert "served versions: 1, 2" in missing.json()["error"]
        unknown = client.get("/v2/models/mnist/ready")
        assert unknown.status_code == 404
        assert "'iris', 'hgb', 'reg'" in unknown.json()["error"]
        # metrics carry each model's name
        metrics = client.get("/metrics").text
        for name in ("iris", "hgb", "reg"):
            assert f'mlkube_model_ready{{model="{name}",revision="1"}} 1.0' in metrics
            assert f'mlkube_requests_total{{code="200",model="{name}"' in metrics
        assert 'mlkube_batch_size_count{model="hgb",revision="1"}' in metrics
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    logged = {(line.get("model"), line.get("version")) for line in lines if "status" in line}
    assert {("iris", 1), ("iris", 2), ("hgb", 1), ("reg", 7)} <= logged


def test_a_version_dropped_in_takes_over_without_a_failed_request(repo):
    deployment = load_spec(repo / "shop.yaml")
    with (
        running_replica(deployment) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as client,
    ):
        port = int(replica.url.rsplit(":", 1)[1])
        with LoadClient(port, "iris", workers=2, pause_s=0.005, max_s=120) as load:
            wait_for("requests before the switch", lambda: load.total >= 30)
            drop_in(repo / "iris" / "2", repo / "iris" / "3")
            wait_for(
                "version 3 to serve and version 1 to end",
                lambda: states(client, "iris") == {"3": "AVAILABLE", "2": "AVAILABLE", "1": "END"},
            )
            assert newest(client) == "3"
            before = load.total
            wait_for("requests after the switch", lambda: load.total >= before + 30)
            shutil.rmtree(repo / "iris" / "3")
            wait_for("version 3 to be unloaded", lambda: states(client, "iris")["3"] == "END")
            assert newest(client) == "2"
            assert states(client, "iris") == {"3": "END", "2": "AVAILABLE", "1": "AVAILABLE"}
            before = load.total
            wait_for("requests after the removal", lambda: load.total >= before + 30)
        assert load.failed == 0, (load.codes, load.errors)
        assert set(load.codes) == {200}


def test_a_broken_version_is_reported_and_never_served(repo):
    deployment = load_spec(repo / "shop.yaml")
    broken = repo / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx file at all")
    with (
        running_replica(deployment, management_token=TOKEN) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as client,
    ):
        port = int(replica.url.rsplit(":", 1)[1])
        with LoadClient(port, "iris", workers=2, pause_s=0.005, max_s=120) as load:
            drop_in(broken, repo / "iris" / "4")
            wait_for("version 4 to fail", lambda: states(client, "iris").get("4") == "END")
            status = client.get("/v1/models/iris/versions/4").json()["model_version_status"]
            assert status[0]["status"]["error_code"] == "UNKNOWN"
            assert "model.onnx" in status[0]["status"]["error_message"]
            # the policy (latest 2) keeps serving the two newest versions that loaded
            assert states(client, "iris") == {"4": "END", "2": "AVAILABLE", "1": "AVAILABLE"}
            refused = client.post("/v2/models/iris/versions/4/infer", json=iris_infer())
            assert refused.status_code == 404
            assert "failed to load" in refused.json()["error"]
            assert newest(client) == "2"
            index = client.post(
                "/v2/repository/index", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()
            (entry,) = [e for e in index if e["name"] == "iris" and e["version"] == "4"]
            assert entry["state"] == "UNAVAILABLE" and "model.onnx" in entry["reason"]
            # a fixed copy of the version is loaded: its files changed
            shutil.rmtree(repo / "iris" / "4")
            drop_in(repo / "iris" / "2", repo / "iris" / "4")
            wait_for("version 4 to load", lambda: states(client, "iris").get("4") == "AVAILABLE")
            assert newest(client) == "4"
        assert load.failed == 0, (load.codes, load.errors)


def test_the_repository_extension_needs_the_management_token(repo):
    deployment = load_spec(repo / "shop.yaml")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        running_replica(deployment, management_token=TOKEN) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as client,
    ):
        assert "model_repository" in client.get("/v2").json()["extensions"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = client.post("/v2/repository/models/hgb/unload", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "management token" in refused.json()["error"]
        assert client.get("/v2/repository/index", headers=auth).status_code == 405
        index = client.post("/v2/repository/index", headers=auth, json={})
        assert index.status_code == 200
        assert {(e["name"], e["version"], e["state"]) for e in index.json()} == {
            ("iris", "2", "READY"),
            ("iris", "1", "READY"),
            ("hgb", "1", "READY"),
            ("reg", "7", "READY"),
        }
        unloaded = client.post("/v2/repository/models/hgb/unload", headers=auth)
        assert (unloaded.status_code, unloaded.content) == (200, b"")
        assert client.get("/v2/models/hgb/ready").status_code == 503
        refused = client.post("/v1/models/hgb:predict", json={"instances": [[0.0] * 20]})
        assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200  # the others still serve
        ready_only = client.post("/v2/repository/index", headers=auth, json={"ready": True})
        assert "hgb" not in {e["name"] for e in ready_only.json()}
        loaded = client.post("/v2/repository/models/hgb/load", headers=auth)
        assert (loaded.status_code, loaded.content) == (200, b"")
        assert client.get("/v2/models/hgb/ready").status_code == 200
        assert client.post("/v2/repository/models/nope/load", headers=auth).status_code == 404
        bad = client.post("/v2/repository/models/hgb/load", headers=auth, content=b"[1]")
        assert bad.status_code == 400 and "JSON object" in bad.json()["error"]
    with (
        running_replica(deployment) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as client,
    ):
        off = client.post("/v2/repository/index", headers=auth)
        assert off.status_code == 403
        assert "MLKUBE_MANAGEMENT_TOKEN" in off.json()["error"]


def test_a_repository_load_reports_a_version_that_fails(repo):
    deployment = load_spec(repo / "shop.yaml")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        running_replica(deployment, management_token=TOKEN) as replica,
        httpx.Client(base_url=replica.url, timeout=30) as client,
    ):
        (repo / "reg.onnx").write_bytes(b"truncated")
        failed = client.post("/v2/repository/models/reg/load", headers=auth)
        assert failed.status_code == 400
        assert "reg.onnx" in failed.json()["error"]
        # the copy loaded before keeps serving
        assert client.get("/v2/models/reg/ready").status_code == 200
        assert states(client, "reg") == {"7": "AVAILABLE"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": {"uri": "a.onnx", "format": "onnx"}, "models": []},
            "spec: set exactly one of model (one model) and models (a list)",
        ),
        ({"replicas": 1}, "set exactly one of model"),
        ({"models": [{"uri": "a.onnx", "format": "onnx"}]}, "models[0].name: every listed"),
        (
            {
                "models": [
                    {"name": "a", "uri": "a.onnx", "format": "onnx"},
                    {"name": "a", "uri": "b.onnx", "format": "onnx"},
                ]
            },
            "models[1].name: 'a' is listed twice",
        ),
        (
            {
                "models": [
                    {"name": "a", "uri": "a.onnx", "format": "onnx"},
                    {"name": "default", "uri": "b.onnx", "format": "onnx"},
                ]
            },
            "models[1].name: 'default' always names the first model",
        ),
        (
            {"model": {"uri": "a", "format": "onnx", "versionPolicy": {"all": True, "latest": 2}}},
            "spec.model.versionPolicy: set one of latest, all, specific",
        ),
    ],
)
def test_a_bad_models_section_names_the_field(spec, message):
    document = {**SPEC, "spec": spec}
    with pytest.raises(SpecError) as error:
        parse_documents(yaml.safe_dump(document), "spec.yaml")
    assert message in "\n".join(issue.render("spec.yaml") for issue in error.value.issues)
