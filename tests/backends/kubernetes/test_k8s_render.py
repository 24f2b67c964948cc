"""The renderer: schema-valid objects for every example and for random specs, golden files,
determinism, and clear errors for specs Kubernetes cannot express.

Golden files are rewritten only with ``MLKUBE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render import Rendered, render
from mlkube.backends.kubernetes.render.manifest import KINDS, LABEL_INSTANCE, LABEL_MANAGED_BY
from mlkube.desired.capabilities import BackendKind, notes
from mlkube.spec import ModelDeployment, load_documents, parse_documents

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
SPECS = sorted((HERE / "specs").glob("*.yaml"))
GUIDE = ROOT / "examples" / "k8s-ml-guide" / "spec.yaml"
RENDERABLE = [GUIDE, *SPECS]


def _is_spec(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return "apiVersion: mlkube.dev/" in text


def _examples() -> list[Path]:
    return sorted(p for p in (ROOT / "examples").rglob("*.y*ml") if _is_spec(p))


def _rendered(path: Path) -> Rendered:
    return render(load_documents(path))


@pytest.mark.parametrize("path", RENDERABLE, ids=lambda p: p.stem if p != GUIDE else "guide")
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(path, version):
    problems = [p for obj in _rendered(path).objects for p in validate(obj, version)]
    assert problems == []


@pytest.mark.parametrize("path", _examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_in_the_repository_renders_valid_objects_or_says_why(path):
    try:
        rendered = _rendered(path)
    except RenderError as error:
        # A spec meant for the local backend (a model path on this machine) cannot be
        # rendered; the error must say which deployment and what to do instead.
        message = str(error)
        assert any(w in message for w in ("deployment '", "BatchInference '", "pipeline '"))
        return
    problems = [p for obj in rendered.objects for p in validate(obj, VERSIONS[-1])]
    assert problems == []


RULES_PLACEHOLDER = "<mlkube.observability.alerts.alert_rules(deployment), tested there>"


def _golden_view(obj: dict[str, Any]) -> dict[str, Any]:
    # The PrometheusRule's groups come from the observability package and change with it;
    # the golden file pins that the object is there and where, not the rules themselves.
    if obj["kind"] == "PrometheusRule":
        return {**obj, "spec": RULES_PLACEHOLDER}
    return obj


@pytest.mark.parametrize("path", RENDERABLE, ids=lambda p: p.stem if p != GUIDE else "guide")
def test_golden_files(path):
    name = "guide" if path == GUIDE else path.stem
    golden = GOLDEN / f"{name}.yaml"
    objects = [_golden_view(o) for o in _rendered(path).objects]
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if os.environ.get("MLKUBE_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with MLKUBE_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", RENDERABLE, ids=lambda p: p.stem if p != GUIDE else "guide")
def test_every_object_carries_the_standard_labels_and_is_in_apply_order(path):
    objects = _rendered(path).objects
    ranks = [next(i for i, k in enumerate(KINDS) if k.kind == o["kind"]) for o in objects]
    assert ranks == sorted(ranks)
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels[LABEL_MANAGED_BY] == "mlkube"
        assert LABEL_INSTANCE in labels
        assert "app.kubernetes.io/name" in labels
        assert "app.kubernetes.io/part-of" in labels


def test_config_map_holds_a_loadable_spec_pointing_at_the_mounted_model():
    objects = _rendered(HERE / "specs" / "keda-gpu.yaml").objects
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    documents = parse_documents(config["data"]["spec.yaml"])
    assert isinstance(documents[0], ModelDeployment)
    assert documents[0].spec.model.uri == "/models/model.pt"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["serve", "/etc/mlkube/spec.yaml"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > documents[0].spec.server.drain_timeout


def test_canary_with_gateway_splits_by_httproute_weights():
    objects = _rendered(HERE / "specs" / "canary-gateway.yaml").objects
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    refs = route["spec"]["rules"][-1]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("iris-stable", 90), ("iris-canary", 10)]
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "public",
        "namespace": "infra",
    }
    configs = {
        o["metadata"]["name"]: o["data"]["spec.yaml"] for o in objects if o["kind"] == "ConfigMap"
    }
    assert "/models/iris.onnx" in configs["iris-config"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    fetch = deployments["iris"]["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert "s3://models/iris/v1/iris.onnx" in fetch
    fetch = deployments["iris-canary"]["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert "s3://models/iris/v2/iris.onnx" in fetch


def test_blue_green_service_selects_the_active_colour_and_preview_the_other():
    objects = _rendered(HERE / "specs" / "bluegreen-hostpath.yaml").objects
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert services["churn"]["spec"]["selector"] == {"app": "churn", "mlkube.dev/color": "green"}
    assert services["churn-preview"]["spec"]["selector"]["mlkube.dev/color"] == "blue"
    deployments = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    assert deployments == ["churn-blue", "churn-green"]


def test_ab_test_without_gateway_runs_the_local_split_and_says_the_share_is_a_replica_ratio():
    path = HERE / "specs" / "abtest-replica-split.yaml"
    objects = _rendered(path).objects
    replicas = {
        o["metadata"]["name"]: o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment"
    }
    # 4 replicas at 25 %: stable keeps 4, B runs ceil(4 * 25 / 100) = 1, as locally.
    assert replicas == {"ranker": 4, "ranker-canary": 1}
    texts = [n.text() for n in notes(load_documents(path), BackendKind.KUBERNETES)]
    assert any("spec.rollout.steps is approximated" in t and "20% to the new" in t for t in texts)


def test_render_is_deterministic():
    documents = load_documents(*SPECS)
    first = yaml.safe_dump_all(render(documents).objects, sort_keys=False)
    again = yaml.safe_dump_all(render(load_documents(*reversed(SPECS))).objects, sort_keys=False)
    assert first == again


_BASE = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: NAME, namespace: ml}
spec:
  model: {uri: URI, format: onnx}
"""


