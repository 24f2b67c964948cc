"""autoscaling.standby on Kubernetes: a ``<name>-standby`` Deployment the Service does not
select, and the in-cluster controller promoting its warm pods into the serving pool, against
the API-server DOUBLE with ReplicaSets modelled as pods (``k8s_cluster_sim``) and the
controller authorized by exactly its rendered Role."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from k8s_apiserver import FakeApiServer
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.render import render
from mlkube.backends.kubernetes.standby_driver import (
    promote_waiting,
    promotion_patch,
    scale_and_promote,
    serving_hash,
    waiting,
)
from mlkube.cli import cli
from mlkube.desired.capabilities import BackendKind, Support, notes
from mlkube.spec import ModelDeployment, parse_documents

SPEC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: llm, namespace: ml}
spec:
  model: {uri: "pvc://models/llm", format: python, entrypoint: "model:Model"}
  autoscaling:
    minReplicas: 1
    maxReplicas: 4
    metrics: [{type: rps, target: 12.5}]
    predictive: {}
    standby: STANDBY
"""


def _doc(standby: int = 1, strategy: str | None = None) -> ModelDeployment:
    text = SPEC.replace("STANDBY", str(standby))
    if strategy == "Canary":
        text += "  rollout: {strategy: Canary, steps: [{weight: 10}]}\n"
    elif strategy is not None:
        text += f"  rollout: {{strategy: {strategy}}}\n"
    document = parse_documents(text)[0]
    assert isinstance(document, ModelDeployment)
    return document


def _objects(document: ModelDeployment) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render([document]).objects}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_pool_is_a_second_deployment_nothing_routes_to() -> None:
    objects = _objects(_doc(standby=2))
    serving, standby = objects[("Deployment", "llm")], objects[("Deployment", "llm-standby")]
    assert standby["spec"]["replicas"] == 2
    pod = standby["spec"]["template"]
    assert pod["spec"] == serving["spec"]["template"]["spec"]  # the same pods, warmed alike
    assert pod["metadata"]["labels"]["mlkube.dev/pool"] == "standby"
    service = objects[("Service", "llm")]["spec"]["selector"]
    assert not _matches(service, pod["metadata"]["labels"])
    assert _matches(service, serving["spec"]["template"]["metadata"]["labels"])
    assert not _matches(serving["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    assert _matches(standby["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    assert not _matches(
        standby["spec"]["selector"]["matchLabels"],
        serving["spec"]["template"]["metadata"]["labels"],
    )
    controller = objects[("Deployment", "llm-rollout")]["spec"]["template"]["spec"]
    args = controller["containers"][0]["args"]
    assert args[-4:] == ["--interval", "1", "--standby", "--no-canary"]
    rules = objects[("Role", "llm-rollout")]["rules"]
    assert rules == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["llm"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]},
    ]


def test_the_request_rate_queries_count_a_promoted_pod() -> None:
    # A promoted pod keeps its name; KEDA's rps and forecast queries must still count it.
    text = SPEC.replace("STANDBY", "1").replace("metrics:", "engine: keda\n    metrics:")
    document = parse_documents(text)[0]
    assert isinstance(document, ModelDeployment)
    scaled = _objects(document)[("ScaledObject", "llm")]
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    assert len(queries) == 3  # the rps trigger, the forecast and the daily profile
    pattern = re.compile(r'pod=~"([^"]+)"')
    for query in queries:
        regexes = {re.fullmatch(p, "llm-standby-7d9f8b6c5d-x2x4z") for p in pattern.findall(query)}
        assert None not in regexes and regexes  # every selector matches a promoted pod
        assert all(
            re.fullmatch(p, "llm-canary-7d9f8b6c5d-x2x4z") is None for p in pattern.findall(query)
        )
    plain = _objects(_doc(standby=0))
    assert ("ScaledObject", "llm") not in plain  # engine hpa: nothing to widen


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_with_a_pool_validates(version: str) -> None:
    for document in (_doc(), _doc(strategy="Canary")):
        problems = [p for obj in render([document]).objects for p in validate(obj, version)]
        assert problems == []


