"""Rendered objects as files: one YAML stream, a kustomize base, or a Helm chart.

Pure: objects in, ``{relative path: text}`` out; the CLI writes them. File names are stable
(``NN-kind-name.yaml`` in apply order) so GitOps diffs stay quiet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import yaml

from mlkube.backends.kubernetes.render.manifest import Manifest

Format = Literal["yaml", "kustomize", "helm"]
CHART_VERSION = "0.1.0"


def to_yaml(objects: Sequence[Manifest]) -> str:
    """One multi-document YAML stream, in apply order."""
    return yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False)


def file_name(index: int, obj: Manifest) -> str:
    """``03-deployment-iris.yaml``: apply order first, then kind and name."""
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def as_files(objects: Sequence[Manifest], fmt: Format, name: str) -> dict[str, str]:
    """The files of ``fmt`` for ``objects``; ``name`` names the chart or the single file."""
    if fmt == "yaml":
        return {f"{name}.yaml": to_yaml(objects)}
    files = {file_name(i, obj): to_yaml([obj]) for i, obj in enumerate(objects)}
    if fmt == "kustomize":
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(files),
        }
        return {**files, "kustomization.yaml": yaml.safe_dump(kustomization, sort_keys=False)}
    chart = {
        "apiVersion": "v2",
        "name": name,
        "description": "Rendered by mlkube from a ModelDeployment spec.",
        "type": "application",
        "version": CHART_VERSION,
        "appVersion": CHART_VERSION,
    }
    out = {"Chart.yaml": yaml.safe_dump(chart, sort_keys=False), "values.yaml": "{}\n"}
    for path, text in files.items():
        out[f"templates/{path}"] = escape_helm(text)
    return out


def escape_helm(text: str) -> str:
    """Text Helm renders back to itself: ``{{``/``}}`` (alert templates) become literals."""
    return re.sub(r"(\{\{|\}\})", lambda m: '{{ "' + m.group(1) + '" }}', text)
