"""Where replicas run and how they are reached: placement, service, storage.

Pure: no I/O. Shapes follow the Kubernetes objects they render to, so a user who knows
``tolerations`` or ``nodeSelector`` writes them here the same way.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mlkube.spec.base import DNS_LABEL, DNS_SUBDOMAIN, Port, SpecModel
from mlkube.spec.quantity import Quantity


class Toleration(SpecModel):
    """A Kubernetes toleration (also honoured locally: it has no effect there)."""

    key: str | None = None
    """The taint key; unset with operator Exists: every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Equal (default: key and value match) or Exists (key only)."""
    value: str | None = None
    """The taint value (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """NoSchedule, PreferNoSchedule or NoExecute; unset: every effect."""
    toleration_seconds: int | None = None
    """NoExecute only: how long the pod stays after the taint appears."""

    @model_validator(mode="after")
    def _operator_rules(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("an empty key needs operator Exists (tolerate every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds only applies to effect NoExecute")
        return self


class PlacementSpec(SpecModel):
    """Scheduling constraints and priority."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels a replica's node must have (a cluster only)."""
    tolerations: tuple[Toleration, ...] = ()
    """Taints the replicas tolerate, as on a pod (a cluster only)."""
    affinity: dict[str, Any] = Field(default_factory=dict)
    """A Kubernetes Affinity object (nodeAffinity, podAffinity, podAntiAffinity), as is."""

    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    """Kubernetes TopologySpreadConstraints, as is."""

    priority_class_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """A PriorityClass by name; higher priority may preempt lower (locally too)."""


class ServiceType(enum.StrEnum):
    """How the endpoint is exposed on a cluster."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ServiceSpec(SpecModel):
    """The stable endpoint in front of the replicas (the local load balancer listens on port)."""

    type: ServiceType = ServiceType.CLUSTER_IP
    port: Port = 8501
    """The port clients connect to (locally on 127.0.0.1; the Service port on a cluster)."""
    grpc_port: Port = 8500
    """The gRPC port clients connect to when server.grpc is enabled (locally the balancer
    passes each connection to one ready replica; on a cluster the Service's `grpc` port)."""
    node_port: Annotated[int, Field(ge=30000, le=32767)] | None = None
    """Only with NodePort or LoadBalancer; the default Kubernetes range is 30000-32767."""

    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] | None = None
    """Service name; defaults to the deployment's name."""

    @model_validator(mode="after")
    def _node_port_needs_type(self) -> ServiceSpec:
        if self.node_port is not None and self.type is ServiceType.CLUSTER_IP:
            raise ValueError(f"nodePort ({self.node_port}) needs type NodePort or LoadBalancer")
        return self


AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]


class PersistentVolumeSpec(SpecModel):
    """A statically provisioned volume (the guide's hostPath PV)."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """The PersistentVolume's name; default: the claim's name."""
    host_path: str
    """The directory on the node that backs the volume (absolute path)."""
    reclaim_policy: Literal["Retain", "Delete", "Recycle"] = "Retain"
    """Retain (default), Delete or Recycle, as on a PersistentVolume."""


class PvcSpec(SpecModel):
    """A PersistentVolumeClaim holding the model files."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)]
    """The claim's name (referenced by `pvc://NAME/path` model URIs)."""
    size: Quantity = Quantity.parse("5Gi")
    access_modes: tuple[AccessMode, ...] = ("ReadWriteOnce",)
    """ReadWriteOnce (default), ReadOnlyMany or ReadWriteMany."""
    storage_class_name: str | None = None
    """The storage class; unset: the cluster's default class."""
    create: bool = True
    """False: the claim exists already; mlkube only mounts it."""


class StorageSpec(SpecModel):
    """Model storage on a cluster."""

    pvc: PvcSpec | None = None
    """A PersistentVolumeClaim holding the model."""
    persistent_volume: PersistentVolumeSpec | None = None
    """A hostPath PersistentVolume for the claim (single-node clusters, as in the guide)."""
    mount_path: str = "/models"
    """Where the claim is mounted in the pod."""

    @model_validator(mode="after")
    def _pv_needs_pvc(self) -> StorageSpec:
        if self.persistent_volume is not None and self.pvc is None:
            raise ValueError("persistentVolume needs a pvc that binds to it")
        return self
