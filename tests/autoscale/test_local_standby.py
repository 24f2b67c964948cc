"""Warm standby end to end: a real `mlkube up` controller, real `mlkube serve` replicas.

The test model appends its process id to a trace file on every prediction, so which
process served what is read from the replicas themselves, not from the controller's
bookkeeping. Every process seen is ended by PID at teardown. Nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Model:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        time.sleep(float(os.environ["TEST_MODEL_LOAD_S"]))  # the warm-up a standby pays early

    def predict(self, batch):
        with open(os.environ["TEST_MODEL_TRACE"], "a") as trace:  # who served it
            trace.write(f"{os.getpid()}\\n")
        time.sleep(0.05)
        return {"label": np.zeros(len(batch["input"]), dtype=np.int64)}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalController]:
    env = {**FAST, "TEST_MODEL_LOAD_S": "2", "TEST_MODEL_TRACE": str(tmp_path / "trace")}
    made = LocalController(tmp_path / "state", env)
    try:
        yield made
    finally:
        made.cleanup()


STANDBY = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "metrics": [{"type": "concurrency", "target": 2}],
    "syncPeriod": "1s",
    "stableWindow": "6s",
    "standby": 1,
}


def write_spec(
    folder: Path, name: str, port: int, autoscaling: dict[str, Any] | None = None
) -> Path:
    model_dir = folder / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "trace_model.py").write_text(MODEL)
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(model_dir), "format": "python", "entrypoint": "trace_model:Model"},
            "service": {"port": port},
            "server": {"drainTimeout": "5s"},
            "batching": {"maxBatchSize": 1, "maxLatencyMs": 0},
            "autoscaling": autoscaling or STANDBY,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def served_by(trace: Path) -> list[int]:
    return [int(line) for line in trace.read_text().split()] if trace.exists() else []


def standby_replicas(dep: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in dep["replicas"] if r["standby"]]


def test_a_standby_gets_no_traffic_and_is_promoted_on_scale_up_without_a_new_process(
    tmp_path: Path, cluster: LocalController
) -> None:
    port = free_port()
    cluster.run("up", "-d", str(write_spec(tmp_path, "warm", port)))

    def warm() -> bool:
        dep = cluster.deployment("warm")
        return dep["ready"] == 1 and dep["standby"]["ready"] == 1

    cluster.wait("one serving and one ready standby replica", warm, 60)
    before = cluster.deployment("warm")
    (standby,) = standby_replicas(before)
    serving = next(r for r in before["replicas"] if not r["standby"])
    table = cluster.run("status", "warm").stdout
    assert "Standby" in table and "standby 1 (1 ready, not serving)" in table, table
    # Each replica's warm-up predictions (the first call, then the batcher's timings) ran
    # before it was ready.
    warm_up = served_by(tmp_path / "trace").count(standby["pid"])
    assert warm_up >= 1

    # One client in flight is half the target of 2: no scale-up, the standby gets nothing.
    with LoadClient(port, "warm", 1, 0.05, max_s=10.0, row=ROW) as light:
        cluster.wait(
            "light traffic served",
            lambda: served_by(tmp_path / "trace").count(serving["pid"]) >= 20,
        )
    assert light.failed == 0, (light.codes, light.errors)
    # The standby served nothing after its warm-up, the serving replica everything.
    served = served_by(tmp_path / "trace")
    assert served.count(standby["pid"]) == warm_up, served
    assert served.count(serving["pid"]) >= 20, served
    assert cluster.deployment("warm")["desired"] == 1

    # Eight clients ask for more replicas: the standby is promoted and serves.
    with LoadClient(port, "warm", 8, 0.0, max_s=60.0, row=ROW) as heavy:
        cluster.wait(
            "the standby process serving",
            lambda: served_by(tmp_path / "trace").count(standby["pid"]) > warm_up,
            40,
        )
    assert heavy.failed == 0, (heavy.codes, heavy.errors)

    after = cluster.deployment("warm")
    promoted = next(r for r in after["replicas"] if r["name"] == standby["name"])
    assert promoted["pid"] == standby["pid"] and not promoted["standby"]
    assert after["standby"]["replicaSeconds"] > 0

    # By order: the first scale-up is followed by the promotion, before any new process.
    events = cluster.events("warm")
    up = next(
        i
        for i, e in enumerate(events)
        if e["reason"] == "ScalingReplicaSet" and e["message"].startswith("scaled from 1 to")
    )
    later = [(e["reason"], e["message"]) for e in events[up + 1 :]]
    first_promoted = next(i for i, (r, _) in enumerate(later) if r == "Promoted")
    assert standby["name"] in later[first_promoted][1], later
    assert not any(r == "Started" for r, _ in later[:first_promoted]), later
    # The standby was started once, before the scale-up, and never again.
    starts = [e for e in events if e["reason"] == "Started" and standby["name"] in e["message"]]
    assert len(starts) == 1 and f"pid {standby['pid']}" in starts[0]["message"]
    assert events.index(starts[0]) < up
    document = json.loads(cluster.run("status", "warm", "-o", "json").stdout)
    assert document["deployments"][0]["standby"]["replicaSeconds"] > 0


def test_the_controller_passes_the_arriving_rate_and_the_measured_startup_to_the_forecast(
    tmp_path: Path, cluster: LocalController
) -> None:
    port = free_port()
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"type": "rps", "target": 50}],
        "syncPeriod": "1s",
        "predictive": {},
    }
    cluster.run("up", "-d", str(write_spec(tmp_path, "fore", port, autoscaling)))
    cluster.wait("one ready replica", lambda: cluster.deployment("fore")["ready"] == 1, 60)

    def forecasting() -> bool:
        metrics = (cluster.deployment("fore")["autoscaler"] or {}).get("metrics") or {}
        return metrics.get("forecast_level_rps", 0.0) > 0.0

    with LoadClient(port, "fore", 1, 0.05, max_s=30.0, row=ROW) as load:
        cluster.wait("a forecast from the arriving rate", forecasting, 25)
    assert load.failed == 0, (load.codes, load.errors)
    decision = cluster.deployment("fore")["autoscaler"]
    metrics = decision["metrics"]
    # The model sleeps 2 s in load(): the measured spawn-to-ready is at least that.
    assert metrics["startup_s"] >= 2.0, metrics
    assert metrics["forecast_horizon_s"] >= metrics["startup_s"], metrics
    assert "forecast" in decision["reason"] and "req/s in" in decision["reason"], decision
    # A decision event carries the policy's reason, forecast included (a steady hold is
    # not repeated as an event, so this is the first one or a change of count).
    said = [e["message"] for e in cluster.events("fore") if e["reason"] == "AutoscalerDecision"]
    assert said and all("forecast" in m for m in said), said
