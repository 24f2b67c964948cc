"""The capability table: for every spec field and each backend, what the backend does with it.

Pure: no I/O. A field is ``honoured`` (it means exactly what its docs say), ``approximated``
(the backend does something close; the row says how), ``ignored`` (the backend cannot act on
it; the row says why) or ``unsupported`` (the backend refuses the spec with an error). Every
row that is not honoured for a given spec becomes a note; ``mlkube validate --target``,
``up``, ``apply`` and ``render`` print those notes and nothing else of the kind, so no field is
ever silently ignored. ``docs/capabilities.md`` is generated from ``CAPABILITIES`` (a test
fails when it drifts), and a test checks that every field of the spec schema is covered by a
row of its own or of a section above it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mlkube.desired.scaling import HPA_DOWNSCALE_WINDOW_S, HPA_TOLERANCE, only_resource_metrics
from mlkube.desired.traffic import current_split, header_route
from mlkube.spec.autoscaling import AutoscalerEngine, AutoscalingSpec, LatencyMetric, RpsMetric
from mlkube.spec.base import SpecModel
from mlkube.spec.claims import claim_host_path
from mlkube.spec.deployment import (
    MODELS_SCHEME,
    KubernetesSpec,
    ModelDeployment,
)
from mlkube.spec.job import BatchInference, JobKubernetesSpec, TrainingJob
from mlkube.spec.loading import SpecDocument
from mlkube.spec.model import ModelFormat
from mlkube.spec.placement import ServiceType
from mlkube.spec.rollout import RolloutStrategy

REMOTE_SCHEMES = ("s3://", "gs://", "https://", "http://", "pvc://")
FETCHED_SCHEMES = ("s3://", "gs://", "https://", "http://")
"""Downloaded before loading, locally by mlkube.storage, on a cluster by an init container."""

Document = SpecDocument


class BackendKind(enum.StrEnum):
    """Which backend runs a spec (the CLI's `--target`)."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"


class Support(enum.StrEnum):
    """How far a backend honours a field."""

    HONOURED = "honoured"
    APPROXIMATED = "approximated"
    IGNORED = "ignored"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A backend's support for a field, with how (approximated) or why (ignored, unsupported)."""

    support: Support
    reason: str = ""

    def text(self) -> str:
        return f"{self.support} ({self.reason})" if self.reason else str(self.support)


HONOURED = Verdict(Support.HONOURED)


def approximated(how: str) -> Verdict:
    return Verdict(Support.APPROXIMATED, how)


def ignored(why: str) -> Verdict:
    return Verdict(Support.IGNORED, why)


def unsupported(why: str) -> Verdict:
    return Verdict(Support.UNSUPPORTED, why)


def _always(_: ModelDeployment) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Capability:
    """One row: a field (YAML spelling), when the row applies, and each backend's verdict."""

    field: str
    local: Verdict
    kubernetes: Verdict
    when: str = ""
    """The condition in words, for the docs page ("" means whenever the field is used)."""
    applies: Callable[[Any], bool] = _always
    """When the row applies to a document (of ``kind``); for Quota and PriorityClass rows,
    which leave it ``_always``: whenever the document sets the field."""
    kind: str = "ModelDeployment"
    detail: Callable[[Any], str] | None = None
    """What the row means for this spec (a number), appended to the note."""

    def verdict(self, target: BackendKind) -> Verdict:
        return self.local if target is BackendKind.LOCAL else self.kubernetes


@dataclass(frozen=True, slots=True)
class Note:
    """A row that is not honoured for one document on one target."""

    document: str
    field: str
    target: BackendKind
    verdict: Verdict
    detail: str = ""

    @property
    def is_error(self) -> bool:
        return self.verdict.support is Support.UNSUPPORTED

    def text(self) -> str:
        text = f"{self.document}: {self.field} is {self.verdict.support} on {self.target}"
        if self.verdict.reason:
            text += f": {self.verdict.reason}"
        if self.detail:
            text += f" ({self.detail})"
        return text


# --- conditions -----------------------------------------------------------------------------
def _scaling(doc: ModelDeployment) -> AutoscalingSpec | None:
    return doc.spec.autoscaling


def _autoscaled(test: Callable[[AutoscalingSpec], bool]) -> Callable[[ModelDeployment], bool]:
    def applies(doc: ModelDeployment) -> bool:
        scaling = _scaling(doc)
        return scaling is not None and test(scaling)

    return applies


def _strategy(*strategies: RolloutStrategy) -> Callable[[ModelDeployment], bool]:
    return lambda doc: doc.spec.rollout.strategy in strategies


def _no_gateway_split(doc: ModelDeployment) -> bool:
    strategy = doc.spec.rollout.strategy
    split = strategy in (RolloutStrategy.CANARY, RolloutStrategy.AB_TEST)
    return split and doc.spec.kubernetes.gateway is None and header_route(doc.spec.rollout) is None


def _header_without_gateway(doc: ModelDeployment) -> bool:
    return header_route(doc.spec.rollout) is not None and doc.spec.kubernetes.gateway is None


def _replica_share(doc: ModelDeployment) -> str:
    n = doc.spec.initial_replicas
    now = current_split(doc, n)  # the step the renderer runs
    return (
        f"at {n} replicas: {now.stable_replicas} stable + {now.canary_replicas} new = "
        f"{now.replica_share:.0f}% to the new revision instead of {now.weight}%"
    )


def _predictive(scaling: AutoscalingSpec) -> bool:
    return scaling.predictive is not None and scaling.predictive.enabled


def _standby(doc: ModelDeployment) -> bool:
    scaling = _scaling(doc)
    return scaling is not None and scaling.standby > 0


def _forecast_trigger(scaling: AutoscalingSpec) -> bool:
    """KEDA renders the forecast: predictive on, engine keda, an rps target to size by."""
    has_rps = any(isinstance(m, RpsMetric) for m in scaling.metrics)
    return _predictive(scaling) and scaling.engine is AutoscalerEngine.KEDA and has_rps


def _request_metrics(scaling: AutoscalingSpec) -> bool:
    return not only_resource_metrics(scaling)


def _kubernetes_set(doc: ModelDeployment) -> bool:
    return doc.spec.kubernetes != KubernetesSpec()


def _registry_uri(doc: ModelDeployment) -> bool:
    return any(m.uri.startswith(MODELS_SCHEME) for m in doc.spec.all_models)


def _remote_uri(doc: ModelDeployment) -> bool:
    return any(m.uri.startswith(REMOTE_SCHEMES) for m in doc.spec.all_models)


def _fetched_uri(doc: ModelDeployment) -> bool:
    return any(m.uri.startswith(FETCHED_SCHEMES) for m in doc.spec.all_models)


def _unbound_claim(doc: ModelDeployment) -> bool:
    return any(
        m.uri.startswith("pvc://") and claim_host_path(doc, m.uri) is None
        for m in doc.spec.all_models
    )


def _tensorflow(doc: ModelDeployment) -> bool:
    return any(m.format is ModelFormat.TENSORFLOW for m in doc.spec.all_models)


def _local_model_path(doc: ModelDeployment) -> bool:
    return (
        any(not m.uri.startswith((*REMOTE_SCHEMES, MODELS_SCHEME)) for m in doc.spec.all_models)
        and doc.spec.storage is None
        and doc.spec.kubernetes.model_host_path is None
    )


def _tf_serving(doc: ModelDeployment) -> bool:
    return doc.spec.model.format is ModelFormat.TENSORFLOW and doc.spec.kubernetes.image is None


# formats whose runtime never predicts on a GPU (see mlkube.runtimes.device)
_CPU_ONLY_FORMATS = frozenset({ModelFormat.LIGHTGBM, ModelFormat.SKLEARN})


def _gpu_unused(doc: ModelDeployment) -> bool:
    return doc.spec.resources.gpus > 0 and all(
        m.format in _CPU_ONLY_FORMATS for m in doc.spec.all_models
    )


def _several_with_tensorflow(doc: ModelDeployment) -> bool:
    return doc.spec.models is not None and len(doc.spec.models) > 1 and _tensorflow(doc)


def _vpa_fights_hpa(doc: ModelDeployment) -> bool:
    mode = doc.spec.kubernetes.vertical_pod_autoscaler
    scaling = doc.spec.autoscaling
    resource = scaling is not None and any(m.type in ("cpu", "memory") for m in scaling.metrics)
    return mode not in (None, "Off") and resource


ONE_MACHINE = "one machine: replicas are processes on this host"
K8S_ONLY = "settings of the Kubernetes backend only"
NO_PANIC = "HPA and KEDA have no panic mode; scale-up has no stabilization window instead"
CLUSTER_FLAG = "a controller-manager flag on a cluster, the same for every HPA"


# --- TrainingJob and BatchInference ---------------------------------------------------------
GANG_ON_A_JOB = (
    "an Indexed Job recreates a failed worker's pod alone (the others keep running and "
    "usually fail on the broken connection) and backoffLimit counts failed pods, not group "
    "restarts; a PyTorchJob restarts the failed worker's container (restartPolicy "
    "OnFailure) within runPolicy.backoffLimit; a pod preempted or evicted is not counted"
)
QUEUE_ON_A_CLUSTER = (
    "the label kueue.x-k8s.io/queue-name: Kueue admits the job when its ClusterQueue has "
    "quota for every worker; without Kueue nothing queues: pods are scheduled by "
    "priorityClassName and refused by a ResourceQuota when over it"
)


def _job_output_without_claim(doc: Any) -> bool:
    return isinstance(doc, TrainingJob) and doc.spec.output.claim_name is None


def _batch_output_without_claim(doc: Any) -> bool:
    return isinstance(doc, BatchInference) and doc.spec.output.claim_name is None


def _batch_input_without_claim(doc: Any) -> bool:
    return isinstance(doc, BatchInference) and doc.spec.input.claim_name is None


def _batch_model_off_claim(doc: Any) -> bool:
    return isinstance(doc, BatchInference) and not doc.spec.model.uri.startswith("pvc://")


def _job_placement_set(doc: Any) -> bool:
    placement = doc.spec.placement
    return bool(
        placement.node_selector
        or placement.tolerations
        or placement.affinity
        or placement.topology_spread_constraints
    )


def _job_kubernetes_set(doc: Any) -> bool:
    return bool(doc.spec.kubernetes != JobKubernetesSpec())


def _job_rows(kind: str) -> tuple[Capability, ...]:
    """Rows both job kinds share."""
    return (
        Capability("metadata", HONOURED, HONOURED, kind=kind),
        Capability("spec.workers", HONOURED, HONOURED, kind=kind),
        Capability("spec.resources", HONOURED, HONOURED, kind=kind),
        Capability(
            "spec.placement",
            ignored(ONE_MACHINE),
            HONOURED,
            "nodeSelector, tolerations, affinity or topologySpreadConstraints set",
            _job_placement_set,
            kind=kind,
        ),
        Capability("spec.placement.priorityClassName", HONOURED, HONOURED, kind=kind),
        Capability(
            "spec.queue",
            HONOURED,
            approximated(QUEUE_ON_A_CLUSTER),
            "set",
            lambda d: d.spec.queue is not None,
            kind=kind,
        ),
        Capability(
            "spec.kubernetes",
            ignored(K8S_ONLY),
            HONOURED,
            "set",
            _job_kubernetes_set,
            kind=kind,
        ),
    )


JOB_ROWS: tuple[Capability, ...] = (
    *_job_rows("TrainingJob"),
    Capability(
        "spec.run",
        HONOURED,
        HONOURED,
        kind="TrainingJob",
    ),
    Capability(
        "spec.run.image",
        ignored("the job runs in the Python that runs mlkube"),
        HONOURED,
        "set",
        lambda d: d.spec.run.image is not None,
        kind="TrainingJob",
    ),
    Capability("spec.env", HONOURED, HONOURED, kind="TrainingJob"),
    Capability(
        "spec.backoffLimit",
        HONOURED,
        approximated(GANG_ON_A_JOB),
        "more than one worker",
        lambda d: d.spec.workers > 1,
        kind="TrainingJob",
    ),
    Capability("spec.activeDeadlineSeconds", HONOURED, HONOURED, kind="TrainingJob"),
    Capability("spec.terminationGracePeriod", HONOURED, HONOURED, kind="TrainingJob"),
    Capability(
        "spec.output",
        HONOURED,
        approximated(
            "an emptyDir per pod: the output is gone when the pod is; set output.claimName "
            "to keep it"
        ),
        "without output.claimName",
        _job_output_without_claim,
        kind="TrainingJob",
    ),
    Capability(
        "spec.output.claimName",
        ignored(K8S_ONLY),
        HONOURED,
        "set",
        lambda d: d.spec.output.claim_name is not None,
        kind="TrainingJob",
    ),
    Capability(
        "spec.output.model",
        HONOURED,
        ignored(
            "no model registry on a cluster: the file stays on the output volume (put it on "
            "output.claimName and serve it as pvc://CLAIM/FILE)"
        ),
        "set",
        lambda d: d.spec.output.model is not None,
        kind="TrainingJob",
    ),
    Capability(
        "spec.metrics",
        HONOURED,
        approximated(
            "worker 0 writes the file on the output volume; nothing on the cluster reads it"
        ),
        kind="TrainingJob",
        applies=lambda d: True,
    ),
    *_job_rows("BatchInference"),
    Capability(
        "spec.model",
        HONOURED,
        unsupported(
            "a batch pod mounts its model from a claim: use model.uri pvc://CLAIM/PATH (no "
            "registry or download step on a cluster)"
        ),
        "model.uri not pvc://",
        _batch_model_off_claim,
        kind="BatchInference",
    ),
    Capability(
        "spec.input",
        HONOURED,
        unsupported("the pods read the input from a claim: set input.claimName"),
        "without input.claimName",
        _batch_input_without_claim,
        kind="BatchInference",
    ),
    Capability(
        "spec.input.claimName",
        ignored(K8S_ONLY),
        HONOURED,
        "set",
        lambda d: d.spec.input.claim_name is not None,
        kind="BatchInference",
    ),
    Capability(
        "spec.output",
        HONOURED,
        approximated(
            "an emptyDir per pod: the shards are gone when the pod is; set output.claimName"
        ),
        "without output.claimName",
        _batch_output_without_claim,
        kind="BatchInference",
    ),
    Capability(
        "spec.output.claimName",
        ignored(K8S_ONLY),
        HONOURED,
        "set",
        lambda d: d.spec.output.claim_name is not None,
        kind="BatchInference",
    ),
    Capability("spec.shardRows", HONOURED, HONOURED, kind="BatchInference"),
    Capability("spec.batchSize", HONOURED, HONOURED, kind="BatchInference"),
    Capability(
        "spec.backoffLimit",
        HONOURED,
        approximated(
            "retries per worker (backoffLimitPerIndex): a worker that fails starts its "
            "unfinished shards again; finished shard files on output.claimName are kept"
        ),
        kind="BatchInference",
        applies=lambda d: True,
    ),
)


def _pipeline_steps(doc: Any) -> list[Any]:
    return list(doc.spec.steps)


def _pipeline_model_without_claim(doc: Any) -> bool:
    return any(
        s.job is not None and s.job.output.model is not None and s.job.output.claim_name is None
        for s in _pipeline_steps(doc)
    )


def _pipeline_model_on_claim(doc: Any) -> bool:
    return any(
        s.job is not None and s.job.output.model is not None and s.job.output.claim_name
        for s in _pipeline_steps(doc)
    )


def _pipeline_deployed_gate(doc: Any) -> bool:
    return any(g.value == "deployed" for s in _pipeline_steps(doc) for g in s.gates)


PIPELINE_ROWS: tuple[Capability, ...] = (
    Capability("metadata", HONOURED, HONOURED, kind="Pipeline"),
    Capability("spec.parameters", HONOURED, HONOURED, kind="Pipeline"),
    Capability("spec.timeout", HONOURED, HONOURED, kind="Pipeline"),
    Capability("spec.steps", HONOURED, HONOURED, kind="Pipeline"),
    Capability(
        "spec.steps.job",
        HONOURED,
        approximated(
            "a step is one pod (a Tekton task or an Argo template): the job's container, then "
            "one that collects its outputs; workers must be 1, and the step's retries and "
            "timeout replace the job's backoffLimit and queue"
        ),
        "a step runs a job",
        lambda d: any(s.job is not None or s.job_ref is not None for s in _pipeline_steps(d)),
        kind="Pipeline",
    ),
    Capability(
        "spec.steps.job.workers",
        HONOURED,
        unsupported(
            "a step is one pod: set workers: 1, or run a distributed job as a TrainingJob "
            "of its own"
        ),
        "more than 1",
        lambda d: any(s.job is not None and s.job.workers > 1 for s in _pipeline_steps(d)),
        kind="Pipeline",
    ),
    Capability(
        "spec.steps.job.output.model",
        HONOURED,
        unsupported(
            "no model registry on a cluster: a registered model is a file on a claim; set "
            "output.claimName"
        ),
        "without output.claimName",
        _pipeline_model_without_claim,
        kind="Pipeline",
    ),
    Capability(
        "spec.steps.job.output.model",
        HONOURED,
        approximated(
            "no model registry on a cluster: the model is the file the run wrote under "
            "<run>/<step> on the claim, modelUri pvc://CLAIM/<run>/<step>/FILE and "
            "modelVersion the run's name"
        ),
        "on output.claimName",
        _pipeline_model_on_claim,
        kind="Pipeline",
    ),
    Capability("spec.steps.gates", HONOURED, HONOURED, kind="Pipeline"),
    Capability(
        "spec.steps.gates.value",
        HONOURED,
        ignored(
            "deployed: no model registry on a cluster, so the deployed version has no "
            "recorded metric and the gate passes (as for a version without it)"
        ),
        "deployed",
        _pipeline_deployed_gate,
        kind="Pipeline",
    ),
    Capability(
        "spec.steps.deploy",
        HONOURED,
        approximated(
            "the step runs mlkube apply of the deployment's spec (pass its file with the "
            "pipeline's) in the cluster, as a ServiceAccount whose Role allows only that "
            "deployment's kinds; applying that spec again later serves its own model"
        ),
        "set",
        lambda d: any(s.deploy is not None for s in _pipeline_steps(d)),
        kind="Pipeline",
    ),
    Capability(
        "spec.steps.cache",
        HONOURED,
        approximated(
            "a run is named after a hash of the pipeline: applying it unchanged starts no "
            "new run; steps are not cached one by one"
        ),
        "a step that runs a job",
        lambda d: any(s.cache and s.deploy is None for s in _pipeline_steps(d)),
        kind="Pipeline",
    ),
    Capability(
        "spec.schedule",
        HONOURED,
        HONOURED,
        kind="Pipeline",
    ),
    Capability(
        "spec.watch",
        HONOURED,
        ignored(
            "the paths are on this machine, which the cluster cannot see: apply again, or "
            "set schedule, to start a run"
        ),
        "set",
        lambda d: bool(d.spec.watch),
        kind="Pipeline",
    ),
)


CAPABILITIES: tuple[Capability, ...] = (
    # metadata --------------------------------------------------------------------------------
    Capability("metadata.name", HONOURED, HONOURED),
    Capability("metadata.namespace", HONOURED, HONOURED),
    Capability(
        "metadata.labels",
        ignored("no Kubernetes objects locally; labels go on the rendered objects and pods"),
        HONOURED,
        "set",
        lambda d: bool(d.metadata.labels),
    ),
    Capability(
        "metadata.annotations",
        ignored("no Kubernetes objects locally"),
        HONOURED,
        "set",
        lambda d: bool(d.metadata.annotations),
    ),
    # model -----------------------------------------------------------------------------------
    Capability("spec.model", HONOURED, HONOURED),
    Capability(
        "spec.model.uri",
        HONOURED,
        HONOURED,
        "s3://, gs://, https:// or http:// (locally: downloaded by the replicas into the "
        "model cache of the state directory, once per object version; s3:// needs the s3 "
        "extra)",
        _fetched_uri,
    ),
    Capability(
        "spec.model.uri",
        HONOURED,
        HONOURED,
        "pvc://CLAIM/PATH with storage.persistentVolume.hostPath for that claim (locally: "
        "read from the hostPath)",
        lambda d: any(claim_host_path(d, m.uri) is not None for m in d.spec.all_models),
    ),
    Capability(
        "spec.model.uri",
        unsupported(
            "a claim is readable here only through the spec's own hostPath volume: set "
            "storage.pvc and storage.persistentVolume.hostPath, or use a path"
        ),
        HONOURED,
        "pvc:// without storage.persistentVolume.hostPath for its claim",
        _unbound_claim,
    ),
    Capability(
        "spec.model.uri",
        HONOURED,
        unsupported(
            "a cluster cannot read a path on this machine: use pvc://, s3://, gs://, https://, "
            "storage.pvc or kubernetes.modelHostPath"
        ),
        "a local path with no storage and no kubernetes.modelHostPath",
        _local_model_path,
    ),
    Capability(
        "spec.model.uri",
        HONOURED,
        unsupported(
            "the model registry is on this machine and a cluster cannot read it: copy the "
            "version's file (`mlkube models show NAME`) to a bucket or claim and use s3://, "
            "gs://, https:// or pvc://"
        ),
        "models:/NAME/VERSION or models:/NAME/latest",
        _registry_uri,
    ),
    Capability(
        "spec.model.format",
        HONOURED,
        HONOURED,
        "tensorflow (locally: a SavedModel served in process, with the tensorflow extra; on a "
        "cluster: the TF Serving image)",
        _tensorflow,
    ),
    Capability("spec.models", HONOURED, HONOURED),
    Capability(
        "spec.models",
        HONOURED,
        unsupported(
            "TF Serving's image takes one model from its flags: serve a TensorFlow model in a "
            "deployment of its own"
        ),
        "more than one model, one of them tensorflow",
        _several_with_tensorflow,
    ),
    Capability("spec.protocol", HONOURED, HONOURED),
    # replicas and resources ------------------------------------------------------------------
    Capability("spec.replicas", HONOURED, HONOURED),
    Capability("spec.resources", HONOURED, HONOURED),
    Capability(
        "spec.resources.limits",
        approximated(
            "cgroup v2 cpu.max and memory.max when the controller may create cgroups, else "
            "RLIMIT_AS and CPU affinity; `mlkube status` shows which"
        ),
        HONOURED,
        "cpu or memory set",
        lambda d: bool({"cpu", "memory"} & set(d.spec.resources.limits.root)),
    ),
    Capability(
        "spec.resources.limits",
        approximated(
            "LightGBM and scikit-learn models predict on the CPU only: the GPU is held but idle"
        ),
        approximated(
            "LightGBM and scikit-learn models predict on the CPU only: the GPU is held but idle"
        ),
        "nvidia.com/gpu set, every model lightgbm or sklearn",
        _gpu_unused,
    ),
    # autoscaling -----------------------------------------------------------------------------
    Capability("spec.autoscaling", HONOURED, HONOURED),
    Capability(
        "spec.autoscaling.metrics",
        HONOURED,
        approximated(
            "request metrics reach the HPA as Pods metrics through the Prometheus adapter "
            "(mlkube_in_flight_requests, mlkube_requests_per_second, mlkube_queue_depth) and "
            "decisions come every 15 s (the HPA sync period) instead of every 2 s"
        ),
        "concurrency, rps or queueDepth with engine hpa",
        _autoscaled(lambda s: _request_metrics(s) and s.engine is AutoscalerEngine.HPA),
    ),
    Capability(
        "spec.autoscaling.metrics",
        HONOURED,
        unsupported("a latency percentile is not a per-pod metric: use engine keda"),
        "latency with engine hpa",
        _autoscaled(
            lambda s: (
                s.engine is AutoscalerEngine.HPA
                and any(isinstance(m, LatencyMetric) for m in s.metrics)
            )
        ),
    ),
    Capability(
        "spec.autoscaling.metrics",
        HONOURED,
        approximated("KEDA Prometheus triggers over a 1m rate window"),
        "request metrics with engine keda",
        _autoscaled(lambda s: _request_metrics(s) and s.engine is AutoscalerEngine.KEDA),
    ),
    Capability(
        "spec.autoscaling.metrics",
        HONOURED,
        ignored("TF Serving exports no mlkube request metrics"),
        "request metrics with format tensorflow",
        lambda d: _tf_serving(d) and _autoscaled(_request_metrics)(d),
    ),
    Capability("spec.autoscaling.minReplicas", HONOURED, HONOURED),
    Capability("spec.autoscaling.maxReplicas", HONOURED, HONOURED),
    Capability("spec.autoscaling.behavior", HONOURED, HONOURED),
    Capability(
        "spec.autoscaling.behavior.scaleUp.tolerance",
        HONOURED,
        ignored("needs Kubernetes 1.33+ with the HPAConfigurableTolerance feature gate"),
        "set",
        _autoscaled(
            lambda s: (
                s.behavior is not None
                and s.behavior.scale_up is not None
                and s.behavior.scale_up.tolerance is not None
            )
        ),
    ),
    Capability(
        "spec.autoscaling.behavior.scaleDown.tolerance",
        HONOURED,
        ignored("needs Kubernetes 1.33+ with the HPAConfigurableTolerance feature gate"),
        "set",
        _autoscaled(
            lambda s: (
                s.behavior is not None
                and s.behavior.scale_down is not None
                and s.behavior.scale_down.tolerance is not None
            )
        ),
    ),
    Capability(
        "spec.autoscaling.syncPeriod",
        HONOURED,
        ignored(f"the HPA sync period is {CLUSTER_FLAG} (15 s by default)"),
        "set, engine hpa",
        _autoscaled(lambda s: s.sync_period is not None and s.engine is AutoscalerEngine.HPA),
    ),
    Capability(
        "spec.autoscaling.tolerance",
        HONOURED,
        ignored(f"--horizontal-pod-autoscaler-tolerance is {CLUSTER_FLAG} (0.1 by default)"),
        "not 0.1",
        _autoscaled(lambda s: s.tolerance != HPA_TOLERANCE),
    ),
    Capability(
        "spec.autoscaling.downscaleStabilization",
        HONOURED,
        HONOURED,
        "not 300s: carried by behavior.scaleDown's window on both backends",
        _autoscaled(lambda s: s.downscale_stabilization != HPA_DOWNSCALE_WINDOW_S),
    ),
    Capability(
        "spec.autoscaling.cpuInitializationPeriod",
        HONOURED,
        ignored(f"{CLUSTER_FLAG} (300 s by default)"),
        "not 300s",
        _autoscaled(lambda s: s.cpu_initialization_period != 300.0),
    ),
    Capability(
        "spec.autoscaling.initialReadinessDelay",
        HONOURED,
        ignored(f"{CLUSTER_FLAG} (30 s by default)"),
        "not 30s",
        _autoscaled(lambda s: s.initial_readiness_delay != 30.0),
    ),
    Capability(
        "spec.autoscaling.stableWindow",
        HONOURED,
        approximated(
            "the scale-down stabilization window carries it; request metrics are averaged "
            "by the metrics pipeline (1m rate), not over the window"
        ),
        "request metrics",
        _autoscaled(_request_metrics),
    ),
    Capability(
        "spec.autoscaling.panicWindowPercentage",
        HONOURED,
        ignored(NO_PANIC),
        "request metrics",
        _autoscaled(_request_metrics),
    ),
    Capability(
        "spec.autoscaling.panicThresholdPercentage",
        HONOURED,
        ignored(NO_PANIC),
        "request metrics",
        _autoscaled(_request_metrics),
    ),
    Capability(
        "spec.autoscaling.maxScaleUpRate",
        HONOURED,
        ignored("rate limits on a cluster are behavior policies"),
        "not 1000, request metrics",
        _autoscaled(lambda s: _request_metrics(s) and s.max_scale_up_rate != 1000.0),
    ),
    Capability(
        "spec.autoscaling.maxScaleDownRate",
        HONOURED,
        ignored("rate limits on a cluster are behavior policies"),
        "not 2, request metrics",
        _autoscaled(lambda s: _request_metrics(s) and s.max_scale_down_rate != 2.0),
    ),
    Capability(
        "spec.autoscaling.scaleToZero",
        HONOURED,
        unsupported("the HorizontalPodAutoscaler cannot scale to zero: use engine keda"),
        "engine hpa",
        _autoscaled(lambda s: s.scale_to_zero is not None and s.engine is AutoscalerEngine.HPA),
    ),
    Capability(
        "spec.autoscaling.scaleToZero.idleAfter",
        HONOURED,
        HONOURED,
        "engine keda: KEDA's cooldownPeriod",
    ),
    Capability(
        "spec.autoscaling.scaleToZero.activationTimeout",
        HONOURED,
        ignored(
            "nothing holds requests on a cluster: at zero replicas they fail until a pod is "
            "ready, unless an activator (such as the KEDA HTTP add-on) fronts the Service"
        ),
        "scale to zero",
        _autoscaled(lambda s: s.scale_to_zero is not None),
    ),
    Capability(
        "spec.autoscaling.predictive",
        HONOURED,
        approximated(
            "KEDA Prometheus triggers: predict_linear of the request rate over trendWindow, "
            "capped at maxGrowth x the current rate; horizon auto is the pods' median "
            "spawn-to-ready from kube-state-metrics (60 s without it) plus the polling "
            "interval; the daily profile is yesterday's rate only (locally: the median of "
            "up to 7 days)"
        ),
        "enabled, engine keda with an rps metric",
        _autoscaled(_forecast_trigger),
    ),
    Capability(
        "spec.autoscaling.predictive",
        HONOURED,
        ignored(
            "the forecast is rendered only as KEDA Prometheus triggers sized by an rps "
            "target: use engine keda with an rps metric"
        ),
        "enabled, engine hpa or no rps metric",
        _autoscaled(lambda s: _predictive(s) and not _forecast_trigger(s)),
    ),
    Capability(
        "spec.autoscaling.standby",
        HONOURED,
        approximated(
            "rendered: a NAME-standby Deployment of warm pods the Service does not "
            "select; run by the in-cluster controller (NAME-rollout): each second it "
            "relabels a ready standby pod into the serving pool for a serving pod the "
            "autoscaler asked for and is not ready, and the pool's ReplicaSet starts a "
            "replacement; the pool's size is fixed (a scale-down stops serving pods, "
            "none goes back into the pool)"
        ),
        "above 0, RollingUpdate or Canary",
        lambda d: (
            _standby(d) and _strategy(RolloutStrategy.ROLLING_UPDATE, RolloutStrategy.CANARY)(d)
        ),
    ),
    Capability(
        "spec.autoscaling.standby",
        HONOURED,
        ignored("no standby Deployment is rendered for BlueGreen or ABTest"),
        "above 0, BlueGreen or ABTest",
        lambda d: _standby(d) and _strategy(RolloutStrategy.BLUE_GREEN, RolloutStrategy.AB_TEST)(d),
    ),
    Capability(
        "spec.autoscaling.engine",
        ignored("the local loop is the autoscaler; it runs the same resolved policy"),
        HONOURED,
        "keda",
        _autoscaled(lambda s: s.engine is AutoscalerEngine.KEDA),
    ),
    # the replica's server --------------------------------------------------------------------
    Capability("spec.batching", HONOURED, HONOURED),
    Capability("spec.server", HONOURED, HONOURED),
    Capability(
        "spec.server.port",
        ignored("replicas listen on free ports the controller picks; clients use service.port"),
        HONOURED,
        "not 8501",
        lambda d: d.spec.server.port != 8501,
    ),
    Capability(
        "spec.server.grpc",
        approximated(
            "the balancer passes each gRPC connection whole to one ready replica, round robin "
            "(as a Service does): canary weights, header rules and the balancer's request "
            "counts (rps autoscaling, canary analysis) see REST traffic only"
        ),
        approximated(
            "the Service balances gRPC connections, not calls (a mesh balances calls: the port "
            "has appProtocol grpc); gateway canary weights apply to REST only"
        ),
        "enabled",
        lambda d: d.spec.server.grpc.enabled,
    ),
    Capability(
        "spec.server.grpc.port",
        ignored("replicas listen on free ports the controller picks; clients use service.grpcPort"),
        HONOURED,
        "enabled, not 8500",
        lambda d: d.spec.server.grpc.enabled and d.spec.server.grpc.port != 8500,
    ),
    # rollouts --------------------------------------------------------------------------------
    Capability("spec.rollout", HONOURED, HONOURED),
    Capability(
        "spec.rollout.progressDeadline",
        HONOURED,
        approximated(
            "the Deployment reports ProgressDeadlineExceeded; the cluster does not go back to "
            "the old revision by itself"
        ),
        "set",
        lambda d: "progress_deadline" in d.spec.rollout.model_fields_set,
    ),
    Capability(
        "spec.rollout.strategy",
        HONOURED,
        approximated(
            "two Deployments, blue and green; traffic moves when you flip "
            "kubernetes.activeColor and apply, not when green is ready"
        ),
        "BlueGreen",
        _strategy(RolloutStrategy.BLUE_GREEN),
    ),
    Capability(
        "spec.rollout.steps",
        HONOURED,
        approximated(
            "the steps and pauses move while `mlkube rollout status NAME --target kubernetes "
            "--watch` runs (a client-side driver; no in-cluster controller); with "
            "kubernetes.canaryWeight set, the weight is yours: apply again to move it"
        ),
        "Canary",
        _strategy(RolloutStrategy.CANARY),
    ),
    Capability(
        "spec.rollout.steps",
        HONOURED,
        approximated(
            "without kubernetes.gateway traffic follows the replica ratio; set "
            "kubernetes.gateway for exact weights"
        ),
        "Canary or ABTest by weight, no kubernetes.gateway",
        _no_gateway_split,
        detail=_replica_share,
    ),
    Capability(
        "spec.rollout.analysis",
        HONOURED,
        approximated(
            "judged by the same driver against the cluster's Prometheus (rollout status "
            "--prometheus URL); without one, a step that waits for analysis does not move"
        ),
        "set",
        lambda d: d.spec.rollout.analysis is not None,
    ),
    Capability(
        "spec.rollout.abTest.header",
        HONOURED,
        ignored(
            "header routing needs kubernetes.gateway (an HTTPRoute); without it requests are "
            "split by replica ratio whatever their headers"
        ),
        "set, no kubernetes.gateway",
        _header_without_gateway,
    ),
    # placement, service, storage -------------------------------------------------------------
    Capability(
        "spec.placement",
        ignored(ONE_MACHINE),
        HONOURED,
        "nodeSelector, tolerations, affinity or topologySpreadConstraints set",
        lambda d: bool(
            d.spec.placement.node_selector
            or d.spec.placement.tolerations
            or d.spec.placement.affinity
            or d.spec.placement.topology_spread_constraints
        ),
    ),
    Capability("spec.placement.priorityClassName", HONOURED, HONOURED),
    Capability("spec.service", HONOURED, HONOURED),
    Capability(
        "spec.service.type",
        approximated(
            "the load balancer listens on service.port of 127.0.0.1 whatever the type; "
            "set MLKUBE_BALANCER_HOST (e.g. 0.0.0.0) to let other machines reach it"
        ),
        HONOURED,
        "NodePort or LoadBalancer",
        lambda d: d.spec.service.type is not ServiceType.CLUSTER_IP,
    ),
    Capability(
        "spec.service.nodePort",
        ignored("no node ports locally: use service.port on 127.0.0.1"),
        HONOURED,
        "set",
        lambda d: d.spec.service.node_port is not None,
    ),
    Capability(
        "spec.service.name",
        ignored("no Service names locally: use service.port on 127.0.0.1"),
        HONOURED,
        "set",
        lambda d: d.spec.service.name is not None,
    ),
    Capability(
        "spec.storage",
        ignored("the model is read from model.uri on this machine's disk"),
        HONOURED,
        "set, model.uri not a pvc:// claim bound to storage.persistentVolume.hostPath",
        lambda d: d.spec.storage is not None and claim_host_path(d) is None,
    ),
    Capability(
        "spec.storage",
        approximated(
            "no claim or volume is made: the model is read from persistentVolume.hostPath "
            "on this machine"
        ),
        HONOURED,
        "model.uri a pvc:// claim bound to storage.persistentVolume.hostPath",
        lambda d: claim_host_path(d) is not None,
    ),
    # observability ---------------------------------------------------------------------------
    Capability(
        "spec.monitoring.alerts",
        approximated("alerts are evaluated when `mlkube up --prometheus` runs a local Prometheus"),
        HONOURED,
        "set",
        lambda d: "alerts" in d.spec.monitoring.model_fields_set,
    ),
    Capability(
        "spec.monitoring",
        HONOURED,
        ignored("TF Serving exports no mlkube metrics: no ServiceMonitor or PrometheusRule"),
        "enabled, format tensorflow",
        lambda d: _tf_serving(d) and d.spec.monitoring.enabled,
    ),
    Capability(
        "spec.kubernetes.prometheusOperator",
        HONOURED,
        HONOURED,
        "renders ServiceMonitor and PrometheusRule (Prometheus Operator CRDs)",
    ),
    Capability("spec.logging", HONOURED, HONOURED),
    Capability(
        "spec.logging.files",
        HONOURED,
        ignored("pods log to stdout; the kubelet rotates container logs"),
        "not the defaults",
        lambda d: d.spec.logging.files != type(d.spec.logging.files)(),
    ),
    # Kubernetes-only settings ----------------------------------------------------------------
    Capability("spec.kubernetes", ignored(K8S_ONLY), HONOURED, "set", _kubernetes_set),
    Capability(
        "spec.kubernetes.verticalPodAutoscaler",
        ignored(K8S_ONLY),
        approximated(
            "a VPA that updates pods and an autoscaler on cpu/memory fight over one signal; "
            "use mode Off or scale on request metrics"
        ),
        "not Off, with cpu or memory autoscaling",
        _vpa_fights_hpa,
    ),
    # Quota and PriorityClass documents -------------------------------------------------------
    Capability("metadata", HONOURED, HONOURED, kind="Quota"),
    Capability("spec.hard", HONOURED, HONOURED, kind="Quota"),
    Capability(
        "spec.defaultRequest",
        ignored("every replica's requests come from its own spec"),
        HONOURED,
        "set (a LimitRange)",
        kind="Quota",
    ),
    Capability(
        "spec.defaultLimit",
        ignored("every replica's limits come from its own spec"),
        HONOURED,
        "set (a LimitRange)",
        kind="Quota",
    ),
    Capability("metadata", HONOURED, HONOURED, kind="PriorityClass"),
    Capability("spec", HONOURED, HONOURED, kind="PriorityClass"),
    *JOB_ROWS,
    *PIPELINE_ROWS,
)


def document_name(document: Document) -> str:
    """``deployment 'iris'``, ``quota 'ml/team'``: how notes name a document."""
    kind = {"ModelDeployment": "deployment"}.get(document.kind, document.kind.lower())
    return f"{kind} '{document.metadata.name}'"


def notes(documents: Iterable[Document], target: BackendKind) -> list[Note]:
    """Every row that is not honoured on ``target`` for these documents, in table order. Pure."""
    found: list[Note] = []
    for document in documents:
        for row in CAPABILITIES:
            if row.kind != document.kind:
                continue
            verdict = row.verdict(target)
            if verdict.support is Support.HONOURED:
                continue
            if isinstance(document, ModelDeployment) or row.applies is not _always:
                if not row.applies(document):
                    continue
                detail = row.detail(document) if row.detail is not None else ""
            elif not _document_uses(document, row.field):
                continue
            else:
                detail = ""
            found.append(Note(document_name(document), row.field, target, verdict, detail))
    return found


def _document_uses(document: SpecModel, field: str) -> bool:
    """Whether a Quota/PriorityClass sets the field a row names (rows there are per field)."""
    data = document.model_dump(by_alias=True, exclude_defaults=True)
    node: object = data
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return bool(node)
