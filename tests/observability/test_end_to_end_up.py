"""`mlkube up` under a real Prometheus: file_sd follows the replicas, and the query API agrees
with what the client sent through the load balancer.

Prometheus is started with ``observability.prometheus`` on the targets file the controller
writes (what ``mlkube up --prometheus`` does). Tolerances: counts exact; every replica a
target; the rate over the load window within 25% of sent/elapsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlkube.backends.local.ports import free_port
from mlkube.observability import prometheus
from mlkube.observability.logfiles import read_rotated
from mlkube.observability.logs import LogLine, merge_log_lines
from mlkube.spec import load_spec
from mlkube.testing import models

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


class Up:
    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.env = {**os.environ, **FAST, "MLKUBE_STATE_DIR": str(self.state)}
        self.pids: set[int] = set()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlkube", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, f"mlkube {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def deployment(self) -> dict[str, Any]:
        dep: dict[str, Any] = json.loads(self.cli("status", "iris", "-o", "json"))["deployments"][0]
        self.pids.update(r["pid"] for r in dep["replicas"] if r["pid"])
        return dep

    def ready(self, count: int) -> bool:
        dep = self.deployment()
        return dep["ready"] == count and len(dep["replicas"]) == count

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.pids.add(int(json.loads((self.state / "controller.json").read_text())["pid"]))
        with contextlib.suppress(Exception):
            self.cli("down")
        for pid in self.pids:  # only processes this test started, by PID
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


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
    up = Up(tmp_path)
    try:
        up.cli("up", "-d", str(spec))
        wait_for(lambda: up.ready(2), 90, "2 ready replicas")
        prometheus.write_config(up.state, [load_spec(spec)])
        info = prometheus.start(up.state, binary=binary)
        prom = Prom(info.url)
        names = {r["name"] for r in up.deployment()["replicas"]}
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
        folder = up.state / "logs" / "default" / "iris"

        def merged() -> list[LogLine]:
            streams = {p.stem: read_rotated(p) for p in folder.glob("*.log")}
            return list(merge_log_lines(streams))

        lines = wait_for(
            lambda: [m for m in merged() if "e2e-trace-42" in m.text] and merged(),
            10,
            "the request's log line",
        )
        assert [m.ts for m in lines] == sorted(m.ts for m in lines)
        # Every line parses as JSON, except the replica's stderr progress lines, which the
        # local backend writes into the same file.
        records = [json.loads(m.text) for m in lines if not m.text.startswith("mlkube serve:")]
        mine = [r for r in records if r.get("request_id") == "e2e-trace-42"]
        assert mine[0]["status"] == 200 and mine[0]["deployment"] == "iris"
        assert sum(r.get("msg") == "request" for r in records) >= REQUESTS

        # Replicas come and go: Prometheus follows the controller's targets file.
        up.cli("scale", "iris", "3")
        wait_for(lambda: up.ready(3), 90, "3 ready replicas")
        names = {r["name"] for r in up.deployment()["replicas"]}
        wait_for(
            lambda: (
                {t["labels"]["replica"] for t in prom.targets() if t["health"] == "up"} == names
            ),
            30,
            "third replica scraped",
        )
    finally:
        prometheus.stop(up.state)
        up.cleanup()
