"""A local cluster per test: a controller in a tmp state dir, real `mlkube serve` replicas.

Periods and back-offs are shrunk through the controller's MLKUBE_* settings so the whole
set stays within a few minutes on two cores. Every process started is ended by PID at teardown.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlkube.testing.local import LoadClient, LocalController
from mlkube.testing.models import iris_classifier, python_model, save_onnx

FAST_SETTINGS = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "0.5",
    "MLKUBE_BACKOFF_BASE_S": "0.5",
    "MLKUBE_BACKOFF_MAX_S": "2",
    "MLKUBE_HOLD_S": "10",
    "MLKUBE_STOP_GRACE_S": "2",
}
ROW = [5.1, 3.5, 1.4, 0.2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Local(LocalController):
    """The controller of one test, with the checks the local-backend tests share."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "state", FAST_SETTINGS)
        self.tmp = tmp
        self.seen_pids = self.pids

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(*args, check=check)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The controller's /metrics, fetched WITHOUT the token (as Prometheus does)."""
        port = int(json.loads((self.state / "controller.json").read_text())["port"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            answer = conn.getresponse()
            body = answer.read().decode()
        finally:
            conn.close()
        assert answer.status == 200, body
        assert answer.getheader("Content-Type", "").startswith("text/plain")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    def wait_ready(self, name: str, count: int, timeout_s: float = 60.0) -> None:
        def ready() -> bool:
            dep = self.deployment(name)
            return dep["ready"] == count and len(dep["replicas"]) == count

        self.wait(f"{count} ready replicas of {name}", ready, timeout_s)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    cluster = Local(tmp_path)
    try:
        yield cluster
    finally:
        cluster.cleanup()


def write_spec(path: Path, name: str, model: dict[str, Any], **spec: Any) -> Path:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": model, **spec},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_onnx(iris_classifier(), tmp_path_factory.mktemp("iris"), "iris").path


@pytest.fixture(scope="session")
def iris_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    built = python_model(tmp_path_factory.mktemp("pymodel"))
    assert built.entrypoint is not None
    return built.path, built.entrypoint


BAD_MODEL = """
import numpy as np


class BadModel:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        self.calls = 0

    def predict(self, batch):
        # Passes the server's warm-up call, then fails every request: a bad release.
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("this model fails after warm-up")
        return {"label": np.zeros(len(batch["input"]), dtype=np.int64)}
"""


@pytest.fixture
def bad_python(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "badmodel"
    folder.mkdir()
    (folder / "bad_model.py").write_text(BAD_MODEL)
    return folder, "bad_model:BadModel"


class Load(LoadClient):
    """The bounded client of these tests: a short pause between requests."""

    def __init__(self, port: int, model: str, workers: int = 4, pause_s: float = 0.01) -> None:
        super().__init__(port, model, workers, pause_s, row=ROW)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def make_load() -> type[Load]:
    return Load


@pytest.fixture
def spec_writer() -> Callable[..., Path]:
    return write_spec
