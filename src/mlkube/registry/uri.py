"""``models:/NAME/VERSION`` URIs, as MLflow spells them. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlkube.errors import MlkubeError
from mlkube.spec.deployment import MODELS_SCHEME

LATEST = "latest"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""A registered model's name: also a folder name in the registry, so no slashes."""
_NAME = re.compile(NAME_PATTERN)


class RegistryError(MlkubeError):
    """The model registry cannot do what was asked (unknown model or version, bad URI)."""


@dataclass(frozen=True, slots=True)
class ModelUri:
    """A parsed ``models:/NAME/VERSION``; ``version`` None means the latest version."""

    name: str
    version: int | None

    def __str__(self) -> str:
        return f"{MODELS_SCHEME}{self.name}/{LATEST if self.version is None else self.version}"


def is_model_uri(uri: str) -> bool:
    """Whether ``uri`` names a registered model version rather than a file."""
    return uri.startswith(MODELS_SCHEME)


def check_name(name: str) -> str:
    """``name`` if it is a valid registered model name, else RegistryError."""
    if not _NAME.match(name):
        raise RegistryError(
            f"model name '{name}' must start with a letter or digit and hold only letters, "
            "digits, '_', '.' and '-'"
        )
    return name


def parse_model_uri(uri: str) -> ModelUri:
    """``models:/iris/2`` → ModelUri('iris', 2); ``models:/iris/latest`` → version None."""
    if not is_model_uri(uri):
        raise RegistryError(f"'{uri}' is not a registry URI (expected models:/NAME/VERSION)")
    parts = uri[len(MODELS_SCHEME) :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise RegistryError(f"'{uri}' must look like models:/NAME/VERSION or models:/NAME/latest")
    name, version = check_name(parts[0]), parts[1]
    if version.lower() == LATEST:
        return ModelUri(name, None)
    if not version.isdigit() or int(version) < 1:
        raise RegistryError(
            f"'{uri}': version '{version}' must be a whole number from 1, or latest"
        )
    return ModelUri(name, int(version))
