"""`mlkube up` observability end to end: the controller's /metrics after a scale, replica logs
that rotate at a small size, and `mlkube logs` merging them as JSON in time order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from mlkube.backends.local import prometheus
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.supervisor import pid_alive as alive
from mlkube.observability.logs import line_time

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REQUESTS = 60


def test_metrics_after_a_scale_and_logs_that_rotate_and_merge(
    local, tmp_path, iris_onnx, spec_writer
):
    port = free_port()
    spec = spec_writer(
        tmp_path / "iris.yaml",
        "iris",
        {"uri": str(iris_onnx), "format": "onnx"},
        replicas=1,
        service={"port": port},
        server={"drainTimeout": "2s"},
        logging={"files": {"maxSize": "1Ki", "backups": 3}},
    )
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 1)
    key = {("namespace", "default"), ("deployment", "iris")}

    def gauge(name: str, **labels: str) -> float | None:
        return local.metrics().get((name, frozenset(key | set(labels.items()))))

    assert gauge("mlkube_deployment_desired_replicas") == 1
    local.cli("scale", "iris", "2")
    assert gauge("mlkube_deployment_desired_replicas") == 2  # the wish, before any replica
    local.wait_ready("iris", 2)
    assert gauge("mlkube_deployment_ready_replicas") == 2
    assert gauge("mlkube_deployment_replicas", phase="Ready") == 2
    assert gauge("mlkube_deployment_replicas", phase="Pending") == 0
    assert gauge("mlkube_rollout_phase", phase="Complete") == 1
    assert gauge("mlkube_rollout_revision", role="stable") == 1
    assert gauge("mlkube_deployment_max_replicas") is None  # no autoscaling section

    url = f"http://127.0.0.1:{port}/v1/models/iris:predict"
    for i in range(REQUESTS):
        request = urllib.request.Request(
            url,
            data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
            headers={"x-request-id": f"rot-{i}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    folder = local.state / "logs" / "default" / "iris"
    replicas = [r["name"] for r in local.deployment("iris")["replicas"]]
    # ~60 access lines of ~300 bytes and the probes' lines are far over 1Ki: every replica's
    # file rotated (checked every second), and no more than `backups` rotated files are kept.
    local.wait(
        "rotated log files",
        lambda: all((folder / f"{n}.log.1").exists() for n in replicas),
        timeout_s=15,
    )
    time.sleep(0.3)  # access lines are flushed every 100 ms
    for name in replicas:
        assert not (folder / f"{name}.log.4").exists()
        assert (folder / f"{name}.log").stat().st_size < 64 * 1024
        progress = (folder / f"{name}.err").read_text()
        assert "mlkube serve: ready" in progress  # stderr is kept, apart from the JSON log

    out = local.cli("logs", "iris").stdout.splitlines()
    records = [json.loads(line) for line in out]  # every line is JSON
    assert len(records) > REQUESTS // 4
    assert all(isinstance(r.get("ts"), str) for r in records)
    times = [line_time(line) or 0.0 for line in out]
    assert times == sorted(times), "merged in time order"
    assert {r["replica"] for r in records} == set(replicas)
    # Rotation kept the newest lines: the last request is there.
    assert any(r.get("request_id") == f"rot-{REQUESTS - 1}" for r in records)

    one = local.cli("logs", "iris", "--replica", replicas[1]).stdout.splitlines()
    assert one and {json.loads(line)["replica"] for line in one} == {replicas[1]}


def test_ctrl_c_in_up_stops_the_prometheus_it_started(local, tmp_path, iris_onnx, spec_writer):
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(binary, os.X_OK):
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    spec = spec_writer(
        tmp_path / "iris.yaml",
        "iris",
        {"uri": str(iris_onnx), "format": "onnx"},
        replicas=1,
        service={"port": free_port()},
        server={"drainTimeout": "2s"},
    )
    foreground = subprocess.Popen(  # the live view, as a person runs it
        [sys.executable, "-m", "mlkube", "up", "--prometheus", str(spec)],
        env=local.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            if not (local.state / "controller.json").exists():
                return False
            deployments = local.status()["deployments"]  # up applies after the controller starts
            return bool(deployments) and deployments[0]["ready"] == 1

        local.wait("the deployment to be ready", ready, 60)
        local.wait("prometheus", lambda: prometheus.running(local.state) is not None, 30)
        info = prometheus.running(local.state)
        assert info is not None
        local.seen_pids.add(info.pid)
        controller = local.controller_pid()
        foreground.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = foreground.communicate(timeout=60)
        assert "stopped default/iris" in out.decode()
        local.wait("prometheus to exit", lambda: not alive(info.pid), 15)
        assert not alive(controller)
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.communicate()