def test_no_pool_without_standby_or_room_or_with_blue_green() -> None:
    assert ("Deployment", "llm-standby") not in _objects(_doc(standby=0))
    assert ("Deployment", "llm-rollout") not in _objects(_doc(standby=0))
    text = SPEC.replace("STANDBY", "1").replace("maxReplicas: 4", "maxReplicas: 1")
    full = parse_documents(text)[0]
    assert isinstance(full, ModelDeployment)
    assert ("Deployment", "llm-standby") not in _objects(full)
    assert ("Deployment", "llm-standby") not in _objects(_doc(strategy="BlueGreen"))


def test_the_capability_table_says_what_runs_in_the_controller() -> None:
    k8s = {n.field: n for n in notes([_doc()], BackendKind.KUBERNETES)}
    note = k8s["spec.autoscaling.standby"]
    assert note.verdict.support is Support.APPROXIMATED
    assert "in-cluster controller" in note.text()
    blue = {n.field: n for n in notes([_doc(strategy="BlueGreen")], BackendKind.KUBERNETES)}
    assert blue["spec.autoscaling.standby"].verdict.support is Support.IGNORED


@pytest.fixture
def api(api: FakeApiServer) -> FakeApiServer:
    """The double (conftest) with namespace ml and ReplicaSets keeping pods."""
    api.add_namespace("ml")
    api.sim.replica_sets = True
    return api


def _apply(api: FakeApiServer, tmp_path: Path, document: str) -> KubernetesBackend:
    path = tmp_path / "llm.yaml"
    path.write_text(document, encoding="utf-8")
    backend = KubernetesBackend(namespace="ml")
    backend.apply((str(path),))
    api.sim.set_pod_ready(api.objects, "ml")
    return backend


def _pods(api: FakeApiServer, **labels: str) -> list[dict[str, Any]]:
    return [
        s.obj
        for (plural, ns, _), s in sorted(api.objects.items())
        if plural == "pods" and ns == "ml" and _matches(labels, s.obj["metadata"]["labels"])
    ]


@contextlib.contextmanager
def _cluster() -> Iterator[Cluster]:
    """A connection to the double (``KUBECONFIG`` points at it), as the driver gets one."""
    cluster = Cluster(Target(namespace="ml"))
    try:
        yield cluster
    finally:
        cluster.close()


def _endpoints(api: FakeApiServer) -> list[str]:
    service = api.get("services", "ml", "llm")
    assert service is not None
    return api.sim.endpoints_of(api.objects, "ml", service["spec"]["selector"])


@pytest.mark.integration
def test_promotion_moves_a_warm_pod_into_the_service(api: FakeApiServer, tmp_path: Path) -> None:
    _apply(api, tmp_path, SPEC.replace("STANDBY", "1"))
    api.sim.pod_ready_after = 1000  # from now on, a pod started cold stays starting
    (warm,) = [p["metadata"]["name"] for p in _pods(api, **{"mlkube.dev/pool": "standby"})]
    (first,) = _endpoints(api)
    assert warm != first

    with _cluster() as cluster:
        promotion = scale_and_promote(cluster, "ml", "llm", 2)
    assert promotion.promoted == (warm,)
    # The warm pod serves at once, next to the first; nothing cold is in the Service.
    assert _endpoints(api) == sorted([first, warm])
    serving = _pods(api, app="llm")
    assert sorted(p["metadata"]["name"] for p in serving) == sorted([first, warm])
    owner = {r["name"] for p in serving for r in p["metadata"]["ownerReferences"]}
    assert len(owner) == 1 and not owner.pop().startswith("llm-standby")
    # The standby ReplicaSet released it and started a replacement, cold until it is ready.
    (replacement,) = _pods(api, **{"mlkube.dev/pool": "standby"})
    assert replacement["metadata"]["name"] != warm
    assert replacement["status"]["conditions"][0]["status"] == "False"
    served = [m.endpoints.get("ml/llm", 0) for m in api.sim.timeline]
    assert served[-1] == 2 and min(served[served.index(1) :]) == 1  # never dropped


