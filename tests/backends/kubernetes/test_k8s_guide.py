"""The guide's objects, reproduced: ``examples/k8s-ml-guide/spec.yaml`` against the guide's YAML.

Every field the guide writes must be in our render with the same value. Our render may add
fields, but only the documented additions below (each with its reason); any other addition,
any missing field and any changed value fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.backends.kubernetes.render import render
from mlkube.spec import load_documents

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
GUIDE_YAML = HERE / "data" / "k8s-ml-guide.yaml"
GUIDE_SPEC = ROOT / "examples" / "k8s-ml-guide" / "spec.yaml"

DOCUMENTED_ADDITIONS: dict[str, str] = {
    "*.metadata.labels*": "standard app.kubernetes.io/* labels on every object",
    "*.metadata.namespace": "everything lives in namespace ml, where the guide's HPA is",
    "Deployment.spec.revisionHistoryLimit": "bounded ReplicaSet history",
    "Deployment.spec.progressDeadlineSeconds": "rollout.progressDeadline",
    "Deployment.spec.selector.matchLabels.mlkube.dev/track": (
        "the stable track's selector for every strategy (selectors are immutable)"
    ),
    "Deployment.spec.strategy*": "rollout.maxSurge / maxUnavailable, explicit",
    "Deployment.spec.template.metadata.labels.*": "standard labels on pods",
    "Deployment.spec.template.metadata.annotations*": "config hash (mlkube server only)",
    "Deployment.spec.template.spec.automountServiceAccountToken": "no API token in pods",
    "Deployment.spec.template.spec.securityContext*": "non-root, seccomp RuntimeDefault",
    "Deployment.spec.template.spec.terminationGracePeriodSeconds": "longer than the drain",
    "Deployment.spec.template.spec.containers[ml-model].imagePullPolicy": "explicit",
    "Deployment.spec.template.spec.containers[ml-model].command*": (
        "TF Serving started with the model name and path from the spec"
    ),
    "Deployment.spec.template.spec.containers[ml-model].args*": "same",
    "Deployment.spec.template.spec.containers[ml-model].ports[0].name": "named port for probes",
    "Deployment.spec.template.spec.containers[ml-model].ports[0].protocol": "explicit TCP",
    "Deployment.spec.template.spec.containers[ml-model].resources*": (
        "the guide's own requests/limits example (500m/512Mi, 2/2Gi)"
    ),
    "Deployment.spec.template.spec.containers[ml-model].startupProbe*": "health probes",
    "Deployment.spec.template.spec.containers[ml-model].readinessProbe*": "health probes",
    "Deployment.spec.template.spec.containers[ml-model].livenessProbe*": "health probes",
    "Deployment.spec.template.spec.containers[ml-model].securityContext*": "read-only root",
    "Deployment.spec.template.spec.containers[ml-model].volumeMounts[model-storage].readOnly": (
        "the server only reads the model"
    ),
    "Deployment.spec.template.spec.containers[ml-model].volumeMounts[tmp]*": (
        "writable /tmp on a read-only root filesystem"
    ),
    "Deployment.spec.template.spec.volumes[tmp]*": "same",
    "Service.spec.ports[0].name": "named port, for the ServiceMonitor",
    "PersistentVolume.spec.storageClassName": (
        "'' so the claim binds this volume instead of waiting on the default StorageClass"
    ),
    "PersistentVolumeClaim.spec.storageClassName": "same",
    "PersistentVolumeClaim.spec.volumeName": "binds the claim to ml-model-pv explicitly",
}
EXTRA_OBJECTS = {
    ("Namespace", "ml"): "kubernetes.createNamespace: namespace ml must exist for the HPA",
    ("PodDisruptionBudget", "ml-model-pdb"): "up to 3 replicas: evict one at a time",
}


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def compare(guide: Any, ours: Any, path: str) -> tuple[list[str], list[str]]:
    """(differences, additions): guide fields missing or different in ours, and our extras."""
    if isinstance(guide, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected a mapping, got {ours!r}"], []
        diffs: list[str] = []
        additions = [f"{path}.{k}" for k in ours if k not in guide]
        for key, value in guide.items():
            if key not in ours:
                diffs.append(f"{path}.{key}: missing (guide has {value!r})")
                continue
            d, a = compare(value, ours[key], f"{path}.{key}")
            diffs += d
            additions += a
        return diffs, additions
    if isinstance(guide, list) and guide and all(isinstance(i, dict) for i in guide):
        if not isinstance(ours, list):
            return [f"{path}: expected a list, got {ours!r}"], []
        return _compare_items(guide, ours, path)
    if guide != ours:
        return [f"{path}: guide has {guide!r}, we render {ours!r}"], []
    return [], []


def _compare_items(guide: list[Any], ours: list[Any], path: str) -> tuple[list[str], list[str]]:
    diffs: list[str] = []
    additions: list[str] = []
    if all("name" in item for item in guide):  # list-map keyed by name (containers, volumes)
        by_name = {item["name"]: item for item in ours}
        for item in guide:
            if item["name"] not in by_name:
                diffs.append(f"{path}[{item['name']}]: missing")
                continue
            d, a = compare(item, by_name[item["name"]], f"{path}[{item['name']}]")
            diffs += d
            additions += a
        wanted = {item["name"] for item in guide}
        additions += [f"{path}[{i['name']}]" for i in ours if i["name"] not in wanted]
        return diffs, additions
    if len(ours) != len(guide):
        diffs.append(f"{path}: guide has {len(guide)} items, we render {len(ours)}")
    for index, (g, o) in enumerate(zip(guide, ours, strict=False)):
        d, a = compare(g, o, f"{path}[{index}]")
        diffs += d
        additions += a
    return diffs, additions


def _documented(addition: str) -> bool:
    # Patterns use only `*` as a wildcard; brackets are literal ([ml-model], [0]).
    return any(
        re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), addition)
        for pattern in DOCUMENTED_ADDITIONS
    )


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    return {_key(o): o for o in render(load_documents(GUIDE_SPEC)).objects}


GUIDE_OBJECTS = list(yaml.safe_load_all(GUIDE_YAML.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    "guide", GUIDE_OBJECTS, ids=lambda o: f"{o['kind']}-{o['metadata']['name']}"
)
def test_guide_object_reproduced_field_by_field(guide, rendered):
    ours = rendered.get(_key(guide))
    assert ours is not None, f"{_key(guide)} is not rendered"
    diffs, additions = compare(guide, ours, guide["kind"])
    assert diffs == []
    undocumented = [a for a in additions if not _documented(a)]
    assert undocumented == []


def test_no_object_beyond_the_guide_but_the_documented_ones(rendered):
    extra = set(rendered) - {_key(o) for o in GUIDE_OBJECTS}
    assert extra == set(EXTRA_OBJECTS)


def test_the_comparison_catches_a_changed_value_and_an_undocumented_addition(rendered):
    ours = dict(rendered[("Service", "ml-model-service")])
    ours["spec"] = {**ours["spec"], "type": "LoadBalancer", "externalTrafficPolicy": "Local"}
    guide = next(o for o in GUIDE_OBJECTS if o["kind"] == "Service")
    diffs, additions = compare(guide, ours, "Service")
    assert diffs == ["Service.spec.type: guide has 'NodePort', we render 'LoadBalancer'"]
    assert [a for a in additions if not _documented(a)] == ["Service.spec.externalTrafficPolicy"]
