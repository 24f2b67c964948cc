"""The request hot path of a real replica: what a lone request costs, what it skips.

A fast library model (ONNX) behind real sockets. With one connection and its request in
flight nothing else can arrive, so the request is predicted inside the handler that parsed it
(``Batcher.direct``): no queue, no extra loop iteration, no hand-off to the predict thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlkube.batching.batcher import Batcher
from mlkube.serving.http import QUIET_AFTER_S
from mlkube.spec import load_spec
from mlkube.testing import models
from mlkube.testing.server import RunningReplica, running_replica

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningReplica, str]]:
    folder: Path = tmp_path_factory.mktemp("request-path")
    trained = models.iris_classifier()
    deployment = load_spec(models.write_spec(models.save_onnx(trained, folder)))
    with running_replica(deployment) as running:
        yield running, deployment.model_name


def _batcher(running: RunningReplica) -> Batcher:
    batchers = running.replica.models.batchers()
    assert len(batchers) == 1
    return batchers[0]


def _predict(client: httpx.Client, name: str, rows: list[list[float]]) -> httpx.Response:
    return client.post(
        f"/v1/models/{name}:predict",
        content=json.dumps({"instances": rows}),
        headers={"content-type": "application/json"},
    )


def _predict_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("predict"))


def test_a_one_connection_request_is_predicted_inline_not_handed_to_a_thread(onnx):
    running, name = onnx
    batcher = _batcher(running)
    direct, threads = batcher.direct, _predict_threads()
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    with httpx.Client(base_url=running.url) as client:
        answers = [_predict(client, name, rows) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    assert [p["label"] for p in answers[0].json()["predictions"]] == [0, 2]
    assert batcher.direct - direct == 5
    assert _predict_threads() == threads  # no predict thread was started for them


def test_a_request_is_queued_while_another_connection_may_still_send(onnx):
    running, name = onnx
    batcher = _batcher(running)
    direct = batcher.direct
    with (
        httpx.Client(base_url=running.url) as idle,
        httpx.Client(base_url=running.url) as client,
    ):
        assert idle.get("/v2/health/live").status_code == 200  # open and kept alive
        answer = _predict(client, name, [[5.1, 3.5, 1.4, 0.2]])
    assert answer.status_code == 200
    assert batcher.direct == direct  # it went through the queue and the flush policy


def test_a_connection_gone_quiet_no_longer_holds_a_lone_request_back(onnx):
    # A proxy's pooled connection (our balancer keeps them 30 s): open, idle, sending nothing.
    running, name = onnx
    state = running.replica.state
    batcher = _batcher(running)
    state.quiet_after_s = 0.1
    try:
        with (
            httpx.Client(base_url=running.url) as pooled,
            httpx.Client(base_url=running.url) as client,
        ):
            assert pooled.get("/v2/health/live").status_code == 200
            deadline = time.monotonic() + 10
            while state.quiet < 1 and time.monotonic() < deadline:  # the sweep marks it
                time.sleep(0.02)
            direct = batcher.direct
            answer = _predict(client, name, [[5.1, 3.5, 1.4, 0.2]])
    finally:
        state.quiet_after_s = QUIET_AFTER_S
    assert answer.status_code == 200
    assert batcher.direct == direct + 1  # predicted at once, as on a lone connection


def test_a_lone_request_refused_by_the_model_gets_its_400(onnx):
    running, name = onnx
    with httpx.Client(base_url=running.url) as client:
        answer = _predict(client, name, np.zeros((1, 3)).tolist())
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
