"""A real Prometheus on 127.0.0.1 scrapes a real replica (``mlkube serve``) under bounded load.

Checks that what Prometheus computes agrees with what the client sent and measured:
- request counts by code: exactly equal (counters are exact);
- request rate over the load window: within 25% of sent/elapsed (1 s scrapes, extrapolation);
- histogram_quantile p50 / p95 / p99: inside the latency bucket that holds the exact quantile
  of the server's own per-request durations (its access log), i.e. the histogram's
  resolution, and never above the upper bound of the client-measured quantile's bucket;
and that every catalogue replica metric, every dashboard query and every alert rule works there.
"""

from __future__ import annotations

import bisect
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlkube.backends.local import prometheus
from mlkube.observability import dashboards
from mlkube.observability.catalogue import PROCESS_METRICS
from mlkube.observability.metrics import LATENCY_BUCKETS_S, REPLICA_METRICS
from mlkube.spec import load_spec
from mlkube.testing import models

from .conftest import tool
from .promclient import Prom, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THREADS = 4
REQUESTS_PER_THREAD = 150
PER_THREAD_RPS = 25.0  # paced: the load lasts ~6 s, several 1 s scrapes
BAD_REQUESTS = 20
START_TIMEOUT_S = 60


def free_port() -> int:
    from mlkube.backends.local.ports import free_port as pick

    return pick()


