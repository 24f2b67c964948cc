"""One rounding rule for rollout splits, and one meaning of a header A/B route."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlkube.desired.traffic import (
    HeaderRoute,
    canary_replicas,
    header_route,
    rollout_splits,
    split,
)
from mlkube.spec.rollout import RolloutSpec


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [
        pytest.param(4, 25, 1, id="exact-quarter"),
        pytest.param(4, 10, 1, id="rounds-up"),
        pytest.param(4, 50, 2, id="half"),
        pytest.param(10, 11, 2, id="just-over-a-tenth"),
        pytest.param(1, 10, 1, id="one-replica-still-gets-a-canary"),
        pytest.param(10, 0, 1, id="weight-zero-smoke-test"),
        pytest.param(3, 100, 3, id="all-of-it"),
        pytest.param(0, 50, 1, id="scaled-to-zero-still-one"),
    ],
)
def test_canary_replicas(replicas, weight, expected):
    assert canary_replicas(replicas, weight) == expected


@given(st.integers(0, 500), st.integers(0, 100))
def test_a_split_keeps_the_stable_revision_whole_and_never_starves_the_canary(n, w):
    s = split(n, w)
    assert s.stable_replicas == n
    assert 1 <= s.canary_replicas <= max(1, n)
    # Rounding up: the canary has at least its weight's share of capacity.
    assert s.canary_replicas * 100 >= n * w


def test_every_canary_step_has_its_split():
    rollout = RolloutSpec.model_validate(
        {"strategy": "Canary", "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}
    )
    assert [
        (s.weight, s.stable_replicas, s.canary_replicas) for s in rollout_splits(rollout, 4)
    ] == [
        (10, 4, 1),
        (50, 4, 2),
        (100, 4, 4),
    ]


def test_a_header_ab_test_sends_no_other_request_to_b():
    rollout = RolloutSpec.model_validate(
        {"strategy": "ABTest", "abTest": {"header": "X-Variant", "headerValue": "b", "weight": 50}}
    )
    (ab,) = rollout_splits(rollout, 4)
    assert ab.weight == 0
    assert ab.canary_replicas == 2
    assert header_route(rollout) == HeaderRoute("x-variant", "b")


def test_a_weighted_ab_test_has_no_header_route():
    rollout = RolloutSpec.model_validate({"strategy": "ABTest", "abTest": {"weight": 30}})
    assert header_route(rollout) is None
    assert rollout_splits(rollout, 10)[0].weight == 30


def test_rolling_update_has_no_weighted_steps():
    assert rollout_splits(RolloutSpec(), 3) == ()
