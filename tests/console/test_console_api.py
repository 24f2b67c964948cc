"""The console's server side: sign-in by one-time code, its guards and error shapes, the live
stream, and the bounded chart history. The HTTP tests run against a real `mlkube up`."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlkube.backends.local.controller.console import (
    CODE_TTL_S,
    SESSION_TTL_S,
    Sessions,
    health,
)
from mlkube.backends.local.controller.console_history import COLUMNS, History, quantile_ms
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import Snapshot, parse_metrics
from mlkube.backends.local.proxy import LATENCY_BUCKETS_MS, Router
from mlkube.desired.rollout import RolloutState
from mlkube.spec import ModelDeployment
from mlkube.spec.loading import parse_documents

from .conftest import Platform

SPEC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m}
spec:
  model: {uri: /models/m, format: python, entrypoint: "m:M"}
"""


# sessions (pure) ---------------------------------------------------------------------------
def test_a_code_is_spent_by_its_first_exchange() -> None:
    sessions = Sessions()
    code = sessions.new_code(now=100.0)
    session = sessions.exchange(code, now=101.0)
    assert session is not None and sessions.valid(session, now=102.0)
    assert sessions.exchange(code, now=101.5) is None


def test_codes_and_sessions_expire() -> None:
    sessions = Sessions()
    late = sessions.new_code(now=0.0)
    assert sessions.exchange(late, now=CODE_TTL_S + 1) is None
    session = sessions.exchange(sessions.new_code(now=0.0), now=1.0)
    assert session is not None
    assert not sessions.valid(session, now=1.0 + SESSION_TTL_S + 1)
    assert not sessions.valid("made-up", now=1.0)


def test_health_at_a_glance() -> None:
    def dep(ready: int, desired: int, *phases: str) -> dict[str, Any]:
        return {"ready": ready, "desired": desired, "replicas": [{"phase": p} for p in phases]}

    assert health(dep(2, 2, "Ready", "Ready")) == "healthy"
    assert health(dep(1, 2, "Ready", "Starting")) == "progressing"
    assert health(dep(1, 1, "Ready", "CrashLoopBackOff")) == "failing"
    assert health(dep(1, 2, "Ready", "NotReady")) == "failing"


# history (pure) ----------------------------------------------------------------------------
def deployment() -> Deployment:
    (doc,) = parse_documents(SPEC)
    assert isinstance(doc, ModelDeployment)
    return Deployment(
        key="default/m", doc=doc, router=Router("m", hold_s=1.0), rollout=RolloutState(1), desired=2
    )


def test_points_are_rates_and_quantiles_over_each_interval() -> None:
    dep = deployment()
    history = History()
    for _ in range(50):
        dep.router.stats.observe(200, 900.0)  # slow, before the first sample: baseline only
    history.sample([dep], now=10.0)
    assert history.points("default/m") == []
    for _ in range(20):
        dep.router.stats.observe(200, 3.0)
    dep.router.stats.observe(503, 3.0)
    dep.replicas["m-1"] = Replica(name="m-1", revision=1, port=1, created_at=0.0, phase=Phase.READY)
    dep.replicas["m-1"].snapshots.append(Snapshot(at=1.0, in_flight=3.0, queue_depth=2.0))
    history.sample([dep], now=12.0)
    (point,) = history.points("default/m")
    assert point.rps == pytest.approx(21 / 2)
    assert point.errors_per_s == pytest.approx(0.5)
    assert point.p99_ms is not None and point.p99_ms < 900.0  # this interval's requests only
    assert (point.desired, point.ready, point.in_flight, point.queue_depth) == (2, 1, 3.0, 2.0)
    assert len(point.row()) == len(COLUMNS)


def test_a_counter_reset_starts_a_new_baseline_and_gone_deployments_are_dropped() -> None:
    dep = deployment()
    history = History(max_points=3)
    dep.router.stats.observe(200, 3.0)
    history.sample([dep], now=1.0)
    dep.router.stats.requests = 0  # a new balancer process: its counters start again
    history.sample([dep], now=2.0)
    assert history.points("default/m") == []
    for t in range(3, 10):
        history.sample([dep], now=float(t))
    assert len(history.points("default/m")) == 3  # bounded
    history.sample([], now=11.0)
    assert history.points("default/m") == []


BATCH_TEXT = """# TYPE mlkube_batch_size histogram
mlkube_batch_size_bucket{model="m",revision="1",le="+Inf"} %(calls)s
mlkube_batch_size_sum{model="m",revision="1"} %(rows)s
mlkube_batch_size_count{model="m",revision="1"} %(calls)s
"""


def test_the_batch_size_is_rows_per_predict_call_over_the_interval() -> None:
    dep = deployment()
    replica = Replica(name="m-1", revision=1, port=1, created_at=0.0, phase=Phase.READY)
    dep.replicas["m-1"] = replica
    history = History()

    def scrape(rows: int, calls: int, now: float) -> None:
        text = BATCH_TEXT % {"rows": rows, "calls": calls}
        replica.snapshots.append(parse_metrics(text, at=now))
        history.sample([dep], now=now)

    scrape(rows=1000, calls=1000, now=1.0)  # a long history of single rows: baseline
    scrape(rows=1000 + 80, calls=1000 + 10, now=2.0)
    (point,) = history.points("default/m")
    assert point.batch_size == pytest.approx(8.0)
    scrape(rows=5, calls=5, now=3.0)  # the replica restarted: a new baseline, no figure
    assert history.points("default/m")[-1].batch_size is None


