"""The in-cluster rollout controller of a Canary (``kubernetes.rolloutController: true``).

Pure: no I/O. A one-replica Deployment ``<name>-rollout`` runs ``mlkube rollout controller``
(the same driver ``mlkube rollout status --watch`` runs on a laptop) with its own
ServiceAccount, bound to a Role that may only get and patch this deployment's own objects, by
name (RBAC ``resourceNames``): the stable and canary Deployments, their HPAs when the engine is
``hpa``, and the HTTPRoute when a Gateway is named. It lists nothing and creates nothing.

With ``autoscaling.standby`` (``render/standby``) the same controller, rendered whether or
not the strategy is Canary, also promotes warm standby pods into the serving pool every
second (``mlkube rollout controller --standby``, ``standby_driver``): for that its Role may
also get, list and patch the namespace's pods (pod names are not known in advance, so no
``resourceNames``; it only ever patches labels of this deployment's standby pods).

Its pods carry no ``app: <name>`` label, so the deployment's Services never select them.
"""

from __future__ import annotations

from mlkube.backends.kubernetes.render.manifest import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    Manifest,
    metadata,
    standard_labels,
)
from mlkube.backends.kubernetes.render.standby import standby_size
from mlkube.spec.autoscaling import AutoscalerEngine
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.rollout import RolloutStrategy

COMPONENT = "rollout-controller"
INTERVAL_S = 10
STANDBY_INTERVAL_S = 1
"""With a standby pool: a scale-up waits at most this long for its promotion."""


def controller_name(deployment: ModelDeployment) -> str:
    """The name of the controller's Deployment, ServiceAccount, Role and RoleBinding."""
    return f"{deployment.name}-rollout"


def wants_controller(deployment: ModelDeployment) -> bool:
    """Whether ``deployment`` renders a rollout controller (Canary steps or a standby pool)."""
    return drives_canary(deployment) or standby_size(deployment) > 0


def drives_canary(deployment: ModelDeployment) -> bool:
    """Whether the controller runs a Canary's steps."""
    spec = deployment.spec
    return spec.kubernetes.rollout_controller and spec.rollout.strategy is RolloutStrategy.CANARY


def rollout_controller_objects(deployment: ModelDeployment) -> list[Manifest]:
    """ServiceAccount, Role, RoleBinding and Deployment; empty when not asked for."""
    if not wants_controller(deployment):
        return []
    name = controller_name(deployment)
    namespace = deployment.namespace
    labels = standard_labels(deployment.name, COMPONENT, dict(deployment.metadata.labels))
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(name, namespace, labels),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(name, namespace, labels),
            "rules": role_rules(deployment),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(name, namespace, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        _deployment(deployment, labels),
    ]


def role_rules(deployment: ModelDeployment) -> list[Manifest]:
    """The least the driver needs: get and patch of named objects (Canary steps), and with a
    standby pool get of the serving Deployment and get, list and patch of pods."""
    name = deployment.name
    rules: list[Manifest] = []
    if drives_canary(deployment):
        rules.append(
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": [name, f"{name}-canary"],
                "verbs": ["get", "patch"],
            }
        )
        autoscaling = deployment.spec.autoscaling
        if autoscaling is not None and autoscaling.engine is AutoscalerEngine.HPA:
            rules.append(
                {
                    "apiGroups": ["autoscaling"],
                    "resources": ["horizontalpodautoscalers"],
                    "resourceNames": [f"{name}-hpa", f"{name}-canary-hpa"],
                    "verbs": ["get", "patch"],
                }
            )
        if deployment.spec.kubernetes.gateway is not None:
            rules.append(
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": ["httproutes"],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                }
            )
    if standby_size(deployment) > 0:
        if not rules:
            rules.append(
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "resourceNames": [name],
                    "verbs": ["get"],
                }
            )
        rules.append({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]})
    return rules


def _deployment(deployment: ModelDeployment, labels: dict[str, str]) -> Manifest:
    name = controller_name(deployment)
    kubernetes = deployment.spec.kubernetes
    selector = {LABEL_INSTANCE: deployment.name, LABEL_COMPONENT: COMPONENT}
    standby = standby_size(deployment) > 0
    args = [
        "rollout",
        "controller",
        deployment.name,
        "--namespace",
        deployment.namespace,
        "--interval",
        str(STANDBY_INTERVAL_S if standby else INTERVAL_S),
    ]
    if standby:
        args.append("--standby")
    if not drives_canary(deployment):
        args.append("--no-canary")
    elif deployment.spec.rollout.analysis is not None:
        args += ["--prometheus", kubernetes.prometheus_url]
    container: Manifest = {
        "name": "rollout",
        "image": deployment.image,
        "imagePullPolicy": kubernetes.image_pull_policy,
        "command": ["mlkube"],
        "args": args,
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, deployment.namespace, labels),
        "spec": {
            "replicas": 1,
            # One driver at a time: the old pod stops before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": kubernetes.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }
