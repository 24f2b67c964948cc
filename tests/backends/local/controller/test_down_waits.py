"""`mlkube down` returns only once the processes it stopped have exited (no polling after)."""

from __future__ import annotations

import pytest

from mlkube.backends.local.ports import free_port
from mlkube.backends.local.supervisor import pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_down_returns_after_the_replicas_and_the_controller_have_exited(
    local, tmp_path, iris_onnx, spec_writer
):
    spec = spec_writer(
        tmp_path / "iris.yaml",
        "iris",
        {"uri": str(iris_onnx), "format": "onnx"},
        replicas=2,
        service={"port": free_port()},
        server={"workers": 2},  # each replica has worker children in its process group
    )
    local.cli("up", "-d", "--wait", str(spec))
    replicas = [r["pid"] for r in local.deployment("iris")["replicas"]]
    controller = local.controller_pid()
    assert len(replicas) == 2

    out = local.cli("down", "iris", "--timeout", "60").stdout

    assert "controller stopped" in out
    still = [pid for pid in [*replicas, controller] if pid_alive(pid)]
    assert still == [], f"still running right after `down` returned: {still}"
