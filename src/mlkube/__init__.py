"""mlkube: deploy, autoscale, resource-manage and monitor ML model endpoints.

The public surface is small: load a spec, inspect it, and the error hierarchy.
Everything else is reached through the ``mlkube`` command.

The names from ``mlkube.spec`` are imported on first use (PEP 562 ``__getattr__``): importing
any ``mlkube.*`` module would otherwise build every spec model (pydantic) first, which a
replica's cold start and commands that read no spec should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlkube.errors import MlkubeError, SpecError, SpecIssue

if TYPE_CHECKING:
    from mlkube.spec import ModelDeployment, load_documents, load_spec

__all__ = [
    "MlkubeError",
    "ModelDeployment",
    "SpecError",
    "SpecIssue",
    "load_documents",
    "load_spec",
]
__version__ = "0.1.0"

_FROM_SPEC = frozenset({"ModelDeployment", "load_documents", "load_spec"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SPEC:
        import mlkube.spec

        return getattr(mlkube.spec, name)
    raise AttributeError(f"module 'mlkube' has no attribute {name!r}")
