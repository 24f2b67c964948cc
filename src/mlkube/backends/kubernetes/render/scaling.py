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

``autoscaling.predictive`` with engine keda and an ``rps`` metric adds Prometheus triggers
(``forecast_triggers``): the bounded linear trend as ``predict_linear`` over the request rate,
and with seasonality the rate at the same time yesterday. KEDA's HPA takes the largest
proposal, so, as locally, a forecast can raise the count but never lower it below the
reactive triggers' ask. Nothing is added when the field is unset.
"""

from __future__ import annotations

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.manifest import Manifest, metadata, quantity_text, seconds
from mlkube.backends.kubernetes.render.standby import standby_size
from mlkube.backends.kubernetes.render.tracks import Track
from mlkube.backends.kubernetes.render.workload import object_labels, selector_labels
from mlkube.desired.scaling import Rules, resolve_scaling
from mlkube.spec.autoscaling import (
    AutoscalerEngine,
    AutoscalingSpec,
    ConcurrencyMetric,
    CpuMetric,
    LatencyMetric,
    MemoryMetric,
    MetricSpec,
    QueueDepthMetric,
    RpsMetric,
)
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.model import ModelFormat

POD_METRICS = {
    "concurrency": "mlkube_in_flight_requests",
    "rps": "mlkube_requests_per_second",
    "queueDepth": "mlkube_queue_depth",
}
RATE_WINDOW = "1m"
FORECAST_STEP = "15s"
"""Resolution of the subqueries the forecast is computed over (the usual scrape interval)."""
AUTO_HORIZON_FALLBACK_S = 60
"""``horizon: auto`` without kube-state-metrics' pod times: assume a 60 s start-up."""


def scaling_objects(deployment: ModelDeployment, tracks: tuple[Track, ...]) -> list[Manifest]:
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
                objects.append(hpa(deployment, autoscaling, track))
    vpa_mode = deployment.spec.kubernetes.vertical_pod_autoscaler
    if vpa_mode is not None:
        objects.extend(vpa(deployment, track, vpa_mode) for track in tracks if track.max_replicas)
    if deployment.spec.kubernetes.pod_disruption_budget:
        objects.extend(
            pdb(deployment, track)
            for track in tracks
            if max(track.max_replicas, track.replicas) > 1
        )
    return objects


def hpa(deployment: ModelDeployment, autoscaling: AutoscalingSpec, track: Track) -> Manifest:
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
    behavior = hpa_behavior(autoscaling)
    if behavior:
        spec["behavior"] = behavior
    name = f"{track.deployment_name}-hpa"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, deployment.namespace, object_labels(deployment, "autoscaler")),
        "spec": spec,
    }


def hpa_behavior(autoscaling: AutoscalingSpec) -> Manifest:
    """HPA v2 ``behavior``: the resolved one (``desired.scaling``), every field explicit.

    Pure. Empty when the resolved policy is HPA's legacy algorithm (no ``behavior``), which is
    what an HPA without ``behavior`` runs; otherwise both directions are written out whole, so
    the cluster's API defaults never decide how this deployment scales. Per-direction
    ``tolerance`` is not written: the capability table reports it.
    """
    behavior = resolve_scaling(autoscaling).behavior
    if behavior is None:
        return {}
    return {"scaleUp": _rules(behavior.scale_up), "scaleDown": _rules(behavior.scale_down)}


def _rules(rules: Rules) -> Manifest:
    return {
        "stabilizationWindowSeconds": rules.window,
        "selectPolicy": rules.select,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period} for p in rules.policies
        ],
    }


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
    triggers += forecast_triggers(deployment, autoscaling, track)
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
    spec["pollingInterval"] = max(1, round(resolve_scaling(autoscaling).sync_period_s))
    if autoscaling.scale_to_zero is not None:
        spec["cooldownPeriod"] = seconds(autoscaling.scale_to_zero.idle_after)
    hpa_config: Manifest = {"name": f"{track.deployment_name}-keda"}
    behavior = hpa_behavior(autoscaling)
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


def forecast_triggers(
    deployment: ModelDeployment, autoscaling: AutoscalingSpec, track: Track
) -> list[Manifest]:
    """KEDA Prometheus triggers for ``autoscaling.predictive`` (needs an ``rps`` target).

    The trend: ``predict_linear`` of the request rate over ``trendWindow``, ``horizon``
    seconds ahead (``auto``: the median spawn-to-ready of the track's pods from
    kube-state-metrics, else ``AUTO_HORIZON_FALLBACK_S``, plus the polling interval), at most
    ``maxGrowth`` times the current rate and at least 0. The daily profile: the mean rate
    over ``trendWindow`` around the same time yesterday, ``horizon`` ahead (one day only; the
    local policy takes the median of up to seven).
    """
    predictive = autoscaling.predictive
    targets = [m.target for m in autoscaling.metrics if isinstance(m, RpsMetric)]
    if predictive is None or not predictive.enabled or not targets:
        return []
    selector = _prometheus_selector(deployment, track)
    current = f"sum(rate(mlkube_requests_total{{{selector}}}[{RATE_WINDOW}]))"
    window = round(predictive.trend_window)
    tick = max(1, round(resolve_scaling(autoscaling).sync_period_s))
    if predictive.horizon == "auto":
        startup = (
            f"quantile(0.5, kube_pod_status_ready_time{{{selector}}} "
            f"- kube_pod_created{{{selector}}})"
        )
        horizon = f"(scalar({startup} or vector({AUTO_HORIZON_FALLBACK_S})) + {tick})"
        lookahead = AUTO_HORIZON_FALLBACK_S + tick
    else:
        horizon = str(round(float(predictive.horizon)))
        lookahead = round(float(predictive.horizon))
    trend = f"predict_linear({current}[{window}s:{FORECAST_STEP}], {horizon})"
    cap = f"{_decimal(predictive.max_growth)} * {current}"
    queries = [("forecast", f"clamp_min(({trend} < {cap}) or {cap}, 0)")]
    if predictive.seasonality:
        offset = round(86_400 - lookahead - window / 2)
        daily = f"avg_over_time({current}[{window}s:{FORECAST_STEP}] offset {offset}s)"
        queries.append(("daily-profile", daily))
    return [
        {
            "type": "prometheus",
            "name": name,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": deployment.spec.kubernetes.prometheus_url,
                "query": query,
                "threshold": _decimal(min(targets)),
                "activationThreshold": "0",
            },
        }
        for name, query in queries
    ]


def _average_value(metric: CpuMetric | MemoryMetric) -> str:
    # The spec validator guarantees exactly one of targetUtilization / targetAverageValue.
    value = metric.target_average_value
    return value.text if value is not None else ""


def _prometheus_selector(deployment: ModelDeployment, track: Track) -> str:
    # Pods of a Deployment are named <deployment>-<replicaset hash>-<suffix>. A standby pod
    # promoted into the stable track keeps its name, <deployment>-standby-<hash>-<suffix>;
    # standby pods are not endpoints of any Service, so only promoted ones are scraped.
    promoted = "(standby-)?" if track.suffix == "" and standby_size(deployment) else ""
    pod = f"{track.deployment_name}-{promoted}[a-z0-9]+-[a-z0-9]+"
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
