"""Every vector of ``data/hpa_vectors.json`` (from Kubernetes' HPA unit tests) through our code.

The adapter below only translates the JSON shapes into our types; all arithmetic is ours.
Set ``MLKUBE_HPA_VECTORS`` to another file of the same format to run more vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlkube.autoscale.api import Recommendation, ScaleEvent
from mlkube.autoscale.hpa import behavior as bh
from mlkube.autoscale.hpa import calculator as calc
from mlkube.autoscale.hpa.controller import (
    HpaMemory,
    HpaObserved,
    HpaSpec,
    MetricTarget,
    Readings,
    reconcile,
)
from mlkube.autoscale.hpa.pods import (
    ZERO_TIME,
    MetricError,
    Pod,
    PodMetric,
    ReadinessTimings,
    group_pods,
    resource_samples,
)
from mlkube.desired.scaling import Behavior

VECTORS_PATH = Path(
    os.environ.get("MLKUBE_HPA_VECTORS", Path(__file__).parent / "data" / "hpa_vectors.json")
)
DATA = json.loads(VECTORS_PATH.read_text())
VECTORS: list[dict[str, Any]] = DATA["vectors"]
RC_PARAMS = DATA["conventions"]["parameters_replica_calc"]
CTRL_PARAMS = DATA["conventions"]["parameters_controller"]


def t(value: Any) -> float | None:
    """A vector time: "zero" is Go's zero time, null is unset, numbers are seconds from now."""
    if value == "zero":
        return ZERO_TIME
    return None if value is None else float(value)


def ready_flag(value: Any) -> bool | None:
    return None if value is None else value == "True"


def pod(raw: dict[str, Any]) -> Pod:
    transition = t(raw.get("ready_last_transition"))
    return Pod(
        name=raw["name"],
        phase=raw.get("phase", "Running"),
        ready=ready_flag(raw.get("ready")),
        start=t(raw.get("start")),
        ready_transition=ZERO_TIME if transition is None else transition,
        deleted=bool(raw.get("deleted")),
        requests=dict(raw.get("requests_milli") or {}),
    )


def pods_of(inputs: dict[str, Any]) -> tuple[Pod, ...]:
    return tuple(pod(p) for p in inputs.get("pods") or ())


def tol(inputs: dict[str, Any]) -> calc.Tolerances:
    raw = inputs.get("tolerance") or RC_PARAMS["tolerance_default"]
    return calc.Tolerances(scale_down=raw["scale_down"], scale_up=raw["scale_up"])


def rc_timings(inputs: dict[str, Any]) -> ReadinessTimings:
    return ReadinessTimings(
        inputs.get("cpu_initialization_period_s", RC_PARAMS["cpu_initialization_period_s"]),
        inputs.get(
            "delay_of_initial_readiness_status_s", RC_PARAMS["delay_of_initial_readiness_status_s"]
        ),
    )


def events(raw: list[dict[str, Any]] | None) -> tuple[ScaleEvent, ...]:
    return tuple(
        ScaleEvent(e["change"], -float(e.get("age_s", 0)), bool(e.get("outdated", False)))
        for e in raw or ()
    )


def recs(raw: list[dict[str, Any]] | None) -> tuple[Recommendation, ...]:
    return tuple(Recommendation(r["replicas"], -float(r["age_s"])) for r in raw or ())


def rules(
    raw: dict[str, Any] | None, default: bh.Rules, flag_window: int | None = None
) -> bh.Rules:
    if raw is None:
        window = default.window if flag_window is None else flag_window
        return bh.Rules(window, default.select, default.policies, default.tolerance)
    raw_window = raw.get("stabilizationWindowSeconds")
    if raw_window is None:
        window = default.window if flag_window is None else flag_window
    else:
        window = int(raw_window)
    policies = raw.get("policies")
    return bh.Rules(
        window,
        raw.get("selectPolicy") or default.select,
        default.policies
        if policies is None
        else tuple(bh.Policy(p["type"], p["value"], p["periodSeconds"]) for p in policies),
        None if raw.get("tolerance") is None else float(raw["tolerance"]),
    )


def up_rules(raw: dict[str, Any] | None) -> bh.Rules:
    return rules(raw, bh.DEFAULT_SCALE_UP)


def down_rules(raw: dict[str, Any] | None) -> bh.Rules:
    return rules(
        raw, bh.DEFAULT_SCALE_DOWN, flag_window=int(CTRL_PARAMS["downscale_stabilization_window_s"])
    )


# ---------------------------------------------------------------- per-category runners


def run_group_pods(i: dict[str, Any], e: dict[str, Any]) -> None:
    metrics = {
        name: PodMetric(m["value"], t(m["timestamp"]) or 0.0, float(m["window_s"]))
        for name, m in i["metrics"].items()
    }
    groups = group_pods(pods_of(i), metrics, i["resource"], now=0.0, timings=rc_timings(i))
    assert groups.ready_count == e["ready_pod_count"]
    assert sorted(groups.unready) == sorted(e["unready"])
    assert sorted(groups.missing) == sorted(e["missing"])
    assert sorted(groups.ignored) == sorted(e["ignored"])


