"""Specs for the observability tests, and the Prometheus tools they run."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import yaml

from mlkube.spec import ModelDeployment
from mlkube.spec.loading import parse_documents


def deployment(spec: dict[str, Any] | None = None, **metadata: Any) -> ModelDeployment:
    """A validated ModelDeployment: an ONNX model plus ``spec`` merged in."""
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", **metadata},
        "spec": {"model": {"uri": "./iris.onnx", "format": "onnx"}, **(spec or {})},
    }
    (doc,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(doc, ModelDeployment)
    return doc


def tool(name: str) -> str:
    """The path of a Prometheus tool, or a skip that says how to install it."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/bin")
    if path is None:
        package = (
            "prometheus-alertmanager"
            if "alertmanager" in name or name == "amtool"
            else "prometheus"
        )
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path
