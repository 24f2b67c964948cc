"""Rendered objects as files: one YAML stream, a kustomize base, or a Helm chart.

Pure: objects in, ``{relative path: text}`` out; the CLI writes them. File names are stable
(``NN-kind-name.yaml`` in apply order) so GitOps diffs stay quiet. The chart's values and
templates are ``helm_chart``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import yaml

from mlkube.backends.kubernetes.render.helm_chart import chart_files, escape_helm
from mlkube.backends.kubernetes.render.manifest import Manifest
from mlkube.spec.deployment import ModelDeployment

Format = Literal["yaml", "kustomize", "helm"]
__all__ = ["Format", "as_files", "escape_helm", "file_name", "to_yaml"]


def to_yaml(objects: Sequence[Manifest]) -> str:
    """One multi-document YAML stream, in apply order."""
    return yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False)


def file_name(index: int, obj: Manifest) -> str:
    """``03-deployment-iris.yaml``: apply order first, then kind and name."""
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def as_files(
    objects: Sequence[Manifest],
    fmt: Format,
    name: str,
    deployments: Sequence[ModelDeployment] = (),
) -> dict[str, str]:
    """The files of ``fmt`` for ``objects``; ``name`` names the single file, or the chart
    when there is not exactly one of ``deployments`` (the specs ``objects`` came from)."""
    if fmt == "yaml":
        return {f"{name}.yaml": to_yaml(objects)}
    if fmt == "helm":
        templates = {file_name(i, obj): obj for i, obj in enumerate(objects)}
        return chart_files(templates, deployments, name)
    files = {file_name(i, obj): to_yaml([obj]) for i, obj in enumerate(objects)}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    return {**files, "kustomization.yaml": yaml.safe_dump(kustomization, sort_keys=False)}
