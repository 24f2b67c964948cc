"""A restarted controller re-adopts a live replica without restarting it, however old it is.

A real process stands for the replica (a sleeping Python child in its own session, as
``supervisor.spawn`` starts replicas); the controller is built in-process with a manual clock.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from mlkube.backends.local import supervisor
from mlkube.backends.local.controller.app import restored_replica
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.rollout import RolloutState
from mlkube.backends.local.proxy import Router
from mlkube.clock import ManualClock
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
