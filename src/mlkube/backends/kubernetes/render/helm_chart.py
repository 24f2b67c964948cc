"""Rendered objects as a Helm chart whose values are the knobs people turn.

Pure: objects and specs in, ``{relative path: text}`` out. ``values.yaml`` holds each
ModelDeployment's server ``image``, ``replicas``, ``resources`` and ``autoscaling`` bounds and
targets (and the canary track's own counts); the templates read them, so
``helm template --set replicas=3`` changes the Deployment. With the default values,
``helm template`` gives exactly the objects of ``mlkube render`` (the tests compare them).

How: each object is dumped with a placeholder token at every parametrized field, the rest is
escaped so Helm renders it back to itself (alert templates contain ``{{``), then each token
becomes a template expression. Every other field stays literal: the chart is the rendered
spec, with the few values an operator overrides at install time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mlkube import __version__
from mlkube.backends.kubernetes.render.manifest import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_TRACK,
    Manifest,
)
from mlkube.backends.kubernetes.render.standby import COMPONENT as STANDBY_COMPONENT
from mlkube.spec.deployment import ModelDeployment

Path = tuple[str | int, ...]
"""Keys and list indexes from an object's root to one of its fields."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CANARY = "canary"


@dataclass(frozen=True, slots=True)
class _Knob:
    """One field of one object that a value in ``values.yaml`` sets."""

    field: Path
    key: tuple[str, ...]
    """Key path inside ``values.yaml``."""


@dataclass(slots=True)
class _Values:
    """``values.yaml`` as it is built: each key's default is the rendered field's value."""

    tree: dict[str, Any] = field(default_factory=dict)

    def bind(self, obj: Manifest, at: Path, key: tuple[str, ...], knobs: list[_Knob]) -> None:
        """Make ``key`` set field ``at`` of ``obj`` (its current value is the default).

        Two fields that would share a key but differ in their defaults (not produced by the
        renderer today) keep their literal values, so the default chart still equals the
        rendered objects.
        """
        default = _get(obj, at)
        node = self.tree
        for part in key[:-1]:
            node = node.setdefault(part, {})
        if key[-1] in node and node[key[-1]] != default:
            return
        node[key[-1]] = default
        knobs.append(_Knob(at, key))


def chart_files(
    templates: dict[str, Manifest], deployments: Sequence[ModelDeployment], name: str
) -> dict[str, str]:
    """Chart.yaml, values.yaml, NOTES.txt and one template per object.

    ``templates`` maps each template's file name to its object (in apply order); ``name``
    names the chart when there is not exactly one ModelDeployment to name it after.
    """
    prefixes = _value_prefixes(deployments)
    values = _Values()
    out: dict[str, str] = {}
    for path, obj in templates.items():
        knobs = _knobs(obj, deployments, prefixes, values)
        out[f"templates/{path}"] = _template(obj, knobs)
    single = deployments[0] if len(deployments) == 1 else None
    out["Chart.yaml"] = _chart_yaml(single.name if single else name, single)
    out["values.yaml"] = _values_yaml(values.tree, single)
    out["values.schema.json"] = json.dumps(_schema(values.tree), indent=2) + "\n"
    if single is not None:
        out["templates/NOTES.txt"] = _notes(single)
    return out


def _value_prefixes(
    deployments: Sequence[ModelDeployment],
) -> dict[tuple[str, str], tuple[str, ...]]:
    """Where each deployment's values live: the top level for one, ``<name>:`` for several."""
    if len(deployments) == 1:
        only = deployments[0]
        return {(only.namespace, only.name): ()}
    names = [d.name for d in deployments]
    return {
        (d.namespace, d.name): (d.name if names.count(d.name) == 1 else f"{d.namespace}-{d.name}",)
        for d in deployments
    }


def _knobs(
    obj: Manifest,
    deployments: Sequence[ModelDeployment],
    prefixes: dict[tuple[str, str], tuple[str, ...]],
    values: _Values,
) -> list[_Knob]:
    """The fields of ``obj`` that values set (none for objects without a knob)."""
    meta = obj["metadata"]
    instance = meta.get("labels", {}).get(LABEL_INSTANCE)
    owner = next(
        (d for d in deployments if d.name == instance and d.namespace == meta.get("namespace")),
        None,
    )
    if owner is None:
        return []
    prefix = prefixes[(owner.namespace, owner.name)]
    knobs: list[_Knob] = []
    kind = obj["kind"]
    component = meta["labels"].get(LABEL_COMPONENT)
    if kind == "Deployment" and component in ("model-server", STANDBY_COMPONENT):
        _deployment_knobs(obj, owner, prefix, values, knobs)
    elif kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        _autoscaler_knobs(obj, owner, prefix, values, knobs)
    return knobs


