"""TrainingJob and BatchInference on Kubernetes: what is rendered (Indexed Job with a headless
Service, PyTorchJob, Kueue label, the batch runner's command and document), and apply /
status / delete / doctor against the API-server double (``k8s_apiserver``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from k8s_apiserver import FakeApiServer, Res
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.doctor import run_doctor
from mlkube.backends.kubernetes.errors import ApiMissingError, ApplyError, RenderError
from mlkube.backends.kubernetes.render import render, with_namespace
from mlkube.backends.kubernetes.render.jobs import COMPLETION_INDEX, KUEUE_QUEUE_LABEL
from mlkube.cli import cli
from mlkube.clock import ManualClock
from mlkube.spec import load_documents, parse_documents
from mlkube.spec.job import BatchInference

HERE = Path(__file__).resolve().parent
TRAINING = HERE / "specs" / "training-job.yaml"
PYTORCH = HERE / "specs" / "training-pytorchjob.yaml"
BATCH = HERE / "specs" / "batch-job.yaml"
Obj = dict[str, Any]

_JOB = """\
apiVersion: mlkube.dev/v1alpha1
kind: TrainingJob
metadata: {name: NAME, namespace: ml}
spec:
  run: {module: train, args: ARGS}
  workers: WORKERS
"""


def _training(name: str = "mnist", workers: int = 2, args: str = "[]", extra: str = "") -> Any:
    text = _JOB.replace("NAME", name).replace("WORKERS", str(workers)).replace("ARGS", args)
    return parse_documents(text + extra)[0]


def _objects(*documents: Any, served: bool = False) -> list[Obj]:
    return list(render(list(documents), pytorch_job_served=served).objects)


def _one(objects: list[Obj], kind: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _env(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- render ----------------------------------------------------------------------------------
def test_a_training_job_is_an_indexed_job_whose_workers_find_worker_0_through_a_headless_service():
    objects = list(render(load_documents(TRAINING)).objects)
    service, job = _one(objects, "Service"), _one(objects, "Job")
    assert [o["kind"] for o in objects] == ["Service", "Job"]  # the Service first
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "mnist"}
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 7200)
    assert "suspend" not in spec  # Kueue's webhook suspends it; applying it would re-suspend
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == service["metadata"]["name"]
    assert pod["priorityClassName"] == "high-priority"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == [
        "python",
        "-m",
        "trainer.main",
        "--epochs",
        "3",
    ]
    env = _env(container)
    assert env["MASTER_ADDR"] == "mnist-0.mnist"
    assert env["MASTER_PORT"] == "29500"
    assert env["WORLD_SIZE"] == "2"
    assert env["LOCAL_RANK"] == "0"
    assert env["RANK"] == {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["MLKUBE_OUTPUT_DIR"] == "/mnt/output"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "output")
    volume = next(v for v in pod["volumes"] if v["name"] == "output")
    assert mount["mountPath"] == "/mnt/output"
    assert volume["persistentVolumeClaim"] == {"claimName": "training-output"}
    # a preempted or evicted worker does not use up the job's retries
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "Ignore" and rule["onPodConditions"][0]["type"] == "DisruptionTarget"


def test_without_a_claim_the_output_is_an_empty_dir_and_the_table_says_so():
    job = _one(_objects(_training()), "Job")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["output"] == {"name": "output", "emptyDir": {}}


def test_auto_is_a_pytorchjob_where_the_cluster_serves_it_and_job_is_always_a_job():
    assert {o["kind"] for o in _objects(_training())} == {"Service", "Job"}
    assert [o["kind"] for o in _objects(_training(), served=True)] == ["PyTorchJob"]
    pinned = _training(extra="  kubernetes: {kind: Job}\n")
    assert {o["kind"] for o in _objects(pinned, served=True)} == {"Service", "Job"}


def test_a_pytorchjob_has_one_master_and_workers_minus_one_workers():
    (job,) = render(load_documents(PYTORCH)).objects
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 3)
    assert job["spec"]["runPolicy"] == {"backoffLimit": 3, "activeDeadlineSeconds": 21600}
    (container,) = replicas["Master"]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"  # how the operator finds the training container
    assert container["command"] + container["args"] == ["python", "train.py", "--lr", "0.1"]
    assert "MASTER_ADDR" not in _env(container)  # the operator sets it
    single = _one(_objects(_training(workers=1), served=True), "PyTorchJob")
    assert list(single["spec"]["pytorchReplicaSpecs"]) == ["Master"]


def test_a_batch_job_runs_the_batch_runner_per_index_on_a_document_with_container_paths():
    objects = list(render(load_documents(BATCH)).objects)
    config, job = _one(objects, "ConfigMap"), _one(objects, "Job")
    (document,) = parse_documents(config["data"]["job.yaml"])
    assert isinstance(document, BatchInference)
    assert document.spec.input.path == "/mnt/input/users/*.parquet"
    assert document.spec.output.path == "/mnt/output/scores/2026-12"
    assert document.spec.model.uri == "/models/churn/model.onnx"
    assert document.spec.workers == 3 and document.spec.shard_rows == 50_000
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimitPerIndex"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == [
        "python",
        "-m",
        "mlkube.batch",
        "/etc/mlkube/job.yaml",
        "--worker-index",
        "$(JOB_COMPLETION_INDEX)",
        "--workers",
        "3",
    ]
    # $(VAR) expands only for variables the container declares
    assert "JOB_COMPLETION_INDEX" in _env(container)
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"input": "datasets", "output": "predictions", "model": "models"}
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "batch"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(_training(name="9lives"), "must start with a letter", id="service-name"),
    ],
)
def test_names_a_cluster_cannot_use_are_refused_with_the_reason(document, message):
    with pytest.raises(RenderError, match=message):
        render([document])


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_the_pytorchjob_check_fails_on_a_bad_pod_template(version):
    (job,) = render(load_documents(PYTORCH)).objects
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "volumeMount"
    ] = []
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"] = (
        "trainer"
    )
    job["spec"]["runPolicy"]["backofLimit"] = 1
    problems = "\n".join(validate(job, version))
    assert "volumeMount" in problems
    assert "container named pytorch" in problems
    assert "backofLimit" in problems


def test_render_says_what_auto_became(tmp_path):
    result = CliRunner().invoke(cli, ["render", str(TRAINING)])
    assert result.exit_code == 0, result.output
    assert "kubernetes.kind Auto renders as an Indexed Job" in result.output


# --- apply / status / delete / doctor on the double ----------------------------------------
@pytest.fixture
def api(api: FakeApiServer) -> FakeApiServer:
    """The double (conftest) with namespace ml."""
    api.add_namespace("ml")
    return api


def _backend() -> KubernetesBackend:
    return KubernetesBackend(namespace="ml", clock=ManualClock())


def _write(tmp_path: Path, document: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(document, encoding="utf-8")
    return str(path)


def _job_text(args: str = "[]") -> str:
    return _JOB.replace("NAME", "mnist").replace("WORKERS", "2").replace("ARGS", args)


def test_apply_makes_a_job_where_the_training_operator_is_missing_and_a_pytorchjob_where_not(
    api, tmp_path
):
    api.served_crd_groups.discard("kubeflow.org")
    path = _write(tmp_path, _job_text())
    report = _backend().apply((path,))
    assert [(c.object.kind, c.object.name) for c in report.changes] == [
        ("Service", "mnist"),
        ("Job", "mnist"),
    ]
    assert api.get("jobs", "ml", "mnist")["spec"]["completionMode"] == "Indexed"

    api.served_crd_groups.add("kubeflow.org")
    other = _write(tmp_path, _job_text().replace("name: mnist", "name: bert"))
    report = _backend().apply((other,))
    assert [c.object.kind for c in report.changes] == ["PyTorchJob"]
    assert api.get("pytorchjobs", "ml", "bert")["spec"]["pytorchReplicaSpecs"]["Worker"] == {
        "replicas": 1,
        "restartPolicy": "OnFailure",
        "template": api.get("pytorchjobs", "ml", "bert")["spec"]["pytorchReplicaSpecs"]["Master"][
            "template"
        ],
    }


def test_reapplying_a_changed_job_says_to_delete_it_first_and_changes_nothing(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    path = _write(tmp_path, _job_text())
    _backend().apply((path,))
    _backend().apply((path,))  # the same spec again: nothing to change, no error
    before = api.get("jobs", "ml", "mnist")
    path = _write(tmp_path, _job_text(args="[--epochs, '5']"))
    with pytest.raises(ApplyError) as caught:
        _backend().apply((path,))
    message = str(caught.value)
    assert "Job 'mnist' in namespace 'ml' already exists with another spec" in message
    assert "mlkube delete mnist --target kubernetes -n ml" in message
    assert api.get("jobs", "ml", "mnist")["spec"] == before["spec"]


def _set_status(api: FakeApiServer, plural: str, name: str, status: Obj) -> None:
    api.objects[(plural, "ml", name)].obj["status"] = status


def test_status_shows_counts_state_and_the_reason_of_a_failed_job(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    _backend().apply((_write(tmp_path, _job_text()),))
    _set_status(api, "jobs", "mnist", {"active": 2, "ready": 2})
    report = _backend().status("mnist")
    (table,) = report.tables
    assert table.title == "jobs"
    assert table.rows == (("mnist", "ml", "Job", "Running", "2", "0", "0", "-"),)
    failed = {
        "failed": 3,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            },
        ],
    }
    _set_status(api, "jobs", "mnist", failed)
    (table,) = _backend().status(None).tables
    assert table.rows == (
        (
            "mnist",
            "ml",
            "Job",
            "Failed",
            "0",
            "0",
            "3",
            "BackoffLimitExceeded: Job has reached the specified backoff limit",
        ),
    )
    _set_status(
        api,
        "jobs",
        "mnist",
        {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]},
    )
    (job,) = _backend().status("mnist").document[0]["jobs"]
    assert (job["state"], job["succeeded"]) == ("Complete", 2)


def test_status_of_a_pytorchjob_sums_its_replicas(api, tmp_path):
    _backend().apply((_write(tmp_path, _job_text()),))
    status = {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "True"},
        ],
        "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 1}},
    }
    _set_status(api, "pytorchjobs", "mnist", status)
    (table,) = _backend().status("mnist").tables
    assert table.rows == (("mnist", "ml", "PyTorchJob", "Running", "2", "0", "0", "-"),)


def _pod(name: str, job: str) -> Obj:
    # the template's labels, plus the one the Job controller adds
    labels = {
        "batch.kubernetes.io/job-name": job,
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/managed-by": "mlkube",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
    }


def test_delete_removes_the_job_its_service_and_its_pods(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    _backend().apply((_write(tmp_path, _job_text()),))
    pods = Res("", "v1", "pods", "Pod", True)
    for index in range(2):
        api.put(pods, _pod(f"mnist-{index}-abcde", "mnist"))
    api.put(pods, _pod("other-0-xyz", "other"))
    report = _backend().delete("mnist")
    assert sorted((c.object.kind, c.action) for c in report.changes) == [
        ("Job", "deleted"),
        ("Service", "deleted"),
    ]
    assert api.get("jobs", "ml", "mnist") is None
    assert api.get("services", "ml", "mnist") is None
    assert api.get("pods", "ml", "mnist-0-abcde") is None  # Background: the pods go too
    assert api.get("pods", "ml", "other-0-xyz") is not None
    deletes = [r for r in api.requests if r.method == "DELETE" and "/jobs/" in r.path]
    assert deletes and all(r.query.get("propagationPolicy") == ["Background"] for r in deletes)


def test_the_double_orphans_a_deleted_jobs_pods_without_a_propagation_policy(api):
    # The real API's default for batch/v1 Jobs, which is why mlkube asks for Background.
    pods = Res("", "v1", "pods", "Pod", True)
    jobs = Res("batch", "v1", "jobs", "Job", True)
    api.put(
        jobs,
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ml"}},
    )
    api.put(pods, _pod("j-0-abc", "j"))
    status, _body, _type = api.handle(
        "DELETE", "/apis/batch/v1/namespaces/ml/jobs/j", {"authorization": "Bearer test-token"}, b""
    )
    assert status == 200
    assert api.get("jobs", "ml", "j") is None
    assert api.get("pods", "ml", "j-0-abc") is not None


def test_doctor_checks_the_training_operator_and_kueue(api):
    cluster = Cluster(Target())
    try:
        checks = {c.name: c for c in run_doctor(cluster, "ml")}
        assert checks["Kubeflow training-operator"].verdict == "pass"
        assert checks["Kueue"].verdict == "pass"
        api.served_crd_groups -= {"kubeflow.org", "kueue.x-k8s.io"}
    finally:
        cluster.close()
    cluster = Cluster(Target())
    try:
        checks = {c.name: c for c in run_doctor(cluster, "ml")}
    finally:
        cluster.close()
    operator, kueue = checks["Kubeflow training-operator"], checks["Kueue"]
    assert operator.verdict == "warn" and "training-operator" in operator.fix
    assert "kind Auto makes an Indexed Job" in operator.detail
    assert kueue.verdict == "warn" and "kueue" in kueue.fix and "ResourceQuota" in kueue.detail


def test_an_auto_job_running_as_a_job_stays_one_when_the_operator_arrives(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    path = _write(tmp_path, _job_text())
    _backend().apply((path,))
    api.served_crd_groups.add("kubeflow.org")
    report = _backend().apply((path,))  # the same spec: no second run as a PyTorchJob
    assert [c.object.kind for c in report.changes] == ["Service", "Job"]
    assert api.get("pytorchjobs", "ml", "mnist") is None


def test_events_of_a_job_cover_the_job_and_its_pods(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    _backend().apply((_write(tmp_path, _job_text()),))
    api.put(Res("", "v1", "pods", "Pod", True), _pod("mnist-0-abcde", "mnist"))
    api.add_event("ml", ("Job", "mnist"), "SuccessfulCreate", "Created pod: mnist-0-abcde")
    api.add_event("ml", ("Pod", "mnist-0-abcde"), "Scheduled", "assigned to node-1")
    rows = _backend().events("mnist")
    assert {(row.object, row.reason) for row in rows} == {
        ("Job/mnist", "SuccessfulCreate"),
        ("Pod/mnist-0-abcde", "Scheduled"),
    }


def test_namespace_flag_moves_jobs_too():
    moved = with_namespace([_training()], "team-b")
    assert {o["metadata"]["namespace"] for o in _objects(*moved)} == {"team-b"}


def test_kind_pytorchjob_without_the_operator_fails_before_anything_changes(api, tmp_path):
    api.served_crd_groups.discard("kubeflow.org")
    path = _write(tmp_path, _job_text() + "  kubernetes: {kind: PyTorchJob}\n")
    with pytest.raises(ApiMissingError, match=r"PyTorchJob \(kubeflow.org/v1\)"):
        _backend().apply((path,))
    assert not [r for r in api.requests if r.method == "PATCH"]
