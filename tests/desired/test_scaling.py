"""The resolved scaling policy: which algorithm runs, with which numbers, on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.desired.scaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    BehaviorSource,
    Policy,
    replicas_after_apply,
    resolve_scaling,
)
from mlkube.spec.autoscaling import AutoscalingSpec
from mlkube.spec.deployment import ModelDeploymentSpec

CPU = [{"type": "cpu", "targetUtilization": 70}]
LOAD = [{"type": "concurrency", "target": 8}]


def _scaling(**fields: Any) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate(fields)


def test_cpu_only_without_behavior_is_hpa_legacy():
    resolved = resolve_scaling(_scaling(metrics=CPU))
    assert resolved.behavior is None
    assert resolved.source is BehaviorSource.LEGACY
    assert resolved.sync_period_s == 15.0


def test_request_metrics_without_behavior_get_the_ml_default():
    resolved = resolve_scaling(_scaling(metrics=LOAD, maxReplicas=7, stableWindow="30s"))
    assert resolved.source is BehaviorSource.ML_DEFAULT
    assert resolved.behavior is not None
    assert resolved.behavior.scale_up.window == 0
    assert resolved.behavior.scale_up.policies == (Policy("Pods", 7, 1),)
    assert resolved.behavior.scale_down.window == 30
    assert resolved.sync_period_s == 2.0


def test_a_downscale_window_other_than_300s_is_carried_by_behavior():
    resolved = resolve_scaling(_scaling(metrics=CPU, downscaleStabilization="10m"))
    assert resolved.source is BehaviorSource.DOWNSCALE_WINDOW
    assert resolved.behavior is not None
    assert resolved.behavior.scale_up == DEFAULT_SCALE_UP
    assert resolved.behavior.scale_down.window == 600
    assert resolved.behavior.scale_down.policies == DEFAULT_SCALE_DOWN.policies


def test_a_partial_behavior_is_defaulted_as_the_api_server_does():
    resolved = resolve_scaling(
        _scaling(
            metrics=CPU,
            behavior={
                "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
            },
        )
    )
    assert resolved.source is BehaviorSource.SPEC
    assert resolved.behavior is not None
    assert resolved.behavior.scale_up == DEFAULT_SCALE_UP
    assert resolved.behavior.scale_down.window == 300
    assert resolved.behavior.scale_down.policies == (Policy("Pods", 1, 60),)


def _spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": "m.onnx", "format": "onnx"}, **fields}
    )


SCALED = {"minReplicas": 2, "maxReplicas": 6}


@pytest.mark.parametrize(
    ("old", "new", "current", "expected"),
    [
        pytest.param(None, _spec(replicas=3), 0, 3, id="first-apply"),
        pytest.param(None, _spec(replicas=9, autoscaling=SCALED), 0, 6, id="first-apply-clamped"),
        pytest.param(_spec(replicas=2), _spec(replicas=4), 2, 4, id="replicas-changed"),
        pytest.param(
            _spec(autoscaling=SCALED),
            _spec(autoscaling={**SCALED, "maxReplicas": 8}),
            5,
            5,
            id="autoscaled-count-kept",
        ),
        pytest.param(
            _spec(autoscaling=SCALED),
            _spec(autoscaling={"minReplicas": 1, "maxReplicas": 3}),
            5,
            3,
            id="clamped-into-new-bounds",
        ),
        pytest.param(
            _spec(replicas=2),
            _spec(replicas=2, autoscaling=SCALED),
            4,
            4,
            id="autoscaling-turned-on-keeps-the-count",
        ),
        pytest.param(
            _spec(autoscaling=SCALED), _spec(replicas=2), 5, 2, id="autoscaling-off-spec-rules"
        ),
    ],
)
def test_replicas_after_apply(old, new, current, expected):
    assert replicas_after_apply(old, new, current) == expected