def _deployment_knobs(
    obj: Manifest,
    owner: ModelDeployment,
    prefix: tuple[str, ...],
    values: _Values,
    knobs: list[_Knob],
) -> None:
    labels = obj["metadata"]["labels"]
    track = (_CANARY,) if labels.get(LABEL_TRACK) == _CANARY else ()
    # The standby pool's pods take the serving image and resources (a promoted pod must
    # be one of the serving kind); its size is the spec's, not a replicas knob.
    if labels.get(LABEL_COMPONENT) != STANDBY_COMPONENT:
        values.bind(obj, ("spec", "replicas"), (*prefix, *track, "replicas"), knobs)
    containers = obj["spec"]["template"]["spec"]["containers"]
    for index, container in enumerate(containers):
        if container["name"] != owner.name:
            continue  # a sidecar, not the model server
        at: Path = ("spec", "template", "spec", "containers", index)
        values.bind(obj, (*at, "image"), (*prefix, "image"), knobs)
        if "resources" in container:
            values.bind(obj, (*at, "resources"), (*prefix, "resources"), knobs)


def _autoscaler_knobs(
    obj: Manifest,
    owner: ModelDeployment,
    prefix: tuple[str, ...],
    values: _Values,
    knobs: list[_Knob],
) -> None:
    autoscaling = owner.spec.autoscaling
    if autoscaling is None:
        return
    canary = obj["spec"]["scaleTargetRef"]["name"] == f"{owner.name}-{_CANARY}"
    track = (_CANARY,) if canary else ()
    keda = obj["kind"] == "ScaledObject"
    low, high = ("minReplicaCount", "maxReplicaCount") if keda else ("minReplicas", "maxReplicas")
    bounds = (*prefix, *track) if track else (*prefix, "autoscaling")
    values.bind(obj, ("spec", low), (*bounds, "minReplicas"), knobs)
    values.bind(obj, ("spec", high), (*bounds, "maxReplicas"), knobs)
    targets = (*prefix, "autoscaling", "targets")
    used: list[str] = []
    for index, metric in enumerate(autoscaling.metrics):
        key = metric.type if metric.type not in used else f"{metric.type}{index}"
        used.append(key)
        at = _trigger_target(obj, index) if keda else _metric_target(obj, index)
        values.bind(obj, at, (*targets, key), knobs)


def _metric_target(obj: Manifest, index: int) -> Path:
    """The target number of HPA metric ``index`` (utilization or average value)."""
    metric = obj["spec"]["metrics"][index]
    source = "resource" if metric["type"] == "Resource" else "pods"
    target = metric[source]["target"]
    number = "averageUtilization" if "averageUtilization" in target else "averageValue"
    return ("spec", "metrics", index, source, "target", number)


def _trigger_target(obj: Manifest, index: int) -> Path:
    """The target of KEDA trigger ``index``: a Prometheus threshold or a cpu/memory value."""
    trigger = obj["spec"]["triggers"][index]
    number = "threshold" if "threshold" in trigger["metadata"] else "value"
    return ("spec", "triggers", index, "metadata", number)


def _template(obj: Manifest, knobs: list[_Knob]) -> str:
    """``obj`` as a template: literal YAML with an expression at each knob."""
    tokens = {f"MLKUBE_VALUE_{i:03d}_": knob for i, knob in enumerate(knobs)}
    marked = _copy(obj)
    defaults = {}
    for token, knob in tokens.items():
        defaults[token] = _get(obj, knob.field)
        _set(marked, knob.field, token)
    text = escape_helm(yaml.safe_dump(marked, sort_keys=False, default_flow_style=False))
    for token, knob in tokens.items():
        text = text.replace(token, _expression(knob.key, defaults[token]))
    return text


def _expression(key: tuple[str, ...], default: object) -> str:
    """The template expression giving a field the type its default has."""
    # `required`: a value set to null must fail, not render `replicas: 0` or `image: "<nil>"`.
    ref = f'required "values: {".".join(key)} is required" {_reference(key)}'
    if isinstance(default, bool) or not isinstance(default, int | str):
        # Mappings (resources) as JSON, a YAML flow mapping: no indentation to get right.
        return "{{ " + ref + " | toJson }}"
    if isinstance(default, int):
        return "{{ " + ref + " | int }}"
    # Strings stay strings even when --set parses the text as a number (a KEDA threshold).
    return "{{ " + ref + " | toString | toJson }}"


