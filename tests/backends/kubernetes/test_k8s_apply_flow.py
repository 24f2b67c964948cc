"""apply's dry run, a half-done apply, prune after the rollout, and why a rollout is stuck,
against the API-server DOUBLE (``k8s_apiserver`` with ``k8s_cluster_sim``).

Issue 12 defects 6, 7 and 8: each test here failed on the code before the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from k8s_apiserver import FakeApiServer, Request, Res
from k8s_cluster_sim import Step, deployment_condition

from mlkube.backends.base import ObjectChange, ObjectRef
from mlkube.backends.kubernetes import wait
from mlkube.backends.kubernetes.apply import PartialApplyError
from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.errors import ApplyError, RolloutError
from mlkube.cli import cli, main
from mlkube.clock import ManualClock

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
GUIDE = str(HERE.parents[2] / "examples" / "k8s-ml-guide" / "spec.yaml")
NAMESPACED_IN_GUIDE = 5  # PVC, Deployment, Service, HPA, PDB: all in namespace ml
QUOTA = (
    'Error creating: pods "ml-model-5d8f9c7b4-" is forbidden: exceeded quota: ml-quota, '
    "requested: pods=1, used: pods=2, limited: pods=2"
)
NO_ACCOUNT = (
    'Error creating: pods "ml-model-5d8f9c7b4-" is forbidden: error looking up service '
    'account ml/model-reader: serviceaccount "model-reader" not found'
)
NO_METRICS = (
    "the HPA was unable to compute the replica count: failed to get cpu utilization: unable "
    "to get metrics for resource cpu: no metrics returned from resource metrics API"
)


def _backend(namespace: str | None = None) -> KubernetesBackend:
    return KubernetesBackend(namespace=namespace, clock=ManualClock())  # polls without sleeping


def _real(api: FakeApiServer) -> list[Request]:
    return [r for r in api.requests if r.method == "PATCH" and "dryRun" not in r.query]


def _dry(api: FakeApiServer) -> list[str]:
    return [r.path for r in api.requests if r.method == "PATCH" and "dryRun" in r.query]


def _take_node_port(api: FakeApiServer, port: int) -> None:
    """Another team's Service already holds ``port``."""
    api.add_namespace("shop")
    api.put(
        Res("", "v1", "services", "Service", True),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]},
        },
    )


# defect 6: dry run -----------------------------------------------------------------------
def test_a_rejection_in_a_new_namespace_stops_the_apply_before_any_object_is_sent(api):
    _take_node_port(api, 30050)
    with pytest.raises(ApplyError) as raised:
        _backend().apply((GUIDE,))
    message = str(raised.value)
    assert "dry run rejected 1 of the 5 objects it checked" in message
    assert "nodePort: Invalid value: 30050: provided port is already allocated" in message
    assert "Namespace/ml was created first" in message
    # Before: the namespaced objects skipped the dry run, the Deployment was created and the
    # Service then refused: a pod without Service, HPA or PDB.
    assert [r.path for r in _real(api)] == ["/api/v1/namespaces/ml"]
    assert api.get("deployments", "ml", "ml-model") is None
    assert api.get("persistentvolumes", "", "ml-model-pv") is None


def test_dry_run_says_which_objects_it_could_not_check_and_never_sends_them(api):
    report = _backend().apply((GUIDE,), dry_run=True)
    actions = {str(c.object): c.action for c in report.changes}
    assert actions["Namespace/ml"] == "accepted"
    assert actions["PersistentVolume/ml-model-pv"] == "accepted"
    unchecked = [name for name, action in actions.items() if action == "not checked"]
    assert len(unchecked) == NAMESPACED_IN_GUIDE  # before: every one reported as applied
    assert "Deployment/ml-model in ml" in unchecked
    assert any("5 objects were not checked" in w for w in report.warnings)
    assert all("/namespaces/ml/" not in path for path in _dry(api))  # never sent
    assert _real(api) == []


def test_dry_run_in_an_existing_namespace_checks_every_object(api):
    api.add_namespace("ml")
    _take_node_port(api, 30050)
    with pytest.raises(ApplyError, match="provided port is already allocated"):
        _backend().apply((GUIDE,), dry_run=True)
    assert "/api/v1/namespaces/ml/services/ml-model-service" in _dry(api)
    assert _real(api) == []


