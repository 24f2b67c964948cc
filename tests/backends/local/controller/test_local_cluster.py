"""`mlkube up` end to end: real controller, real `mlkube serve` replicas, bounded load."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from mlkube.backends.local.ports import free_port
from mlkube.backends.local.supervisor import pid_alive as alive

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def onnx_spec(spec_writer):
    def write(tmp: Path, model: Path, port: int, **spec: object) -> Path:
        base: dict[str, object] = {
            "service": {"port": port},
            "server": {"drainTimeout": "5s"},
            "batching": {"maxLatencyMs": 1},
        }
        base.update(spec)
        return spec_writer(tmp / "iris.yaml", "iris", {"uri": str(model), "format": "onnx"}, **base)

    return write


def test_sigkilled_replica_comes_back_and_no_request_fails(
    local, tmp_path, iris_onnx, onnx_spec, make_load
):
    port = free_port()
    spec = onnx_spec(tmp_path, iris_onnx, port, replicas=2)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    victim = local.deployment("iris")["replicas"][0]
    with make_load(port, "iris") as load:
        time.sleep(1.0)
        os.kill(victim["pid"], signal.SIGKILL)

        def back() -> bool:
            dep = local.deployment("iris")
            restarted = [r for r in dep["replicas"] if r["name"] == victim["name"]]
            return dep["ready"] == 2 and bool(restarted) and restarted[0]["restarts"] == 1

        local.wait("the killed replica to be restarted and ready", back)
        time.sleep(0.5)
    assert load.total > 100
    assert load.failed == 0, (load.codes, load.errors)
    replica = next(r for r in local.deployment("iris")["replicas"] if r["name"] == victim["name"])
    assert replica["lastReason"] == "killed by SIGKILL"
    restarts = local.metrics()
    key = {("namespace", "default"), ("deployment", "iris")}
    assert restarts[("mlkube_replica_restarts_total", frozenset(key | {("reason", "Signal")}))] == 1
    assert ("mlkube_replica_restarts_total", frozenset(key | {("reason", "Error")})) not in restarts


def test_rolling_update_under_load_loses_nothing(local, tmp_path, iris_onnx, onnx_spec, make_load):
    port = free_port()
    spec = onnx_spec(tmp_path, iris_onnx, port, replicas=2)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    with make_load(port, "iris") as load:
        time.sleep(0.5)
        onnx_spec(tmp_path, iris_onnx, port, replicas=2, batching={"maxLatencyMs": 2})
        assert "revision 2" in local.cli("apply", str(spec)).stdout

        def rolled() -> bool:
            dep = local.deployment("iris")
            return (
                dep["revision"] == 2
                and dep["rollout"]["phase"] == "Complete"
                and {r["revision"] for r in dep["replicas"]} == {2}
                and dep["ready"] == 2
            )

        local.wait("revision 2 to roll out", rolled)
        time.sleep(0.5)
    assert load.total > 100
    assert load.failed == 0, (load.codes, load.errors)
    history = local.cli("rollout", "history", "iris").stdout.splitlines()
    assert history[0].split() == ["REV", "STATUS", "CHANGE", "MODEL"]
    assert history[1].split()[:3] == ["1", "-", "created"]
    assert history[2].split()[:4] == ["*", "2", "Complete", "batching"]  # what the apply changed


def test_scale_one_four_one_under_load_loses_nothing(
    local, tmp_path, iris_onnx, onnx_spec, make_load
):
    port = free_port()
    spec = onnx_spec(tmp_path, iris_onnx, port, replicas=1)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 1)
    with make_load(port, "iris") as load:
        local.cli("scale", "iris", "4")
        local.wait_ready("iris", 4, timeout_s=90)
        local.cli("scale", "iris", "1")
        local.wait_ready("iris", 1)
        time.sleep(0.5)
    assert load.total > 100
    assert load.failed == 0, (load.codes, load.errors)
    events = local.cli("events", "iris").stdout
    assert "scaled from 1 to 4" in events
    assert "scaled from 4 to 1" in events


def test_failing_canary_is_rolled_back_automatically(
    local, tmp_path, iris_python, bad_python, spec_writer, make_load
):
    port = free_port()
    good_dir, good_entry = iris_python
    rollout = {
        "strategy": "Canary",
        "steps": [{"weight": 20, "pause": "60s"}],
        "analysis": {"maxErrorRate": 0.05, "interval": "1s", "minRequests": 10},
    }
    spec = spec_writer(
        tmp_path / "py.yaml",
        "pyiris",
        {"uri": str(good_dir), "format": "python", "entrypoint": good_entry},
        replicas=2,
        service={"port": port},
        rollout=rollout,
    )
    local.cli("up", "-d", str(spec))
    local.wait_ready("pyiris", 2)
    bad_dir, bad_entry = bad_python
    with make_load(port, "pyiris") as load:
        time.sleep(0.5)
        spec_writer(
            spec,
            "pyiris",
            {"uri": str(bad_dir), "format": "python", "entrypoint": bad_entry},
            replicas=2,
            service={"port": port},
            rollout=rollout,
        )
        local.cli("apply", str(spec))

        def rolled_back() -> bool:
            dep = local.deployment("pyiris")
            return dep["rollout"]["phase"] == "RolledBack" and all(
                r["revision"] == 1 for r in dep["replicas"]
            )

        local.wait("the canary to be rolled back", rolled_back)
        after = load.failed
        time.sleep(1.0)
    assert load.failed == after, "after the rollback every request succeeds"
    assert 0 < load.failed <= 0.2 * load.total, (load.codes, load.errors)
    events = local.cli("events", "pyiris").stdout
    assert "CanaryRolledBack" in events
    assert "failed analysis: error rate" in events


def test_corrupt_model_fails_the_rollout_and_the_old_revision_serves(
    local, tmp_path, iris_onnx, onnx_spec, make_load, spec_writer
):
    port = free_port()
    spec = onnx_spec(tmp_path, iris_onnx, port, replicas=1)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 1)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model" * 10)
    with make_load(port, "iris", workers=2) as load:
        spec_writer(
            spec,
            "iris",
            {"uri": str(corrupt), "format": "onnx"},
            replicas=1,
            service={"port": port},
            server={"drainTimeout": "5s"},
        )
        local.cli("apply", str(spec))
        local.wait(
            "the rollout to fail",
            lambda: local.deployment("iris")["rollout"]["phase"] == "Failed",
        )
        time.sleep(0.5)
    assert load.failed == 0, (load.codes, load.errors)
    dep = local.deployment("iris")
    assert dep["revision"] == 1
    assert "revision 2 failed to start" in dep["rollout"]["reason"]
    assert "Failed" in local.cli("rollout", "history", "iris").stdout


def test_a_port_in_use_is_a_clear_error_and_leaves_nothing(
    local, tmp_path, iris_onnx, onnx_spec, make_load
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = onnx_spec(tmp_path, iris_onnx, port)
        done = local.cli("up", "-d", str(spec), check=False)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "already in use" in done.stderr
    assert not (local.state / "controller.json").exists(), "the controller it started is gone"


def test_down_leaves_no_process_behind(local, tmp_path, iris_onnx, onnx_spec, make_load):
    spec = onnx_spec(tmp_path, iris_onnx, free_port(), replicas=2)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    pids = {r["pid"] for r in local.deployment("iris")["replicas"]} | {local.controller_pid()}
    out = local.cli("down").stdout
    assert "controller stopped" in out
    local.wait("every process to exit", lambda: not any(alive(p) for p in pids), 15)


def test_a_restarted_controller_readopts_live_replicas(
    local, tmp_path, iris_onnx, onnx_spec, make_load
):
    port = free_port()
    spec = onnx_spec(tmp_path, iris_onnx, port, replicas=2)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    before = {r["name"]: r["pid"] for r in local.deployment("iris")["replicas"]}
    os.kill(local.controller_pid(), signal.SIGKILL)
    time.sleep(0.5)
    assert all(alive(pid) for pid in before.values()), "replicas outlive a crashed controller"
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    after = {r["name"]: r["pid"] for r in local.deployment("iris")["replicas"]}
    assert after == before
    assert "Adopted" in local.cli("events", "iris").stdout


HOG_MODEL = """
import numpy as np


