"""A model that cannot load is not silent: status shows its error line, logs show its stderr."""

from __future__ import annotations

import json

import pytest

from mlkube.backends.local.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_model_that_cannot_load_says_why_in_status_and_logs(local, tmp_path, spec_writer):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model" * 10)
    spec = spec_writer(
        tmp_path / "bad.yaml",
        "bad",
        {"uri": str(corrupt), "format": "onnx"},
        service={"port": free_port()},
    )
    local.cli("up", "-d", str(spec))

    def failed_once() -> bool:
        replicas = local.deployment("bad")["replicas"]
        return bool(replicas) and replicas[0]["restarts"] >= 1

    local.wait("the replica to fail and be restarted", failed_once)
    replica = local.deployment("bad")["replicas"][0]
    # "exited with code 1" alone said nothing; the replica's own last error line does.
    assert "cannot load onnx model" in replica["lastError"]
    table = local.cli("status", "bad").stdout
    assert "cannot load" in table  # the reason column wraps at 80 columns
    # By default JSON lines only (the failed load is one of them), no stderr text.
    assert f"[{replica['name']} stderr]" not in local.cli("logs", "bad").stdout
    logs = local.cli("logs", "bad", "--stderr").stdout
    assert f"[{replica['name']} stderr]" in logs
    assert "cannot load onnx model" in logs
    assert json.loads(local.cli("status", "bad", "-o", "json").stdout)
