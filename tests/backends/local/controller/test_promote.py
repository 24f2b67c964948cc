"""`rollout promote` and `rollout abort` on the local controller: the same moves as on a
cluster (``desired.rollout.skip_step`` and ``abort_rollout``), through the control API's
handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube.backends.local.controller import handlers
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment, revision_of
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.proxy import Router
from mlkube.desired.rollout import RolloutPhase, RolloutState
from mlkube.errors import BackendError
from mlkube.spec import ModelDeployment, parse_documents
from mlkube.spec.rollout import RolloutStrategy

DOC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model: {uri: /models/iris-N.onnx, format: onnx}
  rollout:
    strategy: Canary
    steps: [{weight: 10, pause: 1h}, {weight: 50, pause: 1h}]
    analysis: {maxErrorRate: 0.01}
"""


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings())
    yield controller
    controller.store.close()


def _deployment(ctrl: Controller, rollout: RolloutState) -> Deployment:
    docs = {}
    for revision in (1, 2):
        (doc,) = parse_documents(DOC.replace("N", str(revision)))
        assert isinstance(doc, ModelDeployment)
        docs[revision] = doc
    dep = Deployment("ml/iris", docs[2], Router("ml/iris", hold_s=1.0), rollout, 1)
    for revision, doc in docs.items():
        handlers.add_revision(ctrl, dep, revision, revision_of(doc), "/specs")
    ctrl.add(dep)
    return dep


def _canary(step: int = 0) -> RolloutState:
    return RolloutState(
        stable=1,
        target=2,
        strategy=RolloutStrategy.CANARY,
        phase=RolloutPhase.PROGRESSING,
        step=step,
        step_started_at=0.0,
    )


def test_promote_ends_the_step_and_clears_a_pending_analysis_verdict(ctrl):
    dep = _deployment(ctrl, _canary())
    dep.analysis_passed = True  # a pass from step 0 must not carry over to step 1
    status = handlers.promote(ctrl, dep, full=False)
    assert (status["step"], status["phase"]) == (1, "Progressing")
    assert dep.rollout.step_started_at is None
    assert dep.analysis_passed is False
    reasons = [e.reason for e in ctrl.store.events(dep.key, 10)]
    assert "CanaryPromoted" in reasons


def test_promote_full_goes_straight_to_promotion(ctrl):
    dep = _deployment(ctrl, _canary())
    assert handlers.promote(ctrl, dep, full=True)["step"] == 2  # past the last step


def test_abort_sends_every_request_back_to_the_stable_revision(ctrl):
    dep = _deployment(ctrl, _canary(step=1))
    status = handlers.abort(ctrl, dep)
    assert status["phase"] == "RolledBack"
    assert status["stable"] == 1
    with pytest.raises(BackendError, match="no rollout in progress"):
        handlers.abort(ctrl, dep)


def test_promote_refuses_when_no_canary_runs(ctrl):
    dep = _deployment(ctrl, RolloutState(stable=2))
    with pytest.raises(BackendError, match="no canary in progress"):
        handlers.promote(ctrl, dep, full=False)
