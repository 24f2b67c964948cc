"""Who owns a Deployment's ``spec.replicas`` across apply, re-apply, scale and the autoscaler,
against ``k8s_apiserver.FakeApiServer``, which models server-side apply field ownership as a
real API server does: a field its only manager stops sending is removed (a Deployment's
replicas then fall back to the default of 1), and ``scale`` is recorded as manager ``mlkube``
with subresource ``scale``. The double's replicas timeline shows any drop.
"""

from __future__ import annotations

import pytest
from k8s_apiserver import FakeApiServer

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.errors import ConflictError
from mlkube.clock import ManualClock

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, namespace: ml}
spec:
  model: {uri: "s3://models/ranker.onnx", format: onnx}
  replicas: 2
  resources: {requests: {cpu: 500m, memory: 512Mi}}
  kubernetes: {createNamespace: true}
"""
AUTOSCALED = SPEC + (
    "  autoscaling: {minReplicas: 2, maxReplicas: 5, "
    "metrics: [{type: cpu, targetUtilization: 70}]}\n"
)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "ranker.yaml"

    def write(text: str) -> str:
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def _backend() -> KubernetesBackend:
    return KubernetesBackend(clock=ManualClock())


def _replicas_owners(api: FakeApiServer) -> list[tuple[str, str, str]]:
    deployment = api.get("deployments", "ml", "ranker")
    assert deployment is not None
    return [
        (entry["manager"], entry["operation"], entry.get("subresource", ""))
        for entry in deployment["metadata"]["managedFields"]
        if "f:replicas" in entry["fieldsV1"].get("f:spec", {})
    ]


def test_reapplying_an_autoscaled_deployment_never_drops_its_replicas(api, spec):
    _backend().apply((spec(AUTOSCALED),))
    assert _replicas_owners(api) == [("mlkube", "Apply", "")]
    _backend().apply((spec(AUTOSCALED),))  # reset replicas to 1 before (2 → 1)
    assert api.replicas_timeline("ml", "ranker") == [2]
    # The documented handover: a private manager keeps the field while mlkube lets go.
    assert _replicas_owners(api) == [("mlkube-handover", "Apply", "")]
    # The HPA controller scales through the scale subresource and becomes the only owner.
    api.update_field(
        "deployments", "ml", "ranker", ("spec", "replicas"), 4, "kube-controller-manager", "scale"
    )
    assert _replicas_owners(api) == [("kube-controller-manager", "Update", "scale")]
    _backend().apply((spec(AUTOSCALED),))
    assert api.replicas_timeline("ml", "ranker") == [2, 4]


def test_the_double_drops_replicas_that_only_their_applier_owned(api, spec):
    """What the handover avoids, shown on the double: an apply that leaves out a field its
    manager alone owned removes it, and the Deployment default (1) comes back."""
    from lightkube import Client
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.types import PatchType

    _backend().apply((spec(SPEC),))
    live = api.get("deployments", "ml", "ranker")
    without = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ranker", "namespace": "ml", "labels": live["metadata"]["labels"]},
        "spec": {k: v for k, v in live["spec"].items() if k not in ("replicas", "clusterIP")},
    }
    Client(field_manager="mlkube").patch(
        Deployment, "ranker", without, namespace="ml", patch_type=PatchType.APPLY
    )
    assert api.replicas_timeline("ml", "ranker") == [2, 1]


def test_scale_is_recorded_as_mlkube_with_subresource_scale(api, spec):
    _backend().apply((spec(SPEC),))
    KubernetesBackend(namespace="ml").scale("ranker", 4)
    (entry,) = [
        e
        for e in api.get("deployments", "ml", "ranker")["metadata"]["managedFields"]
        if e.get("subresource") == "scale"
    ]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "mlkube",
        "Update",
        "apps/v1",
    )
    assert entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert _replicas_owners(api) == [("mlkube", "Update", "scale")]  # moved off the applier


def test_scale_then_apply_does_not_conflict_with_mlkube_itself(api, spec):
    _backend().apply((spec(SPEC),))
    KubernetesBackend(namespace="ml").scale("ranker", 4)
    dry = _backend().apply((spec(SPEC),), dry_run=True)  # a dry run changes nothing
    assert dry.dry_run and api.get("deployments", "ml", "ranker")["spec"]["replicas"] == 4
    _backend().apply((spec(SPEC),))  # 409 "conflict with "mlkube" with subresource "scale""
    # apply declares the spec: its count comes back; only our own scale's field was taken.
    assert api.replicas_timeline("ml", "ranker") == [2, 4, 2]
    assert _replicas_owners(api) == [("mlkube", "Apply", "")]
    _backend().apply((spec(SPEC),))
    assert api.replicas_timeline("ml", "ranker") == [2, 4, 2]


def test_scale_then_apply_of_an_autoscaled_deployment_keeps_the_scaled_count(api, spec):
    _backend().apply((spec(AUTOSCALED),))
    KubernetesBackend(namespace="ml").scale("ranker", 3)
    _backend().apply((spec(AUTOSCALED),))
    assert api.replicas_timeline("ml", "ranker") == [2, 3]


def test_removing_the_autoscaler_after_a_handover_applies_the_spec_count(api, spec):
    _backend().apply((spec(AUTOSCALED),))
    _backend().apply((spec(AUTOSCALED),))  # mlkube-handover now holds replicas
    _backend().apply((spec(SPEC.replace("replicas: 2", "replicas: 3")),))
    assert api.replicas_timeline("ml", "ranker") == [2, 3]


def test_another_managers_scale_is_still_a_conflict(api, spec):
    _backend().apply((spec(SPEC),))
    api.update_field("deployments", "ml", "ranker", ("spec", "replicas"), 5, "kubectl", "scale")
    with pytest.raises(
        ConflictError,
        match=r'conflict with "kubectl" with subresource "scale" using apps/v1: \.spec\.replicas',
    ):
        _backend().apply((spec(SPEC),))
    assert api.replicas_timeline("ml", "ranker") == [2, 5]