def bucket_of(seconds: float) -> tuple[float, float]:
    """(lower, upper] bounds of the latency bucket holding ``seconds``."""
    bounds = (0.0, *LATENCY_BUCKETS_S, float("inf"))
    index = bisect.bisect_left(bounds, seconds)
    return bounds[max(index - 1, 0)], bounds[index]


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    spec = models.write_spec(models.save_onnx(models.iris_classifier(), folder, "iris"))
    port = free_port()
    stdout = open(folder / "stdout.log", "wb")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlkube",
            "serve",
            str(spec),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--revision",
            "7",
            "--replica",
            "iris-0",
        ],
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready():
            assert process.poll() is None, "mlkube serve exited"
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, START_TIMEOUT_S, "replica ready")
        yield {"url": url, "port": port, "spec": spec, "log": folder / "stdout.log"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        stdout.close()


@pytest.fixture(scope="module")
def prom(replica, tmp_path_factory):
    binary = tool("prometheus")
    state = tmp_path_factory.mktemp("state")
    deployment = load_spec(replica["spec"])
    layout = prometheus.write_config(state, [deployment], scrape_interval_s=1)
    layout.targets.write_text(
        json.dumps(
            [
                {
                    "targets": [f"127.0.0.1:{replica['port']}"],
                    "labels": {
                        "namespace": deployment.namespace,
                        "deployment": deployment.name,
                        "replica": "iris-0",
                        "revision": "7",
                    },
                }
            ]
        )
    )
    info = prometheus.start(state, binary=binary)
    try:
        client = Prom(info.url)
        wait_for(lambda: client.scalar('up{deployment="iris"}') == 1.0, 30, "replica scraped")
        yield client, deployment
    finally:
        prometheus.stop(state)


@pytest.fixture(scope="module")
def load(replica, prom):
    """Bounded load: THREADS x REQUESTS_PER_THREAD good v1 predictions and a few bad ones."""
    client, _ = prom
    url = f"{replica['url']}/v1/models/iris:predict"
    rows = models.iris_classifier().rows
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        mine = []
        with httpx.Client(timeout=10) as http:
            begin = time.monotonic()
            for i in range(REQUESTS_PER_THREAD):
                time.sleep(max(0.0, begin + i / PER_THREAD_RPS - time.monotonic()))
                body = {"instances": rows[rng.integers(0, len(rows), 2)].tolist()}
                started = time.perf_counter()
                answer = http.post(url, json=body)
                mine.append(time.perf_counter() - started)
                assert answer.status_code == 200
        with lock:
            latencies.extend(mine)

    started = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    with httpx.Client(timeout=10) as http:
        for _ in range(BAD_REQUESTS):
            assert http.post(url, content=b"{not json").status_code == 400
    for thread in threads:
        thread.join(timeout=60)
    ended = time.time()
    sent = THREADS * REQUESTS_PER_THREAD
    wait_for(
        lambda: client.scalar('sum(mlkube_requests_total{protocol="v1"})') == sent + BAD_REQUESTS,
        20,
        "every request scraped",
    )
    return {"started": started, "ended": ended, "latencies": latencies, "sent": sent}


def test_counts_by_code_equal_what_was_sent(prom, load):
    client, _ = prom
    by_code = {
        r["metric"]["code"]: float(r["value"][1])
        for r in client.query('sum by (code) (mlkube_requests_total{protocol="v1"})')
    }
    assert by_code == {"200": load["sent"], "400": BAD_REQUESTS}
    batched = client.scalar('sum(mlkube_batch_requests_sum{deployment="iris"})')
    assert batched == load["sent"]  # only valid requests reach predict


def test_request_rate_agrees_with_the_client(prom, load):
    client, _ = prom
    elapsed = load["ended"] - load["started"]
    # A window that lies inside the load, so the paced client rate holds all through it.
    window = int(elapsed) - 1
    at = load["ended"] - 0.5
    measured = client.scalar(
        f'sum(rate(mlkube_requests_total{{protocol="v1",code="200"}}[{window}s]))', at=at
    )
    assert measured is not None
    sent_rate = load["sent"] / elapsed
    print(f"rate: prometheus {measured:.1f}/s, client {sent_rate:.1f}/s over {elapsed:.2f}s")
    assert measured == pytest.approx(sent_rate, rel=0.25), (measured, sent_rate, elapsed)


def server_durations(log: Path) -> list[float]:
    """Every v1 request's duration as the server logged it (200s and the 400s)."""
    durations = []
    for line in log.read_text().splitlines():
        record = json.loads(line)  # every line of stdout is one JSON object
        if record.get("msg") == "request" and record.get("protocol") == "v1":
            durations.append(record["duration_ms"] / 1000)
    return durations


@pytest.mark.parametrize("quantile", [0.5, 0.95, 0.99])
def test_histogram_quantile_agrees_with_measured_latency(prom, load, replica, quantile):
    """The histogram holds exactly the requests the access log lists; histogram_quantile
    interpolates inside the bucket where the rank q*n falls, so its answer must lie in the
    bucket of the exact (nearest-rank) quantile of the logged durations. Rounding of the
    logged durations to 1 µs is the only other error."""
    client, _ = prom
    everything = load["sent"] + BAD_REQUESTS

    def logged() -> list[float] | None:
        durations = server_durations(replica["log"])
        return durations if len(durations) >= everything else None

    exact = wait_for(logged, 5, "every request in the access log (flushed every 0.1 s)")
    assert len(exact) == everything
    value = client.scalar(
        f"histogram_quantile({quantile}, sum by (le) (mlkube_request_duration_seconds_bucket"
        '{deployment="iris",protocol="v1"}))'
    )
    assert value is not None
    server_q = float(np.quantile(exact, quantile, method="inverted_cdf"))
    client_q = float(np.quantile(load["latencies"], quantile))
    print(
        f"p{quantile * 100:g}: histogram {value * 1000:.3f} ms, server exact "
        f"{server_q * 1000:.3f} ms, client {client_q * 1000:.3f} ms"
    )
    low, high = bucket_of(server_q)
    assert low - 1e-6 <= value <= high + 1e-6, (quantile, value, server_q, client_q)
    # The client waits at least as long as the server works on a request.
    assert value <= bucket_of(client_q)[1], (value, client_q)


def test_rate_based_quantile_matches_the_cumulative_one(prom, load):
    """What dashboards draw (rate over a window) agrees with the whole-run histogram."""
    client, _ = prom
    window = max(2, round(time.time() - load["started"]) + 2)
    selector = '{deployment="iris",protocol="v1"}'
    windowed = client.scalar(
        "histogram_quantile(0.5, sum by (le) "
        f"(rate(mlkube_request_duration_seconds_bucket{selector}[{window}s])))"
    )
    whole = client.scalar(
        f"histogram_quantile(0.5, sum by (le) (mlkube_request_duration_seconds_bucket{selector}))"
    )
    assert windowed is not None and whole is not None
    assert bucket_of(windowed) == bucket_of(whole) or windowed == pytest.approx(whole, rel=0.5)


def test_every_replica_catalogue_metric_is_exported(prom, load):
    client, _ = prom
    names = {r["metric"]["__name__"] for r in client.query('{deployment="iris",__name__=~".+"}')}
    for metric in (*REPLICA_METRICS, *PROCESS_METRICS):
        series = metric.name + ("_count" if metric.type == "histogram" else "")
        assert series in names, metric.name


def test_every_dashboard_query_runs(prom, load):
    client, deployment = prom
    board = dashboards.deployment_dashboard(deployment)
    empty = []
    for expr in dashboards.queries(board):
        result = client.query(expr.replace("$__rate_interval", "5s"))
        if not result:
            empty.append(expr)
    print("empty:", empty)
    # Only the controller's series do not exist for a bare `mlkube serve`.
    for expr in empty:
        assert any(
            name in expr
            for name in (
                "mlkube_deployment_",
                "mlkube_autoscaler_",
                "mlkube_rollout_",
                "mlkube_replica_",
            )
        ), expr


def test_every_fleet_dashboard_query_runs(prom, load):
    client, _ = prom
    board = dashboards.fleet_dashboard()
    results = {}
    for expr in dashboards.queries(board):
        concrete = expr.replace("$__rate_interval", "5s").replace("$namespace", ".*")
        results[expr] = client.query(concrete.replace("$deployment", ".*"))
    empty = [e for e, r in results.items() if not r]
    assert all("mlkube_deployment_" in e or "mlkube_gpu_" in e for e in empty), empty


def test_alert_rules_load_and_evaluate(prom, load):
    client, _ = prom
    wait_for(
        lambda: all(
            r.get("lastEvaluation", "").startswith("2")
            and not r["lastEvaluation"].startswith("0001")
            for g in client.rules()
            for r in g["rules"]
        ),
        10,
        "rules evaluated",
    )
    rules = [r for g in client.rules() for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules), rules
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert firing == []  # a healthy replica under light load raises nothing
