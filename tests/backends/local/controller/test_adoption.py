"""A restarted controller re-adopts a live replica without restarting it, however old it is.

A real process stands for the replica (a sleeping Python child in its own session, as
``supervisor.spawn`` starts replicas); the controller is built in-process with a manual clock.
Where the replica must answer (probes, routed requests) a tiny asyncio HTTP server on loopback
answers for it, and the controller attaches to a real balancer process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from mlkube.backends.local import supervisor
from mlkube.backends.local.controller.app import restore, restored_replica
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import Router
from mlkube.backends.local.store import RevisionRow
from mlkube.clock import ManualClock, SystemClock
from mlkube.desired.rollout import RolloutState
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.loading import parse_documents

STARTUP_TIMEOUT_S = 300.0
NOW = 10_000.0


def _doc() -> ModelDeployment:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"uri": "/models/a.onnx", "format": "onnx"}, "replicas": 1},
    }
    (parsed,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(parsed, ModelDeployment)
    return parsed


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    settings = ControllerSettings(startup_timeout_s=STARTUP_TIMEOUT_S)
    controller = Controller(tmp_path, settings, ManualClock(NOW))
    yield controller
    controller.store.close()


def test_an_adopted_replica_older_than_the_startup_timeout_is_not_killed(
    ctrl: Controller, sleeper: subprocess.Popen[bytes]
) -> None:
    doc = _doc()
    dep = Deployment("ml/iris", doc, Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 1)
    dep.revisions = {1: doc}
    ctrl.add(dep)
    handle = supervisor.adopt(sleeper.pid, psutil.Process(sleeper.pid).create_time())
    assert handle is not None
    # Started (and ready) long before the controller restarted: older than the timeout.
    saved = Replica("iris-1-a", 1, 1, NOW - 1000, started_at=NOW - 2 * STARTUP_TIMEOUT_S)
    replica, event = restored_replica(saved, handle, NOW)
    assert event.reason == "Adopted"
    ctrl.add_replica(dep, replica)
    ctrl.reconcile()  # before any probe has run
    assert sleeper.poll() is None, "the adopted replica was killed"
    kept = dep.replicas["iris-1-a"]
    assert kept.phase is Phase.STARTING and kept.handle is handle
    assert kept.started_at == NOW - 2 * STARTUP_TIMEOUT_S  # its age is still its age


def test_an_adopted_replica_that_never_answers_still_times_out(
    ctrl: Controller, sleeper: subprocess.Popen[bytes]
) -> None:
    doc = _doc()
    dep = Deployment("ml/iris", doc, Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 1)
    dep.revisions = {1: doc}
    ctrl.add(dep)
    handle = supervisor.adopt(sleeper.pid, psutil.Process(sleeper.pid).create_time())
    assert handle is not None
    saved = Replica("iris-1-a", 1, 1, NOW - 1000, started_at=NOW - 2 * STARTUP_TIMEOUT_S)
    replica, _ = restored_replica(saved, handle, NOW)
    ctrl.add_replica(dep, replica)
    assert isinstance(ctrl.clock, ManualClock)
    ctrl.clock.advance(STARTUP_TIMEOUT_S + 1)
    ctrl.reconcile()
    assert sleeper.wait(timeout=30) is not None
    assert "failed readiness" in dep.replicas["iris-1-a"].last_reason


async def _answering() -> tuple[asyncio.Server, int]:
    """A replica's HTTP side: 200 ``up`` to every request (a readiness probe included)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup")
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _get(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_restore_probes_adopted_replicas_before_it_routes(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    server, replica_port = await _answering()
    ctrl = Controller(tmp_path, ControllerSettings(), SystemClock())
    data = _doc().model_dump(mode="json", by_alias=True, exclude_defaults=True)
    service_port = free_port()
    ctrl.store.add_revision("ml/iris", RevisionRow(1, data, str(tmp_path), 0.0, "", ""))
    ctrl.store.put_deployment(
        "ml/iris",
        {"spec": data, "desired": 1, "port": service_port, "rollout": RolloutState(1).to_json()},
    )
    saved = Replica("iris-1-a", 1, replica_port, 1.0, started_at=1.0, ever_ready=True)
    start = psutil.Process(sleeper.pid).create_time()
    ctrl.store.put_replica(
        "ml/iris", saved.name, saved.to_json() | {"pid": sleeper.pid, "startTime": start}
    )
    await ctrl.attach_balancer()
    try:
        await restore(ctrl)
        dep = ctrl.deployments["ml/iris"]
        # Probed during the restore: Ready (and routed) before any loop has run.
        assert dep.replicas["iris-1-a"].phase is Phase.READY
        assert await _get(service_port) == (200, b"up")
        assert sleeper.poll() is None
    finally:
        await ctrl.balancer.exit()
        ctrl.store.close()
        server.close()
