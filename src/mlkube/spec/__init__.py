"""The spec: YAML documents → validated, immutable objects. Pure, apart from reading files.

Names are imported from their modules on first use (PEP 562 ``__getattr__``), so a process
pays only for the spec models it touches: ``mlkube serve`` builds the ModelDeployment models,
never the TrainingJob or Pipeline ones (part of a replica's cold start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlkube.spec.deployment import (
        API_VERSION,
        Metadata,
        ModelDeployment,
        ModelDeploymentSpec,
        PriorityClass,
        Quota,
    )
    from mlkube.spec.job import BatchInference, JobDocument, TrainingJob
    from mlkube.spec.loading import SpecDocument, load_documents, load_spec, parse_documents
    from mlkube.spec.model import (
        BatchingSpec,
        GrpcSpec,
        ModelFormat,
        ModelSpec,
        Protocol,
        ServerSpec,
    )
    from mlkube.spec.pipeline import Pipeline
    from mlkube.spec.quantity import Quantity, parse_duration, parse_quantity

_MODULES: dict[str, str] = {
    "API_VERSION": "deployment",
    "Metadata": "deployment",
    "ModelDeployment": "deployment",
    "ModelDeploymentSpec": "deployment",
    "PriorityClass": "deployment",
    "Quota": "deployment",
    "BatchInference": "job",
    "JobDocument": "job",
    "TrainingJob": "job",
    "SpecDocument": "loading",
    "load_documents": "loading",
    "load_spec": "loading",
    "parse_documents": "loading",
    "BatchingSpec": "model",
    "GrpcSpec": "model",
    "ModelFormat": "model",
    "ModelSpec": "model",
    "Protocol": "model",
    "ServerSpec": "model",
    "Pipeline": "pipeline",
    "Quantity": "quantity",
    "parse_duration": "quantity",
    "parse_quantity": "quantity",
}

__all__ = [
    "API_VERSION",
    "BatchInference",
    "BatchingSpec",
    "GrpcSpec",
    "JobDocument",
    "Metadata",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelFormat",
    "ModelSpec",
    "Pipeline",
    "PriorityClass",
    "Protocol",
    "Quantity",
    "Quota",
    "ServerSpec",
    "SpecDocument",
    "TrainingJob",
    "load_documents",
    "load_spec",
    "parse_documents",
    "parse_duration",
    "parse_quantity",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'mlkube.spec' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mlkube.spec.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})
