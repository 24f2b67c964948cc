"""`rollout undo` after mixed strategies goes back to the revision that last served all traffic.

The reported case: canary revision 3 promoted, an A/B test (revision 5) never promoted, then a
BlueGreen apply (revision 6) that kept revision 3 running; undo went to 5, stopped the kept
revision 3 and cold-started 5."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube.backends.local.controller import handlers
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment, revision_of
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.proxy import Router
from mlkube.desired.rollout import RolloutState
from mlkube.spec import ModelDeployment, parse_documents

DOC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model: {uri: /models/iris-N.onnx, format: onnx}
  rollout: {strategy: BlueGreen}
"""
STATUSES = {1: "", 2: "Complete", 3: "Complete", 4: "RolledBack", 5: "ABTest", 6: "Complete"}


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings())
    yield controller
    controller.store.close()


def _deployment(ctrl: Controller, rollout: RolloutState) -> Deployment:
    docs = {}
    for revision in STATUSES:
        (doc,) = parse_documents(DOC.replace("N", str(revision)))
        assert isinstance(doc, ModelDeployment)
        docs[revision] = doc
    dep = Deployment("ml/iris", docs[6], Router("ml/iris", hold_s=1.0), rollout, 1)
    for revision, status in STATUSES.items():
        handlers.add_revision(ctrl, dep, revision, revision_of(docs[revision]), "/specs")
        ctrl.store.set_revision_status(dep.key, revision, status, "")
    ctrl.add(dep)
    return dep


def test_undo_switches_back_to_the_kept_blue_green_colour(ctrl):
    now = ctrl.clock.monotonic()
    dep = _deployment(ctrl, RolloutState(stable=6, previous=3, previous_until=now + 300))
    assert handlers.undo(ctrl, dep, None) == {
        "name": "ml/iris",
        "revision": 3,
        "action": "switched",
    }
