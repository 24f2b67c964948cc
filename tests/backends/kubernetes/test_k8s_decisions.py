"""The pure decisions of the Kubernetes backend, table-driven: rollout verdicts, prune plans,
replicas left to autoscalers, and doctor verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.backends.kubernetes.apply import (
    ObjectKey,
    needed_apis,
    prune_plan,
    without_autoscaled_replicas,
)
from mlkube.backends.kubernetes.doctor import (
    check_gpus,
    check_metrics_server,
    check_storage_classes,
    check_taints,
    check_version,
)
from mlkube.backends.kubernetes.ownership import ReplicasHandover, replicas_handovers
from mlkube.backends.kubernetes.wait import rollout_state

MINE = {"app.kubernetes.io/managed-by": "mlkube", "app.kubernetes.io/instance": "m"}


def _obj(
    kind: str, name: str, namespace: str = "ml", labels: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": MINE if labels is None else labels}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **fields}


def _deployment(
    generation: int = 2,
    observed: int = 2,
    replicas: int = 3,
    updated: int = 3,
    total: int = 3,
    available: int = 3,
    conditions: tuple[dict[str, str], ...] = (),
) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": list(conditions),
        },
    }


@pytest.mark.parametrize(
    ("deployment", "done", "failed", "needle"),
    [
        pytest.param(_deployment(), True, False, "rolled out", id="done"),
        pytest.param(_deployment(observed=1), False, False, "controller", id="not-observed"),
        pytest.param(
            _deployment(updated=1), False, False, "1 of 3 replicas updated", id="updating"
        ),
        pytest.param(_deployment(total=5), False, False, "2 old replicas", id="old-terminating"),
        pytest.param(_deployment(available=2), False, False, "2 of 3", id="not-available"),
        pytest.param(
            _deployment(
                conditions=(
                    {
                        "type": "Progressing",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "timed out",
                    },
                )
            ),
            False,
            True,
            "progress deadline",
            id="deadline",
        ),
        pytest.param(
            {"metadata": {"name": "m"}, "spec": {}}, False, False, "controller", id="no-status"
        ),
    ],
)
def test_rollout_state(deployment, done, failed, needle):
    state = rollout_state(deployment)
    assert (state.done, state.failed) == (done, failed)
    assert needle in state.message


def test_prune_plan_keeps_data_and_foreign_objects_and_deletes_in_reverse_order():
    desired = [_obj("Deployment", "m"), _obj("Service", "m")]
    live = [
        _obj("Deployment", "m"),
        _obj("Deployment", "m-canary"),
        _obj("Service", "m-canary"),
        _obj("HorizontalPodAutoscaler", "m-canary-hpa"),
        _obj("PersistentVolumeClaim", "models"),
        _obj("Namespace", "ml", namespace=""),
        _obj("Service", "someone-elses", labels={"app.kubernetes.io/instance": "m"}),
    ]
    assert prune_plan(desired, live) == [
        ObjectKey("HorizontalPodAutoscaler", "ml", "m-canary-hpa"),
        ObjectKey("Service", "ml", "m-canary"),
        ObjectKey("Deployment", "ml", "m-canary"),
    ]


def test_replicas_are_left_to_the_autoscaler_only_for_existing_deployments():
    objects = [
        _obj("Deployment", "a", spec={"replicas": 1, "template": {}}),
        _obj("Deployment", "b", spec={"replicas": 1, "template": {}}),
        _obj("Deployment", "c", spec={"replicas": 1, "template": {}}),
        _obj("HorizontalPodAutoscaler", "a-hpa", spec={"scaleTargetRef": {"name": "a"}}),
        _obj("ScaledObject", "b", spec={"scaleTargetRef": {"name": "b"}}),
    ]
    existing = {ObjectKey("Deployment", "ml", "a"), ObjectKey("Deployment", "ml", "c")}
    out = {
        o["metadata"]["name"]: o
        for o in without_autoscaled_replicas(objects, existing)
        if o["kind"] == "Deployment"
    }
    assert "replicas" not in out["a"]["spec"]  # exists and autoscaled
    assert out["b"]["spec"]["replicas"] == 1  # autoscaled but new: starts at the spec's count
    assert out["c"]["spec"]["replicas"] == 1  # exists, not autoscaled
    assert objects[0]["spec"]["replicas"] == 1  # the input is not mutated


def _live(replicas: int, *owners: tuple[str, str, str]) -> dict[str, Any]:
    """A live Deployment whose spec.replicas is owned by ``owners`` (manager, op, subresource)."""
    entries = [
        {
            "manager": manager,
            "operation": operation,
            **({"subresource": sub} if sub else {}),
            "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
        }
        for manager, operation, sub in owners
    ]
    entries.append({"manager": "mlkube", "operation": "Apply", "fieldsV1": {"f:spec": {}}})
    return {"metadata": {"managedFields": entries}, "spec": {"replicas": replicas}}


MLKUBE_APPLY = ("mlkube", "Apply", "")
HPA = ("kube-controller-manager", "Update", "scale")


@pytest.mark.parametrize(
    ("sent", "live", "handovers"),
    [
        pytest.param(False, _live(3, MLKUBE_APPLY), [3], id="mlkube-alone"),
        pytest.param(False, _live(3, HPA), [], id="hpa-owns"),
        pytest.param(False, _live(3, MLKUBE_APPLY, HPA), [], id="shared"),
        pytest.param(False, _live(3, ("mlkube-handover", "Apply", "")), [], id="handed-over"),
        pytest.param(True, _live(3, MLKUBE_APPLY), [], id="still-sent"),
        pytest.param(False, None, [], id="new"),
    ],
)
def test_replicas_are_handed_over_only_when_mlkube_alone_owns_them(sent, live, handovers):
    spec: dict[str, Any] = {"template": {}, **({"replicas": 2} if sent else {})}
    objects = [_obj("Deployment", "a", spec=spec)]
    found = {} if live is None else {("ml", "a"): live}
    assert replicas_handovers(objects, found) == [
        ReplicasHandover("ml", "a", count) for count in handovers
    ]


def test_needed_apis_lists_crd_kinds_once():
    objects = [_obj("ScaledObject", "a"), _obj("ScaledObject", "b"), _obj("Deployment", "a")]
    assert [i.kind for i in needed_apis(objects)] == ["ScaledObject"]


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        pytest.param(200, {"gitVersion": "v1.31.4"}, "pass", id="supported"),
        pytest.param(200, {"gitVersion": "v1.24.0"}, "warn", id="too-old"),
        pytest.param(401, None, "fail", id="unauthorized"),
    ],
)
def test_check_version(status, body, verdict):
    assert check_version(status, body).verdict == verdict


@pytest.mark.parametrize(("status", "verdict"), [(200, "pass"), (503, "fail"), (404, "fail")])
def test_check_metrics_server(status, verdict):
    assert check_metrics_server(status).verdict == verdict


def test_check_gpus_and_taints():
    gpu = {
        "metadata": {"name": "g"},
        "status": {"allocatable": {"nvidia.com/gpu": "2"}},
        "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]},
    }
    cpu = {"metadata": {"name": "c"}, "status": {"allocatable": {}}}
    assert check_gpus([gpu, cpu]).detail == "2 allocatable nvidia.com/gpu (g: 2)"
    assert check_gpus([cpu]).verdict == "warn"
    assert check_taints([gpu, cpu]).verdict == "pass"
    assert check_taints([gpu]).verdict == "warn"
    assert "g: gpu=yes:NoSchedule" in check_taints([gpu]).detail
    assert check_taints([]).verdict == "warn"


def test_check_storage_classes():
    default = {
        "metadata": {
            "name": "std",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        }
    }
    other = {"metadata": {"name": "fast"}}
    assert check_storage_classes([default, other]).detail == "'std'"
    assert check_storage_classes([other]).verdict == "warn"
    assert (
        check_storage_classes(
            [default, {**default, "metadata": {**default["metadata"], "name": "x"}}]
        ).verdict
        == "warn"
    )
