"""A local cluster per test: a controller in a tmp state dir, real `mlkube serve` replicas.

Periods and back-offs are shrunk through the controller's MLKUBE_* settings so the whole
set stays within a few minutes on two cores. Every process started is ended by PID at teardown.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlkube.control.api import Client
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


class Local:
    """Drives `mlkube` commands against one state directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.env = {**os.environ, **FAST_SETTINGS, "MLKUBE_STATE_DIR": str(self.state)}
        self.seen_pids: set[int] = set()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mlkube", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"mlkube {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done

    def status(self, name: str | None = None) -> dict[str, Any]:
        # The control API directly: polling through `mlkube status` would start a Python
        # process per poll on a two-core machine. The CLI itself is exercised by the tests.
        data = Client(self.state).call("GET", f"/status?name={name}" if name else "/status")
        for dep in data["deployments"]:
            self.seen_pids.update(r["pid"] for r in dep["replicas"] if r["pid"])
        return data

    def deployment(self, name: str) -> dict[str, Any]:
        return self.status(name)["deployments"][0]

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

    def controller_pid(self) -> int:
        return int(json.loads((self.state / "controller.json").read_text())["pid"])

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")

    def wait_ready(self, name: str, count: int, timeout_s: float = 60.0) -> None:
        def ready() -> bool:
            dep = self.deployment(name)
            return dep["ready"] == count and len(dep["replicas"]) == count

        self.wait(f"{count} ready replicas of {name}", ready, timeout_s)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.seen_pids.add(self.controller_pid())
        self.cli("down", check=False)
        for pid in self.seen_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


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


class Load:
    """A bounded client: ``workers`` threads with keep-alive connections, a short pause each."""

    def __init__(self, port: int, model: str, workers: int = 4, pause_s: float = 0.01) -> None:
        self.port, self.model, self.workers, self.pause_s = port, model, workers, pause_s
        self.codes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        self.marks: list[tuple[str, int]] = []

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.codes.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(c for code, c in self.codes.items() if code != 200) + sum(self.errors.values())

    def _run(self) -> None:
        body = json.dumps({"instances": [ROW]})
        path = f"/v1/models/{self.model}:predict"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + 240  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                with self._lock:
                    self.codes[response.status] += 1
            except (OSError, http.client.HTTPException) as error:
                with self._lock:
                    self.errors[type(error).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(self.pause_s)
        conn.close()


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
