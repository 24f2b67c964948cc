"""Scaling objects: HorizontalPodAutoscaler v2 or KEDA ScaledObject, VPA, PodDisruptionBudget.

Pure: no I/O.

Metrics map as follows (server metric names from the serving package):

==============  ===========================================  ==================================
spec metric     HPA (engine hpa)                             KEDA trigger (engine keda)
==============  ===========================================  ==================================
cpu / memory    Resource metric, Utilization or AverageValue ``cpu`` / ``memory`` trigger
concurrency     Pods ``mlkube_in_flight_requests``            Prometheus: sum of the gauge
rps             Pods ``mlkube_requests_per_second`` (the      Prometheus: sum(rate(
                Prometheus adapter's name for the rate of     mlkube_requests_total[1m]))
                ``mlkube_requests_total``)
queueDepth      Pods ``mlkube_queue_depth``                   Prometheus: sum of the gauge
latency         not expressible: RenderError                  Prometheus: histogram_quantile
==============  ===========================================  ==================================
"""

from __future__ import annotations

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.manifest import Manifest, metadata, quantity_text, seconds
from mlkube.backends.kubernetes.render.tracks import Track
from mlkube.backends.kubernetes.render.workload import object_labels, selector_labels
from mlkube.spec.autoscaling import (
    AutoscalerEngine,
    AutoscalingSpec,
    BehaviorSpec,
    ConcurrencyMetric,
    CpuMetric,
    LatencyMetric,
    MemoryMetric,
    MetricSpec,
    QueueDepthMetric,
    RpsMetric,
    ScalingRules,
)
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.model import ModelFormat

POD_METRICS = {
    "concurrency": "mlkube_in_flight_requests",
    "rps": "mlkube_requests_per_second",
    "queueDepth": "mlkube_queue_depth",
}
RATE_WINDOW = "1m"
DEFAULT_TOLERANCE = 0.1
DEFAULT_DOWN_WINDOW_S = 300


def scaling_objects(
    deployment: ModelDeployment, tracks: tuple[Track, ...], warnings: list[str]
) -> list[Manifest]:
    """Autoscaler, VPA and PDB objects for each track that runs replicas.

    Pure: no I/O. Raises RenderError for settings no Kubernetes autoscaler can honour.
    """
    autoscaling = deployment.spec.autoscaling
    objects: list[Manifest] = []
    if autoscaling is not None:
        _check_metrics(deployment, autoscaling)
        for track in tracks:
            if track.max_replicas == 0 or (track.replicas == 0 and track.min_replicas > 0):
                continue
            if autoscaling.engine is AutoscalerEngine.KEDA:
                objects.append(scaled_object(deployment, autoscaling, track))
            else:
                objects.append(hpa(deployment, autoscaling, track, warnings))
    vpa_mode = deployment.spec.kubernetes.vertical_pod_autoscaler
    if vpa_mode is not None:
        _warn_vpa_conflict(deployment, vpa_mode, warnings)
        objects.extend(vpa(deployment, track, vpa_mode) for track in tracks if track.max_replicas)
    if deployment.spec.kubernetes.pod_disruption_budget:
        objects.extend(
            pdb(deployment, track)
            for track in tracks
            if max(track.max_replicas, track.replicas) > 1
        )
    return objects


