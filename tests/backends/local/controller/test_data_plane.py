"""The data plane outlives the control plane: the balancer process and the replicas keep
serving while the controller is SIGKILLed, and a restarted controller takes them over as they
are (same pids, no restart, no failed request). Real controller, balancer and replicas."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from mlkube.testing.local import LoadClient

from .conftest import Load, Local, alive, free_port, write_spec


def _spec(tmp: Path, model: Path, port: int, replicas: int = 2) -> Path:
    return write_spec(
        tmp / "iris.yaml",
        "iris",
        {"uri": str(model), "format": "onnx"},
        replicas=replicas,
        service={"port": port},
        server={"drainTimeout": "5s"},
        batching={"maxLatencyMs": 1},
    )


def _pids(local: Local) -> dict[str, int]:
    return {r["name"]: r["pid"] for r in local.deployment("iris")["replicas"]}


def _balancer(local: Local) -> int | None:
    """The balancer's pid; None while a new one is starting (no ``balancer.json`` yet)."""
    try:
        return local.balancer_pid()
    except (OSError, ValueError, KeyError):
        return None


def _restarted(local: Local) -> bool:
    return any(e["reason"] == "BalancerRestarted" for e in local.events("iris"))


def _more(local: Local, load: LoadClient, count: int, what: str) -> None:
    seen = load.total
    local.wait(what, lambda: load.total >= seen + count, 60)


def test_a_sigkilled_controller_drops_no_request_and_keeps_its_replicas(
    local: Local, tmp_path: Path, iris_onnx: Path
) -> None:
    port = free_port()
    spec = _spec(tmp_path, iris_onnx, port)
    local.cli("up", "-d", str(spec))
    local.wait_ready("iris", 2)
    replicas, balancer = _pids(local), local.balancer_pid()
    with Load(port, "iris", workers=2, pause_s=0.02) as load:
        _more(local, load, 50, "requests before the kill")
        controller = local.controller_pid()
        os.kill(controller, signal.SIGKILL)
        local.wait("the controller to die", lambda: not alive(controller), 15)
        _more(local, load, 100, "requests served while no controller runs")
        assert load.failed == 0, (load.codes, load.errors)
        local.cli("up", "-d", str(spec))
        local.wait_ready("iris", 2)
        _more(local, load, 100, "requests after the restart")
    assert load.failed == 0, (load.codes, load.errors)
    assert _pids(local) == replicas, "re-adopted replicas keep their processes"
    assert local.balancer_pid() == balancer, "the new controller re-attached to the balancer"
    reasons = [e["reason"] for e in local.events("iris")]
    assert reasons.count("Adopted") == 2
    assert "BackOff" not in reasons and "Killing" not in reasons


def test_a_killed_balancer_is_started_again_by_the_controller(
    local: Local, tmp_path: Path, iris_onnx: Path
) -> None:
    port = free_port()
    local.cli("up", "-d", str(_spec(tmp_path, iris_onnx, port, replicas=1)))
    local.wait_ready("iris", 1)
    first = local.balancer_pid()
    local.pids.add(first)
    os.kill(first, signal.SIGKILL)
    local.wait("a new balancer", lambda: _balancer(local) not in (None, first), 30)
    local.pids.add(local.balancer_pid())
    # Connections are refused from the kill until the new balancer listens: the event says
    # when it does, and from then on nothing fails.
    local.wait("the port to answer again", lambda: _restarted(local), 30)
    with Load(port, "iris", workers=1, pause_s=0.02) as load:
        local.wait("requests through the new balancer", lambda: load.codes[200] >= 20, 30)
    assert load.failed == 0, (load.codes, load.errors)


def test_down_stops_the_balancer_too(local: Local, tmp_path: Path, iris_onnx: Path) -> None:
    port = free_port()
    local.cli("up", "-d", str(_spec(tmp_path, iris_onnx, port, replicas=1)))
    local.wait_ready("iris", 1)
    pids = set(_pids(local).values()) | {local.controller_pid(), local.balancer_pid()}
    local.cli("down")
    local.wait("every process to exit", lambda: not any(alive(p) for p in pids), 15)
    assert not (local.state / "balancer.json").exists()


def test_down_after_a_controller_crash_stops_what_it_left_serving(
    local: Local, tmp_path: Path, iris_onnx: Path
) -> None:
    port = free_port()
    local.cli("up", "-d", str(_spec(tmp_path, iris_onnx, port, replicas=1)))
    local.wait_ready("iris", 1)
    pids = set(_pids(local).values()) | {local.balancer_pid()}
    os.kill(local.controller_pid(), signal.SIGKILL)
    out = local.cli("down").stdout
    assert "controller stopped" in out
    local.wait("every process to exit", lambda: not any(alive(p) for p in pids), 15)