class Hog:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        self.calls = 0

    def predict(self, batch):
        # The warm-up call passes; a real request allocates far past the memory limit.
        self.calls += 1
        if self.calls > 1:
            self.hog = np.ones(600 * 2**20 // 8)
        return {"label": np.zeros(len(batch["input"]), dtype=np.int64)}
"""


def test_a_replica_over_its_memory_limit_is_reported_oomkilled(local, tmp_path, spec_writer):
    folder = tmp_path / "hog"
    folder.mkdir()
    (folder / "hog_model.py").write_text(HOG_MODEL)
    port = free_port()
    spec = spec_writer(
        tmp_path / "hog.yaml",
        "hog",
        {"uri": str(folder), "format": "python", "entrypoint": "hog_model:Hog"},
        replicas=1,
        service={"port": port},
        resources={"limits": {"memory": "250Mi", "cpu": "1"}},
    )
    local.cli("up", "-d", str(spec))
    local.wait_ready("hog", 1)
    enforcement = local.status()["controller"]["enforcement"]
    if not enforcement.startswith("cgroup"):
        pytest.skip(f"memory limits are not cgroup-enforced here ({enforcement})")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(  # the request that blows the limit; its answer does not matter
            urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models/hog:predict",
                data=b'{"instances": [[1, 2, 3, 4]]}',
                method="POST",
            ),
            timeout=3,
        )

    def oom_killed() -> bool:
        replicas = local.deployment("hog")["replicas"]
        return bool(replicas) and replicas[0]["lastReason"] == "OOMKilled"

    local.wait("the replica to be reported OOMKilled", oom_killed, 30)
    assert "OOMKilled" in local.cli("events", "hog").stdout
