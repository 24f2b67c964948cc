"""decide(): the mlkube policy over HPA semantics, Knative windows, latency, queue, zero."""

from __future__ import annotations

import pytest
from autoscale_helpers import observation, replica, spec

from mlkube.autoscale.api import PolicyState, decide, should_activate

CPU70 = {"minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "cpu", "targetUtilization": 70}]}


@pytest.mark.parametrize(
    ("cpus", "expected", "limited"),
    [
        # 3 replicas at 0.35 cores of 0.5 requested = 70%: within tolerance, stay.
        ([0.35, 0.35, 0.35], 3, None),
        # 100% → ratio 1.43 → ceil(1.43 × 3) = 5.
        ([0.5, 0.5, 0.5], 5, None),
        # 200% → ceil(2.86 × 3) = 9, capped by maxReplicas 5.
        ([1.0, 1.0, 1.0], 5, "maxReplicas"),
    ],
)
def test_cpu_scale_up_follows_hpa(cpus: list[float], expected: int, limited: str | None) -> None:
    obs = observation(0.0, [replica(f"r{i}", cpu=c) for i, c in enumerate(cpus)])
    decision, _ = decide(spec(**CPU70), obs, None)
    assert decision.desired_replicas == expected
    assert decision.limited_by == limited
    assert decision.metric_values["cpu_utilization"] == round(100 * sum(cpus) / 1.5)
    assert ("ScalingActive", "True", "ValidMetricFound") in decision.conditions


def test_cpu_scale_down_waits_for_the_legacy_stabilization_window() -> None:
    s = spec(**CPU70)
    low = [replica(f"r{i}", cpu=0.05) for i in range(4)]
    decision, state = decide(s, observation(0.0, low), None)
    # The fresh HPA remembers {current=4, now}: the first scale-down waits a full window.
    assert decision.desired_replicas == 4
    assert decision.limited_by == "scaleDown stabilization window"
    for now in (15.0, 150.0, 299.0):
        decision, state = decide(s, observation(now, low), state)
        assert decision.desired_replicas == 4
    decision, state = decide(s, observation(301.0, low), state)
    assert decision.desired_replicas == 1
    assert "cpu asks for 1" in decision.reason


def test_missing_cpu_request_is_a_failed_metric_that_holds_the_count() -> None:
    obs = observation(0.0, [replica("a", cpu=0.1)])
    obs = type(obs)(obs.now, 2, obs.replicas, None, obs.memory_request_bytes)
    decision, _ = decide(spec(**CPU70), obs, None)
    assert decision.desired_replicas == 2
    assert ("ScalingActive", "False", "FailedGetResourceMetric") in decision.conditions
    assert "missing request for cpu" in decision.reason


def test_the_first_decision_without_a_sample_says_so_in_plain_words() -> None:
    obs = observation(0.0, [replica("a", cpu=None), replica("b", cpu=None)])
    decision, _ = decide(spec(**CPU70), obs, None)
    assert decision.desired_replicas == 2
    assert (
        decision.reason
        == "holding at 2: no metric sample yet (a replica reports after one sync period)"
    )
    assert "resource metrics API" not in decision.reason


def test_an_invalid_metric_blocks_scale_down_but_not_scale_up() -> None:
    both = {
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [
            {"type": "cpu", "targetUtilization": 70},
            {"type": "memory", "targetUtilization": 80},
        ],
    }
    low_cpu = [replica(f"r{i}", cpu=0.05, memory=None) for i in range(4)]
    decision, _ = decide(spec(**both), observation(0.0, low_cpu), PolicyState())
    assert decision.desired_replicas == 4  # memory samples missing: no scale-down
    high_cpu = [replica(f"r{i}", cpu=1.0, memory=None) for i in range(4)]
    decision, _ = decide(spec(**both), observation(0.0, high_cpu), PolicyState())
    # Scale-up goes ahead on cpu alone (12 wanted), capped by the legacy max(2 × 4, 4) = 8.
    assert decision.desired_replicas == 8
    assert decision.limited_by == "ScaleUpLimit"


def _conc_spec(**extra: object) -> dict[str, object]:
    return {
        "minReplicas": 1,
        "maxReplicas": 20,
        "metrics": [{"type": "concurrency", "target": 2}],
        **extra,
    }


def test_concurrency_panic_scales_up_at_once_and_never_down_while_panicking() -> None:
    s = spec(**_conc_spec())
    quiet = [replica("a", in_flight=1.0)]
    decision, state = decide(s, observation(0.0, quiet), None)
    assert decision.desired_replicas == 1
    for now in range(2, 20, 2):
        decision, state = decide(s, observation(float(now), quiet), state)
    burst = [replica("a", in_flight=12.0)]
    decision, state = decide(s, observation(20.0, burst), state)
    # Panic window (6 s): samples 1, 1, 12 → 4.67 in flight / 2 → 3 replicas ≥ 2 × ready (1):
    # panic, and the count goes to 3 now (the 60 s stable average alone would ask for 2).
    assert decision.desired_replicas == 3
    assert decision.metric_values["panic"] == 1.0
    peak = decision.desired_replicas
    calm = [replica(f"r{i}", in_flight=0.2) for i in range(peak)]
    decision, state = decide(s, observation(22.0, calm, current=peak), state)
    assert decision.desired_replicas == peak
    assert PolicyState.from_json(state.to_json()) == state


def test_stable_window_drives_the_count_without_panic() -> None:
    s = spec(**_conc_spec())
    state = None
    # 3 replicas, 2.5 in flight each: 7.5 / 2 → 4 replicas, below the panic threshold (2x).
    reps = [replica(f"r{i}", in_flight=2.5) for i in range(3)]
    for now in range(0, 70, 2):
        decision, state = decide(s, observation(float(now), reps), state)
    assert decision.desired_replicas == 4
    assert decision.metric_values["panic"] == 0.0


def test_rps_demand_counts_queued_requests_not_only_served_ones() -> None:
    s = spec(minReplicas=1, maxReplicas=10, metrics=[{"type": "rps", "target": 10}])
    served_only = [replica("a", rps=20.0, in_flight=2)]
    decision, state = decide(s, observation(0.0, served_only), PolicyState())
    queued = [replica("a", rps=20.0, in_flight=40, queue=40.0)]
    decision2, _ = decide(s, observation(2.0, queued), state)
    assert decision2.desired_replicas > decision.desired_replicas


@pytest.mark.parametrize(("p95", "expected"), [(450.0, 2), (1000.0, 4), (2000.0, 8), (100.0, 1)])
def test_latency_against_the_slo(p95: float, expected: int) -> None:
    s = spec(minReplicas=1, maxReplicas=10, metrics=[{"type": "latency", "targetMs": 500}])
    reps = [replica(f"r{i}", p95=p95, rps=5) for i in range(2)]
    decision, _ = decide(s, observation(0.0, reps), PolicyState())
    assert decision.desired_replicas == expected


def test_queue_depth_target() -> None:
    s = spec(minReplicas=1, maxReplicas=10, metrics=[{"type": "queueDepth", "target": 4}])
    reps = [replica(f"r{i}", queue=10.0) for i in range(2)]
    decision, _ = decide(s, observation(0.0, reps), PolicyState())
    assert decision.desired_replicas == 5  # 20 waiting / 4 per replica


ZERO = {
    "minReplicas": 0,
    "maxReplicas": 4,
    "metrics": [{"type": "concurrency", "target": 2}],
    "scaleToZero": {"idleAfter": "30s", "activationTimeout": "10s"},
}


def test_scale_to_zero_after_idle_and_activation_on_a_held_request() -> None:
    s = spec(**ZERO)
    busy = [replica("a", in_flight=1.0, rps=3.0)]
    idle = [replica("a")]
    decision, state = decide(s, observation(0.0, busy), None)
    assert decision.desired_replicas == 1
    for now in (10.0, 20.0, 29.0):
        decision, state = decide(s, observation(now, idle), state)
        assert decision.desired_replicas == 1, now
    decision, state = decide(s, observation(30.0, idle), state)
    assert decision.desired_replicas == 0
    assert decision.limited_by == "scaleToZero idleAfter"
    empty = observation(40.0, [], current=0)
    assert not should_activate(s, empty)
    decision, state = decide(s, empty, state)
    assert decision.desired_replicas == 0
    held = observation(41.0, [], current=0, pending=3)
    assert should_activate(s, held)
    decision, state = decide(s, held, state)
    assert decision.desired_replicas == 1
    assert "3 request(s) held" in decision.reason


def test_decide_is_pure() -> None:
    s = spec(**_conc_spec())
    obs = observation(5.0, [replica("a", in_flight=7.0), replica("b", in_flight=3.0)])
    first = decide(s, obs, PolicyState())
    second = decide(s, obs, PolicyState())
    assert first == second
