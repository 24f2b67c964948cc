"""The batcher inside a real replica: real sockets, a python-format model that counts its calls.

The model has a flat cost (a 20 ms sleep per call whatever its rows, like a tree ensemble
whose per-call overhead dominates), and a gate: a batch whose first value is -1 holds the
model until the test creates a file, so the test can line requests up behind it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlkube.spec import load_spec
from mlkube.testing import models
from mlkube.testing.server import RunningReplica, running_replica

FEATURES = 4

_MODULE = """\
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


class Gated:
    inputs = [{{"name": "input", "datatype": "FP64", "shape": [-1, {features}]}}]
    outputs = [{{"name": "total", "datatype": "FP64", "shape": [-1]}}]

    def load(self):
        pass

    def predict(self, batch):
        rows = batch["input"]
        if rows[0, 0] == -1:
            while not (HERE / "release").exists():
                time.sleep(0.005)
        else:
            time.sleep(0.02)
        with open(HERE / "calls.log", "a") as log:
            log.write(f"{{len(rows)}}\\n")
        return {{"total": rows.sum(axis=1)}}
"""


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[RunningReplica, Path]]:
    (tmp_path / "gated.py").write_text(_MODULE.format(features=FEATURES))
    built = models.BuiltModel(
        tmp_path, "python", None, np.zeros((1, FEATURES)), entrypoint="gated:Gated"
    )
    deployment = load_spec(models.write_spec(built, name="gated"))
    with running_replica(deployment) as running:
        (tmp_path / "calls.log").unlink(missing_ok=True)  # the warm-up's timed calls
        yield running, tmp_path


def _predict(url: str, rows: np.ndarray, client: httpx.Client | None = None) -> list[float]:
    body = json.dumps({"instances": rows.tolist()})
    headers = {"content-type": "application/json"}
    path = f"{url}/v1/models/gated:predict"
    if client is not None:
        response = client.post(path, content=body, headers=headers, timeout=30)
    else:
        response = httpx.post(path, content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return [float(v) for v in response.json()["predictions"]]


def _calls(folder: Path) -> list[int]:
    log = folder / "calls.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def test_concurrent_32_row_requests_are_merged_into_one_predict_call(gated):
    running, folder = gated
    batcher = running.replica.models.batchers()[0]
    assert batcher is not None
    assert batcher.cost.cost.fixed_s > 0.01  # the warm-up measured the model's flat cost
    requests = [np.full((32, FEATURES), float(i + 1)) for i in range(8)]
    with ThreadPoolExecutor(9) as pool:
        gate = pool.submit(_predict, running.url, np.full((1, FEATURES), -1.0))
        app = running.replica.app
        _wait_until(lambda: app.predicting == 1 and batcher.queue_depth == 0, "gate running")
        answers = [pool.submit(_predict, running.url, rows) for rows in requests]
        _wait_until(lambda: batcher.queue_depth == 8, "eight requests queued")
        (folder / "release").touch()
        results = [answer.result() for answer in answers]
        gate.result()
    for index, result in enumerate(results):
        assert result == [float((index + 1) * FEATURES)] * 32  # each got its own rows back
    assert _calls(folder) == [1, 256]  # the gate alone, then all eight in one call


def test_a_lone_request_is_sent_at_once_even_after_merged_batches(gated):
    running, folder = gated
    batcher = running.replica.models.batchers()[0]
    assert batcher is not None
    (folder / "release").touch()
    # A burst of 8 concurrent requests: the closed-loop rule now expects 8 back.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _predict(running.url, np.full((1, FEATURES), i)), range(8)))
    state = running.replica.state
    _wait_until(lambda: not state.connections, "the burst's connections closed")
    before = dict(batcher.decisions)
    with httpx.Client() as client:
        for value in range(5):
            _predict(running.url, np.full((1, FEATURES), float(value)), client)
    after = dict(batcher.decisions)
    # With one connection and its request queued, nothing else can arrive: no waiting.
    assert after.get("waiting", 0) == before.get("waiting", 0)
    assert after["nothing-can-arrive"] - before.get("nothing-can-arrive", 0) == 5