@pytest.mark.integration
def test_a_pool_still_warming_promotes_nothing_and_the_cold_pod_starts(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.sim.pod_ready_after = 1000  # nothing becomes ready on its own
    path = tmp_path / "llm.yaml"
    path.write_text(SPEC.replace("STANDBY", "1"), encoding="utf-8")
    KubernetesBackend(namespace="ml").apply((str(path),))
    with _cluster() as cluster:
        promotion = promote_waiting(cluster, "ml", "llm")
    assert promotion.promoted == ()
    assert promotion.reason == "no standby pod is ready"


@pytest.mark.integration
def test_the_controller_promotes_with_only_its_role(api: FakeApiServer, tmp_path: Path) -> None:
    _apply(api, tmp_path, SPEC.replace("STANDBY", "1"))
    api.sim.pod_ready_after = 1000
    (warm,) = [p["metadata"]["name"] for p in _pods(api, **{"mlkube.dev/pool": "standby"})]
    role = api.get("roles", "ml", "llm-rollout")
    assert role is not None
    api.update_field("deployments", "ml", "llm", ("spec", "replicas"), 3, "hpa", "scale")
    api.restrict_to(role["rules"])  # from now on the caller is the controller's account
    args = ["rollout", "controller", "llm", "-n", "ml", "--standby", "--no-canary"]
    result = CliRunner().invoke(cli, [*args, "--interval", "1", "--ticks", "1"])
    assert result.exit_code == 0, result.output
    assert f"standby: promoted {warm}" in result.output
    assert warm in _endpoints(api)
    assert len(_pods(api, app="llm")) == 3  # the first, the promoted one, one starting cold


def _pod(name: str, template_hash: str, *, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"pod-template-hash": template_hash}},
        "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def test_promotion_waits_for_a_serving_rollout_and_counts_only_ready_pods() -> None:
    serving = {"spec": {"replicas": 3}}
    pods = [_pod("a", "h1", ready=True), _pod("b", "h1", ready=False)]
    assert waiting(serving, pods) == 2
    assert serving_hash(pods) == "h1"
    rolling = [*pods, _pod("c", "h2", ready=False)]
    assert serving_hash(rolling) is None  # two ReplicaSets: the rollout's, no promotion
    assert waiting({"spec": {"replicas": 1}}, pods) == 0
    patch = promotion_patch("llm", "h1")["metadata"]["labels"]
    assert patch == {
        "app": "llm",
        "mlkube.dev/track": "stable",
        "pod-template-hash": "h1",
        "mlkube.dev/pool": None,
    }


def test_a_helm_image_or_resources_value_sets_the_pool_too(tmp_path: Path) -> None:
    # A promoted pod must be of the serving kind: `--set image=...` changes both Deployments.
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (dev)")
    spec = tmp_path / "llm.yaml"
    spec.write_text(SPEC.replace("STANDBY", "1"), encoding="utf-8")
    chart = tmp_path / "chart"
    result = CliRunner().invoke(cli, ["render", str(spec), "-o", str(chart), "--format", "helm"])
    assert result.exit_code == 0, result.output
    values = helm.parse_set_string("image=registry.example/llm:2,replicas=2")
    with helm.Chart.load(chart) as loaded:
        rendered: dict[str, str] = loaded.render(values, name="release", namespace="default")
    objects = [
        o
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")  # not NOTES.txt
        for o in yaml.safe_load_all(text)
        if o
    ]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for name in ("llm", "llm-standby"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "registry.example/llm:2"
    assert deployments["llm"]["spec"]["replicas"] == 2
    assert deployments["llm-standby"]["spec"]["replicas"] == 1  # the pool keeps its size


@pytest.mark.integration
def test_turning_the_pool_off_prunes_it_and_its_controller(
    api: FakeApiServer, tmp_path: Path
) -> None:
    _apply(api, tmp_path, SPEC.replace("STANDBY", "1"))
    assert api.get("deployments", "ml", "llm-standby") is not None
    _apply(api, tmp_path, SPEC.replace("STANDBY", "0"))
    assert api.get("deployments", "ml", "llm-standby") is None
    assert api.get("deployments", "ml", "llm-rollout") is None
    assert api.get("roles", "ml", "llm-rollout") is None
    assert api.get("deployments", "ml", "llm") is not None


def test_a_canary_controller_also_runs_the_pool_with_both_permissions() -> None:
    text = SPEC.replace("STANDBY", "1") + (
        "  rollout: {strategy: Canary, steps: [{weight: 10}]}\n"
        "  kubernetes: {rolloutController: true}\n"
    )
    document = parse_documents(text)[0]
    assert isinstance(document, ModelDeployment)
    objects = _objects(document)
    args = objects[("Deployment", "llm-rollout")]["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--standby" in args and "--no-canary" not in args
    rules = objects[("Role", "llm-rollout")]["rules"]
    assert rules[0]["resourceNames"] == ["llm", "llm-canary"]
    assert rules[-1] == {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "patch"],
    }
