"""The spec: YAML documents → validated, immutable objects. Pure, apart from reading files."""

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
