"""The model registry: versions of named models, with metrics, parameters and lineage.

``open_registry()`` opens the registry of this machine (``$MLKUBE_REGISTRY``, else
``registry`` in the state directory); ``resolve("models:/iris/2")`` gives the file a
deployment or batch job loads. The files follow MLflow's file-store layout (store.py says why
MLflow itself is not used).
"""

from __future__ import annotations

from pathlib import Path

from mlkube.registry.location import REGISTRY_ENV, registry_root
from mlkube.registry.store import (
    Lineage,
    ModelVersion,
    RegisteredModel,
    Registry,
    hash_paths,
)
from mlkube.registry.uri import (
    ModelUri,
    RegistryError,
    is_model_uri,
    parse_model_uri,
)
from mlkube.spec.deployment import MODELS_SCHEME
from mlkube.spec.model import ModelFormat


def open_registry(state_dir: str | Path | None = None) -> Registry:
    """The registry for ``state_dir`` (see ``registry_root``)."""
    return Registry(registry_root(state_dir))


def resolve_model(
    uri: str, expected: ModelFormat | str, state_dir: str | Path | None = None
) -> ModelVersion:
    """The version ``uri`` names, checked against the format the spec expects."""
    version = open_registry(state_dir).resolve(uri)
    if version.format != expected:
        raise RegistryError(
            f"{uri} was registered as format {version.format}, not {expected} "
            f"(set model.format: {version.format})"
        )
    if not version.path.exists():
        raise RegistryError(f"{uri}: the registered file {version.path} is missing")
    return version


__all__ = [
    "MODELS_SCHEME",
    "REGISTRY_ENV",
    "Lineage",
    "ModelUri",
    "ModelVersion",
    "RegisteredModel",
    "Registry",
    "RegistryError",
    "hash_paths",
    "is_model_uri",
    "open_registry",
    "parse_model_uri",
    "registry_root",
    "resolve_model",
]
