"""Objects around the workload: Namespace, quota, priority, storage and monitoring.

Pure: no I/O (``alert_rules`` from the observability package is pure too; it is imported
lazily and the PrometheusRule is skipped when that module is not there).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mlkube.backends.kubernetes.render.manifest import (
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_METRICS,
    MANAGED_BY,
    Manifest,
    metadata,
    standard_labels,
)
from mlkube.backends.kubernetes.render.workload import object_labels
from mlkube.spec.deployment import ModelDeployment, PriorityClass, Quota
from mlkube.spec.model import ModelFormat

ALERTS_MODULE = "mlkube.observability.alerts"
POD_INSTANCE_META_LABEL = "__meta_kubernetes_pod_label_app_kubernetes_io_instance"


def namespace_object(deployment: ModelDeployment) -> Manifest:
    """The deployment's Namespace (only with ``kubernetes.createNamespace``)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(
            deployment.namespace, None, standard_labels(deployment.name, "namespace")
        ),
    }


def resource_quota(quota: Quota) -> Manifest:
    """A ResourceQuota from a Quota document's ``hard`` caps."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(
            quota.metadata.name,
            quota.metadata.namespace,
            standard_labels(quota.metadata.name, "quota", dict(quota.metadata.labels)),
        ),
        "spec": {"hard": {key: q.text for key, q in sorted(quota.spec.hard.items())}},
    }


def limit_range(quota: Quota) -> list[Manifest]:
    """A LimitRange with container defaults, when the Quota document sets any."""
    spec = quota.spec
    if not spec.default_request and not spec.default_limit:
        return []
    item: Manifest = {"type": "Container"}
    if spec.default_limit:
        item["default"] = {k: q.text for k, q in sorted(spec.default_limit.items())}
    if spec.default_request:
        item["defaultRequest"] = {k: q.text for k, q in sorted(spec.default_request.items())}
    return [
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": metadata(
                quota.metadata.name,
                quota.metadata.namespace,
                standard_labels(quota.metadata.name, "quota", dict(quota.metadata.labels)),
            ),
            "spec": {"limits": [item]},
        }
    ]


def priority_class(document: PriorityClass) -> Manifest:
    """A cluster-scoped ``scheduling.k8s.io/v1`` PriorityClass."""
    out: Manifest = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": metadata(
            document.metadata.name,
            None,
            standard_labels(
                document.metadata.name, "priority-class", dict(document.metadata.labels)
            ),
        ),
        "value": document.spec.value,
        "globalDefault": document.spec.global_default,
        "preemptionPolicy": document.spec.preemption_policy,
    }
    if document.spec.description:
        out["description"] = document.spec.description
    return out


def storage_objects(deployment: ModelDeployment) -> list[Manifest]:
    """The PersistentVolume (static, e.g. hostPath) and the claim the model lives on."""
    storage = deployment.spec.storage
    if storage is None or storage.pvc is None or not storage.pvc.create:
        return []
    pvc = storage.pvc
    pv = storage.persistent_volume
    objects: list[Manifest] = []
    claim_spec: Manifest = {
        "accessModes": list(pvc.access_modes),
        "resources": {"requests": {"storage": pvc.size.text}},
    }
    if pv is not None:
        pv_name = pv.name or f"{pvc.name}-pv"
        pv_spec: Manifest = {
            "capacity": {"storage": pvc.size.text},
            "accessModes": list(pvc.access_modes),
            "persistentVolumeReclaimPolicy": pv.reclaim_policy,
            # An explicit class ("" = none) so the default StorageClass is not stamped on the
            # claim, which would then wait for dynamic provisioning instead of binding here.
            "storageClassName": pvc.storage_class_name or "",
            "hostPath": {"path": pv.host_path},
        }
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": metadata(pv_name, None, object_labels(deployment, "storage")),
                "spec": pv_spec,
            }
        )
        claim_spec["storageClassName"] = pvc.storage_class_name or ""
        claim_spec["volumeName"] = pv_name
    elif pvc.storage_class_name is not None:
        claim_spec["storageClassName"] = pvc.storage_class_name
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(
                pvc.name, deployment.namespace, object_labels(deployment, "storage")
            ),
            "spec": claim_spec,
        }
    )
    return objects


def monitoring_objects(deployment: ModelDeployment) -> list[Manifest]:
    """ServiceMonitor and PrometheusRule, when monitoring and the Prometheus Operator are on.

    None for TF Serving, which exports no mlkube metrics (the capability table says so).
    """
    monitoring = deployment.spec.monitoring
    if not monitoring.enabled or not deployment.spec.kubernetes.prometheus_operator:
        return []
    if (
        deployment.spec.model.format is ModelFormat.TENSORFLOW
        and deployment.spec.kubernetes.image is None
    ):
        return []
    objects = [service_monitor(deployment)]
    rule = prometheus_rule(deployment)
    if rule is not None:
        objects.append(rule)
    return objects


def service_monitor(deployment: ModelDeployment) -> Manifest:
    """A ``monitoring.coreos.com/v1`` ServiceMonitor scraping ``/metrics`` on port ``http``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(
            deployment.name, deployment.namespace, object_labels(deployment, "monitoring")
        ),
        "spec": {
            "selector": {
                "matchLabels": {
                    LABEL_INSTANCE: deployment.name,
                    LABEL_MANAGED_BY: MANAGED_BY,
                    LABEL_METRICS: "true",
                }
            },
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "scheme": "http",
                    "interval": prometheus_duration(deployment.spec.monitoring.scrape_interval),
                    # Series get the label `deployment` (the instance name), which the alert
                    # rules and KEDA queries select on; Prometheus adds `namespace` itself.
                    "relabelings": [
                        {
                            "action": "replace",
                            "sourceLabels": [POD_INSTANCE_META_LABEL],
                            "targetLabel": "deployment",
                        }
                    ],
                }
            ],
        },
    }


def prometheus_rule(deployment: ModelDeployment) -> Manifest | None:
    """A PrometheusRule from ``mlkube.observability.alerts.alert_rules``, if that exists."""
    alert_rules = _alert_rules_function()
    if alert_rules is None:
        return None
    rules = alert_rules(deployment)
    if not rules:
        return None
    if all("rules" in rule for rule in rules):
        groups = list(rules)
    else:
        groups = [
            {"name": f"mlkube.{deployment.namespace}.{deployment.name}", "rules": list(rules)}
        ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(
            deployment.name, deployment.namespace, object_labels(deployment, "monitoring")
        ),
        "spec": {"groups": groups},
    }


def _alert_rules_function() -> Callable[[ModelDeployment], list[dict[str, Any]]] | None:
    try:
        module = importlib.import_module(ALERTS_MODULE)
    except ModuleNotFoundError as error:
        if error.name != ALERTS_MODULE:
            raise  # the module exists but is broken: that is a bug to see, not to hide
        return None
    function: Callable[[ModelDeployment], list[dict[str, Any]]] | None = getattr(
        module, "alert_rules", None
    )
    return function


def prometheus_duration(value_s: float) -> str:
    """A Prometheus duration (``15s``, ``1500ms``) for a number of seconds."""
    millis = max(1000, round(value_s * 1000))  # Prometheus rejects a zero interval
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"
