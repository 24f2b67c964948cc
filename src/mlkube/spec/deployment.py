"""The documents a spec file may hold: ModelDeployment, Quota and PriorityClass.

Pure: no I/O. Each document is Kubernetes-shaped (apiVersion, kind, metadata, spec).
"""

from __future__ import annotations

import os
from typing import Annotated, Final, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from mlkube.spec.autoscaling import AutoscalingSpec
from mlkube.spec.base import DNS_LABEL, DNS_SUBDOMAIN, SpecModel
from mlkube.spec.model import BatchingSpec, ModelFormat, ModelSpec, Protocol, ServerSpec
from mlkube.spec.observability import LoggingSpec, MonitoringSpec
from mlkube.spec.placement import PlacementSpec, ServiceSpec, StorageSpec
from mlkube.spec.quantity import Quantity
from mlkube.spec.resources import ResourcesSpec
from mlkube.spec.rollout import RolloutSpec, RolloutStrategy

API_VERSION: Final = "mlkube.dev/v1alpha1"
DEFAULT_NAMESPACE = "default"
DEFAULT_IMAGE = "ghcr.io/mlkube/mlkube-server:0.1.0"
TF_SERVING_IMAGE = "tensorflow/serving:latest"
DEFAULT_MODEL_ALIAS = "default"
"""The name that always reaches the (first) model, as TF Serving's default model name."""
MODELS_SCHEME = "models:/"
"""A registered model version, ``models:/NAME/VERSION``; mlkube.registry resolves it."""
_GATEWAY_REF = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class Metadata(SpecModel):
    """Name, namespace and labels, as on any Kubernetes object."""

    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=53)]
    """A DNS label; at most 53 characters so derived names (name-canary-xxxxx) fit in 63."""

    namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] = DEFAULT_NAMESPACE
    """The namespace (a DNS label); `default` when unset."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels copied onto every rendered object and pod."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations copied onto the rendered Deployments and their pods."""


