"""autoscaling.predictive on Kubernetes: KEDA forecast triggers, nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.render import render
from mlkube.desired.capabilities import BackendKind, Support, notes
from mlkube.spec import ModelDeployment, parse_documents

BASE = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: llm, namespace: ml}
spec:
  model: {uri: "s3://bucket/llm", format: python, entrypoint: "model:Model"}
  autoscaling:
    maxReplicas: 6
    engine: ENGINE
    metrics: [{type: rps, target: 12.5}]
"""


def _doc(engine: str = "keda", extra: str = "") -> ModelDeployment:
    text = BASE.replace("ENGINE", engine) + "".join(f"    {line}\n" for line in extra.splitlines())
    document = parse_documents(text)[0]
    assert isinstance(document, ModelDeployment)
    return document


def _kind(document: ModelDeployment, kind: str) -> dict[str, Any]:
    return next(o for o in render([document]).objects if o["kind"] == kind)


def _triggers(document: ModelDeployment) -> dict[str, dict[str, Any]]:
    triggers = _kind(document, "ScaledObject")["spec"]["triggers"]
    return {t.get("name", t["type"]): t for t in triggers}


def test_without_predictive_no_forecast_trigger_is_rendered() -> None:
    assert list(_triggers(_doc())) == ["prometheus"]


def test_keda_gets_a_bounded_trend_and_a_daily_profile_trigger() -> None:
    triggers = _triggers(_doc(extra="predictive: {maxGrowth: 3, trendWindow: 2m}"))
    assert list(triggers) == ["prometheus", "forecast", "daily-profile"]
    rate = 'sum(rate(mlkube_requests_total{namespace="ml",pod=~"llm-[a-z0-9]+-[a-z0-9]+"}[1m]))'
    forecast = triggers["forecast"]["metadata"]
    assert forecast["query"].startswith(f"clamp_min((predict_linear({rate}[120s:15s], (scalar(")
    assert "kube_pod_status_ready_time" in forecast["query"]
    assert "or vector(60)) + 2)" in forecast["query"]  # auto: start-up + the 2 s polling
    assert forecast["query"].endswith(f" < 3 * {rate}) or 3 * {rate}, 0)")
    assert forecast["threshold"] == "12.5"
    assert triggers["forecast"]["metricType"] == "AverageValue"
    daily = triggers["daily-profile"]["metadata"]["query"]
    # 1 day back, 62 s ahead (auto's fallback + the polling), centred on a 120 s window.
    assert daily == f"avg_over_time({rate}[120s:15s] offset {86400 - 62 - 60}s)"


def test_a_fixed_horizon_is_written_as_seconds() -> None:
    triggers = _triggers(_doc(extra="predictive: {horizon: 90s, seasonality: false}"))
    assert list(triggers) == ["prometheus", "forecast"]
    assert "[60s:15s], 90) < 2 * " in triggers["forecast"]["metadata"]["query"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_scaled_object_with_forecast_triggers_validates(version: str) -> None:
    document = _doc(extra="predictive: {}\nstandby: 1")
    problems = [p for obj in render([document]).objects for p in validate(obj, version)]
    assert problems == []


def test_engine_hpa_renders_the_same_autoscaler_and_says_the_forecast_is_ignored() -> None:
    plain, ours = _doc("hpa"), _doc("hpa", "predictive: {}")
    hpa = "HorizontalPodAutoscaler"
    assert _kind(ours, hpa) == _kind(plain, hpa)
    found = {n.field: n for n in notes([ours], BackendKind.KUBERNETES)}
    note = found["spec.autoscaling.predictive"]
    assert note.verdict.support is Support.IGNORED
    assert "use engine keda with an rps metric" in note.text()


def test_standby_is_approximated_on_kubernetes_and_honoured_locally_with_predictive() -> None:
    document = _doc(extra="predictive: {}\nstandby: 2")
    k8s = {n.field: n.verdict.support for n in notes([document], BackendKind.KUBERNETES)}
    local = {n.field: n.verdict.support for n in notes([document], BackendKind.LOCAL)}
    # A standby Deployment promoted by the in-cluster controller (test_k8s_standby.py).
    assert k8s["spec.autoscaling.standby"] is Support.APPROXIMATED
    assert k8s["spec.autoscaling.predictive"] is Support.APPROXIMATED
    assert "spec.autoscaling.standby" not in local  # honoured: no note
    assert "spec.autoscaling.predictive" not in local
    disabled = _doc(extra="predictive: {enabled: false}")
    fields = {n.field for n in notes([disabled], BackendKind.LOCAL)}
    assert "spec.autoscaling.predictive" not in fields
