"""Parity: the same specs through both backends, compared on what each would run.

The local side is read from the local backend's own code (the revision document the
controller writes, the limits it enforces, the HPA spec its autoscaler runs, the rollout state
machine's targets and weights); the cluster side is read back from the rendered objects
(pod template annotation, container resources, HPA or ScaledObject, Deployment replicas,
HTTPRoute rules). They must agree on revision identity, replica bounds, resources, scaling
policy, per-step traffic split and routing, except where the capability table says
``approximated`` for that spec: then the note must be there.

Specs: the examples, the Kubernetes test specs, and hypothesis-generated ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlkube.autoscale.hpa_mapping import hpa_spec
from mlkube.backends.kubernetes.render import render
from mlkube.backends.local.controller.deployment import revision_of
from mlkube.backends.local.limits import limits_of
from mlkube.desired.capabilities import BackendKind, notes
from mlkube.desired.revision import revision_hash
from mlkube.desired.rollout import (
    Observed,
    RevisionCounts,
    RolloutState,
    start_rollout,
    step_rollout,
)
from mlkube.desired.scaling import Behavior, Policy, Rules, replicas_after_apply
from mlkube.spec import ModelDeployment, load_documents
from mlkube.spec.autoscaling import CpuMetric, MemoryMetric
from mlkube.spec.quantity import Quantity
from mlkube.spec.rollout import RolloutStrategy

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = [
    path
    for path in [
        ROOT / "examples" / "k8s-ml-guide" / "spec.yaml",
        *sorted((ROOT / "tests" / "backends" / "kubernetes" / "specs").glob("*.yaml")),
    ]
    # Job-only specs hold no ModelDeployment: their rows of the capability table say what each
    # backend does with a job (tests/desired, tests/backends/kubernetes/test_k8s_jobs.py).
    if any(isinstance(d, ModelDeployment) for d in load_documents(path))
]
Manifest = dict[str, Any]


# --- what each backend would run ----------------------------------------------------------
@dataclass(frozen=True)
class Scaling:
    min_replicas: int
    max_replicas: int
    behavior: Behavior | None


@dataclass(frozen=True)
class Step:
    """One rollout step: replicas of each revision, traffic weights, header route."""

    stable_replicas: int
    canary_replicas: int
    canary_weight: float
    """Percent of requests without a matching header that reach the new revision."""
    header: tuple[str, str | None] | None


def local_scaling(doc: ModelDeployment) -> Scaling | None:
    autoscaling = doc.spec.autoscaling
    if autoscaling is None:
        return None
    resource = tuple(m for m in autoscaling.metrics if isinstance(m, CpuMetric | MemoryMetric))
    spec = hpa_spec(autoscaling, resource)  # what autoscale.policy.decide runs
    return Scaling(spec.min_replicas, spec.max_replicas, spec.behavior)


def local_step(doc: ModelDeployment, weight_index: int, replicas: int) -> Step:
    """The local rollout state machine at one step, the new revision not yet ready."""
    rollout = doc.spec.rollout
    state = start_rollout(RolloutState(stable=1), 2, rollout.strategy, now=0.0)
    state = dataclasses.replace(state, step=weight_index)
    seen = Observed(0.0, replicas, {1: RevisionCounts(replicas, replicas), 2: RevisionCounts()})
    step = step_rollout(rollout, state, seen)
    total = sum(step.weights.values()) or 1.0
    header = None
    if step.header_rule is not None:
        header = (step.header_rule.header, step.header_rule.value)
    return Step(step.targets[1], step.targets[2], 100.0 * step.weights.get(2, 0.0) / total, header)


def _objects(doc: ModelDeployment) -> list[Manifest]:
    return list(render([doc]).objects)


def _of(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def cluster_hashes(doc: ModelDeployment) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
            "mlkube.dev/config-hash"
        ]
        for d in _of(_objects(doc), "Deployment")
    }


def _rules_from(raw: Manifest) -> Rules:
    policies = tuple(Policy(p["type"], p["value"], p["periodSeconds"]) for p in raw["policies"])
    return Rules(raw["stabilizationWindowSeconds"], raw["selectPolicy"], policies)


def _behavior_from(raw: Manifest | None) -> Behavior | None:
    if not raw:
        return None
    return Behavior(_rules_from(raw["scaleUp"]), _rules_from(raw["scaleDown"]))


def cluster_scaling(doc: ModelDeployment, deployment_name: str) -> Scaling | None:
    objects = _objects(doc)
    for hpa in _of(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment_name:
            spec = hpa["spec"]
            return Scaling(
                spec["minReplicas"], spec["maxReplicas"], _behavior_from(spec.get("behavior"))
            )
    for scaled in _of(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == deployment_name:
            spec = scaled["spec"]
            config = spec["advanced"]["horizontalPodAutoscalerConfig"]
            return Scaling(
                spec["minReplicaCount"],
                spec["maxReplicaCount"],
                _behavior_from(config.get("behavior")),
            )
    return None


def cluster_step(doc: ModelDeployment, weight: int | None) -> Step:
    """The rendered objects at one canary weight (``kubernetes.canaryWeight``)."""
    if weight is not None:
        kube = doc.spec.kubernetes.model_copy(update={"canary_weight": weight})
        doc = doc.model_copy(update={"spec": doc.spec.model_copy(update={"kubernetes": kube})})
    objects = _objects(doc)
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in _of(objects, "Deployment")}
    stable, canary = replicas[doc.name], replicas[f"{doc.name}-canary"]
    routes = _of(objects, "HTTPRoute")
    if not routes:  # no Gateway: traffic follows the replica ratio
        return Step(stable, canary, 100.0 * canary / (stable + canary), None)
    rules = routes[0]["spec"]["rules"]
    header = None
    if len(rules) == 2:
        match = rules[0]["matches"][0]["headers"][0]
        header = (match["name"], match["value"] if match["type"] == "Exact" else None)
    weights = {r["name"]: r["weight"] for r in rules[-1]["backendRefs"]}
    total = sum(weights.values()) or 1
    return Step(stable, canary, 100.0 * weights.get(f"{doc.name}-canary", 0) / total, header)


# --- the comparisons ----------------------------------------------------------------------
def _fields(doc: ModelDeployment, target: BackendKind) -> set[str]:
    return {n.field for n in notes([doc], target)}


def check_resources(doc: ModelDeployment) -> None:
    limits = limits_of(doc.spec.resources)
    for deployment in _of(_objects(doc), "Deployment"):
        if deployment["metadata"]["name"] == f"{doc.name}-rollout":
            continue  # the in-cluster controller's own pod, not a replica
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        rendered = container.get("resources", {}).get("limits", {})
        cpu = rendered.get("cpu")
        memory = rendered.get("memory")
        assert limits.cpu_millis == (Quantity.parse(cpu).millis if cpu else None)
        assert limits.memory_bytes == (Quantity.parse(memory).whole if memory else None)
        requests = {k: v.text for k, v in doc.spec.resources.requests.items()}
        assert container.get("resources", {}).get("requests", {}) == requests


def check_scaling(doc: ModelDeployment) -> None:
    local = local_scaling(doc)
    main = {
        RolloutStrategy.BLUE_GREEN: f"{doc.name}-blue",
    }.get(doc.spec.rollout.strategy, doc.name)
    cluster = cluster_scaling(doc, main)
    if local is None:
        assert cluster is None
        return
    assert cluster is not None
    assert cluster == local
    initial = replicas_after_apply(None, doc.spec, 0)
    rendered = {
        d["metadata"]["name"]: d["spec"]["replicas"] for d in _of(_objects(doc), "Deployment")
    }
    assert rendered[main] == initial


def check_steps(doc: ModelDeployment) -> None:
    rollout = doc.spec.rollout
    if rollout.strategy not in (RolloutStrategy.CANARY, RolloutStrategy.AB_TEST):
        return
    n = replicas_after_apply(None, doc.spec, 0)
    pairs: list[tuple[int, int | None]] = [(0, None)]
    if rollout.strategy is RolloutStrategy.CANARY:
        pairs = [(i, step.weight) for i, step in enumerate(rollout.steps)]
    # Without a Gateway the cluster splits by replica ratio and cannot route by header.
    said = {"spec.rollout.steps", "spec.rollout.abTest.header"}
    approximated = bool(said & _fields(doc, BackendKind.KUBERNETES))
    for index, weight in pairs:
        local = local_step(doc, index, n)
        cluster = cluster_step(doc, weight)
        assert (cluster.stable_replicas, cluster.canary_replicas) == (
            local.stable_replicas,
            local.canary_replicas,
        )
        if doc.spec.kubernetes.gateway is not None:
            assert cluster.canary_weight == pytest.approx(local.canary_weight)
            assert cluster.header == local.header
        else:
            # Replica ratio: the capability table must say so.
            assert approximated or cluster.canary_weight == pytest.approx(local.canary_weight)


def check_revision_identity(doc: ModelDeployment, changed: ModelDeployment) -> None:
    """A change cuts a local revision exactly when the pod template hash changes."""
    local_cut = revision_hash(revision_of(doc)) != revision_hash(revision_of(changed))
    before, after = cluster_hashes(doc), cluster_hashes(changed)
    assert set(before) == set(after)
    cluster_cut = any(before[name] != after[name] for name in before)
    assert local_cut == cluster_cut


def check_all(doc: ModelDeployment) -> None:
    check_resources(doc)
    check_scaling(doc)
    check_steps(doc)


def _renderable(doc: ModelDeployment) -> bool:
    return not any(n.is_error for n in notes([doc], BackendKind.KUBERNETES))


# --- the specs ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_repository_specs_run_the_same_on_both_backends(path):
    docs = [d for d in load_documents(path) if isinstance(d, ModelDeployment)]
    assert docs
    for doc in docs:
        if doc.spec.model.format.value == "tensorflow":
            continue  # TF Serving: no mlkube revision document on the cluster
        check_all(doc)


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        old = merged.get(key)
        merged[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return merged


def _with(doc: ModelDeployment, **spec: Any) -> ModelDeployment:
    """``doc`` with ``spec`` merged into its spec (sections merge key by key)."""
    data = doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["spec"] = _merge(data["spec"], spec)
    return ModelDeployment.model_validate(data)


MUTATIONS: list[tuple[str, dict[str, Any]]] = [
    ("replicas", {"replicas": 7}),
    ("autoscaling", {"autoscaling": {"minReplicas": 2, "maxReplicas": 12}}),
    ("rollout", {"rollout": {"maxSurge": 3}}),
    ("service", {"service": {"port": 9090}}),
    ("monitoring", {"monitoring": {"alerts": {"errorRate": 0.2}}}),
    ("model", {"model": {"uri": "s3://other/model.onnx", "format": "onnx"}}),
    ("resources", {"resources": {"limits": {"memory": "3Gi"}}}),
    ("batching", {"batching": {"maxBatchSize": 3}}),
    ("server", {"server": {"workers": 3}}),
    ("logging", {"logging": {"level": "debug"}}),
]


@pytest.mark.parametrize(("name", "change"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_same_changes_cut_a_revision_on_both_backends(name, change):
    base = ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"model": {"uri": "s3://models/iris.onnx", "format": "onnx"}, "replicas": 2},
        }
    )
    check_revision_identity(base, _with(base, **change))


# hypothesis: random specs, all checks ------------------------------------------------------
weights = st.integers(0, 100)
METRICS: list[dict[str, Any]] = [
    {"type": "cpu", "targetUtilization": 70},
    {"type": "memory", "targetAverageValue": "1Gi"},
    {"type": "concurrency", "target": 4},
    {"type": "rps", "target": 20},
    {"type": "queueDepth", "target": 5},
]
metric = st.sampled_from(METRICS)
rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.integers(0, 600),
        "selectPolicy": st.sampled_from(["Max", "Min"]),
        "policies": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["Pods", "Percent"]),
                    "value": st.integers(1, 10),
                    "periodSeconds": st.integers(1, 120),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    },
)


@st.composite
def specs(draw: st.DrawFn) -> ModelDeployment:
    spec: dict[str, Any] = {
        "model": {"uri": "s3://models/m.onnx", "format": "onnx"},
        "replicas": draw(st.integers(1, 12)),
    }
    if draw(st.booleans()):
        low = draw(st.integers(1, 5))
        autoscaling: dict[str, Any] = {
            "minReplicas": low,
            "maxReplicas": draw(st.integers(low, 20)),
            "metrics": draw(
                st.lists(metric, min_size=1, max_size=3, unique_by=lambda m: m["type"])
            ),
            "downscaleStabilization": f"{draw(st.sampled_from([300, 60, 900]))}s",
            "engine": draw(st.sampled_from(["hpa", "keda"])),
        }
        if draw(st.booleans()):
            autoscaling["behavior"] = draw(
                st.fixed_dictionaries({}, optional={"scaleUp": rules, "scaleDown": rules})
            )
        spec["autoscaling"] = autoscaling
    strategy = draw(st.sampled_from(["RollingUpdate", "BlueGreen", "Canary", "ABTest"]))
    rollout: dict[str, Any] = {"strategy": strategy}
    if strategy == "Canary":
        rollout["steps"] = [
            {"weight": w} for w in sorted(draw(st.lists(weights, min_size=1, max_size=4)))
        ]
    if strategy == "ABTest":
        ab: dict[str, Any] = {"weight": draw(weights)}
        if draw(st.booleans()):
            ab["header"] = draw(st.sampled_from(["x-variant", "X-Model"]))
            if draw(st.booleans()):
                ab["headerValue"] = "b"
        rollout["abTest"] = ab
    spec["rollout"] = rollout
    if draw(st.booleans()):
        spec["resources"] = {
            "requests": {"cpu": draw(st.sampled_from(["250m", "1"])), "memory": "256Mi"},
            "limits": {"cpu": "2", "memory": draw(st.sampled_from(["512Mi", "1Gi"]))},
        }
    kube: dict[str, Any] = {}
    if draw(st.booleans()):
        kube["gateway"] = "infra/public"
    spec["kubernetes"] = kube
    return ModelDeployment.model_validate(
        {"metadata": {"name": "m", "namespace": "ml"}, "spec": spec}
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs_run_the_same_on_both_backends(doc):
    if not _renderable(doc):
        return  # the table says the cluster refuses it; test_capabilities checks it does
    check_all(doc)


@settings(max_examples=60, deadline=None)
@given(specs(), st.sampled_from(MUTATIONS))
def test_random_changes_cut_a_revision_on_both_backends_or_neither(doc, mutation):
    changed = _with(doc, **mutation[1])
    if not (_renderable(doc) and _renderable(changed)):
        return
    check_revision_identity(doc, changed)
