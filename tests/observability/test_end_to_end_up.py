"""`mlkube up --prometheus` under a real Prometheus: file_sd follows the replicas, the query
API agrees with what the client sent through the load balancer, the controller's own metrics
are scraped, `mlkube logs` is JSON in time order, and `mlkube down` stops Prometheus.

Tolerances: counts exact; every replica a target; the rate over the load window within 25% of
sent/elapsed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlkube.backends.local import prometheus
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.supervisor import pid_alive
from mlkube.observability.logs import line_time
from mlkube.testing import models
from mlkube.testing.local import LocalController

from .conftest import tool
from .promclient import Prom, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

FAST = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "1",
    "MLKUBE_STOP_GRACE_S": "2",
}
REQUESTS = 400
PER_THREAD_RPS = 20.0  # paced: 4 threads x 100 requests take ~5 s, several 1 s scrapes


class Up(LocalController):
    def __init__(self, tmp: Path, binary: str) -> None:
        path = os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", "")
        super().__init__(tmp / "state", {**FAST, "PATH": path})

    def cli(self, *args: str) -> str:
        return self.run(*args).stdout

    def cli_deployment(self) -> dict[str, Any]:
        """The deployment as `mlkube status -o json` prints it (the CLI is under test here)."""
        dep: dict[str, Any] = json.loads(self.cli("status", "iris", "-o", "json"))["deployments"][0]
        self.pids.update(r["pid"] for r in dep["replicas"] if r["pid"])
        return dep

    def ready(self, count: int) -> bool:
        dep = self.cli_deployment()
        return dep["ready"] == count and len(dep["replicas"]) == count


def test_prometheus_follows_mlkube_up_replicas_and_agrees_with_the_client(tmp_path):
    binary = tool("prometheus")
    model = models.save_onnx(models.iris_classifier(), tmp_path, "iris")
    port = free_port()
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {
                    "model": {"uri": str(model.path), "format": "onnx"},
                    "replicas": 2,
                    "service": {"port": port},
                    "server": {"drainTimeout": "2s"},
                    "monitoring": {"scrapeInterval": "1s"},
                },
            }
        )
    )
    up = Up(tmp_path, binary)
    try:
        out = up.cli("up", "-d", "--prometheus", str(spec))
        prom_url = json.loads(up.cli("status", "-o", "json"))["controller"]["prometheus"]
        assert f"prometheus started: {prom_url}" in out
        info = prometheus.running(up.state)
        assert info is not None and info.url == prom_url
        up.pids.add(info.pid)
        wait_for(lambda: up.ready(2), 90, "2 ready replicas")
        prom = Prom(prom_url)
        names = {r["name"] for r in up.cli_deployment()["replicas"]}
        wait_for(
            lambda: (
                {r["metric"]["replica"] for r in prom.query('up{deployment="iris"} == 1')} == names
            ),
            30,
            "both replicas scraped",
        )

        url = f"http://127.0.0.1:{port}/v1/models/iris:predict"
        sent = {"n": 0}
        lock = threading.Lock()

        def worker() -> None:
            with httpx.Client(timeout=10) as http:
                begin = time.monotonic()
                for i in range(REQUESTS // 4):
                    time.sleep(max(0.0, begin + i / PER_THREAD_RPS - time.monotonic()))
                    answer = http.post(url, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                    assert answer.status_code == 200
                    with lock:
                        sent["n"] += 1

        started = time.time()
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        ended = time.time()
        elapsed = ended - started
        assert sent["n"] == REQUESTS

        total = 'sum(mlkube_requests_total{deployment="iris",protocol="v1",code="200"})'
        wait_for(lambda: prom.scalar(total) == REQUESTS, 20, "every request counted")
        per_replica = prom.query(
            'sum by (replica) (mlkube_requests_total{deployment="iris",protocol="v1"})'
        )
        assert {r["metric"]["replica"] for r in per_replica} == names
        assert all(float(r["value"][1]) > 0 for r in per_replica)  # the balancer spreads load
        # A window that lies inside the load, so the paced client rate holds all through it.
        window = int(elapsed) - 1
        rate = prom.scalar(
            f'sum(rate(mlkube_requests_total{{deployment="iris",protocol="v1"}}[{window}s]))',
            at=ended - 0.5,
        )
        print(f"mlkube up: rate prometheus {rate}/s, client {REQUESTS / elapsed:.1f}/s")
        assert rate is not None
        assert rate == pytest.approx(REQUESTS / elapsed, rel=0.25)

        # The request id travels client → balancer → replica → response and log line; the
        # replicas' log files merge in time order and every line is JSON.
        answer = httpx.post(
            url,
            json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
            headers={"x-request-id": "e2e-trace-42"},
            timeout=10,
        )
        assert answer.headers["x-request-id"] == "e2e-trace-42"

        def merged() -> list[str]:
            return up.cli("logs", "iris").splitlines()

        lines = wait_for(
            lambda: [m for m in merged() if "e2e-trace-42" in m] and merged(),
            10,
            "the request's log line",
        )
        records = [json.loads(line) for line in lines]  # every line, none excepted
        assert all(isinstance(r.get("ts"), str) for r in records)
        times = [line_time(line) or 0.0 for line in lines]
        assert times == sorted(times)
        mine = [r for r in records if r.get("request_id") == "e2e-trace-42"]
        assert mine[0]["status"] == 200 and mine[0]["deployment"] == "iris"
        assert sum(r.get("msg") == "request" for r in records) >= REQUESTS

        # Replicas come and go: Prometheus follows the controller's targets file.
        up.cli("scale", "iris", "3")
        wait_for(lambda: up.ready(3), 90, "3 ready replicas")
        names = {r["name"] for r in up.cli_deployment()["replicas"]}
        wait_for(
            lambda: (
                {
                    t["labels"]["replica"]
                    for t in prom.targets()
                    if t["health"] == "up" and t["labels"]["job"] == "mlkube-replicas"
                }
                == names
            ),
            30,
            "third replica scraped",
        )
        # The controller's own metrics, scraped from its tokenless /metrics.
        controller = 'mlkube_deployment_ready_replicas{job="mlkube-controller",deployment="iris"}'
        wait_for(lambda: prom.scalar(controller) == 3, 30, "the controller's ready count")
        desired = 'mlkube_deployment_desired_replicas{job="mlkube-controller",deployment="iris"}'
        assert prom.scalar(desired) == 3

        # `down` stops the Prometheus that `up --prometheus` started.
        assert "prometheus stopped" in up.cli("down")
        wait_for(lambda: not pid_alive(info.pid), 15, "prometheus to exit")
        assert prometheus.running(up.state) is None
    finally:
        prometheus.stop(up.state)
        up.cleanup()
