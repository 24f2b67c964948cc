"""``mlkube recommend NAME``: usage recorded by the local controller, read back and right-sized.

Unit tests drive the recording (``control.usage``) and the ``GET /usage`` route on a
Controller without processes; the integration test runs a real ``mlkube up`` with the iris
ONNX model, sends bounded load on 127.0.0.1, and checks the recommendation against the
samples the controller recorded. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.autoscale.rightsize import parse_samples, recommend
from mlkube.autoscale.vpa import CPU_BUCKETS, MEMORY_BUCKETS, POD_MIN_CPU, POD_MIN_MEMORY
from mlkube.backends.local.controller import usage
from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import Snapshot
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Backend, Router
from mlkube.clock import ManualClock
from mlkube.desired.rollout import RolloutState
from mlkube.errors import BackendError
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.loading import load_spec, parse_documents
from mlkube.testing.control_api import served
from mlkube.testing.local import LocalController
from mlkube.testing.models import iris_classifier, save_onnx

MI = 2**20


# unit: recording and the route ---------------------------------------------------------------
def _doc(**resources: Any) -> ModelDeployment:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"uri": "/models/iris.onnx", "format": "onnx"}, "resources": resources},
    }
    (parsed,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(parsed, ModelDeployment)
    return parsed


@pytest.fixture
def ctrl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    monkeypatch.setattr(usage, "_LB_SEEN", {})
    monkeypatch.setattr(usage, "_OOMS_SEEN", set())
    controller = Controller(tmp_path, ControllerSettings(), ManualClock(1_000_000.0))
    yield controller
    controller.store.close()


def _deployment(ctrl: Controller) -> Deployment:
    doc = _doc(requests={"cpu": "500m", "memory": "128Mi"}, limits={"memory": "256Mi"})
    dep = Deployment("ml/iris", doc, Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 2)
    dep.revisions[1] = doc
    for name, phase in (("iris-1-a", Phase.READY), ("iris-1-b", Phase.BACKOFF)):
        dep.replicas[name] = Replica(name, 1, 0, 0.0, phase=phase)
    dep.router.backends["iris-1-a"] = Backend("iris-1-a", 0, 1)
    ctrl.deployments[dep.key] = dep
    return dep


def _scrape(replica: Replica, at: float, cpu_s: float, rss: int, served: float) -> None:
    """What the scrape tick appends: cumulative CPU seconds, RSS, a latency histogram."""
    buckets = {0.01: served, 0.1: served, math.inf: served}
    replica.snapshots.append(Snapshot(at, served, 0.0, buckets, 0.0, 0.0, cpu_s, rss))


def test_each_scrape_records_cpu_rss_and_the_load_balancer_rate(ctrl):
    dep = _deployment(ctrl)
    replica, backend = dep.replicas["iris-1-a"], dep.router.backends["iris-1-a"]
    _scrape(replica, 10.0, 1.0, 100 * MI, 0)
    usage.record(ctrl, 10.0)
    assert ctrl.store.usage(dep.key) == [], "one snapshot is no period yet"
    backend.requests = 7
    _scrape(replica, 12.0, 2.0, 120 * MI, 40)
    usage.record(ctrl, 12.0)
    ctrl.clock.advance(2.0)
    backend.requests = 47
    _scrape(replica, 14.0, 2.5, 110 * MI, 80)
    usage.record(ctrl, 14.0)
    usage.record(ctrl, 15.0)  # a tick that scraped nothing new records nothing
    first, second = ctrl.store.usage(dep.key)
    assert (first.cpu_cores, first.memory_bytes, first.rps) == (0.5, 120 * MI, None)
    assert (second.cpu_cores, second.memory_bytes, second.rps) == (0.25, 110 * MI, 20.0)
    assert second.ts - first.ts == 2.0, "wall-clock stamps, so history survives restarts"
    assert first.cpu_request_cores == 0.5
    assert second.p95_ms is not None and 0 < second.p95_ms <= 10.0


def test_an_oom_kill_is_recorded_once_with_at_least_the_limit(ctrl):
    dep = _deployment(ctrl)
    victim = dep.replicas["iris-1-b"]
    _scrape(victim, 5.0, 1.0, 200 * MI, 0)
    victim.last_reason = "OOMKilled"
    victim.backoff = type(victim.backoff)(restart_count=1, streak=1)
    usage.record(ctrl, 6.0)
    usage.record(ctrl, 7.0)
    (kill,) = ctrl.store.ooms(dep.key)
    assert (kill.replica, kill.restart) == ("iris-1-b", 1)
    assert kill.memory_bytes == 256 * MI, "killed when it crossed its 256Mi limit"
    assert kill.memory_request_bytes == 128 * MI
    victim.phase = Phase.READY  # restarted: not counted again; a second kill is
    usage.record(ctrl, 8.0)
    victim.phase, victim.backoff = Phase.BACKOFF, type(victim.backoff)(2, 2)
    usage.record(ctrl, 9.0)
    assert [k.restart for k in ctrl.store.ooms(dep.key)] == [1, 2]


@pytest.mark.integration
async def test_usage_route_returns_samples_the_recommender_reads(ctrl):
    dep = _deployment(ctrl)
    replica = dep.replicas["iris-1-a"]
    for i in range(6):
        _scrape(replica, float(i), 0.3 * i * i, (100 + 10 * i) * MI, 10.0 * i)
        usage.record(ctrl, float(i))
        ctrl.clock.advance(1.0)
    async with served(ctrl) as client:
        body = await asyncio.to_thread(client.call, "GET", "/usage?name=iris")
        since = ctrl.store.usage(dep.key)[3].ts
        later = await asyncio.to_thread(client.call, "GET", f"/usage?name=ml/iris&since={since}")
    assert body["name"] == "ml/iris" and len(body["samples"]) == 5
    assert {s["replica"] for s in body["samples"]} == {"iris-1-a"}
    assert ModelDeployment.model_validate(body["spec"]).name == "iris"
    samples, ooms = parse_samples(body, "route")
    rec = recommend(samples, ooms, deployment=dep.doc, slo_ms=500.0)
    assert rec.memory_request_bytes >= max(150 * MI * 1.15, POD_MIN_MEMORY)
    assert rec.cpu_request_milli >= max(0.3 * 9 * 1150, POD_MIN_CPU * 1000)  # p90 ≥ 2.7 cores
    assert len(later["samples"]) == 2


@pytest.mark.integration
async def test_usage_route_refuses_bad_requests(ctrl):
    _deployment(ctrl)
    async with served(ctrl) as client:
        with pytest.raises(BackendError, match="name: Field required"):
            await asyncio.to_thread(client.call, "GET", "/usage")
        with pytest.raises(BackendError, match=r"since: .*'yesterday'"):
            await asyncio.to_thread(client.call, "GET", "/usage?name=iris&since=yesterday")
        with pytest.raises(BackendError, match="no deployment named 'nope'"):
            await asyncio.to_thread(client.call, "GET", "/usage?name=nope")


@pytest.mark.integration
async def test_usage_route_needs_the_token(ctrl):
    _deployment(ctrl)
    async with served(ctrl) as client:
        data = await asyncio.to_thread(client.call, "GET", "/usage?name=iris")
        assert data["samples"] == [] and data["name"] == "ml/iris"
        client.token = "wrong"  # noqa: S105 - a deliberately wrong token
        with pytest.raises(BackendError, match="missing or wrong token"):
            await asyncio.to_thread(client.call, "GET", "/usage?name=iris")


# integration: a real `mlkube up` -----------------------------------------------------------
FAST = {
    "MLKUBE_RECONCILE_PERIOD_S": "0.1",
    "MLKUBE_PROBE_PERIOD_S": "0.2",
    "MLKUBE_METRICS_PERIOD_S": "0.5",
    "MLKUBE_STOP_GRACE_S": "2",
}
SPEC = """\
# iris, right-sized from what it used (this comment must survive --apply)
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: iris-live   # the NAME given to recommend
spec:
  model:
    uri: ./model/model.onnx
    format: onnx
  service:
    port: {port}
  resources:
    requests:
      cpu: 100m      # a guess, before any usage was seen
      memory: 64Mi
