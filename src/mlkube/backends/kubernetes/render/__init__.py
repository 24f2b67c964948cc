"""PURE. Spec documents → Kubernetes objects (plain dicts): no I/O, no clock, no randomness.

``documents.render`` assembles the objects from ``tracks`` (strategy → Deployments),
``workload``, ``network``, ``scaling`` and ``cluster``; ``manifest`` is the table of kinds,
``model_source`` where a pod gets its model, ``formats`` the YAML/kustomize/Helm output.
The I/O side of the backend (client, apply, wait, status, doctor) sits beside this package.
"""

from mlkube.backends.kubernetes.render.documents import (
    Rendered,
    render,
    render_deployment,
    sort_objects,
    with_namespace,
)
from mlkube.spec.loading import SpecDocument

__all__ = [
    "Rendered",
    "SpecDocument",
    "render",
    "render_deployment",
    "sort_objects",
    "with_namespace",
]
