"""``mlkube doctor``: is this cluster ready to serve ML models? Each check passes, warns or fails,
and says how to fix it.

The verdicts are pure functions of what the API returned (``check_*``); ``run_doctor`` is the
thin part that asks the cluster. A check that cannot ask (unreachable, forbidden) reports that
instead of crashing the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import (
    ClusterError,
    ClusterUnreachableError,
    UnauthorizedError,
)
from mlkube.backends.kubernetes.render.manifest import KINDS, KindInfo, Manifest
from mlkube.spec.resources import GPU

Verdict = Literal["pass", "warn", "fail"]
MIN_MINOR = 30
"""Rendered objects are validated against Kubernetes 1.30 and newer."""

NODE = KindInfo("v1", "Node", "nodes", namespaced=False)
STORAGE_CLASS = KindInfo("storage.k8s.io/v1", "StorageClass", "storageclasses", namespaced=False)
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
RBAC_VERBS = ("get", "list", "patch", "delete")


@dataclass(frozen=True, slots=True)
class Check:
    """One finding."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class OptionalApi:
    """A CRD-served API some features need."""

    name: str
    group_version: str
    plurals: tuple[str, ...]
    needed_for: str
    install: str


OPTIONAL_APIS = (
    OptionalApi(
        "Prometheus Operator",
        "monitoring.coreos.com/v1",
        ("servicemonitors", "prometheusrules"),
        "ServiceMonitor and PrometheusRule (monitoring)",
        "install kube-prometheus-stack (helm) or set kubernetes.prometheusOperator: false",
    ),
    OptionalApi(
        "Vertical Pod Autoscaler",
        "autoscaling.k8s.io/v1",
        ("verticalpodautoscalers",),
        "kubernetes.verticalPodAutoscaler",
        "install the VPA from kubernetes/autoscaler (vertical-pod-autoscaler/hack/vpa-up.sh)",
    ),
    OptionalApi(
        "KEDA",
        "keda.sh/v1alpha1",
        ("scaledobjects",),
        "autoscaling.engine: keda (scale to zero, latency targets)",
        "helm install keda kedacore/keda --namespace keda --create-namespace",
    ),
    OptionalApi(
        "Gateway API",
        "gateway.networking.k8s.io/v1",
        ("httproutes",),
        "kubernetes.gateway (weighted Canary / ABTest)",
        "kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/"
        "v1.2.1/standard-install.yaml, plus a Gateway controller",
    ),
    OptionalApi(
        "Kubeflow training-operator",
        "kubeflow.org/v1",
        ("pytorchjobs",),
        "TrainingJobs as PyTorchJobs (kind Auto makes an Indexed Job without it)",
        'kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/'
        'manifests/overlays/standalone?ref=v1.8.1"',
    ),
    OptionalApi(
        "Tekton Pipelines",
        "tekton.dev/v1",
        ("pipelines", "pipelineruns"),
        "Pipelines (or Argo Workflows)",
        "kubectl apply -f https://storage.googleapis.com/tekton-releases/pipeline/latest/"
        "release.yaml",
    ),
    OptionalApi(
        "Argo Workflows",
        "argoproj.io/v1alpha1",
        ("workflows", "cronworkflows"),
        "Pipelines where Tekton is not installed",
        "kubectl create namespace argo; kubectl apply -n argo -f https://github.com/argoproj/"
        "argo-workflows/releases/latest/download/install.yaml",
    ),
    OptionalApi(
        "Kueue",
        "kueue.x-k8s.io/v1beta1",
        ("localqueues", "clusterqueues", "workloads"),
        "a job's spec.queue (without Kueue jobs are not queued: pods wait for room by "
        "priority and a ResourceQuota refuses what is over it)",
        "kubectl apply --server-side -f https://github.com/kubernetes-sigs/kueue/releases/"
        "download/v0.10.1/manifests.yaml, then a ClusterQueue and a LocalQueue per queue",
    ),
)


ACCESS_DENIED = {401: "401 Unauthorized", 403: "403 Forbidden"}
"""Answers that say nothing about whether an API is served: the request was refused."""


