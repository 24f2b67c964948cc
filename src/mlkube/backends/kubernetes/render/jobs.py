"""Jobs on a cluster: a TrainingJob as an Indexed Job (or a Kubeflow PyTorchJob), a
BatchInference as an Indexed Job running the batch runner.

Pure: no I/O. Field semantics, from the Kubernetes docs:

- Indexed Job (https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode):
  ``completions`` pods, index 0..N-1 in the annotation (and label)
  ``batch.kubernetes.io/job-completion-index`` and the variable ``JOB_COMPLETION_INDEX``; a pod
  of a Job with ``subdomain`` gets the hostname ``<job>-<index>``, so with a headless Service of
  that name worker 0 is ``<job>-0.<service>``
  (https://kubernetes.io/docs/tasks/job/job-with-pod-to-pod-communication/);
- a failed pod is recreated alone (its index), and every failed pod counts against
  ``backoffLimit``; ``podFailurePolicy`` (restartPolicy Never) decides which failures count:
  here a pod that was disrupted (preempted, evicted: condition ``DisruptionTarget``) is
  ``Ignore``d, as a preempted job is requeued locally, not failed
  (https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy);
- ``backoffLimitPerIndex`` (a BatchInference's shards): each index has its own retries
  (https://kubernetes.io/docs/concepts/workloads/controllers/job/#backoff-limit-per-index);
- Kueue: the label ``kueue.x-k8s.io/queue-name`` names the LocalQueue; Kueue's webhook
  suspends a Job that has it until the workload is admitted (jobframework
  ``ApplyDefaultForSuspend``), so ``suspend`` is never rendered here: applying
  ``suspend: true`` again would stop a job Kueue had admitted.

A PyTorchJob (kubeflow.org/v1, the training-operator) has a ``Master`` and ``Worker``
replicas; the operator sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK itself, from the
container named ``pytorch`` and its port ``pytorchjob-port``.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.manifest import (
    Manifest,
    is_dns_1035_label,
    label_problem,
    metadata,
    standard_labels,
)
from mlkube.spec.job import BatchInference, JobDocument, TrainingJob
from mlkube.spec.placement import PlacementSpec
from mlkube.spec.resources import GPU, ResourcesSpec

JobKind = Literal["Job", "PyTorchJob"]
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on its pods (1.27+): the headless Service selects on it."""
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MASTER_PORT = 29500
"""torchrun's default rendezvous port, as locally."""
PYTORCH_PORT = 23456
"""The training-operator's default port (container port ``pytorchjob-port``)."""
CONFIG_DIR = "/etc/mlkube"
JOB_FILE = "job.yaml"
OUTPUT_DIR = "/mnt/output"
INPUT_DIR = "/mnt/input"
MODEL_DIR = "/models"
BATCH_MODULE = "mlkube.batch"
TRAINING = "training"
BATCH = "batch-inference"


def job_kind(job: TrainingJob, *, pytorch_job_served: bool) -> JobKind:
    """What ``kubernetes.kind`` becomes: Auto is a PyTorchJob when the cluster serves its CRD
    (``pytorch_job_served``; False when there is no cluster to ask). Pure."""
    kind = job.spec.kubernetes.kind
    if kind == "Auto":
        return "PyTorchJob" if pytorch_job_served else "Job"
    return kind


def auto_kind_notes(documents: Sequence[object]) -> list[str]:
    """What ``mlkube render`` says about TrainingJobs of kind Auto: with no cluster to ask,
    they render as Indexed Jobs. Pure."""
    return [
        f"trainingjob '{d.metadata.name}': kubernetes.kind Auto renders as an Indexed Job "
        "here; mlkube apply makes a PyTorchJob when the cluster serves kubeflow.org/v1 "
        "(set kubernetes.kind to choose)"
        for d in documents
        if isinstance(d, TrainingJob) and d.spec.kubernetes.kind == "Auto"
    ]


def job_objects(document: JobDocument, *, pytorch_job_served: bool = False) -> list[Manifest]:
    """The objects of one job document. Pure; RenderError when a name cannot be used."""
    _check_names(document)
    if isinstance(document, BatchInference):
        return batch_objects(document)
    if job_kind(document, pytorch_job_served=pytorch_job_served) == "PyTorchJob":
        return [pytorch_job(document)]
    return [headless_service(document), indexed_training_job(document)]


