"""What every rendered object shares: the kinds we render, standard labels, quantities.

Pure: no I/O. ``KINDS`` is the one table of the resources mlkube creates (API version, plural,
scope, apply order); the renderer, apply/prune and ``doctor`` all read it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

Manifest = dict[str, Any]
"""A Kubernetes object as JSON-shaped data (the wire format of server-side apply)."""

MANAGED_BY = "mlkube"
FIELD_MANAGER = "mlkube"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_TRACK = "mlkube.dev/track"
LABEL_COLOR = "mlkube.dev/color"
LABEL_METRICS = "mlkube.dev/metrics"
ANNOTATION_CONFIG_HASH = "mlkube.dev/config-hash"
ANNOTATION_ROLLOUT = "mlkube.dev/rollout"
"""On a Canary's ``<name>-canary`` Deployment: the spec's ``rollout`` section as JSON, the steps
and analysis the rollout driver runs (no CRD needed)."""
ANNOTATION_ROLLOUT_STATE = "mlkube.dev/rollout-state"
"""On the same Deployment: where the driver's rollout stands, written by ``ROLLOUT_MANAGER``."""
ROLLOUT_MANAGER = "mlkube-rollout"
"""The field manager of the rollout driver's writes, so ``mlkube apply`` never clears them."""
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class KindInfo:
    """One resource type mlkube renders."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    crd: bool = False
    """Served by a CustomResourceDefinition, not by every cluster."""


KINDS: tuple[KindInfo, ...] = (
    KindInfo("v1", "Namespace", "namespaces", namespaced=False),
    KindInfo("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", namespaced=False),
    KindInfo("v1", "ResourceQuota", "resourcequotas", namespaced=True),
    KindInfo("v1", "LimitRange", "limitranges", namespaced=True),
    KindInfo("v1", "PersistentVolume", "persistentvolumes", namespaced=False),
    KindInfo("v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced=True),
    KindInfo("v1", "ServiceAccount", "serviceaccounts", namespaced=True),
    KindInfo("rbac.authorization.k8s.io/v1", "Role", "roles", namespaced=True),
    KindInfo("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", namespaced=True),
    KindInfo("v1", "ConfigMap", "configmaps", namespaced=True),
    KindInfo("apps/v1", "Deployment", "deployments", namespaced=True),
    KindInfo("v1", "Service", "services", namespaced=True),
    KindInfo("batch/v1", "Job", "jobs", namespaced=True),
    KindInfo("kubeflow.org/v1", "PyTorchJob", "pytorchjobs", namespaced=True, crd=True),
    KindInfo("tekton.dev/v1", "Pipeline", "pipelines", namespaced=True, crd=True),
    KindInfo("tekton.dev/v1", "PipelineRun", "pipelineruns", namespaced=True, crd=True),
    KindInfo("argoproj.io/v1alpha1", "Workflow", "workflows", namespaced=True, crd=True),
    KindInfo("argoproj.io/v1alpha1", "CronWorkflow", "cronworkflows", namespaced=True, crd=True),
    KindInfo("batch/v1", "CronJob", "cronjobs", namespaced=True),
    KindInfo("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", namespaced=True, crd=True),
    KindInfo("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    KindInfo("keda.sh/v1alpha1", "ScaledObject", "scaledobjects", namespaced=True, crd=True),
    KindInfo(
        "autoscaling.k8s.io/v1",
        "VerticalPodAutoscaler",
        "verticalpodautoscalers",
        namespaced=True,
        crd=True,
    ),
    KindInfo("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", namespaced=True),
    KindInfo("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", True, crd=True),
    KindInfo("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules", True, crd=True),
)
_BY_KIND = {info.kind: info for info in KINDS}


def kind_info(kind: str) -> KindInfo:
    """The table row of ``kind``; KeyError for a kind mlkube never renders."""
    return _BY_KIND[kind]


def apply_rank(kind: str) -> int:
    """Position of ``kind`` in apply order (what others use comes first)."""
    return KINDS.index(_BY_KIND[kind])


def standard_labels(
    name: str, component: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` labels of every object of instance ``name``."""
    labels = {
        LABEL_NAME: name,
        LABEL_INSTANCE: name,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: "mlkube",
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if extra:
        labels = {**extra, **labels}
    return dict(sorted(labels.items()))


def instance_selector(name: str) -> str:
    """The label selector (query syntax) matching every object of instance ``name``."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={name}"


def metadata(
    name: str,
    namespace: str | None,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An ObjectMeta; ``namespace`` None for cluster-scoped objects."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def quantity_text(value: float | Fraction) -> str:
    """A Kubernetes quantity for a number: ``8``, ``0.5`` → ``500m``, ``1e-4`` → ``1m``.

    Kubernetes quantities have millis as their finest common unit, so fractions are rounded
    up to the next milli (a target never rounds to zero).
    """
    exact = Fraction(value)
    if exact.denominator == 1:
        return str(exact.numerator)
    return f"{math.ceil(exact * 1000)}m"


def seconds(value: float) -> int:
    """Whole seconds, rounded up (Kubernetes durations in these fields are integers)."""
    return math.ceil(value)


def label_problem(key: str, value: str) -> str | None:
    """Why the API server would refuse label ``key: value``, or None when it is valid."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key '{key}' has a prefix that is not a DNS subdomain"
    if len(name) > 63 or not _LABEL_PART.match(name):
        return f"label key '{key}' is not a valid label name (63 characters: letters, digits, -_.)"
    if value and (len(value) > 63 or not _LABEL_PART.match(value)):
        return (
            f"label value '{value}' of '{key}' is not valid (63 characters: letters, digits, -_.)"
        )
    return None


def is_dns_1035_label(name: str) -> bool:
    """Service names must start with a letter (RFC 1035), unlike most other names."""
    return len(name) <= 63 and bool(_DNS_1035.match(name))
