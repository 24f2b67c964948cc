"""``diagnose``: the reasons behind the counts, from the API's own object shapes (pure)."""

from __future__ import annotations

from typing import Any

from mlkube.backends.kubernetes.diagnose import (
    Problem,
    condition_problems,
    lines,
    owns_event,
    problems,
)
from mlkube.backends.kubernetes.status import problem_notes, summarize

QUOTA = (
    'Error creating: pods "nginx-deployment-4262182780-" is forbidden: exceeded quota: '
    "object-counts, requested: pods=1, used: pods=3, limited: pods=2"
)


def _deployment(name: str = "iris", *conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "generation": 1,
            "labels": {"app.kubernetes.io/instance": "iris"},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {"volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "m"}}]}
            },
        },
        "status": {"observedGeneration": 1, "replicas": 2, "conditions": list(conditions)},
    }


def _event(kind: str, name: str, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "Event",
        "metadata": {"name": f"{name}.1", "namespace": "ml"},
        "involvedObject": {"kind": kind, "name": name, "namespace": "ml"},
        "type": extra.get("type", "Warning"),
        "reason": reason,
        "message": message,
        "count": extra.get("count", 1),
        "lastTimestamp": extra.get("at", "2026-01-01T00:00:00Z"),
    }


def test_the_failed_deployment_of_the_kubernetes_docs_reads_as_its_quota():
    # The status of https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
    # #failed-deployment, as `kubectl get deployment -o yaml` prints it.
    deployment = _deployment(
        "nginx-deployment",
        {
            "type": "Progressing",
            "status": "True",
            "reason": "ReplicaSetUpdated",
            "message": 'Replica set "nginx-deployment-4262182780" is progressing.',
        },
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": QUOTA},
    )
    assert condition_problems(deployment) == [
        Problem("Deployment/nginx-deployment", "ReplicaFailure FailedCreate", QUOTA)
    ]


def test_progress_deadline_pod_scheduling_containers_and_autoscalers_are_problems():
    deadline = _deployment(
        "iris",
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
    )
    assert condition_problems(deadline)[0].reason == "Progressing ProgressDeadlineExceeded"
    pod = {
        "kind": "Pod",
        "metadata": {"name": "iris-7d9f-abcde"},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {"name": "server", "state": {"waiting": {"reason": "ContainerCreating"}}},
                {
                    "name": "fetch",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no tag"}},
                },
            ],
        },
    }
    assert [p.text() for p in condition_problems(pod)] == [
        "Pod/iris-7d9f-abcde container fetch ImagePullBackOff: no tag"
    ]
    hpa = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "iris-hpa"},
        "status": {
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
                {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric"},
                {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange"},
            ]
        },
    }
    assert [p.reason for p in condition_problems(hpa)] == ["ScalingActive FailedGetResourceMetric"]


def test_events_belong_to_a_deployment_by_its_replica_set_and_pod_names():
    others = [("HorizontalPodAutoscaler", "iris-hpa")]
    assert owns_event(_event("ReplicaSet", "iris-7d9f5c", "X", ""), "iris", others)
    assert owns_event(_event("Pod", "iris-7d9f5c-x2x9q", "X", ""), "iris", others)
    assert owns_event(_event("HorizontalPodAutoscaler", "iris-hpa", "X", ""), "iris", others)
    # iris-canary's ReplicaSet and pod are not iris's
    assert not owns_event(_event("ReplicaSet", "iris-canary-7d9f5c", "X", ""), "iris", others)
    assert not owns_event(_event("Pod", "iris-canary-7d9f5c-x2x9q", "X", ""), "iris", others)
    assert not owns_event(_event("Deployment", "iris-canary", "X", ""), "iris", others)


def test_an_event_a_condition_already_says_is_shown_once_and_normal_events_never():
    deployment = _deployment(
        "iris",
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": QUOTA},
    )
    events = [
        _event("ReplicaSet", "iris-7d9f5c", "FailedCreate", QUOTA, count=9),
        _event("ReplicaSet", "iris-7d9f5c", "SuccessfulCreate", "made one", type="Normal"),
        _event("PersistentVolumeClaim", "m", "ProvisioningFailed", "no class", count=2),
    ]
    assert [p.text() for p in problems(deployment, events=events)] == [
        f"Deployment/iris ReplicaFailure FailedCreate: {QUOTA}",
        "PersistentVolumeClaim/m Warning ProvisioningFailed: no class (x2)",
    ]


def test_only_the_newest_events_are_kept():
    events = [
        _event(
            "Pod", f"iris-7d9f5c-pod{i}", "BackOff", f"restart {i}", at=f"2026-01-01T00:0{i}:00Z"
        )
        for i in range(8)
    ]
    shown = problems(_deployment(), events=events)
    assert [p.message for p in shown] == [f"restart {i}" for i in range(3, 8)]


def test_problem_lines_fit_80_columns_and_status_notes_name_the_instance():
    problem = Problem("Deployment/iris", "ReplicaFailure FailedCreate", QUOTA)
    wrapped = lines(problem)
    assert max(len(line) for line in wrapped) <= 80
    assert wrapped[0].startswith("  Deployment/iris ReplicaFailure")
    assert all(line.startswith("    ") for line in wrapped[1:])
    found = {("ml", "iris"): [problem]}
    summaries = summarize([_deployment()], found)
    assert summaries[0]["problems"] == [problem.text()]
    assert problem_notes(summaries, found)[0] == "why iris is not healthy:"
