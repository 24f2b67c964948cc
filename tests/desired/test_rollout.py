import pytest

from mlkube.desired.rollout import (
    Observed,
    RevisionCounts,
    RolloutPhase,
    RolloutState,
    abort_rollout,
    resolve_surge,
    start_rollout,
    step_rollout,
    undo_target,
)
from mlkube.spec.rollout import RolloutSpec, RolloutStrategy

ROLLING = RolloutSpec()
CANARY = RolloutSpec.model_validate(
    {"strategy": "Canary", "steps": [{"weight": 10, "pause": 5}, {"weight": 50}]}
)
CANARY_ANALYSED = RolloutSpec.model_validate(
    {"strategy": "Canary", "steps": [{"weight": 20}], "analysis": {"maxErrorRate": 0.05}}
)


def begin(strategy, now=0.0):
    return start_rollout(RolloutState(stable=1), 2, strategy, now=now)


def seen(now, replicas, old=(0, 0), new=(0, 0), failed=None, **kw):
    counts = {1: RevisionCounts(*old), 2: RevisionCounts(new[0], new[1], failed)}
    return Observed(now, replicas, counts, **kw)


@pytest.mark.parametrize(
    ("value", "replicas", "up", "expected"),
    [
        pytest.param("25%", 1, True, 1, id="surge-rounds-up"),
        pytest.param("25%", 1, False, 0, id="unavailable-rounds-down"),
        pytest.param(2, 10, True, 2, id="count"),
        pytest.param("50%", 4, False, 2, id="half"),
    ],
)
def test_resolve_surge(value, replicas, up, expected):
    assert resolve_surge(value, replicas, round_up=up) == expected


def test_steady_state_serves_the_stable_revision():
    step = step_rollout(ROLLING, RolloutState(stable=3), seen(0, 2))
    assert step.targets == {3: 2}
    assert step.weights == {3: 100.0}


def test_rolling_update_never_drops_below_available_and_completes():
    state = begin(RolloutStrategy.ROLLING_UPDATE)
    # 2 replicas, surge 1, unavailable 0: first one new replica beside two old ones.
    step = step_rollout(ROLLING, state, seen(1, 2, old=(2, 2), new=(0, 0)))
    assert step.targets == {1: 2, 2: 1}
    # The new one is not ready yet: nothing old may go.
    step = step_rollout(ROLLING, step.state, seen(2, 2, old=(2, 2), new=(1, 0)))
    assert step.targets == {1: 2, 2: 1}
    # Ready: one old goes, a second new one comes; traffic follows readiness.
    step = step_rollout(ROLLING, step.state, seen(3, 2, old=(2, 2), new=(1, 1)))
    assert step.targets == {1: 1, 2: 2}
    assert step.weights == {1: 2.0, 2: 1.0}
    step = step_rollout(ROLLING, step.state, seen(4, 2, old=(1, 1), new=(2, 2)))
    assert step.targets == {1: 0, 2: 2}
    step = step_rollout(ROLLING, step.state, seen(5, 2, old=(0, 0), new=(2, 2)))
    assert step.state.phase is RolloutPhase.COMPLETE
    assert step.state.stable == 2
    assert step.weights == {2: 100.0}


def test_a_new_revision_that_fails_to_start_fails_the_rollout_and_gets_no_traffic():
    state = begin(RolloutStrategy.ROLLING_UPDATE)
    step = step_rollout(ROLLING, state, seen(1, 2, old=(2, 2), new=(1, 0), failed="exit 1"))
    assert step.state.phase is RolloutPhase.FAILED
    assert "revision 2 failed to start: exit 1" in step.state.reason
    assert step.targets == {1: 2}
    assert step.weights == {1: 100.0}
    assert step.events[0][1] == "RolloutFailed"


def test_progress_deadline_fails_the_rollout():
    spec = RolloutSpec(progress_deadline=30)
    step = step_rollout(
        spec, begin(RolloutStrategy.ROLLING_UPDATE), seen(31, 1, old=(1, 1), new=(1, 0))
    )
    assert step.state.phase is RolloutPhase.FAILED
    assert "progressDeadline" in step.state.reason


def test_blue_green_switches_only_when_all_new_are_ready_and_keeps_the_old():
    state = begin(RolloutStrategy.BLUE_GREEN)
    step = step_rollout(ROLLING, state, seen(1, 2, old=(2, 2), new=(2, 1)))
    assert step.targets == {1: 2, 2: 2}
    assert step.weights == {1: 100.0}
    step = step_rollout(ROLLING, step.state, seen(2, 2, old=(2, 2), new=(2, 2)))
    assert step.weights == {2: 100.0}
    assert step.state.stable == 2
    assert step.state.previous == 1
    assert step.targets == {2: 2, 1: 2}
    later = step_rollout(ROLLING, step.state, seen(10_000, 2, old=(2, 2), new=(2, 2)))
    assert later.targets == {2: 2}


