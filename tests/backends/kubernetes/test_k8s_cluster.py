"""apply / prune / wait / status / delete / scale / logs / events / rollout status / doctor
against an API-server DOUBLE.

``k8s_apiserver.FakeApiServer`` is a test double of kube-apiserver: a real HTTP server on
127.0.0.1 implementing the calls mlkube makes with server-side-apply semantics. The code under
test is the real thing down to lightkube's HTTP client; only the server is fake.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from k8s_apiserver import FakeApiServer, Request, Res

from mlkube.backends.base import ObjectRef
from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.doctor import run_doctor
from mlkube.backends.kubernetes.errors import (
    ApiMissingError,
    ApplyError,
    ClusterUnreachableError,
    ForbiddenError,
    ObjectNotFoundError,
    RolloutError,
)
from mlkube.backends.kubernetes.wait import wait_for_rollouts
from mlkube.clock import ManualClock
from mlkube.errors import UnsupportedOperationError

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
GUIDE = str(HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml")
CANARY = str(HERE / "specs" / "canary-gateway.yaml")
KEDA = str(HERE / "specs" / "keda-gpu.yaml")


def _backend(namespace: str | None = None) -> KubernetesBackend:
    return KubernetesBackend(namespace=namespace, clock=ManualClock())  # polls without sleeping


def _apply(
    path: str,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    wait: bool = False,
    timeout_s: float = 5.0,
) -> list[str]:
    """Apply (and wait); the progress lines the wait reported."""
    backend = _backend(namespace)
    report = backend.apply((path,), dry_run=dry_run)
    messages: list[str] = []
    if wait:
        backend.wait_for_rollouts(report, timeout_s=timeout_s, report=messages.append)
    return messages


def _patches(api: FakeApiServer) -> list[Request]:
    return [r for r in api.requests if r.method == "PATCH"]


def test_apply_uses_server_side_apply_in_dependency_order_after_a_dry_run(api):
    messages = _apply(GUIDE, wait=True)
    patches = _patches(api)
    assert {r.content_type for r in patches} == {"application/apply-patch+yaml"}
    assert {r.query["fieldManager"][0] for r in patches} == {"mlkube"}
    dry = [r for r in patches if r.query.get("dryRun") == ["All"]]
    real = [r for r in patches if "dryRun" not in r.query]
    last_dry = max(i for i, r in enumerate(patches) if r in dry)
    # Every object is dry-run before anything but its new namespace changes: the namespace
    # must exist for the objects in it to be checked (a dry-run Namespace is not stored).
    assert [r.path for r in patches[:last_dry] if r not in dry] == ["/api/v1/namespaces/ml"]
    assert len(dry) == 7
    assert [r.path.split("/")[-2] for r in real] == [
        "namespaces",
        "persistentvolumes",
        "persistentvolumeclaims",
        "deployments",
        "services",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    ]
    deployment = api.get("deployments", "ml", "ml-model")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == "tensorflow/serving:latest"
    )
    assert api.get("services", "ml", "ml-model-service")["spec"]["ports"][0]["nodePort"] == 30050
    assert messages[-1] == "ml-model: rolled out (1 available)"


def test_dry_run_changes_nothing(api):
    report = _backend().apply((GUIDE,), dry_run=True)
    assert report.dry_run
    assert ObjectRef("Deployment", "ml-model", "ml") in [c.object for c in report.changes]
    assert _apply(GUIDE, dry_run=True, wait=True) == []  # nothing to wait for
    assert api.get("deployments", "ml", "ml-model") is None
    real = [r for r in _patches(api) if "dryRun" not in r.query]
    assert real == []


def test_reapply_prunes_what_the_render_dropped_but_never_claims(api, tmp_path):
    api.add_namespace("ml")
    _apply(CANARY)
    assert api.get("httproutes", "ml", "iris") is not None
    spec = yaml.safe_load_all(Path(CANARY).read_text(encoding="utf-8"))
    documents = list(spec)
    documents[0]["spec"]["rollout"] = {"strategy": "RollingUpdate"}
    del documents[0]["spec"]["kubernetes"]["gateway"]
    target = tmp_path / "rolling.yaml"
    target.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    report = _backend().apply((str(target),))
    assert report.pruned is not None
    assert ObjectRef("HTTPRoute", "iris", "ml") in report.pruned
    assert api.get("deployments", "ml", "iris-canary") is None
    assert api.get("httproutes", "ml", "iris") is None
    assert api.get("services", "ml", "iris-stable") is None
    assert api.get("deployments", "ml", "iris") is not None
    deleted = [r.path for r in api.requests if r.method == "DELETE"]
    assert deleted and all("persistentvolume" not in p for p in deleted)


def test_reapply_leaves_replicas_to_the_autoscaler(api):
    _apply(GUIDE)
    api.update_field(
        "deployments", "ml", "ml-model", ("spec", "replicas"), 3, "kube-controller-manager"
    )
    _apply(GUIDE)
    assert api.get("deployments", "ml", "ml-model")["spec"]["replicas"] == 3


def test_conflict_names_the_other_manager_and_force_takes_over(api, tmp_path):
    _apply(GUIDE)
    api.update_field(
        "services", "ml", "ml-model-service", ("spec", "type"), "LoadBalancer", "kubectl-edit"
    )
    with pytest.raises(ApplyError, match=r"kubectl-edit.*forceConflicts"):
        _apply(GUIDE)
    forced = tmp_path / "spec.yaml"
    document = yaml.safe_load(Path(GUIDE).read_text(encoding="utf-8"))
    document["spec"]["kubernetes"]["forceConflicts"] = True
    document["spec"]["storage"]["persistentVolume"]["hostPath"] = "/mnt/ml-models"
    forced.write_text(yaml.safe_dump(document), encoding="utf-8")
    _apply(str(forced))
    assert api.get("services", "ml", "ml-model-service")["spec"]["type"] == "NodePort"
    assert [r for r in _patches(api) if r.query.get("force") == ["true"]]


def test_a_missing_crd_api_fails_before_anything_changes(api):
    api.served_crd_groups.discard("keda.sh")
    with pytest.raises(ApiMissingError, match=r"ScaledObject \(keda.sh/v1alpha1\).*mlkube doctor"):
        _apply(KEDA)
    assert _patches(api) == []


def test_forbidden_names_the_verb_and_resource(api):
    api.forbidden.add(("patch", "deployments.apps"))
    with pytest.raises(
        ForbiddenError, match=r"may not 'patch' deployments\.apps in namespace 'ml'"
    ):
        _apply(GUIDE)


def test_an_object_the_server_rejects_is_an_apply_error_with_its_message(api):
    cluster = Cluster(Target())
    try:
        bad = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"},
            "data": {"a": "b"},
        }
        cluster.apply(bad, dry_run=False, force=False)
        bad_ns = {**bad, "metadata": {"name": "x", "namespace": "nowhere"}}
        with pytest.raises(ApplyError, match="namespace 'nowhere' does not exist"):
            cluster.apply(bad_ns, dry_run=False, force=False)
    finally:
        cluster.close()


def test_unreachable_cluster_is_a_clear_error(tmp_path, monkeypatch):
    server = FakeApiServer()
    server.start()
    config = server.kubeconfig()
    server.stop()  # nothing listens on that port any more
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(ClusterUnreachableError, match="cannot reach the Kubernetes API"):
        _apply(GUIDE)


@pytest.mark.parametrize(
    ("rollout", "needle"),
    [("stuck", "timed out after 10s"), ("deadline", "exceeded its progress deadline")],
)
def test_wait_gives_up_on_a_stuck_or_failed_rollout(api, rollout, needle):
    _apply(GUIDE)
    api.rollout = rollout
    cluster = Cluster(Target())
    messages: list[str] = []
    try:
        with pytest.raises(RolloutError, match=needle):
            asyncio.run(
                wait_for_rollouts(
                    cluster,
                    [("ml", "ml-model")],
                    timeout_s=10,
                    clock=ManualClock(),
                    report=messages.append,
                )
            )
    finally:
        cluster.close()
    assert messages  # progress was reported


def _add_pod(api: FakeApiServer, name: str) -> None:
    api.put(
        Res("", "v1", "pods", "Pod", True),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "ml",
                "labels": {
                    "app.kubernetes.io/managed-by": "mlkube",
                    "app.kubernetes.io/instance": "ml-model",
                },
            },
        },
    )


def test_status_delete_scale_and_logs(api):
    _apply(GUIDE, wait=True)
    backend = _backend("ml")
    summary = backend.status("ml-model").document
    assert summary[0]["deployments"][0]["name"] == "ml-model"
    assert summary[0]["autoscalers"][0]["max"] == 3
    (table,) = backend.status(None).tables
    assert table.rows == (
        (
            "ml-model",
            "ml",
            "ml-model",
            "1/1",
            "1",
            "hpa 1-3",
            "ml-model-service NodePort 8501:30050",
        ),
    )

    scaled = backend.scale("ml-model", 2)
    assert api.get("deployments", "ml", "ml-model")["spec"]["replicas"] == 2
    assert scaled.object == ObjectRef("Deployment", "ml-model", "ml")
    assert scaled.warnings == (
        "'ml-model' has an autoscaler; it will move the count back within its bounds",
    )

    _add_pod(api, "ml-model-abc-1")
    _add_pod(api, "ml-model-abc-2")
    api.logs["ml-model-abc-1"] = ['{"msg": "ready"}']
    api.logs["ml-model-abc-2"] = ['{"msg": "two"}']
    assert list(backend.logs("ml-model", since_s=60).lines) == [
        '[ml-model-abc-1] {"msg": "ready"}',
        '[ml-model-abc-2] {"msg": "two"}',
    ]
    assert list(backend.logs("ml-model", replica="1").lines) == ['{"msg": "two"}']
    assert list(backend.logs("ml-model", replica="ml-model-abc-1").lines) == ['{"msg": "ready"}']
    followed = backend.logs("ml-model", follow=True)
    assert followed.warnings == ("following ml-model-abc-1 only; pass --replica N for another pod",)
    with pytest.raises(ObjectNotFoundError, match="replica 3 is not one"):
        backend.logs("ml-model", replica="3")
    with pytest.raises(ObjectNotFoundError, match="no pod 'nope'"):
        backend.logs("ml-model", replica="nope")

    deleted = backend.delete("ml-model")
    assert next(str(c.object) for c in deleted.changes if c.action == "deleted") == (
        "PodDisruptionBudget/ml-model-pdb in ml"
    )  # the reverse of apply order
    kept = [c.object.kind for c in deleted.changes if c.action.startswith("kept")]
    assert kept == ["PersistentVolumeClaim", "PersistentVolume", "Namespace"]
    assert api.get("deployments", "ml", "ml-model") is None
    assert api.get("horizontalpodautoscalers", "ml", "ml-model-hpa") is None
    assert api.get("persistentvolumeclaims", "ml", "ml-model-pvc") is not None  # data kept
    with pytest.raises(ObjectNotFoundError, match="no mlkube deployment 'ml-model'"):
        backend.status("ml-model")
    with pytest.raises(UnsupportedOperationError, match="give the deployment's NAME"):
        backend.delete(None)


def test_events_select_by_involved_object_and_come_oldest_first(api):
    _apply(GUIDE, wait=True)
    _add_pod(api, "ml-model-abc-1")
    api.add_event(
        "ml",
        ("Deployment", "ml-model"),
        "ScalingReplicaSet",
        "Scaled up to 1",
        last_timestamp="2026-01-01T00:00:02Z",
    )
    api.add_event(
        "ml",
        ("Pod", "ml-model-abc-1"),
        "BackOff",
        "Back-off restarting",
        type_="Warning",
        last_timestamp="2026-01-01T00:00:09Z",
        count=4,
    )
    api.add_event(
        "ml",
        ("HorizontalPodAutoscaler", "ml-model-hpa"),
        "SuccessfulRescale",
        "New size: 1",
        last_timestamp="2026-01-01T00:00:05Z",
    )
    api.add_event("ml", ("Deployment", "someone-else"), "ScalingReplicaSet", "not ours")
    rows = _backend("ml").events("ml-model")
    assert [(r.object, r.reason, r.count) for r in rows] == [
        ("Deployment/ml-model", "ScalingReplicaSet", 1),
        ("HorizontalPodAutoscaler/ml-model-hpa", "SuccessfulRescale", 1),
        ("Pod/ml-model-abc-1", "BackOff", 4),
    ]
    assert rows[0].time == 1767225602.0 and rows[2].type == "Warning"
    assert [r.reason for r in _backend("ml").events("ml-model", limit=1)] == ["BackOff"]
    selectors = [r.query.get("fieldSelector") for r in api.requests if r.path.endswith("/events")]
    assert ["involvedObject.name=ml-model"] in selectors
    with pytest.raises(ObjectNotFoundError, match="no mlkube deployment 'nope'"):
        _backend("ml").events("nope")


def test_the_double_refuses_an_unknown_field_selector(api):
    from lightkube import Client as LightkubeClient  # the client, to send a selector we never do
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Event

    client = LightkubeClient(namespace="ml")
    with pytest.raises(ApiError, match=r"field label not supported: spec\.nodeName"):
        list(client.list(Event, namespace="ml", fields={"spec.nodeName": "x"}))


def test_rollout_status_follows_the_deployment_and_history_is_kubectls(api):
    _apply(GUIDE)
    backend = _backend("ml")
    api.rollout = "stuck"
    progressing = backend.rollout_status("ml-model")
    assert (progressing.phase, progressing.revision, progressing.target) == ("Progressing", None, 1)
    assert progressing.reason == "ml-model: 0 of 1 replicas updated"
    api.rollout = "ready"
    done = backend.rollout_status("ml-model")
    assert (done.phase, done.revision, done.target) == ("Complete", 1, None)
    api.rollout = "deadline"
    failed = backend.rollout_status("ml-model")
    assert failed.phase == "Failed" and "progress deadline" in failed.reason
    with pytest.raises(
        UnsupportedOperationError, match="kubectl rollout history deployment/x -n ml"
    ):
        backend.rollout_history("x")
    with pytest.raises(UnsupportedOperationError, match="kubectl rollout undo deployment/x -n ml"):
        backend.rollout_undo("x")


def _seed_cluster(api: FakeApiServer) -> None:
    node = Res("", "v1", "nodes", "Node", False)
    api.put(
        node,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "gpu-1"},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"nvidia.com/gpu": "4", "cpu": "32"}},
        },
    )
    api.put(
        node,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "cpu-1"},
            "status": {"allocatable": {"cpu": "8"}},
        },
    )
    api.put(
        Res("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "provisioner": "x",
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
        },
    )


def test_doctor_passes_on_a_ready_cluster(api):
    _seed_cluster(api)
    cluster = Cluster(Target())
    try:
        checks = {c.name: c for c in run_doctor(cluster, "ml")}
    finally:
        cluster.close()
    failing = {n: c.detail for n, c in checks.items() if c.verdict == "fail"}
    assert failing == {}
    assert checks["GPUs"].detail == "4 allocatable nvidia.com/gpu (gpu-1: 4)"
    assert "gpu-1: nvidia.com/gpu:NoSchedule" in checks["node taints"].detail
    assert checks["API server"].detail == "reachable, Kubernetes v1.33.2"


def test_doctor_reports_missing_pieces_with_fixes(api):
    api.metrics_status = 404
    api.served_crd_groups = {"monitoring.coreos.com"}
    api.forbidden.add(("delete", "deployments.apps"))
    cluster = Cluster(Target())
    try:
        checks = {c.name: c for c in run_doctor(cluster, "ml")}
    finally:
        cluster.close()
    assert checks["metrics-server"].verdict == "fail"
    assert "metrics-server" in checks["metrics-server"].fix
    assert checks["KEDA"].verdict == "warn" and "helm install keda" in checks["KEDA"].fix
    assert checks["Prometheus Operator"].verdict == "pass"
    assert checks["RBAC"].verdict == "fail" and "delete deployments.apps" in checks["RBAC"].detail
    assert checks["GPUs"].verdict == "warn"
    assert checks["default StorageClass"].verdict == "warn"


def test_doctor_on_an_unreachable_cluster_is_one_failed_check(tmp_path, monkeypatch):
    server = FakeApiServer()
    server.start()
    config = server.kubeconfig()
    server.stop()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(path))
    cluster = Cluster(Target())
    try:
        checks = run_doctor(cluster, "default")
    finally:
        cluster.close()
    assert [(c.name, c.verdict) for c in checks] == [("API server", "fail")]


_SWITCH = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, namespace: ml}
spec:
  model: {uri: "s3://models/ranker.onnx", format: onnx}
  kubernetes: {createNamespace: true}
"""


