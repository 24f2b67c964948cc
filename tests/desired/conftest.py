"""Helpers of the desired-layer tests: a spec from a dict of overrides."""

from __future__ import annotations

from typing import Any

from mlkube.spec import ModelDeployment

BASE: dict[str, Any] = {
    "apiVersion": "mlkube.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml"},
    "spec": {"model": {"uri": "s3://models/iris.onnx", "format": "onnx"}},
}


def deployment(spec: dict[str, Any] | None = None, **metadata: Any) -> ModelDeployment:
    data = {**BASE, "metadata": {**BASE["metadata"], **metadata}}
    data["spec"] = {**BASE["spec"], **(spec or {})}
    return ModelDeployment.model_validate(data)