def hpa(
    deployment: ModelDeployment, autoscaling: AutoscalingSpec, track: Track, warnings: list[str]
) -> Manifest:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler for one track."""
    if track.min_replicas == 0:
        raise RenderError(
            f"deployment '{deployment.name}': minReplicas 0 (scale to zero) needs "
            "autoscaling.engine: keda; the HorizontalPodAutoscaler cannot scale to zero"
        )
    spec: Manifest = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": track.deployment_name,
        },
        "minReplicas": track.min_replicas,
        "maxReplicas": track.max_replicas,
        "metrics": [_hpa_metric(metric) for metric in autoscaling.metrics],
    }
    behavior = hpa_behavior(deployment.name, autoscaling, warnings)
    if behavior:
        spec["behavior"] = behavior
    name = f"{track.deployment_name}-hpa"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, deployment.namespace, object_labels(deployment, "autoscaler")),
        "spec": spec,
    }


def hpa_behavior(name: str, autoscaling: AutoscalingSpec, warnings: list[str]) -> Manifest:
    """HPA v2 ``behavior`` from the spec; empty when the spec keeps every default.

    ``downscaleStabilization`` (the controller-wide flag locally) becomes the scale-down
    window when ``behavior.scaleDown`` does not set its own; a non-default cluster-wide
    ``tolerance`` cannot be set per HPA before 1.33, so it is reported, not rendered.
    """
    behavior = autoscaling.behavior or BehaviorSpec()
    out: Manifest = {}
    down_window = getattr(autoscaling, "downscale_stabilization", None)
    tolerance = getattr(autoscaling, "tolerance", None)
    if tolerance is not None and tolerance != DEFAULT_TOLERANCE:
        warnings.append(
            f"deployment '{name}': autoscaling.tolerance {tolerance} is not rendered (the HPA "
            "uses the cluster's --horizontal-pod-autoscaler-tolerance, 0.1 by default)"
        )
    for key, rules in (("scaleUp", behavior.scale_up), ("scaleDown", behavior.scale_down)):
        rendered = _rules(rules) if rules is not None else {}
        if (
            key == "scaleDown"
            and down_window is not None
            and seconds(down_window) != DEFAULT_DOWN_WINDOW_S
            and "stabilizationWindowSeconds" not in rendered
        ):
            rendered = {"stabilizationWindowSeconds": seconds(down_window), **rendered}
        if rules is None:
            if rendered:
                out[key] = rendered
            continue
        if rules.tolerance is not None:
            # `tolerance` is alpha in 1.33 (HPAConfigurableTolerance) and absent before: a 1.30
            # API server rejects it under server-side apply, so it is not rendered.
            warnings.append(
                f"deployment '{name}': autoscaling.behavior.{key}.tolerance is not rendered "
                "(the field needs Kubernetes 1.33+ with the HPAConfigurableTolerance gate)"
            )
        if rendered:
            out[key] = rendered
    return out


def _rules(rules: ScalingRules) -> Manifest:
    out: Manifest = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.select_policy is not None:
        out["selectPolicy"] = str(rules.select_policy)
    if rules.policies is not None:
        out["policies"] = [
            {"type": str(p.type), "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ]
    return out


def _hpa_metric(metric: MetricSpec) -> Manifest:
    if isinstance(metric, CpuMetric | MemoryMetric):
        target: Manifest
        if metric.target_utilization is not None:
            target = {"type": "Utilization", "averageUtilization": metric.target_utilization}
        else:
            target = {"type": "AverageValue", "averageValue": _average_value(metric)}
        return {"type": "Resource", "resource": {"name": metric.type, "target": target}}
    if isinstance(metric, LatencyMetric):  # refused earlier by _check_metrics
        raise RenderError("a latency target needs autoscaling.engine: keda")
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": POD_METRICS[metric.type]},
            "target": {"type": "AverageValue", "averageValue": quantity_text(metric.target)},
        },
    }


def scaled_object(
    deployment: ModelDeployment, autoscaling: AutoscalingSpec, track: Track
) -> Manifest:
    """A KEDA ``keda.sh/v1alpha1`` ScaledObject for one track (it owns the HPA it makes)."""
    triggers = [_trigger(deployment, track, metric) for metric in autoscaling.metrics]
    if track.min_replicas == 0 and all(t["type"] in ("cpu", "memory") for t in triggers):
        raise RenderError(
            f"deployment '{deployment.name}': KEDA scales to zero only with a request metric "
            "(concurrency, rps, queueDepth or latency), not with cpu/memory alone"
        )
    spec: Manifest = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": track.deployment_name,
        },
        "minReplicaCount": track.min_replicas,
        "maxReplicaCount": track.max_replicas,
    }
    if autoscaling.sync_period is not None:
        spec["pollingInterval"] = max(1, seconds(autoscaling.sync_period))
    if autoscaling.scale_to_zero is not None:
        spec["cooldownPeriod"] = seconds(autoscaling.scale_to_zero.idle_after)
    hpa_config: Manifest = {"name": f"{track.deployment_name}-keda"}
    behavior = hpa_behavior(deployment.name, autoscaling, [])
    if behavior:
        hpa_config["behavior"] = behavior
    spec["advanced"] = {"horizontalPodAutoscalerConfig": hpa_config}
    spec["triggers"] = triggers
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(
            track.deployment_name, deployment.namespace, object_labels(deployment, "autoscaler")
        ),
        "spec": spec,
    }


def _trigger(deployment: ModelDeployment, track: Track, metric: MetricSpec) -> Manifest:
    if isinstance(metric, CpuMetric | MemoryMetric):
        if metric.target_utilization is not None:
            return {
                "type": metric.type,
                "metricType": "Utilization",
                "metadata": {"value": str(metric.target_utilization)},
            }
        return {
            "type": metric.type,
            "metricType": "AverageValue",
            "metadata": {"value": _average_value(metric)},
        }
    selector = _prometheus_selector(deployment, track)
    query: str
    threshold: float
    metric_type = "AverageValue"
    if isinstance(metric, ConcurrencyMetric):
        query, threshold = f"sum(mlkube_in_flight_requests{{{selector}}})", metric.target
    elif isinstance(metric, RpsMetric):
        query = f"sum(rate(mlkube_requests_total{{{selector}}}[{RATE_WINDOW}]))"
        threshold = metric.target
    elif isinstance(metric, QueueDepthMetric):
        query, threshold = f"sum(mlkube_queue_depth{{{selector}}})", metric.target
    else:
        quantile = metric.percentile / 100
        query = (
            f"histogram_quantile({quantile:g}, sum by (le) "
            f"(rate(mlkube_request_duration_seconds_bucket{{{selector}}}[{RATE_WINDOW}])))"
        )
        threshold, metric_type = metric.target_ms / 1000, "Value"
    return {
        "type": "prometheus",
        "metricType": metric_type,
        "metadata": {
            "serverAddress": deployment.spec.kubernetes.prometheus_url,
            "query": query,
            "threshold": _decimal(threshold),
            "activationThreshold": "0",
        },
    }


def _average_value(metric: CpuMetric | MemoryMetric) -> str:
    # The spec validator guarantees exactly one of targetUtilization / targetAverageValue.
    value = metric.target_average_value
    return value.text if value is not None else ""


def _prometheus_selector(deployment: ModelDeployment, track: Track) -> str:
    # Pods of a Deployment are named <deployment>-<replicaset hash>-<suffix>.
    pod = f"{track.deployment_name}-[a-z0-9]+-[a-z0-9]+"
    return f'namespace="{deployment.namespace}",pod=~"{pod}"'


def _decimal(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def vpa(deployment: ModelDeployment, track: Track, mode: str) -> Manifest:
    """An ``autoscaling.k8s.io/v1`` VerticalPodAutoscaler for one track's server container."""
    policy: Manifest = {
        "containerName": deployment.name,
        "controlledResources": ["cpu", "memory"],
    }
    limits = {
        name: q.text
        for name, q in deployment.spec.resources.limits.items()
        if name in ("cpu", "memory")
    }
    if limits:
        policy["maxAllowed"] = dict(sorted(limits.items()))
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": metadata(
            f"{track.deployment_name}-vpa",
            deployment.namespace,
            object_labels(deployment, "autoscaler"),
        ),
        "spec": {
            "targetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": track.deployment_name,
            },
            "updatePolicy": {"updateMode": mode},
            "resourcePolicy": {"containerPolicies": [policy]},
        },
    }


def pdb(deployment: ModelDeployment, track: Track) -> Manifest:
    """A ``policy/v1`` PodDisruptionBudget: voluntary evictions take one pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(
            f"{track.deployment_name}-pdb",
            deployment.namespace,
            object_labels(deployment, "disruption-budget"),
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(deployment, track)},
        },
    }


def _check_metrics(deployment: ModelDeployment, autoscaling: AutoscalingSpec) -> None:
    request_metrics = [m.type for m in autoscaling.metrics if m.type not in ("cpu", "memory")]
    if (
        request_metrics
        and deployment.spec.model.format is ModelFormat.TENSORFLOW
        and (deployment.spec.kubernetes.image is None)
    ):
        raise RenderError(
            f"deployment '{deployment.name}': TF Serving does not export mlkube's request "
            f"metrics, so autoscaling on {', '.join(request_metrics)} cannot work; use cpu or "
            "memory, or serve the model with the mlkube server image"
        )
    latency = any(isinstance(m, LatencyMetric) for m in autoscaling.metrics)
    if latency and autoscaling.engine is AutoscalerEngine.HPA:
        raise RenderError(
            f"deployment '{deployment.name}': a latency target needs autoscaling.engine: keda "
            "(a percentile is a Prometheus query, not a per-pod metric the HPA can average)"
        )


def _warn_vpa_conflict(deployment: ModelDeployment, mode: str, warnings: list[str]) -> None:
    autoscaling = deployment.spec.autoscaling
    if mode == "Off" or autoscaling is None:
        return
    if any(isinstance(m, CpuMetric | MemoryMetric) for m in autoscaling.metrics):
        warnings.append(
            f"deployment '{deployment.name}': a VerticalPodAutoscaler in mode {mode} and an "
            "autoscaler on cpu/memory fight over the same signal; use VPA mode Off or "
            "scale on request metrics"
        )
