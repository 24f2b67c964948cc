import pytest

from mlkube.backends.local.decisions.backoff import BackoffPolicy, BackoffState, next_restart

POLICY = BackoffPolicy()


def _delays(exits: int, ran_for_s: float = 1.0) -> list[float]:
    state, delays = BackoffState(), []
    for _ in range(exits):
        delay, state = next_restart(state, ran_for_s=ran_for_s, policy=POLICY)
        delays.append(delay)
    return delays


def test_delays_double_from_ten_seconds_and_cap_at_five_minutes():
    assert _delays(8) == [10, 20, 40, 80, 160, 300, 300, 300]


def test_restart_count_grows_and_never_resets():
    state = BackoffState()
    for _ in range(3):
        _, state = next_restart(state, ran_for_s=1.0, policy=POLICY)
    _, state = next_restart(state, ran_for_s=700.0, policy=POLICY)
    assert state.restart_count == 4


@pytest.mark.parametrize(
    ("ran_for_s", "expected"),
    [
        pytest.param(599.0, 80.0, id="short-run-keeps-doubling"),
        pytest.param(600.0, 10.0, id="ten-minutes-resets"),
    ],
)
def test_ten_minutes_of_running_resets_the_delay(ran_for_s, expected):
    state = BackoffState()
    for _ in range(3):
        _, state = next_restart(state, ran_for_s=1.0, policy=POLICY)
    delay, _ = next_restart(state, ran_for_s=ran_for_s, policy=POLICY)
    assert delay == expected


def test_a_shrunk_policy_keeps_the_shape():
    policy = BackoffPolicy(base_s=0.5, max_s=2.0, reset_after_s=5.0)
    state, delays = BackoffState(), []
    for _ in range(4):
        delay, state = next_restart(state, ran_for_s=0.1, policy=policy)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 2.0]