def check_refused(name: str, path: str, status: int) -> Check | None:
    """A check that could not ask (``path`` answered 401/403) says so; it does not claim the
    API is missing. None when the answer was not a refusal. Pure."""
    if status not in ACCESS_DENIED:
        return None
    return Check(
        name,
        "warn",
        f"could not check: GET {path} answered {ACCESS_DENIED[status]}",
        "use credentials that may read API discovery (the system:discovery role)",
    )


def check_version(status: int, body: Any) -> Check:
    """The API server answers /version; warn below 1.30. Pure."""
    if status != 200 or not isinstance(body, dict):
        return Check(
            "API server",
            "fail",
            f"/version answered {status}",
            "check the kubeconfig context and your credentials",
        )
    version = str(body.get("gitVersion", "?"))
    match = re.match(r"v?1\.(\d+)", version)
    if match and int(match.group(1)) < MIN_MINOR:
        return Check(
            "API server",
            "warn",
            f"reachable, Kubernetes {version}",
            f"mlkube renders for 1.{MIN_MINOR}+; upgrade the cluster",
        )
    return Check("API server", "pass", f"reachable, Kubernetes {version}")


def check_metrics_server(status: int) -> Check:
    """metrics.k8s.io is served and available (the HPA's cpu/memory source). Pure."""
    fix = (
        "kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/"
        "download/components.yaml"
    )
    if status == 200:
        return Check("metrics-server", "pass", "metrics.k8s.io/v1beta1 is served")
    if status == 503:
        return Check(
            "metrics-server",
            "fail",
            "metrics.k8s.io is registered but unavailable",
            "kubectl -n kube-system logs deploy/metrics-server",
        )
    return Check(
        "metrics-server",
        "fail",
        "metrics.k8s.io is not served: HPAs on cpu/memory will not scale",
        fix,
    )


def check_custom_metrics(status: int) -> Check:
    """custom.metrics.k8s.io (Prometheus adapter) for concurrency/rps Pods metrics. Pure."""
    if status == 200:
        return Check("custom metrics API", "pass", "custom.metrics.k8s.io/v1beta1 is served")
    return Check(
        "custom metrics API",
        "warn",
        "custom.metrics.k8s.io is not served: HPAs on concurrency/rps/queueDepth cannot read "
        "their Pods metrics",
        "install prometheus-adapter (see docs/kubernetes.md for its rules) or use engine keda",
    )


def check_gpus(nodes: Sequence[Manifest]) -> Check:
    """Allocatable ``nvidia.com/gpu`` on the nodes (the device plugin's doing). Pure."""
    per_node = {
        n["metadata"]["name"]: int(str(n.get("status", {}).get("allocatable", {}).get(GPU, "0")))
        for n in nodes
    }
    total = sum(per_node.values())
    if total > 0:
        where = ", ".join(f"{name}: {count}" for name, count in sorted(per_node.items()) if count)
        return Check("GPUs", "pass", f"{total} allocatable {GPU} ({where})")
    return Check(
        "GPUs",
        "warn",
        f"no node has allocatable {GPU}: specs with GPU limits will stay Pending",
        "install the NVIDIA GPU Operator or the nvidia-device-plugin DaemonSet on GPU nodes",
    )


def check_taints(nodes: Sequence[Manifest]) -> Check:
    """Node taints that pods need tolerations for. Pure."""
    taints = sorted(
        f"{n['metadata']['name']}: {t['key']}{'=' + t['value'] if t.get('value') else ''}:"
        f"{t['effect']}"
        for n in nodes
        for t in n.get("spec", {}).get("taints") or []
    )
    if not nodes:
        return Check(
            "node taints",
            "warn",
            "no nodes are registered: nothing can be scheduled",
            "join worker nodes (kubeadm join) or check that you may list nodes",
        )
    if not taints:
        return Check("node taints", "pass", f"{len(nodes)} nodes, none tainted")
    untainted = sum(1 for n in nodes if not n.get("spec", {}).get("taints"))
    verdict: Verdict = "pass" if untainted else "warn"
    return Check(
        "node taints",
        verdict,
        f"{len(taints)} taints ({'; '.join(taints)}); {untainted} of {len(nodes)} nodes untainted",
        "add matching placement.tolerations for pods that must run on tainted nodes",
    )


