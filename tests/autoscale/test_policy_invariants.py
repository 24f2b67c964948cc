"""Invariants of decide() under random load: bounds hold, no flapping inside the window."""

from __future__ import annotations

from typing import Any

from autoscale_helpers import observation, replica, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkube.autoscale.api import PolicyState, decide

METRIC_SETS: list[list[dict[str, Any]]] = [
    [{"type": "cpu", "targetUtilization": 70}],
    [{"type": "concurrency", "target": 2}],
    [{"type": "rps", "target": 10}],
    [{"type": "cpu", "targetUtilization": 60}, {"type": "concurrency", "target": 4}],
    [{"type": "latency", "targetMs": 300}, {"type": "queueDepth", "target": 5}],
]
BEHAVIORS: list[dict[str, Any] | None] = [
    None,
    {},
    {"scaleDown": {"stabilizationWindowSeconds": 60}},
    {
        "scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
        "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min"},
    },
]

load = st.fixed_dictionaries(
    {
        "cpu": st.one_of(st.none(), st.floats(0, 2.0)),
        "in_flight": st.floats(0, 50),
        "rps": st.floats(0, 200),
        "queue": st.floats(0, 30),
        "p95": st.one_of(st.none(), st.floats(1, 5000)),
        "ready": st.booleans(),
    }
)


def _replicas(count: int, loads: list[dict[str, Any]], now: float) -> list[Any]:
    reps = []
    for i in range(count):
        x = loads[i % len(loads)]
        reps.append(
            replica(
                f"r{i}", cpu=x["cpu"], in_flight=x["in_flight"], rps=x["rps"], queue=x["queue"],
                p95=x["p95"], ready=x["ready"] or i == 0, started_at=now - 400 - i,
            )
        )  # fmt: skip
    return reps


def _spec(metrics: list[dict[str, Any]], behavior: dict[str, Any] | None, lo: int, hi: int) -> Any:
    fields: dict[str, Any] = {"minReplicas": lo, "maxReplicas": hi, "metrics": metrics}
    if behavior is not None:
        fields["behavior"] = behavior
    return spec(**fields)


@settings(max_examples=150, deadline=None)
@given(
    metrics=st.sampled_from(METRIC_SETS),
    behavior=st.sampled_from(BEHAVIORS),
    lo=st.integers(1, 4),
    span=st.integers(0, 6),
    current=st.integers(1, 14),
    loads=st.lists(load, min_size=1, max_size=4),
)
def test_desired_stays_within_min_and_max(
    metrics: list[dict[str, Any]],
    behavior: dict[str, Any] | None,
    lo: int,
    span: int,
    current: int,
    loads: list[dict[str, Any]],
) -> None:
    s = _spec(metrics, behavior, lo, lo + span)
    decision, state = decide(s, observation(0.0, _replicas(current, loads, 0.0)), None)
    assert s.min_replicas <= decision.desired_replicas <= s.max_replicas
    assert PolicyState.from_json(state.to_json()) == state


@settings(max_examples=60, deadline=None)
@given(
    metrics=st.sampled_from(METRIC_SETS),
    behavior=st.sampled_from(BEHAVIORS),
    ticks=st.lists(st.lists(load, min_size=1, max_size=3), min_size=5, max_size=40),
    step=st.sampled_from([2.0, 5.0, 15.0]),
)
def test_no_scale_down_inside_the_stabilization_window_after_a_scale_up(
    metrics: list[dict[str, Any]],
    behavior: dict[str, Any] | None,
    ticks: list[list[dict[str, Any]]],
    step: float,
) -> None:
    s = _spec(metrics, behavior, 1, 12)
    window = _down_window(s)
    state = None
    current = 2
    last_up: float | None = None
    for i, loads in enumerate(ticks):
        now = i * step
        decision, state = decide(s, observation(now, _replicas(current, loads, now)), state)
        desired = decision.desired_replicas
        if desired < current and last_up is not None:
            assert now - last_up >= window, (now, last_up, decision.reason)
        if desired > current:
            last_up = now
        current = desired


def _down_window(s: Any) -> float:
    only_resources = all(m.type in ("cpu", "memory") for m in s.metrics)
    if s.behavior is None:
        return s.downscale_stabilization if only_resources else s.stable_window
    rules = s.behavior.scale_down
    if rules is None or rules.stabilization_window_seconds is None:
        return s.downscale_stabilization
    return float(rules.stabilization_window_seconds)