# --- TrainingJob as an Indexed Job -----------------------------------------------------------
def headless_service(job: TrainingJob) -> Manifest:
    """``clusterIP: None`` over the job's pods: DNS names ``<job>-<index>.<job>``.

    Addresses are published before the pods are ready (they have no readiness probe, and
    worker 0 must be found while the others start)."""
    name = job.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, job.namespace, _labels(job, TRAINING)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: name},
            "ports": [
                {"name": "dist", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}
            ],
        },
    }


def indexed_training_job(job: TrainingJob) -> Manifest:
    """A ``batch/v1`` Job of ``workers`` pods, all running at once (parallelism = completions)."""
    spec = job.spec
    name = job.metadata.name
    workers = spec.workers
    env = [
        *_user_env(spec.env),
        _index_env("RANK"),
        {"name": "WORLD_SIZE", "value": str(workers)},
        {"name": "LOCAL_RANK", "value": "0"},
        {"name": "LOCAL_WORLD_SIZE", "value": "1"},
        {"name": "GROUP_RANK", "value": "$(RANK)"},
        {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        *_output_env(job),
    ]
    container = _container(
        "worker",
        job.image,
        spec.kubernetes.image_pull_policy,
        _run_command(job),
        env,
        spec.resources,
        [{"name": "dist", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        _training_mounts(),
    )
    pod = _pod_spec(job, container, _training_volumes(job), subdomain=name)
    job_spec: Manifest = {
        "completionMode": "Indexed",
        "completions": workers,
        "parallelism": workers,
        "backoffLimit": spec.backoff_limit,
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = math.ceil(spec.active_deadline_seconds)
    job_spec["podFailurePolicy"] = _disruptions_do_not_count()
    job_spec["template"] = {"metadata": {"labels": _labels(job, TRAINING)}, "spec": pod}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _job_metadata(job, TRAINING),
        "spec": job_spec,
    }


# --- TrainingJob as a PyTorchJob -------------------------------------------------------------
def pytorch_job(job: TrainingJob) -> Manifest:
    """A ``kubeflow.org/v1`` PyTorchJob: Master 1, Worker ``workers - 1``."""
    spec = job.spec
    env = [
        *_user_env(spec.env),
        {"name": "LOCAL_RANK", "value": "0"},
        {"name": "LOCAL_WORLD_SIZE", "value": "1"},
        *_output_env(job),
    ]
    container = _container(
        "pytorch",  # the operator finds the training container by this name
        job.image,
        spec.kubernetes.image_pull_policy,
        _run_command(job),
        env,
        spec.resources,
        [{"name": "pytorchjob-port", "containerPort": PYTORCH_PORT, "protocol": "TCP"}],
        _training_mounts(),
    )
    template = {
        "metadata": {"labels": _labels(job, TRAINING)},
        "spec": _pod_spec(job, container, _training_volumes(job), restart_policy=None),
    }
    # OnFailure: a failed worker's container restarts in place, counted by backoffLimit
    # (the operator's documented examples use it; Never would fail the job at once).
    replicas: Manifest = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}
    }
    if spec.workers > 1:
        replicas["Worker"] = {
            "replicas": spec.workers - 1,
            "restartPolicy": "OnFailure",
            "template": template,
        }
    run_policy: Manifest = {"backoffLimit": spec.backoff_limit}
    if spec.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = math.ceil(spec.active_deadline_seconds)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _job_metadata(job, TRAINING),
        "spec": {"pytorchReplicaSpecs": replicas, "runPolicy": run_policy},
    }


# --- BatchInference as an Indexed Job --------------------------------------------------------
def batch_objects(batch: BatchInference) -> list[Manifest]:
    """A ConfigMap holding the document (paths as the pod sees them) and an Indexed Job whose
    pod ``i`` runs ``python -m mlkube.batch /etc/mlkube/job.yaml --worker-index i``."""
    _input_claim(batch)  # refused before anything is rendered
    return [batch_config_map(batch), batch_job(batch)]