@pytest.mark.parametrize(
    "rollout",
    [
        "{strategy: Canary, steps: [{weight: 10}]}",
        "{strategy: ABTest, abTest: {weight: 30}}",
    ],
)
def test_switching_from_rolling_update_to_a_split_is_an_in_place_update(api, tmp_path, rollout):
    spec = tmp_path / "ranker.yaml"
    spec.write_text(_SWITCH)
    _apply(str(spec))
    spec.write_text(_SWITCH + f"  rollout: {rollout}\n")
    _apply(str(spec))  # failed with "spec.selector ... field is immutable" before
    assert api.get("deployments", "ml", "ranker-canary") is not None


def test_the_double_refuses_a_changed_deployment_selector_as_the_api_server_does(api, tmp_path):
    spec = tmp_path / "ranker.yaml"
    spec.write_text(_SWITCH)
    _apply(str(spec))
    stored = api.get("deployments", "ml", "ranker")
    selector = {"matchLabels": {"app": "ranker"}}  # the track label left out: still matches
    changed = {**stored, "spec": {**stored["spec"], "selector": selector}}
    for key in ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"):
        changed["metadata"].pop(key, None)
    changed.pop("status", None)
    with pytest.raises(ApplyError, match="field is immutable"):
        Cluster(Target()).apply(changed, dry_run=False, force=True)