def check_storage_classes(classes: Sequence[Manifest]) -> Check:
    """A default StorageClass, so claims without a class get provisioned. Pure."""
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if any(
            c["metadata"].get("annotations", {}).get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS
        )
    ]
    if len(defaults) == 1:
        return Check("default StorageClass", "pass", f"'{defaults[0]}'")
    if defaults:
        return Check(
            "default StorageClass",
            "warn",
            f"several defaults: {', '.join(defaults)}",
            "keep one is-default-class annotation",
        )
    return Check(
        "default StorageClass",
        "warn",
        "none: a claim without storageClassName stays Pending unless a PV matches it",
        "set storage.pvc.storageClassName, add a persistentVolume, or mark a class default",
    )


def check_api(api: OptionalApi, status: int, body: Any) -> Check:
    """An optional CRD API is served with the resources we use. Pure."""
    served = {r.get("name") for r in (body or {}).get("resources", [])} if status == 200 else set()
    missing = [p for p in api.plurals if p not in served]
    if not missing:
        return Check(api.name, "pass", f"{api.group_version} serves {', '.join(api.plurals)}")
    return Check(
        api.name,
        "warn",
        f"{api.group_version} {', '.join(missing)} not served: needed only for {api.needed_for}",
        api.install,
    )


def check_rbac(denied: Sequence[str], namespace: str) -> Check:
    """Whether our credentials may manage every kind we render. Pure."""
    if not denied:
        return Check(
            "RBAC", "pass", f"may get/list/patch/delete every kind mlkube renders in '{namespace}'"
        )
    return Check(
        "RBAC",
        "fail",
        f"denied in '{namespace}': {', '.join(denied)}",
        "ask a cluster admin for a Role/ClusterRole granting these verbs",
    )


def run_doctor(cluster: Cluster, namespace: str) -> list[Check]:
    """Every check against ``cluster``; an unreachable API server is one failed check."""
    try:
        status, body = cluster.raw_get("/version")
    except ClusterUnreachableError as error:
        return [Check("API server", "fail", str(error), "check the kubeconfig context")]
    if status == 401:  # every later call would be refused too: one clear finding
        return [
            Check(
                "API server",
                "fail",
                str(UnauthorizedError(cluster.server)),
                "check the kubeconfig user (mlkube doctor --context NAME picks another)",
            )
        ]
    checks = [check_version(status, body)]
    checks.append(
        _discovered(cluster, "metrics-server", "/apis/metrics.k8s.io/v1beta1", check_metrics_server)
    )
    checks.append(
        _discovered(
            cluster,
            "custom metrics API",
            "/apis/custom.metrics.k8s.io/v1beta1",
            check_custom_metrics,
        )
    )
    checks.extend(_guarded("GPUs", lambda: [check_gpus(cluster.list_objects(NODE, None, {}))]))
    checks.extend(
        _guarded("node taints", lambda: [check_taints(cluster.list_objects(NODE, None, {}))])
    )
    checks.extend(
        _guarded(
            "default StorageClass",
            lambda: [check_storage_classes(cluster.list_objects(STORAGE_CLASS, None, {}))],
        )
    )
    for api in OPTIONAL_APIS:
        path = f"/apis/{api.group_version}"
        status, body = cluster.raw_get(path)
        checks.append(check_refused(api.name, path, status) or check_api(api, status, body))
    checks.extend(_guarded("RBAC", lambda: [check_rbac(_denied(cluster, namespace), namespace)]))
    return checks


def _discovered(cluster: Cluster, name: str, path: str, check: Callable[[int], Check]) -> Check:
    status = cluster.raw_get(path)[0]
    return check_refused(name, path, status) or check(status)


def _denied(cluster: Cluster, namespace: str) -> list[str]:
    denied: list[str] = []
    for info in KINDS:
        group = info.api_version.rpartition("/")[0]
        for verb in RBAC_VERBS:
            ns = namespace if info.namespaced else None
            if not cluster.can_i(verb, info.plural, group, ns):
                denied.append(f"{verb} {info.plural}{'.' + group if group else ''}")
    return denied


def _guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    try:
        return run()
    except ClusterError as error:
        return [Check(name, "warn", f"could not check: {error}")]
