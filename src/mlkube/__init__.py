"""mlkube: deploy, autoscale, resource-manage and monitor ML model endpoints.

The public surface is small: load a spec, inspect it, and the error hierarchy.
Everything else is reached through the ``mlkube`` command.
"""

from mlkube.errors import MlkubeError, SpecError, SpecIssue
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
