"""Local admission reads the priority a deployment's priorityClassName names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.placement import priority_of
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.proxy import Router
from mlkube.desired.rollout import RolloutState
from mlkube.spec import ModelDeployment, PriorityClass, parse_documents

DOCS = """
apiVersion: mlkube.dev/v1alpha1
kind: PriorityClass
metadata: {name: high}
spec: {value: 1000, preemptionPolicy: Never}
---
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model: {uri: /models/iris.onnx, format: onnx}
  placement: {priorityClassName: high}
"""


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings())
    yield controller
    controller.store.close()


def test_a_priority_class_is_found_by_its_name(ctrl):
    priority, doc = parse_documents(DOCS)
    assert isinstance(priority, PriorityClass) and isinstance(doc, ModelDeployment)
    # Stored as the apply handler stores every document: namespace/name ("default/high").
    key = f"{priority.metadata.namespace}/{priority.metadata.name}"
    ctrl.store.put_document("PriorityClass", key, priority.model_dump(mode="json", by_alias=True))
    dep = Deployment("ml/iris", doc, Router("ml/iris", hold_s=1.0), RolloutState(stable=1), 1)
    # It was looked up as "high" among keys like "default/high": priority 0 for everyone.
    assert priority_of(ctrl, dep) == (1000, False)
