"""The autoscaler end to end: a real `mlkube up` controller, real `mlkube serve` replicas.

Each test starts a controller in a tmp state dir with short periods (the controller's
``MLKUBE_*`` settings), drives bounded load from threads on loopback, and reads what the
controller decided through its control API, its events and `mlkube status -o json`. Every
process seen is ended by PID at teardown. Nothing is mocked.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from mlkube.backends.local.ports import free_port
from mlkube.testing.local import LoadClient, LocalController

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

FAST = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "0.5",
    "MLKUBE_BACKOFF_BASE_S": "0.5",
    "MLKUBE_BACKOFF_MAX_S": "2",
    "MLKUBE_STOP_GRACE_S": "2",
}
ROW = [5.1, 3.5, 1.4, 0.2]

MODEL = """
import os
import time

import numpy as np

SLEEP_S = float(os.environ.get("TEST_MODEL_SLEEP_S", "0"))
BURN_S = float(os.environ.get("TEST_MODEL_BURN_S", "0"))
LOAD_S = float(os.environ.get("TEST_MODEL_LOAD_S", "0"))


class Model:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        time.sleep(LOAD_S)

    def predict(self, batch):
        rows = len(batch["input"])
        time.sleep(SLEEP_S * rows)
        end = time.thread_time() + BURN_S * rows
        while time.thread_time() < end:  # CPU work the replica's process time shows
            pass
        return {"label": np.zeros(rows, dtype=np.int64)}
