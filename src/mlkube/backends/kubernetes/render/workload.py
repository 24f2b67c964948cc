"""The workload of a deployment: per track, a ConfigMap with the server's spec and a Deployment.

Pure: no I/O. The pod runs ``mlkube serve /etc/mlkube/spec.yaml`` (or TF Serving for format
tensorflow) as a non-root user on a read-only root filesystem, probed on the server's health
endpoints, with a termination grace period longer than the server's drain timeout.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from mlkube.backends.kubernetes.render.manifest import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_ROLLOUT,
    LABEL_VERSION,
    Manifest,
    metadata,
    seconds,
    standard_labels,
)
from mlkube.backends.kubernetes.render.model_source import (
    MODEL_VOLUME,
    ModelSource,
    model_sources,
)
from mlkube.backends.kubernetes.render.tracks import Track
from mlkube.desired.revision import revision_document, revision_hash
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.model import ModelFormat
from mlkube.spec.resources import GPU
from mlkube.spec.rollout import RolloutStrategy

CONFIG_DIR = "/etc/mlkube"
SPEC_FILE = "spec.yaml"
DRAIN_MARGIN_S = 10
"""Grace period beyond the drain timeout, so Kubernetes never SIGKILLs a draining server."""

STARTUP_BUDGET_S = 600
"""How long a replica may take to load and warm up its model before it is restarted."""


def workload_objects(deployment: ModelDeployment, tracks: tuple[Track, ...]) -> list[Manifest]:
    """A ConfigMap (mlkube server only) and a Deployment per track.

    Pure: no I/O.
    """
    objects: list[Manifest] = []
    for track in tracks:
        sources = model_sources(deployment, track.model_uri)
        source = sources[0][1]
        config = None
        if not _is_tf_serving(deployment):
            config = config_map(deployment, track, source)
            objects.append(config)
        objects.append(deployment_object(deployment, track, source, config))
    return objects


def pod_labels(deployment: ModelDeployment, track: Track) -> dict[str, str]:
    """The labels a track's pods carry; ``selector_labels`` is the subset that selects them."""
    labels = standard_labels(deployment.name, "model-server", dict(deployment.metadata.labels))
    labels = {**labels, **selector_labels(deployment, track)}
    labels[LABEL_VERSION] = str(deployment.spec.model.version)
    return dict(sorted(labels.items()))


def selector_labels(deployment: ModelDeployment, track: Track) -> dict[str, str]:
    """``app: <name>`` (as in the guide and kubectl conventions) plus the track's labels."""
    return {"app": deployment.name, **track.selector}


def object_labels(deployment: ModelDeployment, component: str) -> dict[str, str]:
    """Labels of a non-pod object of ``deployment``."""
    extra = {**deployment.metadata.labels, "app": deployment.name}
    return standard_labels(deployment.name, component, extra)


def config_map(deployment: ModelDeployment, track: Track, source: ModelSource) -> Manifest:
    """The server's spec: the track's revision document, model.uri the mounted model.

    Pure. The same document the local backend starts a revision from
    (``desired.revision.revision_document``), so it changes only with the revision template:
    a new replica count, autoscaling or rollout leaves it (and the pods) alone.
    """
    paths = {name: s.container_path for name, s in model_sources(deployment, track.model_uri)}
    document = revision_document(deployment, model_uris=paths)
    text = yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            track.config_name, deployment.namespace, object_labels(deployment, "config")
        ),
        "data": {SPEC_FILE: text},
    }


def deployment_object(
    deployment: ModelDeployment, track: Track, source: ModelSource, config: Manifest | None
) -> Manifest:
    """An ``apps/v1`` Deployment for one track."""
    spec = deployment.spec
    annotations = dict(deployment.metadata.annotations)
    if config is not None:
        # The revision's identity, as the local backend computes it: the pod template (and so
        # the ReplicaSet) changes exactly when the local backend would cut a revision.
        annotations[ANNOTATION_CONFIG_HASH] = revision_hash(
            revision_document(deployment, model_uri=track.model_uri)
        )
    template_meta: dict[str, Any] = {"labels": pod_labels(deployment, track)}
    if annotations:
        template_meta["annotations"] = dict(sorted(annotations.items()))
    object_annotations = dict(deployment.metadata.annotations)
    driven = (
        spec.rollout.strategy is RolloutStrategy.CANARY and spec.kubernetes.canary_weight is None
    )
    if track.suffix == "canary" and driven:
        # The steps the rollout driver runs (``mlkube rollout status --target kubernetes``);
        # with kubernetes.canaryWeight the user moves the weight by applying instead.
        rollout = spec.rollout.model_dump(by_alias=True, mode="json", exclude_none=True)
        object_annotations[ANNOTATION_ROLLOUT] = json.dumps(
            rollout, sort_keys=True, separators=(",", ":")
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            track.deployment_name,
            deployment.namespace,
            {**object_labels(deployment, "model-server"), **track.selector},
            object_annotations,
        ),
        "spec": {
            "replicas": track.replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": seconds(spec.rollout.progress_deadline),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": spec.rollout.max_surge,
                    "maxUnavailable": spec.rollout.max_unavailable,
                },
            },
            "selector": {"matchLabels": selector_labels(deployment, track)},
            "template": {
                "metadata": template_meta,
                "spec": pod_spec(deployment, track, source),
            },
        },
    }


