"""The local backend means what the cluster means: an apply keeps the autoscaler's count, and
an A/B test by header sends the requests that carry it to B (and only those)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlkube.backends.local.ports import free_port

from .conftest import ROW

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

SCALED = {"minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "concurrency", "target": 50}]}


def _write(spec_writer, tmp: Path, model: Path, port: int, **spec: object) -> Path:
    base: dict[str, object] = {"service": {"port": port}, "server": {"drainTimeout": "5s"}}
    base.update(spec)
    return spec_writer(tmp / "iris.yaml", "iris", {"uri": str(model), "format": "onnx"}, **base)


def _predict(port: int, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/iris:predict",
        data=json.dumps({"instances": [ROW]}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _served(replica_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{replica_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mlkube_requests_total" and sample.labels.get("code") == "200"
    )


def test_an_apply_that_changes_autoscaling_keeps_the_count_and_cuts_no_revision(
    local, tmp_path, iris_onnx, spec_writer, make_load
):
    # The autoscaler holds the count above 1 under load (a manual `scale` would be undone at
    # its next sync, as an HPA undoes it); the apply must keep that count, not reset it.
    busy = {**SCALED, "metrics": [{"type": "rps", "target": 10}]}
    port = free_port()
    spec = _write(spec_writer, tmp_path, iris_onnx, port, autoscaling=busy)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 1)
    with make_load(port, "iris", workers=4):
        local.wait("the autoscaler to scale up", lambda: local.deployment("iris")["desired"] >= 2)
        _write(spec_writer, tmp_path, iris_onnx, port, autoscaling={**busy, "maxReplicas": 6})
        before = local.deployment("iris")["desired"]
        out = local.cli("apply", str(spec)).stdout
        after = local.deployment("iris")
    assert "configured" in out
    assert "revision" not in out
    # As an HPA keeps its count when its bounds change; it was reset to 1 before.
    assert after["desired"] >= 2, (before, local.events("iris")[-5:])
    assert after["revision"] == 1


def test_a_header_ab_test_sends_exactly_the_requests_with_the_header_to_b(
    local, tmp_path, iris_onnx, spec_writer
):
    port = free_port()
    spec = _write(spec_writer, tmp_path, iris_onnx, port)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 1)
    ab = {"strategy": "ABTest", "abTest": {"header": "X-Variant", "headerValue": "b"}}
    _write(spec_writer, tmp_path, iris_onnx, port, batching={"maxLatencyMs": 2}, rollout=ab)
    assert "revision 2" in local.cli("apply", str(spec)).stdout

    def b_ready() -> bool:
        replicas = local.deployment("iris")["replicas"]
        return any(r["revision"] == 2 and r["phase"] == "Ready" for r in replicas)

    local.wait("revision 2 (B) to be ready", b_ready)
    local.wait("the A/B route to be in place", lambda: _predict(port, {"X-Variant": "b"}) == 200)
    replicas = local.deployment("iris")["replicas"]
    b_port = next(r["port"] for r in replicas if r["revision"] == 2)
    before = _served(b_port)
    tagged = [_predict(port, {"X-Variant": "b"}) for _ in range(10)]
    plain = [_predict(port) for _ in range(10)]
    assert tagged == [200] * 10  # 503 "no ready replica" before
    assert plain == [200] * 10
    assert _served(b_port) - before == 10  # B got the tagged requests and none of the others
