"""The start-up-aware policy: the forecast raises the reactive ask, never lowers it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from autoscale_helpers import observation, replica, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkube.autoscale.api import PolicyState, decide
from mlkube.autoscale.forecast import DAY_S
from mlkube.autoscale.history import LoadHistory
from mlkube.autoscale.policy import standby_pool

RPS = [{"type": "rps", "target": 10}]


def _spec(**extra: Any) -> Any:
    fields: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 6, "metrics": RPS}
    fields.update(extra)
    return spec(**fields)


def _ramp_history(now: float, slope: float, base: float = 5.0) -> LoadHistory:
    rates = [(t, base + slope * t) for t in range(1, int(now) + 1)]
    return LoadHistory(now, rates, startup_seconds=60.0)


def _obs(now: float, total_rps: float, count: int = 1) -> Any:
    reps = [replica(f"r{i}", rps=total_rps / count, cpu=0.2) for i in range(count)]
    return observation(now, reps)


def test_without_a_history_the_decision_is_the_reactive_one() -> None:
    s = _spec(predictive={})
    plain = _spec()
    obs = _obs(100, 12.0)
    assert decide(s, obs, None) == decide(plain, obs, None)


def test_a_rising_rate_scales_for_the_load_one_start_up_ahead() -> None:
    s = _spec(predictive={})
    now = 100.0
    history = _ramp_history(now, slope=0.2)  # 25 req/s now, +0.2 req/s every second
    decision, state = decide(s, _obs(now, 25.0, count=3), None, history)
    reactive, _ = decide(_spec(), _obs(now, 25.0, count=3), None)
    assert reactive.desired_replicas == 3
    # 62 s ahead (60 s start-up + 2 s tick): about 25 + 12.4 req/s → 4 replicas of 10.
    assert decision.desired_replicas == 4
    assert decision.metric_values["forecast_horizon_s"] == 62.0
    assert decision.metric_values["desired_by_forecast"] == 4.0
    assert decision.reason.startswith("forecast 36.")
    assert "in 62s (trend, now 24.5) asks for 4; 3 → 4 (reactive: rps asks for 3" in decision.reason
    assert state.forecast_asks[-1].replicas == 4


def test_the_forecast_never_exceeds_max_replicas_and_says_so() -> None:
    s = _spec(predictive={"maxGrowth": 10}, maxReplicas=4)
    decision, _ = decide(s, _obs(100, 25.0, count=3), None, _ramp_history(100, slope=2.0))
    assert decision.desired_replicas == 4
    assert decision.limited_by == "maxReplicas"
    assert "limited by maxReplicas" in decision.reason


def test_auto_horizon_waits_for_a_measured_start_up() -> None:
    s = _spec(predictive={})
    history = LoadHistory(100, [(t, 25.0 + t) for t in range(1, 101)], startup_seconds=None)
    decision, _ = decide(s, _obs(100, 25.0, count=3), None, history)
    assert decision.desired_replicas == 3
    assert decision.reason.endswith("no forecast yet (no replica start-up measured)")


def test_a_fixed_horizon_needs_no_measured_start_up() -> None:
    s = _spec(predictive={"horizon": "30s"})
    history = LoadHistory(100, [(float(t), 0.5 * t) for t in range(1, 101)], None)
    decision, _ = decide(s, _obs(100, 50.0, count=5), None, history)
    assert decision.metric_values["forecast_horizon_s"] == 30.0
    assert decision.desired_replicas == 6  # about 48.5 + 15 req/s → 7, capped at 6


def test_a_forecast_ask_is_held_one_stable_window() -> None:
    s = _spec(predictive={}, stableWindow="30s")
    rising = _ramp_history(100, slope=0.2)
    first, state = decide(s, _obs(100, 25.0, count=3), None, rising)
    assert first.desired_replicas == 4
    flat = LoadHistory(110, [(float(t), 25.0) for t in range(1, 111)], 60.0)
    held, state = decide(s, _obs(110, 25.0, count=4), state, flat)
    assert held.desired_replicas == 4
    assert "held at 4 for the stable window" in held.reason
    later = LoadHistory(140, [(float(t), 25.0) for t in range(1, 141)], 60.0)
    after, _ = decide(s, _obs(140, 25.0, count=4), state, later)
    assert after.desired_replicas == 3


def test_the_daily_peak_is_scaled_for_before_it_comes() -> None:
    s = _spec(predictive={})
    now = DAY_S + 9 * 3600 - 30  # 08:59:30, day two; yesterday 09:00-10:00 ran at 50 req/s
    rates = [
        (float(t), 50.0 if 9 * 3600 <= t % DAY_S < 10 * 3600 else 5.0)
        for t in range(0, int(now) + 1, 60)
    ]
    decision, _ = decide(s, _obs(now, 5.0), None, LoadHistory(now, rates, 60.0))
    assert decision.desired_replicas == 5
    assert "(daily profile, now 5.0) asks for 5" in decision.reason
    off = _spec(predictive={"seasonality": False})
    flat, _ = decide(off, _obs(now, 5.0), None, LoadHistory(now, rates, 60.0))
    assert flat.desired_replicas == 1


def test_disabled_predictive_is_the_reactive_policy() -> None:
    s = _spec(predictive={"enabled": False})
    history = _ramp_history(100, slope=0.2)
    assert decide(s, _obs(100, 25.0, count=3), None, history) == decide(
        _spec(), _obs(100, 25.0, count=3), None
    )


METRICS: list[list[dict[str, Any]]] = [
    RPS,
    [{"type": "concurrency", "target": 2}],
    [{"type": "cpu", "targetUtilization": 70}],
]


@settings(max_examples=150, deadline=None)
@given(
    metrics=st.sampled_from(METRICS),
    rates=st.lists(st.floats(0, 500), min_size=1, max_size=90),
    rps_each=st.floats(0, 100),
    in_flight=st.floats(0, 20),
    count=st.integers(1, 8),
    hi=st.integers(1, 12),
    startup=st.one_of(st.none(), st.floats(0, 300)),
    growth=st.floats(1, 10),
)
def test_never_below_the_reactive_ask_never_above_max_replicas(
    metrics: list[dict[str, Any]],
    rates: list[float],
    rps_each: float,
    in_flight: float,
    count: int,
    hi: int,
    startup: float | None,
    growth: float,
) -> None:
    bounds = {"minReplicas": 1, "maxReplicas": max(hi, 1), "metrics": metrics}
    s = spec(**bounds, predictive={"maxGrowth": growth}, standby=2)
    now = float(len(rates))
    reps = [replica(f"r{i}", rps=rps_each, in_flight=in_flight, cpu=0.3) for i in range(count)]
    obs = observation(now, reps)
    history = LoadHistory(now, [(float(i + 1), r) for i, r in enumerate(rates)], startup)
    ours, state = decide(s, obs, None, history)
    reactive, _ = decide(spec(**bounds), obs, None)
    assert reactive.desired_replicas <= ours.desired_replicas <= s.max_replicas
    assert ours.standby == min(2, s.max_replicas - ours.desired_replicas)
    assert PolicyState.from_json(state.to_json()) == state


def test_policy_state_from_before_predictive_still_loads() -> None:
    _, state = decide(_spec(predictive={}), _obs(100, 25.0, 3), None, _ramp_history(100, 0.2))
    data = state.to_json()
    assert data["forecastAsks"]
    del data["forecastAsks"]
    assert PolicyState.from_json(data).forecast_asks == ()


@pytest.mark.parametrize(
    ("standby", "serving", "expected"),
    [(0, 1, 0), (1, 1, 1), (2, 1, 2), (2, 2, 1), (2, 3, 0), (5, 0, 0)],
)
def test_the_standby_pool_never_exceeds_what_could_be_promoted(
    standby: int, serving: int, expected: int
) -> None:
    s = spec(minReplicas=1, maxReplicas=3, metrics=RPS, standby=standby)
    assert standby_pool(s, serving) == expected


def test_the_documented_predictive_fields_are_the_defaults() -> None:
    page = (Path(__file__).parents[2] / "docs" / "autoscaling.md").read_text(encoding="utf-8")
    block = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = yaml.safe_load(block)["autoscaling"]
    ours = spec(predictive=documented["predictive"], standby=documented["standby"])
    assert ours.predictive == spec(predictive={}).predictive
    assert ours.standby == spec().standby == 0


def test_a_held_ask_respects_a_lowered_max_replicas() -> None:
    rising = _ramp_history(100, slope=0.2)
    first, state = decide(_spec(predictive={}), _obs(100, 25.0, count=3), None, rising)
    assert first.desired_replicas == 4
    lowered = _spec(predictive={}, maxReplicas=3)
    flat = LoadHistory(104, [(float(t), 25.0) for t in range(1, 105)], 60.0)
    after, _ = decide(lowered, _obs(104, 25.0, count=4), state, flat)
    assert after.desired_replicas == 3
