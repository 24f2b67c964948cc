"""Start-up-aware scaling: raise the reactive ask to the load expected when replicas are ready.

Pure: no I/O, no clock. A replica asked for now serves only after the revision's start-up
(spawn to ready), so the count should fit the request rate expected one start-up (plus one
decision period) ahead. ``apply_forecast`` takes the reactive policy's decision and the
``LoadHistory``, forecasts the rate (``autoscale.forecast``: a capped linear trend and, with
a day of history, the daily profile), converts it to replicas and returns the larger of the
two counts. It never lowers the reactive ask and never exceeds ``maxReplicas``; a forecast
ask is held for one ``stableWindow`` so a noisy forecast does not flap the count.
"""

from __future__ import annotations

import math
from dataclasses import replace

from mlkube.autoscale.api import Decision, Observation, PolicyState, Recommendation
from mlkube.autoscale.forecast import Forecast, forecast
from mlkube.autoscale.history import LoadHistory
from mlkube.spec.autoscaling import AutoscalingSpec, RpsMetric


def horizon_seconds(spec: AutoscalingSpec, history: LoadHistory) -> float | None:
    """How far ahead to forecast: ``horizon`` or, for ``auto``, the measured start-up plus
    one decision period; None when ``auto`` and no start-up has been measured yet."""
    predictive = spec.predictive
    if predictive is None:
        return None
    if predictive.horizon != "auto":
        return float(predictive.horizon)
    if history.startup_seconds is None:
        return None
    return history.startup_seconds + spec.tick_seconds()


def replicas_for(spec: AutoscalingSpec, expected: Forecast, reactive: int) -> int:
    """Replicas for the forecast rate: by the rps target when there is one, else the
    reactive count scaled by the expected growth (forecast ÷ current rate)."""
    targets = [m.target for m in spec.metrics if isinstance(m, RpsMetric)]
    if targets:
        return math.ceil(expected.rate / min(targets) - 1e-9)
    if expected.level <= 0:
        return 0
    return math.ceil(reactive * expected.rate / expected.level - 1e-9)


def apply_forecast(
    spec: AutoscalingSpec,
    obs: Observation,
    reactive: Decision,
    state: PolicyState,
    history: LoadHistory | None,
) -> tuple[Decision, PolicyState]:
    """The reactive decision raised to the forecast's ask, with the forecast in its text."""
    predictive = spec.predictive
    if predictive is None or not predictive.enabled or history is None:
        return reactive, state
    if obs.current_replicas == 0 or reactive.desired_replicas == 0:
        # Scale to zero and activation stay reactive: the forecast has nothing to size.
        return reactive, replace(state, forecast_asks=())
    horizon = horizon_seconds(spec, history)
    if horizon is None:
        text = f"{reactive.reason}; no forecast yet (no replica start-up measured)"
        return replace(reactive, reason=text), state
    expected = forecast(
        history.rates,
        history.now,
        horizon,
        window=predictive.trend_window,
        max_growth=predictive.max_growth,
        use_seasonality=predictive.seasonality,
    )
    wanted = replicas_for(spec, expected, reactive.desired_replicas)
    ask = min(wanted, spec.max_replicas)
    asks = tuple(r for r in state.forecast_asks if obs.now - r.at < spec.stable_window)
    asks = (*asks, Recommendation(ask, obs.now))
    # An ask remembered from before maxReplicas was lowered must not exceed the new bound.
    held = min(max(r.replicas for r in asks), spec.max_replicas)
    final = max(reactive.desired_replicas, held)
    values = dict(reactive.metric_values)
    values.update(
        {
            "forecast_rps": round(expected.rate, 3),
            "forecast_level_rps": round(expected.level, 3),
            "forecast_horizon_s": round(horizon, 1),
            "desired_by_forecast": float(ask),
        }
    )
    if history.startup_seconds is not None:
        values["startup_s"] = round(history.startup_seconds, 1)
    said = (
        f"forecast {expected.rate:.1f} req/s in {horizon:.0f}s "
        f"({expected.method}, now {expected.level:.1f}) asks for {ask}"
    )
    new_state = replace(state, forecast_asks=asks)
    if final <= reactive.desired_replicas:
        return replace(
            reactive, reason=f"{reactive.reason}; {said}", metric_values=values
        ), new_state
    limited = "maxReplicas" if wanted > spec.max_replicas else None
    if held > ask:
        said += f", held at {held} for the stable window"
    text = f"{said}; {obs.current_replicas} → {final}"
    if limited:
        text += f", limited by {limited}"
    text += f" (reactive: {reactive.reason})"
    decision = Decision(final, text, values, limited, reactive.conditions, reactive.standby)
    return decision, new_state