def run_resource(i: dict[str, Any], e: dict[str, Any]) -> None:
    ctx = calc.PodContext(pods_of(i), 0.0, rc_timings(i))
    resource = i.get("resource", "cpu")
    container = i.get("container")
    samples = resource_samples(
        i["pod_resource_metrics_milli"], container, timestamp=ZERO_TIME, window=60.0
    )
    try:
        if "target_average_value_milli" in i:
            replicas, usage = calc.plain_replicas(
                i["current_replicas"], i["target_average_value_milli"], samples, ctx,
                resource=resource, tolerances=tol(i),
            )  # fmt: skip
            got: dict[str, Any] = {"replicas": replicas, "usage_milli": usage}
        else:
            replicas, util, raw = calc.resource_replicas(
                i["current_replicas"], i["target_utilization"], samples, ctx,
                resource=resource, container=container, tolerances=tol(i),
            )  # fmt: skip
            got = {"replicas": replicas, "utilization": util, "raw_value_milli": raw}
    except MetricError as exc:
        message = str(exc)
        assert "error_contains" in e, f"unexpected error: {message}"
        assert e["error_contains"] in message
        return
    assert "error_contains" not in e, f"expected an error, got {got}"
    for key, value in got.items():
        if key in e:
            assert value == e[key], key


def run_pods(i: dict[str, Any], e: dict[str, Any]) -> None:
    ctx = calc.PodContext(pods_of(i), 0.0, rc_timings(i))
    metrics = {k: PodMetric(v) for k, v in i["pod_metrics_milli"].items()}
    replicas, usage = calc.plain_replicas(
        i["current_replicas"], i["target_average_value_milli"], metrics, ctx, tolerances=tol(i)
    )
    assert (replicas, usage) == (e["replicas"], e["usage_milli"])


def _metric_value(i: dict[str, Any]) -> int:
    if "object_metric_milli" in i:
        return int(i["object_metric_milli"])
    return calc.external_sum(tuple(i["external_metric_milli"]))


def run_value(i: dict[str, Any], e: dict[str, Any]) -> None:
    value = _metric_value(i)
    replicas = calc.value_replicas(
        i["current_replicas"], value, i["target_value_milli"], pods_of(i), tolerances=tol(i)
    )
    assert replicas == e["replicas"]
    assert value == e["usage_milli"]


def run_per_pod(i: dict[str, Any], e: dict[str, Any]) -> None:
    replicas, usage = calc.average_value_replicas(
        i["status_replicas"], _metric_value(i), i["target_average_value_milli"], tolerances=tol(i)
    )
    assert (replicas, usage) == (e["replicas"], e["usage_milli"])


def run_rate_limit(i: dict[str, Any], e: dict[str, Any]) -> None:
    args = bh.RateArgs(
        i["current_replicas"],
        i["prenormalized_desired_replicas"],
        i["min_replicas"],
        i["max_replicas"],
        up_rules(i["scale_up_rules"]),
        down_rules(i["scale_down_rules"]),
        events(i["scale_up_events"]),
        events(i["scale_down_events"]),
    )
    got = bh.convert_with_behavior_rate(args, now=0.0)
    assert (got.replicas, got.reason) == (e["replicas"], e["condition_reason"])


def run_limit(i: dict[str, Any], e: dict[str, Any]) -> None:
    limit = bh.scale_down_limit(
        i["current_replicas"], events(i["scale_up_events"]), events(i["scale_down_events"]),
        down_rules(i["rules"]), 0.0,
    )  # fmt: skip
    assert limit == e["limit"]


def run_stabilization(i: dict[str, Any], e: dict[str, Any]) -> None:
    replicas, history = bh.stabilize_with_behavior(
        recs(i["recommendations"]), i["prenormalized_desired_replicas"], i["current_replicas"],
        now=0.0, up_window=i["scale_up_stabilization_window_s"],
        down_window=i["scale_down_stabilization_window_s"],
    )  # fmt: skip
    assert replicas == e["replicas"]
    if "stored_recommendations" in e:
        assert [r.replicas for r in history] == e["stored_recommendations"]


def run_legacy_stabilization(i: dict[str, Any], e: dict[str, Any]) -> None:
    replicas, history = bh.stabilize_legacy(
        recs(i["recommendations"]), i["prenormalized_desired_replicas"],
        now=0.0, window=i["downscale_stabilization_window_s"],
    )  # fmt: skip
    assert replicas == e["replicas"]
    assert len(history) == e["recommendation_log_length"]


def run_legacy_normalize(i: dict[str, Any], e: dict[str, Any]) -> None:
    got = bh.convert_with_rules(
        i["current_replicas"], i["desired_replicas"], i["min_replicas"], i["max_replicas"],
        factor=i["scale_up_limit_factor"], minimum=i["scale_up_limit_minimum"],
    )  # fmt: skip
    assert (got.replicas, got.reason) == (e["replicas"], e["condition_reason"])