def batch_document(batch: BatchInference) -> Manifest:
    """The document the pods read: input, output and model paths inside the container. Pure."""
    data: Manifest = batch.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    data = {"apiVersion": batch.api_version, "kind": batch.kind, **data}
    spec = batch.spec
    data["spec"]["input"]["path"] = _under(INPUT_DIR, spec.input.path)
    data["spec"].setdefault("output", {})["path"] = _under(OUTPUT_DIR, spec.output.path)
    data["spec"]["model"]["uri"] = _under(MODEL_DIR, _model_claim(batch)[1])
    return data


def batch_config_map(batch: BatchInference) -> Manifest:
    text = yaml.safe_dump(batch_document(batch), sort_keys=True, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(batch.metadata.name, batch.namespace, _labels(batch, BATCH)),
        "data": {JOB_FILE: text},
    }


def batch_job(batch: BatchInference) -> Manifest:
    spec = batch.spec
    name = batch.metadata.name
    command = [
        "python",
        "-m",
        BATCH_MODULE,
        f"{CONFIG_DIR}/{JOB_FILE}",
        "--worker-index",
        "$(JOB_COMPLETION_INDEX)",
        "--workers",
        str(spec.workers),
    ]
    claim, _ = _model_claim(batch)
    output = (
        _claim_volume("output", spec.output.claim_name, read_only=False)
        if spec.output.claim_name is not None
        else {"name": "output", "emptyDir": {}}
    )
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
        {"name": "output", "mountPath": OUTPUT_DIR},
        {"name": "model", "mountPath": MODEL_DIR, "readOnly": True},
    ]
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": name}},
        _claim_volume("input", _input_claim(batch), read_only=True),
        output,
        _claim_volume("model", claim, read_only=True),
    ]
    mounts.append({"name": "tmp", "mountPath": "/tmp"})  # noqa: S108 - the container's own
    volumes.append({"name": "tmp", "emptyDir": {}})
    # Set here too (the Job controller adds it as well) so $(JOB_COMPLETION_INDEX) in the
    # arguments always expands: Kubernetes expands only variables the container declares.
    env = [_index_env("JOB_COMPLETION_INDEX")]
    container = _container(
        "worker",
        batch.image,
        spec.kubernetes.image_pull_policy,
        command,
        env,
        spec.resources,
        [],
        mounts,
    )
    pod = _pod_spec(batch, container, volumes)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _job_metadata(batch, BATCH),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
            # Each worker's shards are retried on their own: one bad index does not use up
            # the retries of the others (restartPolicy Never is required for this; beta and
            # on by default from 1.29, GA in 1.33).
            "backoffLimitPerIndex": spec.backoff_limit,
            "podFailurePolicy": _disruptions_do_not_count(),
            "template": {"metadata": {"labels": _labels(batch, BATCH)}, "spec": pod},
        },
    }


# --- shared pieces ---------------------------------------------------------------------------
def _check_names(document: JobDocument) -> None:
    name = document.metadata.name
    what = f"{document.kind} '{name}'"
    for key, value in sorted(document.metadata.labels.items()):
        problem = label_problem(key, value)
        if problem is not None:
            raise RenderError(f"{what}: metadata.labels: {problem}")
    if isinstance(document, TrainingJob) and not is_dns_1035_label(name):
        raise RenderError(
            f"{what}: the name must start with a letter on a cluster (it names the headless "
            "Service its workers find each other through)"
        )
    # Pod hostnames are <job>-<index>: metadata.name has at most 53 characters and workers
    # at most 64, so they stay within a DNS label's 63.


def _labels(document: JobDocument, component: str) -> dict[str, str]:
    return standard_labels(document.metadata.name, component, dict(document.metadata.labels))


def _job_metadata(document: JobDocument, component: str) -> Manifest:
    labels = _labels(document, component)
    if document.spec.queue is not None:
        labels = dict(sorted({**labels, KUEUE_QUEUE_LABEL: document.spec.queue}.items()))
    return metadata(
        document.metadata.name,
        document.namespace,
        labels,
        dict(document.metadata.annotations),
    )


def _disruptions_do_not_count() -> Manifest:
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }
        ]
    }


def _index_env(name: str) -> Manifest:
    return {
        "name": name,
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
    }


def _user_env(env: dict[str, str]) -> list[Manifest]:
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def _output_env(job: TrainingJob) -> list[Manifest]:
    return [
        {"name": "MLKUBE_OUTPUT_DIR", "value": OUTPUT_DIR},
        {"name": "MLKUBE_JOB_NAME", "value": job.metadata.name},
    ]