def test_quantiles_read_the_bucket_upper_bounds() -> None:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    assert quantile_ms(counts, 0.5) is None
    counts[2] = 99
    counts[5] = 1
    assert quantile_ms(counts, 0.5) == LATENCY_BUCKETS_MS[2]
    assert quantile_ms(counts, 1.0) == LATENCY_BUCKETS_MS[5]


# over HTTP, against a real controller ------------------------------------------------------
def base(platform: Platform) -> str:
    port = json.loads((platform.state / "controller.json").read_text())["port"]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def signed_in(platform: Platform) -> Iterator[httpx.Client]:
    """A client with the session cookie of a fresh login link."""
    code = platform.login_link().split("#code=")[1]
    with httpx.Client(base_url=base(platform), trust_env=False, timeout=30) as client:
        answer = client.post("/console/api/session", json={"code": code})
        assert answer.status_code == 200, answer.text
        yield client


@pytest.mark.integration
def test_sign_in_guards_and_error_shapes(platform: Platform) -> None:
    with httpx.Client(base_url=base(platform), trust_env=False, timeout=30) as anonymous:
        check_sign_in_and_guards(platform, anonymous)


def check_sign_in_and_guards(platform: Platform, anonymous: httpx.Client) -> None:
    page = anonymous.get("/console/")
    assert page.status_code == 200 and "mlkube console" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert anonymous.get("/console").headers["location"] == "/console/"
    refused = anonymous.get("/console/api/overview")
    assert refused.status_code == 401
    assert "mlkube console" in refused.json()["error"]
    assert anonymous.post("/console/api/code").status_code == 401  # the token is needed
    assert anonymous.get("/console/assets/..%2Ftoken").status_code == 404

    link = platform.login_link()
    code = link.split("#code=")[1]
    assert (platform.state / "token").read_text().strip() not in link
    answer = anonymous.post("/console/api/session", json={"code": code})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    again = httpx.post(
        f"{base(platform)}/console/api/session", json={"code": code}, trust_env=False
    )
    assert again.status_code == 401 and "used or expired" in again.json()["error"]
    overview = anonymous.get("/console/api/overview").json()
    assert [d["name"] for d in overview["deployments"]] == ["conc"]

    # Actions need the console's header (a cross-site form cannot send one).
    bare = anonymous.post("/console/api/scale", json={"name": "conc", "replicas": 2})
    assert bare.status_code == 403 and "x-mlkube-console" in bare.json()["error"]
    header = {"X-Mlkube-Console": "1"}
    bad = anonymous.post(
        "/console/api/scale", json={"name": "conc", "replicas": -1}, headers=header
    )
    assert bad.status_code == 400 and "replicas" in bad.json()["error"]
    missing = anonymous.post("/console/api/abort", json={"name": "nope"}, headers=header)
    assert missing.status_code == 404 and "no deployment named 'nope'" in missing.json()["error"]
    no_canary = anonymous.post("/console/api/promote", json={"name": "conc"}, headers=header)
    assert no_canary.status_code == 409, no_canary.text
    assert platform.deployment("conc")["desired"] == 1
    # Neither the code nor the token is in anything the controller wrote.
    token = (platform.state / "token").read_text().strip()
    for file in platform.state.rglob("*.log"):
        text = file.read_text(errors="replace")
        assert code not in text and token not in text, file


@pytest.mark.integration
def test_the_live_stream_updates_and_ends_when_the_controller_stops(platform: Platform) -> None:
    with signed_in(platform) as client:
        check_stream(platform, client)


def check_stream(platform: Platform, client: httpx.Client) -> None:
    updates: list[dict[str, Any]] = []
    with client.stream("GET", "/console/api/stream?name=conc") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                updates.append(json.loads(line.removeprefix("data: ")))
                if len(updates) == 2:
                    platform.run("down")
        # The loop ended: the stream closed when the controller stopped (no read timeout).
    assert updates[0]["status"]["name"] == "conc"
    assert any(e["reason"] == "Created" for e in updates[0]["events"])
    assert updates[1]["point"] is not None and len(updates[1]["point"]) == len(COLUMNS)


@pytest.mark.integration
def test_the_simulate_api_runs_the_simulator(platform: Platform) -> None:
    with signed_in(platform) as client:
        check_simulate(client)


def check_simulate(client: httpx.Client) -> None:
    header = {"X-Mlkube-Console": "1"}
    answer = client.post(
        "/console/api/simulate",
        json={"name": "conc", "trace": "step", "policies": ["mlkube"]},
        headers=header,
    )
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["summary"]["policy"] == "mlkube"
    assert len(result["t"]) == len(result["replicas"]) == len(result["rate"])
    unknown = client.post(
        "/console/api/simulate", json={"name": "conc", "trace": "nope"}, headers=header
    )
    assert unknown.status_code == 400 and "built-in traces are" in unknown.json()["error"]


def test_the_console_command_without_a_controller_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlkube", "console", "--state-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no mlkube controller is running")
    assert len(done.stderr.strip().splitlines()) == 1