def run_events(i: dict[str, Any], e: dict[str, Any]) -> None:
    previous = events(i["previous_events"])
    assert bh.change_in_period(previous, 60, 0.0) == e["replicas_change_in_last_60s_before_store"]
    if i["rules"] is None:
        after = previous  # behavior == nil: the controller stores nothing
    else:
        after = bh.store_scale_event(previous, i["replica_change"], up_rules(i["rules"]), 0.0)
    got = [{"change": ev.change, "outdated": ev.outdated} for ev in after]
    assert got == e["events_after_store"]


def hpa_metric(raw: dict[str, Any]) -> MetricTarget:
    target = raw.get("target") or {}
    kind = target.get("type", "")
    value = {
        "Utilization": target.get("averageUtilization"),
        "AverageValue": target.get("averageValue_milli"),
        "Value": target.get("value_milli"),
    }.get(kind)
    return MetricTarget(
        type=raw.get("type", ""),
        name=raw.get("name") or raw.get("metric") or "",
        target_type=kind,
        value=int(value or 0),
        container=raw.get("container"),
    )


def controller_readings(i: dict[str, Any], metrics: tuple[MetricTarget, ...]) -> Readings:
    if i.get("metrics_fetch_error"):
        return Readings()
    resource, pods, objects, external = {}, {}, {}, {}
    for m in metrics:
        if (
            m.type in ("Resource", "ContainerResource")
            and i.get("pod_resource_metrics_milli") is not None
        ):
            resource[m.name] = i["pod_resource_metrics_milli"]
        elif m.type == "Pods" and i.get("pod_custom_metrics_milli") is not None:
            pods[m.name] = i["pod_custom_metrics_milli"]
        elif m.type == "Object" and i.get("object_metric_milli") is not None:
            objects[m.name] = i["object_metric_milli"]
        elif m.type == "External" and i.get("external_metric_milli") is not None:
            external[m.name] = tuple(i["external_metric_milli"])
    return Readings(resource, 0.0, 60.0, pods, objects, external)


def run_controller(i: dict[str, Any], e: dict[str, Any]) -> None:
    metrics = tuple(hpa_metric(m) for m in i["metrics"])
    behavior = None
    if i.get("behavior") is not None:
        b = i["behavior"]
        behavior = Behavior(up_rules(b.get("scaleUp")), down_rules(b.get("scaleDown")))
    spec = HpaSpec(
        min_replicas=i["min_replicas"] if i.get("min_replicas") is not None else 1,
        max_replicas=i["max_replicas"],
        metrics=metrics,
        behavior=behavior,
        tolerance=CTRL_PARAMS["tolerance"],
        timings=ReadinessTimings(
            CTRL_PARAMS["cpu_initialization_period_s"],
            CTRL_PARAMS["delay_of_initial_readiness_status_s"],
        ),
        downscale_window=CTRL_PARAMS["downscale_stabilization_window_s"],
        scale_up_limit_factor=CTRL_PARAMS["scale_up_limit_factor"],
        scale_up_limit_minimum=CTRL_PARAMS["scale_up_limit_minimum"],
    )
    observed = HpaObserved(
        now=0.0,
        spec_replicas=i["spec_replicas"],
        status_replicas=i["status_replicas"],
        pods=pods_of(i),
        readings=controller_readings(i, metrics),
        previous_desired=i.get("status_desired_replicas", 0),
    )
    memory = HpaMemory(None if i.get("recommendations") is None else recs(i["recommendations"]))
    outcome = reconcile(spec, observed, memory)
    assert outcome.desired == e["desired_replicas"]
    if "conditions" in e:
        expected = [(c["type"], c["status"], c["reason"]) for c in e["conditions"]]
        assert list(outcome.conditions) == expected
    if "cpu_utilization" in e:
        utils = [
            s.value
            for s in outcome.statuses
            if s.target.type == "Resource" and s.target.name == "cpu"
        ]
        assert utils, "no cpu status reported"
        assert utils[0] == e["cpu_utilization"]


RUNNERS = {
    "group_pods": run_group_pods,
    "replica_calc.resource": run_resource,
    "replica_calc.pods": run_pods,
    "replica_calc.object": run_value,
    "replica_calc.external": run_value,
    "replica_calc.object_per_pod": run_per_pod,
    "replica_calc.external_per_pod": run_per_pod,
    "behavior.rate_limit": run_rate_limit,
    "behavior.limit": run_limit,
    "behavior.stabilization": run_stabilization,
    "behavior.events": run_events,
    "stabilization.legacy": run_legacy_stabilization,
    "normalize.legacy": run_legacy_normalize,
    "controller": run_controller,
}


def test_every_category_has_a_runner() -> None:
    assert {v["category"] for v in VECTORS} <= set(RUNNERS)


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{v['category']}:{v['name']}" for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    RUNNERS[vector["category"]](vector["inputs"], vector["expected"])