def test_canary_walks_its_steps_then_promotes():
    state = begin(RolloutStrategy.CANARY)
    step = step_rollout(CANARY, state, seen(0, 4, old=(4, 4), new=(0, 0)))
    assert step.targets == {1: 4, 2: 1}
    assert step.weights == {1: 90.0, 2: 10.0}
    step = step_rollout(CANARY, step.state, seen(1, 4, old=(4, 4), new=(1, 1)))
    assert step.events[0][1] == "CanaryStep"
    step = step_rollout(CANARY, step.state, seen(3, 4, old=(4, 4), new=(1, 1)))
    assert step.weights == {1: 90.0, 2: 10.0}, "the 5 s pause has not elapsed"
    step = step_rollout(CANARY, step.state, seen(6.5, 4, old=(4, 4), new=(1, 1)))
    assert step.targets == {1: 4, 2: 2}
    assert step.weights == {1: 50.0, 2: 50.0}
    step = step_rollout(CANARY, step.state, seen(7, 4, old=(4, 4), new=(2, 2)))
    step = step_rollout(CANARY, step.state, seen(8, 4, old=(4, 4), new=(2, 2)))
    assert step.targets == {1: 4, 2: 4}, "after the last step the canary grows to full size"
    step = step_rollout(CANARY, step.state, seen(9, 4, old=(4, 4), new=(4, 4)))
    assert step.state.phase is RolloutPhase.COMPLETE
    assert step.state.stable == 2


def test_canary_waits_for_a_passed_analysis_and_rolls_back_on_failure():
    state = begin(RolloutStrategy.CANARY)
    step = step_rollout(CANARY_ANALYSED, state, seen(0, 2, old=(2, 2), new=(1, 1)))
    step = step_rollout(CANARY_ANALYSED, step.state, seen(100, 2, old=(2, 2), new=(1, 1)))
    assert step.state.step == 0, "no verdict yet: the canary holds"
    failed = step_rollout(
        CANARY_ANALYSED,
        step.state,
        seen(101, 2, old=(2, 2), new=(1, 1), analysis_failure="error rate 0.5"),
    )
    assert failed.state.phase is RolloutPhase.ROLLED_BACK
    assert failed.targets == {1: 2}
    assert failed.weights == {1: 100.0}
    assert failed.events[0][1] == "CanaryRolledBack"
    passed = step_rollout(
        CANARY_ANALYSED, step.state, seen(101, 2, old=(2, 2), new=(1, 1), analysis_passed=True)
    )
    assert passed.state.step == 1


def test_ab_test_by_weight_and_by_header():
    by_weight = RolloutSpec.model_validate({"strategy": "ABTest", "abTest": {"weight": 30}})
    step = step_rollout(by_weight, begin(RolloutStrategy.AB_TEST), seen(0, 2, old=(2, 2)))
    assert step.weights == {1: 70.0, 2: 30.0}
    assert step.state.phase is RolloutPhase.AB_TEST
    by_header = RolloutSpec.model_validate(
        {"strategy": "ABTest", "abTest": {"header": "X-Variant", "headerValue": "b"}}
    )
    step = step_rollout(by_header, begin(RolloutStrategy.AB_TEST), seen(0, 2, old=(2, 2)))
    assert step.weights == {1: 100.0}
    assert step.header_rule is not None
    assert (step.header_rule.header, step.header_rule.value, step.header_rule.revision) == (
        "x-variant",
        "b",
        2,
    )


def test_abort_goes_back_to_stable():
    state = abort_rollout(begin(RolloutStrategy.ROLLING_UPDATE), "undo")
    step = step_rollout(ROLLING, state, seen(0, 2, old=(2, 2), new=(1, 1)))
    assert step.targets == {1: 2}


def test_state_round_trips_through_json():
    state = begin(RolloutStrategy.CANARY, now=5.0)
    assert RolloutState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("revisions", "state", "expected"),
    [
        pytest.param(
            # canary 3 promoted, A/B test 5 never promoted, BlueGreen 6 completed keeping 3
            {1: "", 2: "Complete", 3: "Complete", 4: "RolledBack", 5: "ABTest", 6: "Complete"},
            RolloutState(stable=6, previous=3, previous_until=100.0),
            3,
            id="blue-green-kept-colour-first",
        ),
        pytest.param(
            {1: "", 2: "Complete", 3: "Complete", 5: "ABTest", 6: "Complete"},
            RolloutState(stable=6),
            3,
            id="skips-an-ab-test-revision",
        ),
        pytest.param(
            {1: "", 2: "Failed", 3: "Complete"}, RolloutState(stable=3), 1, id="skips-failed"
        ),
        pytest.param({1: ""}, RolloutState(stable=1), None, id="nothing-earlier"),
        pytest.param(
            {1: "", 2: "Complete", 3: "Complete"},
            RolloutState(stable=3, previous=2, previous_until=5.0),
            2,
            id="kept-colour-expired-falls-back-to-history",
        ),
    ],
)
def test_undo_target(revisions, state, expected):
    assert undo_target(revisions, state, now=50.0) == expected