"""


class Cluster(LocalController):
    """One controller's state dir; the test model's knobs travel in its environment."""

    def __init__(self, tmp: Path, **model_env: float) -> None:
        extra = {f"TEST_MODEL_{k.upper()}": str(v) for k, v in model_env.items()}
        super().__init__(tmp / "state", {**FAST, **extra})

    def cli(self, *args: str) -> str:
        return self.run(*args).stdout


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**model_env: float) -> Cluster:
        made.append(Cluster(tmp_path, **model_env))
        return made[-1]

    try:
        yield make
    finally:
        for cluster in made:
            cluster.cleanup()


def write_spec(
    folder: Path, name: str, port: int, autoscaling: dict[str, Any], **spec: Any
) -> Path:
    model_dir = folder / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "test_model.py").write_text(MODEL)
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(model_dir), "format": "python", "entrypoint": "test_model:Model"},
            "service": {"port": port},
            "server": {"drainTimeout": "5s"},
            "batching": {"maxBatchSize": 1, "maxLatencyMs": 0},
            "autoscaling": autoscaling,
            **spec,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def predict(port: int, name: str, timeout_s: float = 30.0) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", f"/v1/models/{name}:predict", json.dumps({"instances": [ROW]}))
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


class Load(LoadClient):
    """Back-to-back requests (no pause unless asked), bounded at 90 s."""

    def __init__(self, port: int, name: str, workers: int, pause_s: float = 0.0) -> None:
        super().__init__(port, name, workers, pause_s, max_s=90.0, row=ROW)


def decisions(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["reason"] == "AutoscalerDecision"]


def test_concurrency_scales_up_under_load_and_back_down_after_the_window(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(sleep_s=0.05)
    port = free_port()
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"type": "concurrency", "target": 2}],
        "syncPeriod": "1s",
        "stableWindow": "6s",
    }
    spec = write_spec(tmp_path, "conc", port, autoscaling)
    cluster.cli("up", "-d", str(spec))
    cluster.wait("one ready replica", lambda: cluster.deployment("conc")["ready"] == 1, 60)
    peak = 0
    with Load(port, "conc", workers=8) as load:

        def scaled_up() -> bool:
            nonlocal peak
            dep = cluster.deployment("conc")
            peak = max(peak, dep["ready"])
            return dep["desired"] == 3 and dep["ready"] == 3

        cluster.wait("3 ready replicas under load", scaled_up, 40)
        under_load = cluster.deployment("conc")["autoscaler"]
        time.sleep(1.0)
    # 8 clients in flight against a target of 2 per replica ask for 4; maxReplicas says 3.
    assert under_load["desiredReplicas"] == 3
    assert under_load["limitedBy"] == "maxReplicas", under_load
    assert under_load["metrics"]["concurrency_stable"] > 2.0
    assert "limited by maxReplicas" in under_load["reason"]

    stopped = time.monotonic()
    cluster.wait("back to 1 replica", lambda: cluster.deployment("conc")["desired"] == 1, 40)
    took = time.monotonic() - stopped
    assert took >= 6.0 - 1.0, f"scaled down {took:.1f}s after the load stopped: before the window"
    # The load was real (8 clients for the seconds the scale-up took; how many requests that is
    # depends on how fast the scale-up was) and none of it failed.
    assert load.total > 40
    assert load.failed == 0, (load.codes, load.errors)

    messages = decisions(cluster.events("conc"))
    ups = [m for m in messages if m.startswith(("1 -> 3", "1 -> 2"))]
    assert ups, messages[-10:]
    # The event carries its inputs: current -> desired, the reason and the metric values.
    assert "concurrency_stable=" in ups[0] and "desired_by_concurrency=" in ups[0], ups[0]
    assert any("-> 1" in m and not m.startswith("1 ->") for m in messages), messages[-10:]
    scaled = [e for e in cluster.events("conc") if e["reason"] == "ScalingReplicaSet"]
    assert any("to 3" in e["message"] for e in scaled)

    status = json.loads(cluster.cli("status", "conc", "-o", "json"))
    auto = status["deployments"][0]["autoscaler"]
    assert auto["desiredReplicas"] == 1
    assert auto["reason"] and "metrics" in auto and "limitedBy" in auto
    table = cluster.cli("status", "conc")
    assert "autoscaler" in table and "concurrency asks for" in table, table


def test_scale_to_zero_and_the_first_request_is_held_until_a_replica_is_ready(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(load_s=0.5)
    port = free_port()
    autoscaling = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "metrics": [{"type": "concurrency", "target": 4}],
        "syncPeriod": "0.5s",
        "stableWindow": "6s",
        "scaleToZero": {"idleAfter": "2s", "activationTimeout": "30s"},
    }
    spec = write_spec(tmp_path, "zero", port, autoscaling)
    cluster.cli("up", "-d", str(spec))
    cluster.wait("one ready replica", lambda: cluster.deployment("zero")["ready"] == 1, 60)
    first = cluster.deployment("zero")["replicas"][0]["pid"]
    assert predict(port, "zero")[0] == 200

    def at_zero() -> bool:
        dep = cluster.deployment("zero")
        return dep["desired"] == 0 and not dep["replicas"]

    cluster.wait("zero replicas after idleAfter", at_zero, 40)
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    auto = cluster.deployment("zero")["autoscaler"]
    assert auto["limitedBy"] == "scaleToZero idleAfter" or auto["desiredReplicas"] == 0, auto

    started = time.monotonic()
    status, _ = predict(port, "zero", timeout_s=60)
    waited = time.monotonic() - started
    assert status == 200
    # The request waited for a replica to start and load (0.5 s of load alone).
    assert waited > 0.5, waited
    dep = cluster.deployment("zero")
    assert dep["desired"] == 1 and dep["ready"] == 1
    assert dep["lbFailed"] == 0
    reasons = [e["message"] for e in cluster.events("zero") if e["reason"] == "ScalingReplicaSet"]
    assert any("to 0" in m and "idleAfter" in m for m in reasons), reasons
    assert any("from 0 to 1" in m for m in reasons), reasons


def test_a_held_request_gets_503_with_retry_after_when_activation_times_out(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(load_s=30)  # cannot be ready within the activation timeout
    port = free_port()
    autoscaling = {
        "minReplicas": 0,
        "maxReplicas": 1,
        "metrics": [{"type": "concurrency", "target": 4}],
        "scaleToZero": {"idleAfter": "60s", "activationTimeout": "1s"},
    }
    # drainTimeout 1s: at teardown the replica still loading waits out drainTimeout plus the
    # stop grace after its SIGTERM before the SIGKILL; the default here (5 s) only costs time.
    spec = write_spec(
        tmp_path, "slow", port, autoscaling, replicas=0, server={"drainTimeout": "1s"}
    )
    cluster.cli("up", "-d", str(spec))
    assert cluster.deployment("slow")["desired"] == 0
    started = time.monotonic()
    status, headers = predict(port, "slow", timeout_s=20)
    waited = time.monotonic() - started
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    assert 0.9 <= waited < 10.0, waited
    dep = cluster.deployment("slow")
    assert dep["desired"] == 1  # the held request activated a replica, which is still loading
    assert dep["ready"] == 0


def test_cpu_utilization_is_read_from_the_replicas_process_time(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    # Each request burns 10 ms of CPU; 2 clients pausing 40 ms keep one replica busy a good
    # part of a core: far above 50% of a 100m request. maxReplicas 1 keeps the one replica
    # whose process time this test reads itself, and shows the limit in the decision.
    cluster = cluster_factory(burn_s=0.01)
    port = free_port()
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 1,
        "metrics": [{"type": "cpu", "targetUtilization": 50}],
        "syncPeriod": "2s",
        "cpuInitializationPeriod": "1s",
        "initialReadinessDelay": "1s",
    }
    resources = {"requests": {"cpu": "100m"}}
    spec = write_spec(tmp_path, "cpu", port, autoscaling, resources=resources)
    cluster.cli("up", "-d", str(spec))
    cluster.wait("one ready replica", lambda: cluster.deployment("cpu")["ready"] == 1, 60)
    time.sleep(2.0)  # past the CPU initialization period
    process = psutil.Process(cluster.deployment("cpu")["replicas"][0]["pid"])
    seen: list[dict[str, Any]] = []
    with Load(port, "cpu", workers=2, pause_s=0.04) as load:
        time.sleep(3.0)  # every decision from here on averages a period spent under load
        before = sum(process.cpu_times()[:2]), time.monotonic()
        older = cluster.deployment("cpu")["autoscaler"]  # decided before `before`: not counted
        while time.monotonic() - before[1] < 7.0:
            auto = cluster.deployment("cpu")["autoscaler"] or {}
            fresh = auto != older and (not seen or auto != seen[-1])
            if fresh and "cpu_utilization" in auto.get("metrics", {}):
                seen.append(auto)
            time.sleep(0.25)
        after = sum(process.cpu_times()[:2]), time.monotonic()
    assert load.failed == 0, (load.codes, load.errors)
    assert len(seen) >= 2, seen
    # Our own reading of the replica's process time over the same stretch, as % of 100m,
    # against the mean of the controller's readings (each over one 2 s sync period).
    ours = 100.0 * (after[0] - before[0]) / (after[1] - before[1]) / 0.1
    theirs = sum(d["metrics"]["cpu_utilization"] for d in seen) / len(seen)
    assert ours > 100, ours  # the load is real
    assert 0.7 * ours <= theirs <= 1.3 * ours, (theirs, ours, seen)
    last = seen[-1]
    assert last["metrics"]["desired_by_cpu"] > 1, last
    assert last["limitedBy"] == "maxReplicas", last
    assert "cpu asks for" in last["reason"], last