def _run_command(job: TrainingJob) -> list[str]:
    run = job.spec.run
    entry = ["-m", run.module] if run.module is not None else [run.script or ""]
    return ["python", *entry, *run.args]


def _training_mounts() -> list[Manifest]:
    return [
        {"name": "output", "mountPath": OUTPUT_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own /tmp
    ]


def _training_volumes(job: TrainingJob) -> list[Manifest]:
    claim = job.spec.output.claim_name
    output = (
        _claim_volume("output", claim, read_only=False)
        if claim is not None
        else {"name": "output", "emptyDir": {}}
    )
    return [output, {"name": "tmp", "emptyDir": {}}]


def _claim_volume(name: str, claim: str, *, read_only: bool) -> Manifest:
    source: Manifest = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": name, "persistentVolumeClaim": source}


def _model_claim(batch: BatchInference) -> tuple[str, str]:
    """(claim, path in it) of the ``pvc://claim/path`` model; RenderError for any other URI
    (the capability table's row ``spec.model`` says so)."""
    uri = batch.spec.model.uri
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    if not uri.startswith("pvc://") or not claim:
        raise RenderError(
            f"BatchInference '{batch.metadata.name}': model.uri '{uri}' cannot reach the "
            "pods; on a cluster a batch job mounts its model from a claim: pvc://CLAIM/PATH"
        )
    return claim, path


def _input_claim(batch: BatchInference) -> str:
    claim = batch.spec.input.claim_name
    if claim is None:
        raise RenderError(
            f"BatchInference '{batch.metadata.name}': set input.claimName: on a cluster the "
            "pods read the input from that PersistentVolumeClaim"
        )
    return claim


def _under(root: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(root, path.lstrip("/"))) if path else root


def _container(
    name: str,
    image: str,
    pull_policy: str,
    command: list[str],
    env: list[Manifest],
    resources: ResourcesSpec,
    ports: list[Manifest],
    mounts: list[Manifest],
) -> Manifest:
    container: Manifest = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command[:1],
        "args": command[1:],
    }
    if env:
        container["env"] = env
    if ports:
        container["ports"] = ports
    requests = {key: q.text for key, q in sorted(resources.requests.items())}
    limits = {key: q.text for key, q in sorted(resources.limits.items())}
    if requests or limits:
        container["resources"] = {
            **({"requests": requests} if requests else {}),
            **({"limits": limits} if limits else {}),
        }
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    container["volumeMounts"] = mounts
    return container


def _pod_spec(
    document: JobDocument,
    container: Manifest,
    volumes: list[Manifest],
    *,
    restart_policy: str | None = "Never",
    subdomain: str | None = None,
) -> Manifest:
    """The pod of every worker: non-root as the model server's, placed as the spec says."""
    kube = document.spec.kubernetes
    uid = kube.run_as_user
    pod: Manifest = {}
    if restart_policy is not None:
        pod["restartPolicy"] = restart_policy
    if subdomain is not None:
        pod["subdomain"] = subdomain
    if kube.service_account_name:
        pod["serviceAccountName"] = kube.service_account_name
    pod["automountServiceAccountToken"] = False
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if isinstance(document, TrainingJob):
        pod["terminationGracePeriodSeconds"] = math.ceil(document.spec.termination_grace_period)
    pod.update(_placement(document.spec.placement, document.spec.resources))
    pod["containers"] = [container]
    pod["volumes"] = volumes
    return pod


def _placement(placement: PlacementSpec, resources: ResourcesSpec) -> Manifest:
    out: dict[str, Any] = {}
    if placement.priority_class_name:
        out["priorityClassName"] = placement.priority_class_name
    if placement.node_selector:
        out["nodeSelector"] = dict(sorted(placement.node_selector.items()))
    tolerations = [
        t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in placement.tolerations
    ]
    if resources.gpus > 0 and not any(t.get("key") == GPU for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule (GKE, the GPU operator).
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    if placement.affinity:
        out["affinity"] = placement.affinity
    if placement.topology_spread_constraints:
        out["topologySpreadConstraints"] = list(placement.topology_spread_constraints)
    return out