"""


def _predict_loop(port: int, stop: threading.Event, sent: list[int], max_requests: int) -> None:
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set() and sent[0] < max_requests:
            conn.request("POST", "/v1/models/iris-live:predict", body)
            response = conn.getresponse()
            response.read()
            sent[0] += 1
    finally:
        conn.close()


class Live(LocalController):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "state", FAST)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(*args, check=check)

    def usage(self) -> dict[str, Any]:
        data: dict[str, Any] = Client(self.state).call("GET", "/usage?name=iris-live")
        return data

    def wait_ready(self, timeout_s: float) -> None:
        self.wait("iris-live ready", lambda: self.deployment("iris-live")["ready"] >= 1, timeout_s)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    cluster = Live(tmp_path)
    try:
        yield cluster
    finally:
        cluster.cleanup()


def _cpu_milli(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(text) * 1000


def _mi_bytes(text: str) -> int:
    assert text.endswith("Mi"), text
    return int(text[:-2]) * MI


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_recommend_name_right_sizes_a_running_deployment(live, tmp_path):
    save_onnx(iris_classifier(), tmp_path / "model")
    spec = tmp_path / "iris.yaml"
    spec.write_text(SPEC.format(port=free_port()))
    port = load_spec(spec).spec.service.port
    live.cli("up", "-d", str(spec))
    live.wait_ready(60)

    stop, sent = threading.Event(), [0]
    workers = [
        threading.Thread(target=_predict_loop, args=(port, stop, sent, 20_000), daemon=True)
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: 30 s and 20k requests at most
        rows = live.usage()["samples"]
        if sum(1 for s in rows if s["cpuCores"] is not None and (s["rps"] or 0) > 0) >= 8:
            break
        time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join(timeout=15)
    assert sent[0] > 0

    done = live.cli("recommend", "iris-live", "-o", "json")
    rec = json.loads(done.stdout)
    seen = live.usage()["samples"]
    observed = rec["observed"]
    assert observed["deployment"].endswith("/iris-live")
    assert observed["samples"] >= 8 and observed["replicas"]
    memory = _mi_bytes(rec["requests"]["memory"])
    cpu = _cpu_milli(rec["requests"]["cpu"])
    peak = observed["memoryBytesMax"]
    assert 0 < observed["memoryBytesMedian"] <= memory
    # A percentile is the end of its histogram bucket: at most 5% plus the first bucket's size
    # above the value (vpa.BucketScheme), then the 15% margin.
    top = 1.15 * (1.05 * peak + MEMORY_BUCKETS.first)
    assert max(1.15 * peak, POD_MIN_MEMORY) <= memory <= max(top, POD_MIN_MEMORY) + MI
    assert cpu > 0 and observed["cpuCoresMax"] > 0
    assert cpu >= 1.15 * observed["cpuCoresMedian"] * 1000 - 1  # p90 + 15% ≥ median + 15%
    top_cores = 1.15 * (1.05 * observed["cpuCoresMax"] + CPU_BUCKETS.first)
    assert cpu <= max(top_cores * 1000, POD_MIN_CPU * 1000) + 1
    live_rps = max(s["rps"] or 0.0 for s in seen)
    assert rec["autoscaling"]["type"] == "rps"
    assert 0 < rec["autoscaling"]["target"] <= 0.7 * live_rps + 0.01

    refused = live.cli("recommend", "iris-live", "--apply", check=False)
    assert refused.returncode != 0 and "--spec FILE" in refused.stderr
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("iris-live", "other").format(port=1))
    wrong = live.cli("recommend", "iris-live", "--apply", "--spec", str(other), check=False)
    assert wrong.returncode != 0 and "not the running" in wrong.stderr

    before = spec.read_text()
    done = live.cli("recommend", "iris-live", "--apply", "--spec", str(spec), "-o", "json")
    written = json.loads(done.stdout)["requests"]
    after = spec.read_text()
    assert after != before
    for comment in ("# iris, right-sized", "# the NAME given to recommend", "uri: ./model"):
        assert comment in after
    applied = load_spec(spec).spec.resources.requests
    cpu_now, memory_now = applied.get("cpu"), applied.get("memory")
    assert cpu_now is not None and memory_now is not None
    assert (cpu_now.millis, memory_now.whole) == (
        _cpu_milli(written["cpu"]),
        _mi_bytes(written["memory"]),
    )
    assert memory_now.whole >= max(1.15 * peak, POD_MIN_MEMORY)