class KubernetesSpec(SpecModel):
    """Settings used only by the Kubernetes backend."""

    image: str | None = None
    """Container image; defaults to the mlkube server image (TF Serving for tensorflow)."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Always, IfNotPresent (default) or Never, as on a container."""
    service_account_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """The pods' service account (for pulling from private registries or reading buckets)."""
    create_namespace: bool = False
    """Also render the Namespace object (applied first)."""

    vertical_pod_autoscaler: Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate"] | None = (
        None
    )
    """Render a VerticalPodAutoscaler in this update mode (Off: recommendations only)."""

    pod_disruption_budget: bool = True
    """Render a PodDisruptionBudget (maxUnavailable 1) when more than one replica may run."""

    gateway: Annotated[str, Field(pattern=_GATEWAY_REF)] | None = None
    """A Gateway API Gateway as `name` or `namespace/name`; Canary and ABTest weights then use
    an HTTPRoute attached to it. Without it traffic is split by replica ratio."""

    active_color: Literal["blue", "green"] = "blue"
    """BlueGreen: the colour the main Service sends traffic to. Blue runs ``stableModelUri``,
    green runs ``model.uri``; flip this to switch, flip it back to roll back."""

    stable_model_uri: str | None = None
    """The revision that keeps the rest of the traffic during Canary/ABTest (and runs in blue
    for BlueGreen); defaults to ``model.uri``."""

    canary_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    """Canary: the percent of traffic the new revision gets now; defaults to the first step's
    weight. ABTest uses ``rollout.abTest.weight``."""

    model_host_path: str | None = None
    """Mount the model from this directory on the node (a hostPath volume) instead of a PVC."""

    fetch_image: str | None = None
    """Init-container image that downloads s3://, gs:// or https:// models; defaults to a
    pinned image per scheme (aws-cli, cloud-sdk, curl)."""

    run_as_user: Annotated[int, Field(ge=1)] = 1000
    """Non-root UID of the server container (runAsNonRoot is always set)."""

    prometheus_operator: bool = True
    """With monitoring on, render ServiceMonitor and PrometheusRule (Prometheus Operator CRDs)."""

    prometheus_url: Annotated[str, Field(pattern=r"^https?://")] = (
        "http://prometheus-operated.monitoring.svc:9090"
    )
    """Where KEDA's Prometheus triggers and the in-cluster rollout controller's canary analysis
    query."""

    force_conflicts: bool = False
    """Server-side apply with force: take over fields another manager owns (kubectl edit,
    another tool). Off: such conflicts fail the apply and name the other manager."""

    prune: bool = True
    """After apply, delete objects of this deployment that the new render no longer holds."""

    rollout_controller: bool = False
    """Canary: run the steps and analysis in the cluster, in a small `<name>-rollout`
    Deployment (`mlkube rollout controller`) whose Role may only read and patch this
    deployment's own objects, so a rollout does not need a laptop running
    `mlkube rollout status --watch`. Its analysis queries `prometheusUrl`."""

    @field_validator("model_host_path")
    @classmethod
    def _absolute_host_path(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith("/"):
            raise ValueError(f"modelHostPath must be an absolute path, got '{path}'")
        return path


class ModelDeploymentSpec(SpecModel):
    """What to serve, how many, with what resources, and how to watch it."""

    single_model: ModelSpec | None = Field(default=None, alias="model")
    """The model served (set this or `models`)."""
    models: tuple[ModelSpec, ...] | None = None
    """Several models served by each replica, each with its own `name`, format, batching and
    version policy (set this or `model`). The name `default` reaches the first one."""
    protocol: tuple[Protocol, ...] = (Protocol.V1, Protocol.V2)
    """The APIs served: `v1` (TF Serving REST) and/or `v2` (Open Inference Protocol)."""
    replicas: Annotated[int, Field(ge=0)] = 1
    """Replicas when autoscaling is off; the starting count when it is on."""

    resources: ResourcesSpec = ResourcesSpec()
    autoscaling: AutoscalingSpec | None = None
    """Scale the replica count with load; unset: a fixed `replicas`."""
    batching: BatchingSpec = BatchingSpec()
    server: ServerSpec = ServerSpec()
    rollout: RolloutSpec = RolloutSpec()
    placement: PlacementSpec = PlacementSpec()
    service: ServiceSpec = ServiceSpec()
    storage: StorageSpec | None = None
    """Where a cluster finds the model: a PersistentVolumeClaim (and volume)."""
    monitoring: MonitoringSpec = MonitoringSpec()
    logging: LoggingSpec = LoggingSpec()
    kubernetes: KubernetesSpec = KubernetesSpec()

    @model_validator(mode="after")
    def _one_model_field(self) -> ModelDeploymentSpec:
        if (self.single_model is None) == (self.models is None):
            raise ValueError("set exactly one of model (one model) and models (a list)")
        if self.models is not None:
            if not self.models:
                raise ValueError("models must list at least one model")
            seen: set[str] = set()
            for index, model in enumerate(self.models):
                if model.name is None:
                    raise ValueError(f"models[{index}].name: every listed model needs a name")
                if model.name in seen:
                    raise ValueError(f"models[{index}].name: '{model.name}' is listed twice")
                if model.name == DEFAULT_MODEL_ALIAS and index > 0:
                    raise ValueError(
                        f"models[{index}].name: '{DEFAULT_MODEL_ALIAS}' always names the first "
                        "model; pick another name"
                    )
                seen.add(model.name)
        return self

    @property
    def model(self) -> ModelSpec:
        """The model (the first of `models`): what code serving one model looks at."""
        if self.single_model is not None:
            return self.single_model
        if not self.models:  # pragma: no cover - the validator holds exactly one of the two
            raise ValueError("a deployment spec without a model")
        return self.models[0]

    @property
    def all_models(self) -> tuple[ModelSpec, ...]:
        """Every model served, the first being `model`."""
        return self.models if self.models is not None else (self.model,)

    @model_validator(mode="after")
    def _cross_section(self) -> ModelDeploymentSpec:
        if not self.protocol:
            raise ValueError("protocol must list at least one of v1, v2")
        if len(set(self.protocol)) != len(self.protocol):
            raise ValueError(f"protocol lists a protocol twice: {list(self.protocol)}")
        if (
            self.rollout.strategy is RolloutStrategy.BLUE_GREEN
            and self.autoscaling is not None
            and self.autoscaling.min_replicas == 0
        ):
            raise ValueError("BlueGreen needs at least one replica per colour; minReplicas is 0")
        if self.kubernetes.rollout_controller:
            if self.rollout.strategy is not RolloutStrategy.CANARY:
                raise ValueError(
                    "kubernetes.rolloutController runs a Canary's steps; the strategy is "
                    f"{self.rollout.strategy}"
                )
            if self.kubernetes.canary_weight is not None:
                raise ValueError(
                    "kubernetes.rolloutController moves the canary's weight itself; remove "
                    "kubernetes.canaryWeight (or the controller, to keep the weight manual)"
                )
        return self

    @property
    def initial_replicas(self) -> int:
        """Replicas to start with: ``replicas`` clamped into the autoscaling bounds."""
        if self.autoscaling is None:
            return self.replicas
        bounds = self.autoscaling
        return max(bounds.min_replicas, min(bounds.max_replicas, self.replicas))


class ModelDeployment(SpecModel):
    """A model endpoint: the top-level document of a spec file."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    """Always `ModelDeployment`."""
    metadata: Metadata
    spec: ModelDeploymentSpec
    _source_file: str = PrivateAttr(default="<string>")
    _source_dir: str = PrivateAttr(default=".")
    """The directory of the spec file; relative model paths are resolved against it."""

    @property
    def source_dir(self) -> str:
        return self._source_dir

    def model_path(self, model: ModelSpec | None = None) -> str:
        """The local path of ``model`` (default: the first), resolved against the spec file's
        directory.

        A registry URI (``models:/NAME/VERSION``) is returned as it is: it names no path
        until ``mlkube.registry.resolve_model`` looks it up."""
        uri = (model or self.spec.model).uri
        if uri.startswith(MODELS_SCHEME):
            return uri
        if uri.startswith("file://"):
            uri = uri[len("file://") :]
        return os.path.normpath(os.path.join(self._source_dir, os.path.expanduser(uri)))

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def model_name(self) -> str:
        """The name the (first) model is served under."""
        return self.served_name(self.spec.model)

    def served_name(self, model: ModelSpec) -> str:
        """The name ``model`` is served under: its own, or the deployment's."""
        return model.name or self.metadata.name

    @property
    def image(self) -> str:
        if self.spec.kubernetes.image:
            return self.spec.kubernetes.image
        if self.spec.model.format is ModelFormat.TENSORFLOW:
            return TF_SERVING_IMAGE
        return DEFAULT_IMAGE


class QuotaSpec(SpecModel):
    """Caps on the total of a namespace, as a ResourceQuota's ``hard``."""

    hard: dict[str, Quantity]
    """E.g. {requests.cpu: "4", requests.memory: 8Gi, limits.cpu: "8", pods: "10",
    requests.nvidia.com/gpu: "2"}."""

    default_request: dict[str, Quantity] = Field(default_factory=dict)
    """Rendered as a LimitRange: requests for containers that set none."""

    default_limit: dict[str, Quantity] = Field(default_factory=dict)
    """Rendered as a LimitRange: limits for containers that set none."""

    @model_validator(mode="after")
    def _known_keys(self) -> QuotaSpec:
        for key in self.hard:
            if key not in {"pods", "cpu", "memory"} and not key.startswith(
                ("requests.", "limits.")
            ):
                raise ValueError(
                    f"unknown quota key '{key}' (expected pods, requests.<resource> "
                    "or limits.<resource>)"
                )
        return self


class Quota(SpecModel):
    """A namespace's resource quota, shared by every deployment in it."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["Quota"] = "Quota"
    """Always `Quota`."""
    metadata: Metadata
    spec: QuotaSpec
    _source_file: str = PrivateAttr(default="<string>")


class PriorityClassSpec(SpecModel):
    """A scheduling priority, as a Kubernetes PriorityClass."""

    value: Annotated[int, Field(ge=-2147483648, le=1000000000)]
    """Higher values are admitted first and may preempt lower ones."""
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = "PreemptLowerPriority"
    """PreemptLowerPriority (default) or Never."""
    description: str = ""
    """Free text for people."""
    global_default: bool = False
    """Used by deployments that name no priorityClassName."""


class PriorityClass(SpecModel):
    """A named priority that deployments refer to with placement.priorityClassName."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["PriorityClass"] = "PriorityClass"
    """Always `PriorityClass`."""
    metadata: Metadata
    spec: PriorityClassSpec
    _source_file: str = PrivateAttr(default="<string>")


KINDS = (
    "ModelDeployment",
    "Quota",
    "PriorityClass",
    "TrainingJob",
    "BatchInference",
    "Pipeline",
)
