"""The request-rate forecast: a bounded linear trend, and the daily profile with history."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections.abc import Callable

import pytest
from autoscale_helpers import replica
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkube.autoscale.forecast import DAY_S, forecast, level, linear_trend, seasonal
from mlkube.autoscale.history import (
    BUCKET_S,
    KEEP_S,
    RECENT_S,
    LoadTracker,
    RateHistory,
    measured_startups,
    startup_seconds,
)


def _series(
    rate: Callable[[float], float] | float, start: float, end: float, step: float = 1.0
) -> list[tuple[float, float]]:
    out = []
    t = start
    while t <= end:
        out.append((t, float(rate(t) if callable(rate) else rate)))
        t += step
    return out


def test_a_flat_rate_forecasts_itself() -> None:
    samples = _series(10.0, 1, 100)
    got = forecast(samples, 100, 60, window=60, max_growth=2, use_seasonality=True)
    assert got.rate == pytest.approx(10.0)
    assert got.method == "trend"
    assert not got.capped


def test_a_ramp_is_extrapolated_over_the_horizon() -> None:
    samples = _series(lambda t: 0.1 * t, 1, 200)
    assert linear_trend(samples, 200, 60) == pytest.approx(0.1)
    got = forecast(samples, 200, 30, window=60, max_growth=2, use_seasonality=False)
    # The level is the mean of the last 6 s (197.5 s on the ramp), then 30 s of slope.
    assert got.level == pytest.approx(0.1 * 197.5)
    assert got.rate == pytest.approx(0.1 * 197.5 + 3.0)


def test_a_spike_cannot_run_away_the_growth_cap_holds() -> None:
    samples = _series(lambda t: 5.0 if t < 98 else 50.0, 1, 100)
    uncapped = forecast(samples, 100, 120, window=20, max_growth=10, use_seasonality=False)
    assert uncapped.rate > 4 * uncapped.level  # what the straight line would ask for
    got = forecast(samples, 100, 120, window=20, max_growth=2, use_seasonality=False)
    assert got.capped
    assert got.rate == pytest.approx(2 * got.level)
    assert got.method == "trend, capped"


def test_a_falling_rate_never_forecasts_below_zero() -> None:
    samples = _series(lambda t: max(0.0, 100 - t), 1, 100)
    got = forecast(samples, 100, 600, window=60, max_growth=2, use_seasonality=False)
    assert got.rate == 0.0


def test_too_few_samples_give_no_trend_and_the_level_stands() -> None:
    samples = [(1.0, 3.0), (2.0, 6.0)]
    assert linear_trend(samples, 2, 60) is None
    got = forecast(samples, 2, 60, window=60, max_growth=2, use_seasonality=True)
    assert got.rate == pytest.approx(level(samples, 2)) == pytest.approx(4.5)


@settings(max_examples=200, deadline=None)
@given(
    rates=st.lists(st.floats(0, 1000), min_size=1, max_size=120),
    horizon=st.floats(0, 600),
    growth=st.floats(1, 10),
)
def test_the_trend_is_bounded_by_growth_and_zero(
    rates: list[float], horizon: float, growth: float
) -> None:
    samples = [(float(i + 1), r) for i, r in enumerate(rates)]
    now = float(len(rates))
    got = forecast(samples, now, horizon, window=60, max_growth=growth, use_seasonality=True)
    assert 0.0 <= got.trend <= growth * got.level + 1e-9
    assert got.seasonal is None  # less than a day of history
    assert got.rate == got.trend


def _daily_peak(t: float) -> float:
    """5 req/s, except 50 req/s from 09:00 to 10:00 every day."""
    return 50.0 if 9 * 3600 <= t % DAY_S < 10 * 3600 else 5.0


def test_with_a_day_of_history_the_recurring_peak_is_forecast_before_it_comes() -> None:
    now = DAY_S + 9 * 3600 - 30  # 08:59:30 on day two
    samples = _series(_daily_peak, 0, now, step=BUCKET_S)
    got = forecast(samples, now, 90, window=60, max_growth=2, use_seasonality=True)
    assert got.level == pytest.approx(5.0)
    assert got.seasonal == pytest.approx(50.0)
    assert got.rate == pytest.approx(50.0)
    assert got.method == "daily profile"
    # Seasonality off, or a horizon that ends before the peak: the trend (flat) stands.
    assert forecast(
        samples, now, 90, window=60, max_growth=2, use_seasonality=False
    ).rate == pytest.approx(5.0)
    early = forecast(samples, now - 1800, 90, window=60, max_growth=2, use_seasonality=True)
    assert early.rate == pytest.approx(5.0)


def test_less_than_a_day_of_history_has_no_seasonality() -> None:
    now = DAY_S + 9 * 3600 - 30
    samples = _series(_daily_peak, 12 * 3600, now, step=BUCKET_S)
    assert seasonal(samples, now, 90, 60) is None


def test_one_freak_day_is_outvoted_by_the_median_of_past_days() -> None:
    now = 4 * DAY_S + 9 * 3600 - 30

    def rate(t: float) -> float:
        freak = 3 * DAY_S <= t < 4 * DAY_S  # yesterday had no peak at all
        return 5.0 if freak else _daily_peak(t)

    samples = _series(rate, 0, now, step=BUCKET_S)
    assert seasonal(samples, now, 90, 60) == pytest.approx(50.0)


def test_rate_history_keeps_recent_seconds_and_minute_means_for_a_week() -> None:
    history = RateHistory()
    end = 2 * RECENT_S
    for t in range(int(end) + 1):
        history.record(float(t), float(t % 120))
    samples = history.samples()
    recent = [s for s in samples if s[0] > end - RECENT_S]
    assert len(recent) == RECENT_S
    old = [s for s in samples if s[0] <= end - RECENT_S]
    # Minute buckets of the values 0..119 (t % 120): the mean of each is 29.5 or 89.5.
    assert {round(r, 1) for _, r in old} <= {29.5, 89.5}
    assert all(b - a == BUCKET_S for (a, _), (b, _) in itertools.pairwise(old))
    assert RateHistory.from_json(history.to_json()).samples() == samples
    history.record(end + KEEP_S, 1.0)
    assert history.samples()[0][0] > end  # older than the kept span is dropped


def test_rate_history_drops_samples_that_go_back_in_time() -> None:
    history = RateHistory()
    history.record(10.0, 1.0)
    history.record(9.0, 2.0)
    assert history.samples() == ((10.0, 1.0),)


def test_start_ups_are_measured_once_per_replica_and_the_median_is_the_horizon() -> None:
    a = replica("a", started_at=0.0)  # ready_at = started_at + 5
    b = replica("b", started_at=10.0)
    slow = replica("slow", started_at=20.0)
    slow = dataclasses.replace(slow, ready_at=80.0)
    unready = replica("c", ready=False, started_at=30.0)
    first = measured_startups([a, b, unready])
    assert first == (("a", 5.0), ("b", 5.0))
    second = measured_startups([a, b, slow], first)
    assert second == (("a", 5.0), ("b", 5.0), ("slow", 60.0))
    assert startup_seconds(second) == 5.0
    assert startup_seconds(()) is None


def test_a_history_shorter_than_half_the_window_has_no_trend() -> None:
    # Ten seconds after a start, a slope fitted to noise would be extrapolated a start-up ahead.
    samples = [(float(t), 10.0 + (3.0 if t % 2 else -3.0) + t) for t in range(1, 11)]
    assert linear_trend(samples, 10, 60) is None
    assert linear_trend(samples, 10, 16) is not None


def test_a_load_tracker_builds_the_policy_input_and_survives_a_restart() -> None:
    tracker = LoadTracker()
    cold = [replica("a", started_at=0.0), replica("b", started_at=3.0)]
    for t in range(1, 11):
        history = tracker.observe(1000.0 + t, 2.0 * t, cold)
    assert history.now == 1010.0
    assert history.rates[-1] == (1010.0, 20.0)
    assert len(history.rates) == 10
    assert history.startup_seconds == 5.0
    restored = LoadTracker.from_json(json.loads(json.dumps(tracker.to_json())))
    assert restored.observe(1011.0, 22.0, cold) == tracker.observe(1011.0, 22.0, cold)


def _poisson_counts(rate: float, seconds: int, seed: int) -> list[float]:
    """Requests arriving in each second of a Poisson stream (exponential gaps)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test stream, not a secret
    counts = [0.0] * seconds
    t = rng.expovariate(rate)
    while t < seconds:
        counts[int(t)] += 1
        t += rng.expovariate(rate)
    return counts


@pytest.mark.parametrize("rate", [2.0, 10.0, 50.0])
def test_random_arrivals_at_a_steady_rate_are_not_taken_for_a_jump(rate: float) -> None:
    counts = _poisson_counts(rate, 3600, seed=int(rate))
    samples = [(float(t + 1), c) for t, c in enumerate(counts)]
    jumps = 0
    for now in range(10, 3600, 2):
        recent = [r for t, r in samples if now - 6 < t <= now]
        if level(samples, float(now)) != pytest.approx(sum(recent) / len(recent)):
            jumps += 1
    assert jumps / (3590 / 2) < 0.01  # 3 standard deviations: well under 1% of the ticks


def test_the_level_follows_a_jump_at_its_first_tick() -> None:
    samples = [(float(t + 1), 4.2 if t < 300 else 33.6) for t in range(302)]
    # At t = 302 the last two seconds are the jump: the 6 s mean (14.1) would trail it.
    assert level(samples, 302.0) == pytest.approx(33.6)
    assert level(samples, 300.0) == pytest.approx(4.2)
