"""The simulator: determinism, the replica model, traces, and the beat-HPA property."""

from __future__ import annotations

import math

import pytest
from autoscale_helpers import spec

from mlkube.autoscale import presets, traces
from mlkube.autoscale.simulator import ReplicaModel, SimPolicy, simulate

MODEL = ReplicaModel()
UNIT = MODEL.capacity_at_slo()


def test_simulation_is_deterministic() -> None:
    rates = traces.builtin("sawtooth", UNIT)
    policy = presets.policy("mlkube", MODEL, None)
    first = simulate(policy, rates, MODEL, trace="sawtooth")
    second = simulate(policy, rates, MODEL, trace="sawtooth")
    assert first == second
    assert first.summary() == second.summary()


def test_replica_model_capacity_at_slo_meets_the_slo_exactly() -> None:
    rho = UNIT / MODEL.capacity_rps
    assert MODEL.p95_ms(rho) == pytest.approx(MODEL.slo_ms)
    assert MODEL.p95_ms(rho * 1.01) > MODEL.slo_ms


def test_fixed_replicas_on_a_flat_trace_match_the_model() -> None:
    fixed = spec(minReplicas=2, maxReplicas=2, metrics=[{"type": "rps", "target": 1}])
    rates = (1.5 * UNIT,) * 120
    result = simulate(SimPolicy("fixed", fixed), rates, MODEL)
    assert result.seconds_over_slo == 0
    assert result.replica_seconds == 240
    per_replica = 0.75 * UNIT / MODEL.capacity_rps
    assert result.seconds[-1].p95_ms == pytest.approx(MODEL.p95_ms(per_replica))


def test_overload_builds_a_backlog_and_breaks_the_slo() -> None:
    fixed = spec(minReplicas=1, maxReplicas=1, metrics=[{"type": "rps", "target": 1}])
    rates = (MODEL.capacity_rps + 5,) * 30
    result = simulate(SimPolicy("one", fixed), rates, MODEL)
    assert result.seconds_over_slo == 30
    assert result.seconds[-1].backlog == pytest.approx(150)


def test_new_replicas_wait_for_the_startup_delay() -> None:
    model = ReplicaModel(startup_s=7.0)
    s = spec(minReplicas=1, maxReplicas=4, metrics=[{"type": "rps", "target": 5}])
    result = simulate(SimPolicy("x", s), (30.0,) * 40, model)
    first_up = next(s for s in result.seconds if s.replicas > 1)
    ready_more = next(s for s in result.seconds if s.ready > 1)
    assert ready_more.t - first_up.t == 7


@pytest.mark.parametrize("trace", traces.BUILTIN)
def test_default_policy_beats_hpa_cpu70_on_the_builtin_traces(trace: str) -> None:
    rates = traces.builtin(trace, UNIT)
    ours = simulate(presets.policy("mlkube", MODEL, None), rates, MODEL, trace=trace)
    hpa = simulate(presets.policy("hpa-cpu70", MODEL, None), rates, MODEL, trace=trace)
    assert ours.seconds_over_slo * 2 <= hpa.seconds_over_slo
    assert ours.replica_seconds <= hpa.replica_seconds


def test_hpa_guide_preset_is_the_guides_hpa() -> None:
    guide = presets.hpa_guide()
    assert (guide.min_replicas, guide.max_replicas) == (1, 3)
    assert guide.metrics[0].type == "cpu"
    assert guide.metrics[0].target_utilization == 70
    assert guide.behavior is None
    assert guide.tick_seconds() == 15.0


def test_trace_files_json_and_csv() -> None:
    assert traces.parse_trace('{"stepSeconds": 2, "rps": [1, 3]}', "a.json") == (1, 1, 3, 3)
    assert traces.parse_trace("[0.5, 2]", "b.json") == (0.5, 2.0)
    csv_text = "seconds,rps\n0,1\n3,5\n5,0\n"
    assert traces.parse_trace(csv_text, "c.csv") == (1, 1, 1, 5, 5, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"rps": []}', "non-empty list"),
        ('{"rps": [1, -2]}', "must be a finite number >= 0"),
        ("[1, 'x']", "not valid JSON"),
        ("0,1\n2,abc\n", "is not a number"),
        ("", "no 'seconds,rps' rows"),
    ],
)
def test_bad_trace_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(traces.TraceError, match=message):
        traces.parse_trace(text, "t.txt")


def test_builtin_traces_are_bounded_by_three_replicas_at_the_slo() -> None:
    for name in traces.BUILTIN:
        rates = traces.builtin(name, UNIT)
        assert len(rates) == traces.DURATION
        assert max(rates) <= 3 * UNIT
        assert min(rates) > 0
        assert not any(math.isnan(r) for r in rates)
    with pytest.raises(traces.TraceError, match="unknown trace 'flat'"):
        traces.builtin("flat", UNIT)
