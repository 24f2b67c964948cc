"""ControllerMetrics on a fresh registry: state gauges read at scrape time, bounded counters."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlkube.observability.catalogue import CONTROLLER_METRICS, base_name
from mlkube.observability.controller_metrics import (
    ControllerMetrics,
    DeploymentState,
    direction,
    restart_reason,
)


def state(**changes: Any) -> DeploymentState:
    values: dict[str, Any] = {
        "namespace": "ml",
        "name": "iris",
        "desired": 3,
        "ready": 2,
        "phases": {"Ready": 2, "Starting": 1},
        "min_replicas": 1,
        "max_replicas": 5,
        "rollout_phase": "Progressing",
        "canary_weight": 0.2,
        "stable_revision": 1,
        "canary_revision": 2,
        "autoscaler_desired": 3,
        "autoscaler_inputs": {"cpu_utilization": 83.0, "Bad Name!": 1.0},
    }
    values.update(changes)
    return DeploymentState(**values)


def test_state_is_read_at_scrape_time():
    registry = CollectorRegistry()
    live = [state()]
    ControllerMetrics(registry, state=lambda: live)
    get = registry.get_sample_value
    key = {"namespace": "ml", "deployment": "iris"}
    assert get("mlkube_deployment_desired_replicas", key) == 3
    assert get("mlkube_deployment_ready_replicas", key) == 2
    assert get("mlkube_deployment_replicas", {**key, "phase": "Starting"}) == 1
    assert get("mlkube_deployment_replicas", {**key, "phase": "CrashLoopBackOff"}) == 0
    assert get("mlkube_deployment_max_replicas", key) == 5
    assert get("mlkube_autoscaler_metric_value", {**key, "input": "cpu_utilization"}) == 83
    assert get("mlkube_rollout_phase", {**key, "phase": "Progressing"}) == 1
    assert get("mlkube_rollout_phase", {**key, "phase": "Complete"}) == 0
    assert get("mlkube_rollout_canary_weight_ratio", key) == 0.2
    assert get("mlkube_rollout_revision", {**key, "role": "canary"}) == 2
    live[0] = state(desired=5, canary_revision=None, autoscaler_desired=None, max_replicas=None)
    assert get("mlkube_deployment_desired_replicas", key) == 5
    assert get("mlkube_rollout_revision", {**key, "role": "canary"}) is None
    assert get("mlkube_deployment_max_replicas", key) is None
    live.clear()
    assert get("mlkube_deployment_desired_replicas", key) is None


def test_events_are_counted_with_bounded_labels():
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    metrics.decision("ml", "iris", before=1, after=3)
    metrics.decision("ml", "iris", before=3, after=3)
    metrics.restart("ml", "iris", "exited with code 1")
    metrics.restart("ml", "iris", "exited with code 137")
    metrics.restart("ml", "iris", "OOMKilled")
    get = registry.get_sample_value
    key = {"namespace": "ml", "deployment": "iris"}
    assert get("mlkube_autoscaler_decisions_total", {**key, "direction": "up"}) == 1
    assert get("mlkube_autoscaler_decisions_total", {**key, "direction": "none"}) == 1
    assert get("mlkube_replica_restarts_total", {**key, "reason": "Error"}) == 2
    assert get("mlkube_replica_restarts_total", {**key, "reason": "OOMKilled"}) == 1
    metrics.forget("ml", "iris")
    assert get("mlkube_replica_restarts_total", {**key, "reason": "Error"}) is None


def test_everything_exported_is_in_the_catalogue_with_its_labels():
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry, state=lambda: [state()])
    metrics.decision("ml", "iris", before=3, after=1)
    metrics.restart("ml", "iris", "killed by SIGKILL")
    catalogue = {m.name: m for m in CONTROLLER_METRICS}
    seen = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            name = base_name(sample.name)
            assert name in catalogue, sample.name
            assert set(sample.labels) == set(catalogue[name].labels), sample
            seen.add(name)
    assert seen == set(catalogue)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("OOMKilled", "OOMKilled"),
        ("exited with code 2", "Error"),
        ("killed by SIGTERM", "Signal"),
        ("failed readiness for 60s", "Readiness"),
        ("exited (status unknown: adopted process)", "Other"),
    ],
)
def test_restart_reason(text, reason):
    assert restart_reason(text) == reason


def test_direction():
    assert (direction(1, 2), direction(2, 1), direction(2, 2)) == ("up", "down", "none")
