"""`mlkube up -d --wait` returns once every replica serves, and fails on a model that cannot."""

from __future__ import annotations

import pytest

from mlkube.backends.local.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_up_detached_with_wait_returns_with_every_replica_ready(
    local, tmp_path, iris_onnx, spec_writer
):
    spec = spec_writer(
        tmp_path / "iris.yaml",
        "iris",
        {"uri": str(iris_onnx), "format": "onnx"},
        replicas=2,
        service={"port": free_port()},
    )
    done = local.cli("up", "-d", "--wait", str(spec))
    assert "rolled out (revision 1, 2 ready)" in done.stdout
    dep = local.deployment("iris")
    assert dep["ready"] == dep["desired"] == 2


def test_up_wait_without_detach_is_a_usage_error(local, tmp_path, iris_onnx, spec_writer):
    spec = spec_writer(tmp_path / "iris.yaml", "iris", {"uri": str(iris_onnx), "format": "onnx"})
    refused = local.cli("up", "--wait", str(spec), check=False)
    assert refused.returncode == 2
    assert "--wait goes with -d" in refused.stderr