def _reference(key: tuple[str, ...]) -> str:
    """``.Values.a.b``, or ``(index .Values "ml-model" "image")`` for keys with dashes."""
    if all(_IDENTIFIER.match(part) for part in key):
        return ".Values." + ".".join(key)
    return "(index .Values " + " ".join(f'"{part}"' for part in key) + ")"


def _chart_yaml(name: str, single: ModelDeployment | None) -> str:
    chart: dict[str, Any] = {
        "apiVersion": "v2",
        "name": name,
        "description": (
            f"ModelDeployment {single.name} (namespace {single.namespace}), rendered by mlkube."
            if single
            else "ModelDeployments rendered by mlkube."
        ),
        "type": "application",
        # The chart's layout is mlkube's: it changes with mlkube releases.
        "version": __version__,
        # What the chart runs: the served model's version (spec.model.version).
        "appVersion": str(single.spec.model.version) if single else __version__,
        "kubeVersion": ">=1.30.0-0",
        "keywords": ["mlkube", "model-serving"],
        "annotations": {"mlkube.dev/generated-by": f"mlkube {__version__}"},
    }
    return yaml.safe_dump(chart, sort_keys=False)


_VALUE_COMMENTS = {
    "image": "Model-server container image (every track).",
    "replicas": "Replicas of each Deployment at apply; the autoscaler takes over from there.",
    "resources": "Model-server container requests and limits.",
    "autoscaling": (
        "Autoscaler bounds, and each metric's target as rendered: utilization percent (int),\n"
        "# average value or threshold (quantity or decimal string)."
    ),
    "canary": "The canary track (Canary/ABTest): its replicas and autoscaler bounds.",
}


_VALUE_ORDER = ("image", "replicas", "resources", "autoscaling", "minReplicas", "maxReplicas")


def _ordered(tree: dict[str, Any]) -> dict[str, Any]:
    """Keys people look for first (image, replicas, ...), then the rest as they came."""
    rank = {key: i for i, key in enumerate(_VALUE_ORDER)}
    keys = sorted(tree, key=lambda key: rank.get(key, len(rank)))
    return {
        key: _ordered(tree[key])
        if isinstance(tree[key], dict) and key != "resources"
        else tree[key]
        for key in keys
    }


def _values_yaml(tree: dict[str, Any], single: ModelDeployment | None) -> str:
    tree = _ordered(tree)
    header = (
        "# Defaults reproduce `mlkube render` exactly; override with --set or -f.\n"
        "# Every other field is the rendered spec: change the spec and render again.\n"
    )
    if not tree:
        return header + "{}\n"
    if single is None:
        return header + yaml.safe_dump(tree, sort_keys=False)
    sections = [
        f"# {_VALUE_COMMENTS[key]}\n" + yaml.safe_dump({key: value}, sort_keys=False)
        for key, value in tree.items()
    ]
    return header + "\n" + "\n".join(sections)


def _schema(value: object, key: str = "") -> dict[str, Any]:
    """A JSON schema of ``values.yaml``: Helm checks --set against it, so a misspelt key
    (``replica=3``) or a wrong type (``replicas=abc``) fails instead of rendering nonsense."""
    if key == "resources":
        quantities = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
        return {"type": "object", "properties": {"requests": quantities, "limits": quantities}}
    if isinstance(value, dict):
        return {
            "type": "object",
            "properties": {k: _schema(v, k) for k, v in value.items()},
            "additionalProperties": False,
        }
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    if key == "image":
        return {"type": "string", "minLength": 1}
    return {"type": ["string", "number"]}  # a target: "500m" or 0.25


def _notes(deployment: ModelDeployment) -> str:
    namespace, name = deployment.namespace, deployment.name
    return (
        f"ModelDeployment {name} is installed in namespace {namespace}\n"
        "(the objects name their namespace; --namespace does not move them).\n\n"
        "  kubectl -n " + namespace + f" rollout status deployment/{name}\n"
        "  kubectl -n " + namespace + f" get pods,svc,hpa -l app.kubernetes.io/instance={name}\n"
        "  mlkube status --target kubernetes --namespace " + namespace + f" {name}\n"
    )


def escape_helm(text: str) -> str:
    """Text Helm renders back to itself: ``{{``/``}}`` (alert templates) become literals."""
    return re.sub(r"(\{\{|\}\})", lambda m: '{{ "' + m.group(1) + '" }}', text)


def _get(obj: Any, at: Path) -> Any:
    for part in at:
        obj = obj[part]
    return obj


def _set(obj: Any, at: Path, value: object) -> None:
    _get(obj, at[:-1])[at[-1]] = value


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _copy(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_copy(value) for value in obj]
    return obj
