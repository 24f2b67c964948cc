"""A replica serving several models exports a readiness series per model: rules and panels
that count replicas must count one series per replica."""

from __future__ import annotations

from mlkube.observability.alerts import alert_rules
from mlkube.spec import ModelDeployment, parse_documents

_SPEC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: shop, namespace: ml}
spec:
  MODELS
  autoscaling: {minReplicas: 1, maxReplicas: 3, metrics: [{type: cpu, targetUtilization: 70}]}
"""
SEVERAL = (
    "models: [{name: iris, uri: a.onnx, format: onnx}, {name: wine, uri: b.onnx, format: onnx},"
    " {name: reg, uri: c.onnx, format: onnx}]"
)
ONE = "model: {uri: a.onnx, format: onnx}"


def _deployment(models: str) -> ModelDeployment:
    (document,) = parse_documents(_SPEC.replace("MODELS", models))
    assert isinstance(document, ModelDeployment)
    return document


def _at_max(deployment: ModelDeployment) -> str:
    (rule,) = [r for r in alert_rules(deployment) if r["alert"] == "MlkubeReplicasAtMax"]
    return str(rule["expr"])


def test_the_at_max_alert_counts_one_readiness_series_per_replica():
    # three models on one replica are not three replicas at maxReplicas 3
    assert 'mlkube_model_ready{namespace="ml",deployment="shop",model="iris"}' in _at_max(
        _deployment(SEVERAL)
    )
    assert "model=" not in _at_max(_deployment(ONE))


def test_the_dashboard_counts_running_replicas_by_the_first_model():
    from mlkube.observability.dashboards import deployment_dashboard, queries

    several = queries(deployment_dashboard(_deployment(SEVERAL)))
    assert any(q.startswith('count(mlkube_model_ready{model="iris",') for q in several)
    one = queries(deployment_dashboard(_deployment(ONE)))
    assert not any("model=" in q for q in one if "mlkube_model_ready" in q)