def test_dry_run_reports_every_rejected_object_at_once(api):
    api.add_namespace("ml")
    _take_node_port(api, 30050)
    api.sim.fail_real_apply("deployments", "ml", "ml-model", 422, "never reached")
    with pytest.raises(
        ApplyError, match="rejected 1 of the 7 objects it checked, so nothing was changed"
    ):
        _backend().apply((GUIDE,))
    assert _real(api) == []


def test_a_rejection_after_the_dry_run_says_what_was_applied_and_exits_non_zero(api, capsys):
    api.sim.fail_real_apply(
        "services",
        "ml",
        "ml-model-service",
        422,
        'Service "ml-model-service" is invalid: spec.ports[0].nodePort: Invalid value: '
        "30050: provided port is already allocated",
    )  # someone took the port between mlkube's dry run and its apply
    with pytest.raises(PartialApplyError) as raised:
        _backend().apply((GUIDE,))
    error = raised.value
    assert str(error.failed) == "Service/ml-model-service in ml"
    assert "Deployment/ml-model in ml" in map(str, error.applied)
    assert [str(k) for k in error.not_applied] == [
        "Service/ml-model-service in ml",
        "HorizontalPodAutoscaler/ml-model-hpa in ml",
        "PodDisruptionBudget/ml-model-pdb in ml",
    ]
    assert "Not applied: Service/ml-model-service in ml, HorizontalPodAutoscaler" in str(error)
    api.sim.fail_real_apply("services", "ml", "ml-model-service", 422, "port taken again")
    with pytest.raises(SystemExit) as exited:
        main(["apply", GUIDE, "--target", "kubernetes"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the apply stopped part-way at Service/ml-model-service in ml")


def test_a_namespace_that_cannot_be_created_leaves_every_object_not_applied(api):
    api.sim.fail_real_apply("namespaces", "", "ml", 403, 'namespaces "ml" is forbidden')
    with pytest.raises(PartialApplyError) as raised:
        _backend().apply((GUIDE,))
    assert str(raised.value.failed) == "Namespace/ml"
    assert len(raised.value.not_applied) == 7 and raised.value.applied == ()


def test_credentials_that_may_not_read_namespaces_still_dry_run_everything(api):
    api.add_namespace("ml")
    api.forbidden.add(("get", "namespaces"))
    report = _backend().apply((GUIDE,), dry_run=True)
    assert {c.action for c in report.changes} == {"accepted"}
    assert len(_dry(api)) == 7


def test_the_cli_prints_the_dry_run_counts_by_action(api):
    result = CliRunner().invoke(cli, ["apply", GUIDE, "--target", "kubernetes", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert "Deployment/ml-model in ml not checked (dry run)" in out
    assert out[-1] == "dry run: 7 objects: 2 accepted, 5 not checked, 0 pruned"


# defect 8: prune after the rollout ---------------------------------------------------------
_SPEC = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, namespace: ml}
spec:
  model: {uri: "s3://models/ranker.onnx", format: onnx}
  kubernetes: {createNamespace: true}
"""
CANARY = "  rollout: {strategy: Canary, steps: [{weight: 10}]}\n"
BLUE_GREEN = "  rollout: {strategy: BlueGreen}\n"
RANKER = ["ranker", "ranker-canary", "ranker-blue", "ranker-green"]


def _canary_then_blue_green(api: FakeApiServer, tmp_path: Path) -> Path:
    """ranker serving as a canary; the blue/green Deployments will need 3 reads to start."""
    spec = tmp_path / "ranker.yaml"
    spec.write_text(_SPEC + CANARY)
    backend = _backend()
    backend.wait_for_rollouts(backend.apply((str(spec),)), timeout_s=30, report=print)
    for name in ("ranker-blue", "ranker-green"):
        api.sim.script_rollout("ml", name, [Step(0), Step(0), Step(0), Step(1)])
    spec.write_text(_SPEC + BLUE_GREEN)
    return spec


def test_a_strategy_switch_prunes_the_old_deployments_only_once_the_new_ones_serve(api, tmp_path):
    spec = _canary_then_blue_green(api, tmp_path)
    start = len(api.sim.timeline)
    backend = _backend()
    report = backend.apply((str(spec),))
    messages: list[str] = []
    backend.wait_for_rollouts(report, timeout_s=30, report=messages.append)
    serving = api.sim.serving("ml", RANKER)[start:]
    # Before: the old Deployments were deleted during apply, while blue and green had 0 pods.
    assert min(serving) > 0, serving
    assert serving[-1] == 2  # blue and green
    kept = [str(c.object) for c in report.changes if c.action == "kept until ready"]
    assert "Deployment/ranker in ml" in kept and "Deployment/ranker-canary in ml" in kept
    assert report.pruned == ()
    assert "Deployment/ranker in ml pruned (the new Deployments are rolled out)" in messages
    assert api.get("deployments", "ml", "ranker") is None


def test_without_wait_the_old_objects_stay_until_an_apply_finds_the_new_ones_ready(api, tmp_path):
    spec = _canary_then_blue_green(api, tmp_path)
    report = _backend().apply((str(spec),))
    assert any("kept until every new Deployment is rolled out" in w for w in report.warnings)
    assert api.get("deployments", "ml", "ranker-canary") is not None
    _backend("ml").status("ranker")  # reads: blue and green come up
    _backend("ml").status("ranker")
    again = _backend().apply((str(spec),))
    assert ObjectRef("Deployment", "ranker-canary", "ml") in (again.pruned or ())
    assert api.get("deployments", "ml", "ranker-canary") is None


def test_a_failed_wait_keeps_the_old_objects_and_says_so(api, tmp_path):
    spec = _canary_then_blue_green(api, tmp_path)
    for name in ("ranker-blue", "ranker-green"):
        api.sim.script_rollout("ml", name, [Step(0)])  # never comes up
    start = len(api.sim.timeline)
    backend = _backend()
    report = backend.apply((str(spec),))
    with pytest.raises(
        RolloutError,
        match="kept as they were until the new Deployments are rolled out: Service/ranker",
    ):
        backend.wait_for_rollouts(report, timeout_s=6, report=lambda _: None)
    assert api.get("deployments", "ml", "ranker") is not None
    assert min(api.sim.serving("ml", RANKER)[start:]) > 0


def test_a_strategy_switch_keeps_endpoints_on_the_service(api, tmp_path):
    spec = _canary_then_blue_green(api, tmp_path)
    start = len(api.sim.timeline)
    backend = _backend()
    backend.wait_for_rollouts(backend.apply((str(spec),)), timeout_s=30, report=print)
    endpoints = [m.endpoints.get("ml/ranker", 0) for m in api.sim.timeline[start:]]
    # Before: the Service switched to the blue pods in the same apply, while blue had none.
    assert min(endpoints) > 0, endpoints
    assert api.get("services", "ml", "ranker")["spec"]["selector"]["mlkube.dev/color"] == "blue"


def test_without_wait_the_service_keeps_its_old_selector_until_an_apply_finds_blue_ready(
    api, tmp_path
):
    spec = _canary_then_blue_green(api, tmp_path)
    report = _backend().apply((str(spec),))
    assert ObjectChange(ObjectRef("Service", "ranker", "ml"), "held until ready") in (
        report.changes
    )
    assert "mlkube.dev/color" not in api.get("services", "ml", "ranker")["spec"]["selector"]
    _backend("ml").status("ranker")  # reads: blue and green come up
    _backend("ml").status("ranker")
    again = _backend().apply((str(spec),))
    assert ObjectChange(ObjectRef("Service", "ranker", "ml"), "applied") in again.changes
    assert api.get("services", "ml", "ranker")["spec"]["selector"]["mlkube.dev/color"] == "blue"


# defect 7: why a rollout is stuck ----------------------------------------------------------
def _stuck_guide(api: FakeApiServer, *conditions: dict) -> None:
    api.sim.script_rollout("ml", "ml-model", [Step(0, updated=0, conditions=conditions)])


def _wait(timeout_s: float = 6) -> tuple[list[str], str]:
    backend = _backend()
    report = backend.apply((GUIDE,))
    messages: list[str] = []
    with pytest.raises(RolloutError) as raised:
        backend.wait_for_rollouts(report, timeout_s=timeout_s, report=messages.append)
    return messages, str(raised.value)


def test_wait_shows_the_quota_that_refused_the_pods(api):
    _stuck_guide(
        api,
        deployment_condition("Progressing", "True", "ReplicaSetUpdated", "progressing"),
        deployment_condition("ReplicaFailure", "True", "FailedCreate", QUOTA),
    )
    messages, error = _wait()
    assert messages[0] == "ml-model: 0 of 1 replicas updated"
    text = " ".join(line.strip() for line in messages[1:])
    assert text.startswith("Deployment/ml-model ReplicaFailure FailedCreate: Error creating")
    assert "exceeded quota: ml-quota" in text
    assert "exceeded quota: ml-quota" in error  # the failure says why, not only the count
    assert max(len(line) for line in messages) <= 80
    assert len(messages) == len(set(messages))  # each reason once, not at every poll


def test_apply_wait_prints_the_reason_and_fails_with_it(api, capsys, monkeypatch):
    monkeypatch.setattr(wait, "POLL_INTERVAL_S", 0.01)  # the CLI's clock is the system's
    _stuck_guide(api, deployment_condition("ReplicaFailure", "True", "FailedCreate", QUOTA))
    with pytest.raises(SystemExit) as exited:
        main(["apply", GUIDE, "--target", "kubernetes", "--wait", "--timeout", "0.05"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    progress = out.splitlines()[out.splitlines().index("ml-model: 0 of 1 replicas updated") :]
    assert progress[1].startswith("  Deployment/ml-model ReplicaFailure FailedCreate: Error")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert err.startswith("error: timed out after 0.05s waiting for ml/ml-model")
    assert "exceeded quota: ml-quota" in err


def test_diagnosing_asks_only_for_what_the_cluster_serves_and_allows(api):
    api.served_crd_groups.discard("keda.sh")
    api.forbidden.add(("list", "events"))
    _stuck_guide(api, deployment_condition("ReplicaFailure", "True", "FailedCreate", QUOTA))
    backend = _backend()
    report = backend.apply((GUIDE,))
    before = len(api.requests)
    with pytest.raises(RolloutError, match="exceeded quota: ml-quota"):  # still says why
        backend.wait_for_rollouts(report, timeout_s=6, report=lambda _: None)
    asked = [r.path for r in api.requests[before:]]
    assert "/api/v1/namespaces/ml/events" in asked  # refused (403), and left out
    assert not [path for path in asked if path.startswith("/apis/keda.sh/v1alpha1/")]


def test_wait_shows_a_missing_service_account_from_the_replica_sets_events(api):
    _stuck_guide(api)
    for replica_set in ("ml-model-5d8f9c7b4", "ml-model-canary-6c9d8"):
        api.add_event(
            "ml", ("ReplicaSet", replica_set), "FailedCreate", NO_ACCOUNT, type_="Warning", count=7
        )
    messages, error = _wait()
    text = " ".join(line.strip() for line in messages)
    assert "ReplicaSet/ml-model-5d8f9c7b4 Warning FailedCreate:" in text
    assert 'serviceaccount "model-reader" not found (x7)' in text
    assert "ml-model-canary" not in text  # another Deployment's ReplicaSet
    assert 'serviceaccount "model-reader" not found' in error


def _add_pod(api: FakeApiServer, name: str, status: dict) -> None:
    labels = {"app": "ml-model", "mlkube.dev/track": "stable"}
    api.put(
        Res("", "v1", "pods", "Pod", True),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml", "labels": labels},
            "status": status,
        },
    )


def test_status_shows_a_pod_waiting_for_a_missing_storage_class(api):
    _stuck_guide(api)
    _backend().apply((GUIDE,))
    _add_pod(
        api,
        "ml-model-5d8f9c7b4-x2x9q",
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: pod has unbound immediate "
                    "PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 "
                    "Preemption is not helpful for scheduling.",
                }
            ],
        },
    )
    api.add_event(
        "ml",
        ("PersistentVolumeClaim", "ml-model-pvc"),
        "ProvisioningFailed",
        'storageclass.storage.k8s.io "fast-ssd" not found',
        type_="Warning",
    )
    report = _backend("ml").status("ml-model")
    notes = list(report.notes)
    assert notes[0] == "why ml-model is not healthy:"
    text = " ".join(line.strip() for line in notes)
    assert "Pod/ml-model-5d8f9c7b4-x2x9q PodScheduled Unschedulable: 0/1 nodes" in text
    assert "PersistentVolumeClaim/ml-model-pvc Warning ProvisioningFailed: storageclass" in text
    assert max(len(line) for line in notes) <= 80
    assert report.document[0]["problems"][0].startswith("Pod/ml-model-5d8f9c7b4-x2x9q")


def test_status_shows_why_the_autoscaler_wants_zero(api):
    _backend().apply((GUIDE,))
    hpa = api.get("horizontalpodautoscalers", "ml", "ml-model-hpa")
    hpa["status"] = {
        "currentReplicas": 1,
        "desiredReplicas": 0,
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
            {
                "type": "ScalingActive",
                "status": "False",
                "reason": "FailedGetResourceMetric",
                "message": NO_METRICS,
            },
        ],
    }
    result = CliRunner().invoke(cli, ["status", "-n", "ml", "--target", "kubernetes"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    start = out.index("why ml-model is not healthy:")
    text = " ".join(line.strip() for line in out[start + 1 :])
    assert text.startswith(
        "HorizontalPodAutoscaler/ml-model-hpa ScalingActive FailedGetResourceMetric: the HPA"
    )
    assert "no metrics returned from resource metrics API" in text
    assert max(len(line) for line in out) <= 80


def test_a_healthy_deployment_has_no_problems_and_status_reads_no_events(api):
    _backend().apply((GUIDE,))
    api.add_event("ml", ("Pod", "ml-model-5d8f9c7b4-x2x9q"), "BackOff", "old", type_="Warning")
    backend = _backend("ml")
    backend.status("ml-model")  # the first read rolls it out
    before = len(api.requests)
    report = backend.status("ml-model")
    assert report.notes == ()
    assert report.document[0]["problems"] == []
    assert not [r for r in api.requests[before:] if r.path.endswith("/events")]


STRATEGIES = {
    "RollingUpdate": "  rollout: {strategy: RollingUpdate}\n",
    "Canary": CANARY,
    "ABTest": "  rollout: {strategy: ABTest, abTest: {weight: 30}}\n",
    "BlueGreen": BLUE_GREEN,
}


@pytest.mark.parametrize(
    ("source", "target"),
    [(a, b) for a in STRATEGIES for b in STRATEGIES if a != b],
)
def test_every_strategy_switch_keeps_pods_and_endpoints_serving(api, tmp_path, source, target):
    spec = tmp_path / "ranker.yaml"
    spec.write_text(_SPEC + STRATEGIES[source])
    backend = _backend()
    backend.wait_for_rollouts(backend.apply((str(spec),)), timeout_s=30, report=lambda _: None)
    before = {name for (_, name) in _deployments(api)}
    spec.write_text(_SPEC + STRATEGIES[target])
    for name in {"ranker", "ranker-canary", "ranker-blue", "ranker-green"} - before:
        api.sim.script_rollout("ml", name, [Step(0), Step(0), Step(0), Step(1)])
    start = len(api.sim.timeline)
    backend = _backend()
    backend.wait_for_rollouts(backend.apply((str(spec),)), timeout_s=30, report=lambda _: None)
    # from the state the switch starts in (Canary <-> ABTest changes no count at all)
    serving = api.sim.serving("ml", RANKER)[start - 1 :]
    endpoints = [m.endpoints.get("ml/ranker", 0) for m in api.sim.timeline[start - 1 :]]
    assert min(serving) > 0, serving
    assert min(endpoints) > 0, endpoints


def _deployments(api: FakeApiServer) -> set[tuple[str, str]]:
    return {(ns, name) for (plural, ns, name) in api.objects if plural == "deployments"}