@pytest.mark.parametrize(
    ("name", "uri", "extra", "needle"),
    [
        pytest.param("m", "./model.onnx", "", "path on this machine", id="local-path"),
        pytest.param("9m", "s3://b/m.onnx", "", "must start with a letter", id="service-name"),
        pytest.param(
            "m",
            "s3://b/m.onnx",
            "  autoscaling: {minReplicas: 1, maxReplicas: 2,\n"
            "                metrics: [{type: latency, targetMs: 100}]}\n",
            "needs autoscaling.engine: keda",
            id="latency-needs-keda",
        ),
        pytest.param(
            "m",
            "s3://b/m.onnx",
            "  autoscaling: {minReplicas: 0, maxReplicas: 2, scaleToZero: {}}\n",
            "cannot scale to zero",
            id="hpa-scale-to-zero",
        ),
        pytest.param(
            "m",
            "pvc://other/m.onnx",
            "  storage: {pvc: {name: mine}}\n",
            "use one claim",
            id="two-claims",
        ),
    ],
)
def test_specs_kubernetes_cannot_express_fail_with_a_clear_error(name, uri, extra, needle):
    text = _BASE.replace("NAME", name).replace("URI", uri) + extra
    with pytest.raises(RenderError, match=needle):
        render(parse_documents(text))


def test_tolerance_is_reported_not_rendered():
    text = _BASE.replace("NAME", "m").replace("URI", "s3://b/m.onnx") + (
        "  autoscaling:\n"
        "    behavior: {scaleUp: {tolerance: '0.05', stabilizationWindowSeconds: 0}}\n"
    )
    documents = parse_documents(text)
    hpa = next(o for o in render(documents).objects if o["kind"] == "HorizontalPodAutoscaler")
    assert "tolerance" not in hpa["spec"]["behavior"]["scaleUp"]
    fields = [n.field for n in notes(documents, BackendKind.KUBERNETES)]
    assert "spec.autoscaling.behavior.scaleUp.tolerance" in fields


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_the_cached_validator_agrees_with_kubernetes_validate(version):
    import copy

    import kubernetes_validate
    from k8s_validation import official_validate

    for obj in _rendered(GUIDE).objects:
        official_validate(obj, version)  # raises on a problem
        broken = copy.deepcopy(obj)
        broken["spec" if "spec" in broken else "metadata"]["notAField"] = 1
        assert validate(broken, version)
        with pytest.raises(kubernetes_validate.ValidationError):
            official_validate(broken, version)


def test_flipping_the_active_colour_changes_only_the_services():
    documents = load_documents(HERE / "specs" / "bluegreen-hostpath.yaml")
    deployment = documents[0]
    assert isinstance(deployment, ModelDeployment)
    other = "blue" if deployment.spec.kubernetes.active_color == "green" else "green"
    kube = deployment.spec.kubernetes.model_copy(update={"active_color": other})
    flipped = deployment.model_copy(
        update={"spec": deployment.spec.model_copy(update={"kubernetes": kube})}
    )
    before = render(documents).objects
    after = render([flipped, *documents[1:]]).objects
    changed = [
        (a["kind"], a["metadata"]["name"]) for a, b in zip(before, after, strict=True) if a != b
    ]
    # Both colours restarted before: their ConfigMaps and pod templates held the whole spec.
    assert changed == [("Service", "churn"), ("Service", "churn-preview")]


STRATEGIES = {
    "RollingUpdate": "  rollout: {strategy: RollingUpdate}\n",
    "Canary": "  rollout: {strategy: Canary, steps: [{weight: 10}]}\n",
    "ABTest": "  rollout: {strategy: ABTest, abTest: {weight: 30}}\n",
    "BlueGreen": "  rollout: {strategy: BlueGreen}\n",
}


@pytest.mark.parametrize("before", sorted(STRATEGIES))
@pytest.mark.parametrize("after", sorted(STRATEGIES))
def test_every_strategy_switch_keeps_the_selectors_of_the_deployments_it_keeps(before, after):
    # A Deployment's spec.selector is immutable: a switch that changed it needed a delete
    # (RollingUpdate → Canary failed with "field is immutable" on a real API server).
    def selectors(strategy: str) -> dict[str, Any]:
        text = _BASE.replace("NAME", "m").replace("URI", "s3://b/m.onnx") + STRATEGIES[strategy]
        objects = render(parse_documents(text)).objects
        return {o["metadata"]["name"]: o["spec"]["selector"] for o in objects
                if o["kind"] == "Deployment"}  # fmt: skip

    old, new = selectors(before), selectors(after)
    for name in old.keys() & new.keys():
        assert old[name] == new[name], name


def test_grpc_is_a_named_container_port_and_a_grpc_service_port_everywhere():
    objects = _rendered(HERE / "specs" / "grpc-canary.yaml").objects
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    services = [o for o in objects if o["kind"] == "Service"]
    assert deployments
    assert services
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": "grpc", "containerPort": 9000, "protocol": "TCP"} in container["ports"]
        # Probes stay on HTTP: they already tell readiness, gRPC or not.
        assert container["readinessProbe"]["httpGet"]["port"] == "http"
    for service in services:
        grpc_ports = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [
            {
                "name": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
                "port": 8500,
                "targetPort": "grpc",
            }
        ]
    without = _rendered(HERE / "specs" / "canary-gateway.yaml").objects
    for obj in without:
        if obj["kind"] == "Service":
            assert [p["name"] for p in obj["spec"]["ports"]] == ["http"]
