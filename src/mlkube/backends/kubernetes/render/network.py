"""How clients reach the replicas: Services, and a Gateway API HTTPRoute for weighted splits.

Pure: no I/O.

- The main Service (``service.name``, default the deployment's name) has the spec's type and
  port. For BlueGreen it selects the active colour and ``<name>-preview`` the other one.
- Canary / ABTest with ``kubernetes.gateway``: ``<name>-stable`` and ``<name>-canary``
  ClusterIP Services are the HTTPRoute's weighted backends (and the header match of ABTest).
"""

from __future__ import annotations

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.manifest import (
    LABEL_COLOR,
    LABEL_METRICS,
    Manifest,
    is_dns_1035_label,
    metadata,
)
from mlkube.backends.kubernetes.render.tracks import Track
from mlkube.backends.kubernetes.render.workload import object_labels, selector_labels
from mlkube.desired.traffic import header_route
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.placement import ServiceType
from mlkube.spec.rollout import RolloutStrategy

ROUTE_WEIGHT_SCALE = 1
"""HTTPRoute weights are relative integers; percents are used as they are."""


def main_service_name(deployment: ModelDeployment) -> str:
    """The name of the Service clients use; RenderError when no Service may have it."""
    name = deployment.spec.service.name or deployment.name
    if not is_dns_1035_label(name):
        raise RenderError(
            f"deployment '{deployment.name}': Service name '{name}' must start with a letter "
            "(Kubernetes requires an RFC 1035 label); set service.name"
        )
    return name


def network_objects(deployment: ModelDeployment, tracks: tuple[Track, ...]) -> list[Manifest]:
    """Services (and the HTTPRoute) for ``deployment``.

    Pure: no I/O.
    """
    strategy = deployment.spec.rollout.strategy
    objects: list[Manifest] = []
    selector = {"app": deployment.name}
    if strategy is RolloutStrategy.BLUE_GREEN:
        active = deployment.spec.kubernetes.active_color
        idle = "green" if active == "blue" else "blue"
        objects.append(_main_service(deployment, {**selector, LABEL_COLOR: active}))
        objects.append(
            _cluster_ip(
                deployment,
                f"{deployment.name}-preview",
                {**selector, LABEL_COLOR: idle},
                metrics=True,
            )
        )
        return objects
    objects.append(_main_service(deployment, selector))
    split = strategy in (RolloutStrategy.CANARY, RolloutStrategy.AB_TEST)
    if split and deployment.spec.kubernetes.gateway is not None:
        for track in tracks:
            objects.append(
                _cluster_ip(
                    deployment,
                    _track_service(deployment, track),
                    selector_labels(deployment, track),
                    metrics=False,
                )
            )
        objects.append(http_route(deployment, tracks))
    return objects


def http_route(deployment: ModelDeployment, tracks: tuple[Track, ...]) -> Manifest:
    """A ``gateway.networking.k8s.io/v1`` HTTPRoute splitting traffic by the tracks' weights."""
    gateway = deployment.spec.kubernetes.gateway or ""
    gw_namespace, _, gw_name = gateway.rpartition("/")
    parent: Manifest = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw_name}
    if gw_namespace:
        parent["namespace"] = gw_namespace
    port = deployment.spec.service.port
    stable, canary = tracks
    rules: list[Manifest] = []
    route = header_route(deployment.spec.rollout)
    if route is not None:
        header: Manifest = (
            {"type": "Exact", "name": route.header, "value": route.value}
            if route.value is not None
            # Gateway API has no "header present" match; a regex on any value is the nearest.
            else {"type": "RegularExpression", "name": route.header, "value": ".*"}
        )
        rules.append(
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [header]}],
                "backendRefs": [_backend(deployment, canary, port, 1)],
            }
        )
    # Requests no header rule matched: split by the tracks' weights. A zero-weight track gets
    # no reference (with a header route, B receives only the requests that carry the header).
    rules.append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                _backend(deployment, track, port, track.weight)
                for track in (stable, canary)
                if track.weight > 0
            ],
        }
    )
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(
            deployment.name, deployment.namespace, object_labels(deployment, "route")
        ),
        "spec": {"parentRefs": [parent], "rules": rules},
    }


def _backend(deployment: ModelDeployment, track: Track, port: int, weight: int) -> Manifest:
    return {
        "group": "",
        "kind": "Service",
        "name": _track_service(deployment, track),
        "port": port,
        "weight": weight * ROUTE_WEIGHT_SCALE,
    }


def _track_service(deployment: ModelDeployment, track: Track) -> str:
    return f"{deployment.name}-{track.suffix or 'stable'}"


def _main_service(deployment: ModelDeployment, selector: dict[str, str]) -> Manifest:
    service = deployment.spec.service
    port: Manifest = {
        "name": "http",
        "protocol": "TCP",
        "port": service.port,
        "targetPort": deployment.spec.server.port,
    }
    if service.node_port is not None:
        port["nodePort"] = service.node_port
    labels = {**object_labels(deployment, "service"), LABEL_METRICS: "true"}
    ports = [port, *_grpc_ports(deployment)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(main_service_name(deployment), deployment.namespace, labels),
        "spec": {
            "type": str(service.type),
            "selector": selector,
            "ports": ports,
        },
    }


def _cluster_ip(
    deployment: ModelDeployment, name: str, selector: dict[str, str], *, metrics: bool
) -> Manifest:
    if not is_dns_1035_label(name):
        raise RenderError(
            f"deployment '{deployment.name}': strategy {deployment.spec.rollout.strategy} "
            f"needs a Service '{name}', and Service names must start with a letter; rename "
            "the deployment"
        )
    labels = object_labels(deployment, "service")
    if metrics:
        labels = {**labels, LABEL_METRICS: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, deployment.namespace, dict(sorted(labels.items()))),
        "spec": {
            "type": str(ServiceType.CLUSTER_IP),
            "selector": selector,
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": deployment.spec.service.port,
                    "targetPort": deployment.spec.server.port,
                },
                *_grpc_ports(deployment),
            ],
        },
    }


def _grpc_ports(deployment: ModelDeployment) -> list[Manifest]:
    """The ``grpc`` Service port when the spec enables gRPC. A Service balances connections,
    not calls (one gRPC channel stays on one pod, as locally); ``appProtocol: grpc`` lets a
    mesh or gateway that balances per call recognise it."""
    if not deployment.spec.server.grpc.enabled:
        return []
    return [
        {
            "name": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
            "port": deployment.spec.service.grpc_port,
            "targetPort": "grpc",
        }
    ]
