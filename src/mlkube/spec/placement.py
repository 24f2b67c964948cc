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
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

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
    tolerations: tuple[Toleration, ...] = ()
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
    host_path: str
    reclaim_policy: Literal["Retain", "Delete", "Recycle"] = "Retain"


class PvcSpec(SpecModel):
    """A PersistentVolumeClaim holding the model files."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)]
    size: Quantity = Quantity.parse("5Gi")
    access_modes: tuple[AccessMode, ...] = ("ReadWriteOnce",)
    storage_class_name: str | None = None
    create: bool = True
    """False: the claim exists already; mlkube only mounts it."""


class StorageSpec(SpecModel):
    """Model storage on a cluster."""

    pvc: PvcSpec | None = None
    persistent_volume: PersistentVolumeSpec | None = None
    mount_path: str = "/models"

    @model_validator(mode="after")
    def _pv_needs_pvc(self) -> StorageSpec:
        if self.persistent_volume is not None and self.pvc is None:
            raise ValueError("persistentVolume needs a pvc that binds to it")
        return self
