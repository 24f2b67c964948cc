"""Request-rate forecasts for start-up-aware scaling: a bounded linear trend and daily peaks.

Pure: no I/O, no clock. A history is ``(time, requests per second)`` samples, oldest first,
in any one clock (the loop uses wall-clock seconds so a day ago survives restarts) and at any
spacing (recent seconds at full resolution, older ones in per-minute means: see
``autoscale.history``).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RateSample = tuple[float, float]
"""(time in seconds, requests per second arriving at the deployment)."""

DAY_S = 86_400.0
SEASON_DAYS = 7
"""Seasonality looks at the same time of day on up to this many past days."""

LEVEL_S = 6.0
"""The current rate is the mean of the last few seconds (Knative's panic window)."""

JUMP_S = 2.0
"""The newest seconds a jump in the rate is judged on (one decision period by default)."""

JUMP_SIGMAS = 3.0
"""How far above the level, in Poisson standard deviations, the newest seconds must be."""

MIN_TREND_SAMPLES = 5
"""Fewer samples than this in the trend window: no trend, the forecast is the level."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """The expected request rate ``horizon`` seconds from now, and how it was reached."""

    level: float
    """The current rate (``level``: over ``LEVEL_S`` seconds, or ``JUMP_S`` at a jump)."""
    trend: float
    """The linear trend's value at ``now + horizon``, after the growth cap and floor 0."""
    seasonal: float | None
    """The median rate at the same time of day (``now + horizon``) on past days; None with
    less than a day of history or seasonality off."""
    rate: float
    """The forecast: the larger of ``trend`` and ``seasonal``."""
    horizon: float
    capped: bool
    """True when the growth cap lowered the trend (a spike's first seconds)."""

    @property
    def method(self) -> str:
        """Which estimate the forecast is, in words."""
        if self.seasonal is not None and self.seasonal > self.trend:
            return "daily profile"
        if self.capped:
            return "trend, capped"
        return "trend"


def level(samples: Sequence[RateSample], now: float) -> float:
    """Mean rate over the last ``LEVEL_S`` seconds (0 without samples), or over the last
    ``JUMP_S`` seconds when those are above it by more than ``JUMP_SIGMAS`` standard
    deviations of a Poisson arrival count: a jump, not noise. A replica asked for one tick
    late serves a whole start-up late, so the level must not trail a jump by half the
    window; random arrivals at a steady rate do not pass the test."""
    recent = _between(samples, now - LEVEL_S, now)
    if not recent:
        return samples[-1][1] if samples else 0.0
    slow = sum(r for _, r in recent) / len(recent)
    newest = _between(samples, now - JUMP_S, now)
    fast = sum(r for _, r in newest) / len(newest) if newest else slow
    noise = math.sqrt(slow * JUMP_S) / JUMP_S  # the rate's deviation over JUMP_S seconds
    return fast if fast > slow + JUMP_SIGMAS * noise else slow


def linear_trend(samples: Sequence[RateSample], now: float, window: float) -> float | None:
    """Least-squares slope (req/s per second) over the last ``window`` seconds; None when
    there are too few samples or they cover less than half the window (a slope fitted to a
    few noisy seconds, as right after a start, is mostly noise)."""
    recent = _between(samples, now - window, now)
    if len(recent) < MIN_TREND_SAMPLES or recent[-1][0] - recent[0][0] < window / 2:
        return None
    n = len(recent)
    mean_t = sum(t for t, _ in recent) / n
    mean_r = sum(r for _, r in recent) / n
    var = sum((t - mean_t) ** 2 for t, _ in recent)
    if var <= 0:
        return None
    return sum((t - mean_t) * (r - mean_r) for t, r in recent) / var


def seasonal(
    samples: Sequence[RateSample], now: float, horizon: float, window: float
) -> float | None:
    """The median over past days of the mean rate around ``now + horizon`` that day.

    Only when the history reaches back a full day before ``now + horizon``; the window is
    ``window`` seconds centred on that time, so a peak that comes a little early still counts.
    """
    if not samples:
        return None
    at = now + horizon
    values = []
    for day in range(1, SEASON_DAYS + 1):
        then = at - day * DAY_S
        if then - window / 2 < samples[0][0]:
            break
        around = _between(samples, then - window / 2, then + window / 2)
        if around:
            values.append(sum(r for _, r in around) / len(around))
    if not values:
        return None
    return statistics.median(values)


def forecast(
    samples: Sequence[RateSample],
    now: float,
    horizon: float,
    *,
    window: float,
    max_growth: float,
    use_seasonality: bool,
) -> Forecast:
    """The rate expected at ``now + horizon``.

    The trend is the least-squares line over ``window`` seconds, extrapolated from the
    current level: ``level + slope × horizon``, at most ``max_growth × level`` (a spike's
    first seconds would otherwise run away) and at least 0. A falling trend forecasts less
    than now; the caller never scales below the reactive ask, so that only matters when the
    daily profile is higher.
    """
    current = level(samples, now)
    slope = linear_trend(samples, now, window)
    raw = current if slope is None else current + slope * horizon
    ceiling = max_growth * current
    capped = raw > ceiling
    trend = max(0.0, min(raw, ceiling))
    daily = seasonal(samples, now, horizon, window) if use_seasonality else None
    rate = trend if daily is None else max(trend, daily)
    return Forecast(current, trend, daily, rate, horizon, capped)


def _between(samples: Sequence[RateSample], start: float, end: float) -> list[RateSample]:
    """Samples with ``start < time <= end`` (history is sorted by time)."""
    lo = bisect.bisect_right(samples, start, key=lambda s: s[0])
    hi = bisect.bisect_right(samples, end, key=lambda s: s[0])
    return list(samples[lo:hi])