def pod_spec(deployment: ModelDeployment, track: Track, source: ModelSource) -> Manifest:
    """The pod template's spec: containers, volumes, security, placement."""
    spec = deployment.spec
    kube = spec.kubernetes
    uid = kube.run_as_user
    pod: Manifest = {}
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
    pod["terminationGracePeriodSeconds"] = math.ceil(spec.server.drain_timeout) + DRAIN_MARGIN_S
    pod.update(_placement(deployment))
    fetches = [s for _, s in model_sources(deployment, track.model_uri) if s.fetch_command]
    if fetches:
        pod["initContainers"] = [
            _fetch_container(s, "fetch-model" if len(fetches) == 1 else f"fetch-model-{i}")
            for i, s in enumerate(fetches)
        ]
    pod["containers"] = [_server_container(deployment, track, source)]
    pod["volumes"] = _volumes(deployment, track, source)
    return pod


def _placement(deployment: ModelDeployment) -> Manifest:
    placement = deployment.spec.placement
    out: Manifest = {}
    if placement.priority_class_name:
        out["priorityClassName"] = placement.priority_class_name
    if placement.node_selector:
        out["nodeSelector"] = dict(sorted(placement.node_selector.items()))
    tolerations = [
        t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in placement.tolerations
    ]
    if deployment.spec.resources.gpus > 0 and not any(t.get("key") == GPU for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule (GKE, the GPU operator).
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    if placement.affinity:
        out["affinity"] = placement.affinity
    if placement.topology_spread_constraints:
        out["topologySpreadConstraints"] = list(placement.topology_spread_constraints)
    return out


def _server_container(deployment: ModelDeployment, track: Track, source: ModelSource) -> Manifest:
    spec = deployment.spec
    port = spec.server.port
    container: Manifest = {
        "name": deployment.name,
        "image": deployment.image,
        "imagePullPolicy": spec.kubernetes.image_pull_policy,
    }
    container.update(_command(deployment, source, track))
    container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if spec.server.grpc.enabled:
        grpc_port = spec.server.grpc.port
        container["ports"].append({"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"})
    resources = _resources(deployment)
    if resources:
        container["resources"] = resources
    container.update(_probes(deployment))
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts: list[Manifest] = [
        {"name": MODEL_VOLUME, "mountPath": source.mount_path, "readOnly": True}
    ]
    if not _is_tf_serving(deployment):
        mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})  # noqa: S108 - the container's own /tmp
    container["volumeMounts"] = mounts
    return container


def _command(deployment: ModelDeployment, source: ModelSource, track: Track) -> Manifest:
    port = str(deployment.spec.server.port)
    if _is_tf_serving(deployment):
        return {
            "command": ["tensorflow_model_server"],
            "args": [
                f"--port={deployment.spec.server.grpc.port}",
                f"--rest_api_port={port}",
                f"--model_name={deployment.model_name}",
                f"--model_base_path={source.container_path}",
            ],
        }
    # The revision label tells canary and stable series apart (dashboards, canary alerts);
    # the replica name on log lines is the pod's, from the downward API.
    revision = track.suffix or "stable"
    return {
        "command": ["mlkube"],
        "args": [
            "serve",
            f"{CONFIG_DIR}/{SPEC_FILE}",
            "--host",
            "0.0.0.0",
            "--port",
            port,
            "--revision",
            revision,
            "--replica",
            "$(POD_NAME)",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }


def _probes(deployment: ModelDeployment) -> Manifest:
    if _is_tf_serving(deployment):
        ready_path = live_path = f"/v1/models/{deployment.model_name}"
    else:
        ready_path, live_path = "/v2/health/ready", "/v2/health/live"
    startup_period = 5
    return {
        "startupProbe": {
            "httpGet": {"path": ready_path, "port": "http"},
            "periodSeconds": startup_period,
            "timeoutSeconds": 2,
            "failureThreshold": STARTUP_BUDGET_S // startup_period,
        },
        "readinessProbe": {
            "httpGet": {"path": ready_path, "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": live_path, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
    }


def _resources(deployment: ModelDeployment) -> Manifest:
    resources = deployment.spec.resources
    out: Manifest = {}
    requests = {name: q.text for name, q in sorted(resources.requests.items())}
    limits = {name: q.text for name, q in sorted(resources.limits.items())}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _fetch_container(source: ModelSource, name: str) -> Manifest:
    return {
        "name": name,
        "image": source.fetch_image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(source.fetch_command or ()),
        "env": [{"name": "HOME", "value": "/tmp"}],  # noqa: S108 - CLIs cache under $HOME
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": source.mount_path},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }


def _volumes(deployment: ModelDeployment, track: Track, source: ModelSource) -> list[Manifest]:
    volumes: list[Manifest] = [source.volume]
    if not _is_tf_serving(deployment):
        volumes.append({"name": "config", "configMap": {"name": track.config_name}})
    volumes.append({"name": "tmp", "emptyDir": {}})
    return volumes


def _is_tf_serving(deployment: ModelDeployment) -> bool:
    return deployment.spec.model.format is ModelFormat.TENSORFLOW and (
        deployment.spec.kubernetes.image is None or "tensorflow/serving" in deployment.image
    )
