from collections import Counter

import pytest

from mlkube.backends.local.decisions.weights import SmoothWeightedPicker, replica_weights


def test_revision_share_is_split_evenly_over_its_ready_replicas():
    weights = replica_weights({1: 90, 2: 10}, {1: ["a", "b", "c"], 2: ["x"]})
    assert weights == pytest.approx({"a": 0.3, "b": 0.3, "c": 0.3, "x": 0.1})


def test_a_revision_without_ready_replicas_gives_its_share_away():
    assert replica_weights({1: 90, 2: 10}, {1: ["a"], 2: []}) == {"a": 1.0}


def test_zero_weight_revision_gets_nothing_while_another_serves():
    assert replica_weights({1: 100, 2: 0}, {1: ["a"], 2: ["x"]}) == {"a": 1.0}


def test_when_no_weighted_revision_is_ready_any_ready_replica_serves():
    assert replica_weights({1: 100}, {1: [], 2: ["x"]}) == {"x": 1.0}


def test_picker_follows_weights_exactly_over_a_cycle():
    picker = SmoothWeightedPicker({"a": 1, "b": 3})
    picks = [picker.pick() for _ in range(400)]
    assert Counter(picks) == {"a": 100, "b": 300}


def test_picker_interleaves_instead_of_bursting():
    picker = SmoothWeightedPicker({"a": 1, "b": 1})
    picks = [picker.pick() for _ in range(6)]
    assert all(picks[i] != picks[i + 1] for i in range(5))


def test_picker_skips_excluded_and_returns_none_when_all_are():
    picker = SmoothWeightedPicker({"a": 1, "b": 1})
    assert {picker.pick(frozenset({"a"})) for _ in range(4)} == {"b"}
    assert picker.pick(frozenset({"a", "b"})) is None


def test_picker_ignores_zero_weights():
    picker = SmoothWeightedPicker({"a": 0, "b": 2})
    assert picker.names == ["b"]
