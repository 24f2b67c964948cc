"""The request path's own counters and histograms export exactly what prometheus_client's would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from mlkube.observability.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_S
from mlkube.observability.request_metrics import CounterFamily, HistogramFamily

LABELS = ("model", "protocol")
SERIES = [("iris", "v1"), ("iris", "v2"), ("wine", "v1")]


@pytest.fixture(autouse=True)
def _no_created_series() -> None:
    # As ServerMetrics does: no *_created series, in either implementation.
    disable_created_metrics()


def _pair(
    buckets: tuple[float, ...],
) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, HistogramFamily]:
    theirs_registry = CollectorRegistry()
    theirs = Histogram("d_seconds", "Help.", LABELS, buckets=buckets, registry=theirs_registry)
    ours_registry = CollectorRegistry(auto_describe=True)
    ours = HistogramFamily("d_seconds", "Help.", LABELS, buckets)
    ours_registry.register(ours)
    return theirs_registry, theirs, ours_registry, ours


values = st.one_of(
    st.sampled_from([*LATENCY_BUCKETS_S, *BATCH_SIZE_BUCKETS, 0.0, 1e9]),  # on the bounds
    st.floats(min_value=0.0, max_value=2000.0, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SERIES), values), max_size=40))
def test_a_histogram_exports_what_prometheus_clients_histogram_exports(
    observations: list[tuple[tuple[str, str], float]],
) -> None:
    for buckets in (LATENCY_BUCKETS_S, tuple(float(b) for b in BATCH_SIZE_BUCKETS)):
        theirs_registry, theirs, ours_registry, ours = _pair(buckets)
        for labels, value in observations:
            theirs.labels(*labels).observe(value)
            ours.labels(*labels).observe(value)
        assert generate_latest(ours_registry) == generate_latest(theirs_registry)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(SERIES), max_size=30))
def test_a_counter_exports_what_prometheus_clients_counter_exports(
    increments: list[tuple[str, str]],
) -> None:
    theirs_registry = CollectorRegistry()
    theirs = Counter("answers", "Help.", LABELS, registry=theirs_registry)
    ours_registry = CollectorRegistry(auto_describe=True)
    ours = CounterFamily("answers", "Help.", LABELS)
    ours_registry.register(ours)
    for labels in increments:
        theirs.labels(*labels).inc()
        ours.labels(*labels).inc()
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    assert b"answers_total" in generate_latest(ours_registry) or not increments


def test_a_value_on_a_bound_counts_in_that_bound_and_past_the_last_in_inf() -> None:
    family = HistogramFamily("h", "Help.", ["m"], (1.0, 2.0))
    child = family.labels("a")
    for value in (1.0, 1.5, 2.0, 2.5):
        child.observe(value)
    (metric,) = family.collect()
    buckets = {s.labels["le"]: s.value for s in metric.samples if s.name == "h_bucket"}
    assert buckets == {"1.0": 1.0, "2.0": 3.0, "+Inf": 4.0}
    assert {s.name: s.value for s in metric.samples if "le" not in s.labels} == {
        "h_count": 4.0,
        "h_sum": 7.0,
    }


def test_wrong_labels_and_unsorted_buckets_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="h takes labels"):
        HistogramFamily("h", "Help.", ["m"], (1.0,)).labels("a", "b")
    with pytest.raises(ValueError, match="c takes labels"):
        CounterFamily("c", "Help.", ["m", "p"]).labels("a")
    with pytest.raises(ValueError, match="sorted"):
        HistogramFamily("h", "Help.", ["m"], (2.0, 1.0))


def test_a_registry_refuses_a_second_family_of_the_same_name() -> None:
    # auto_describe registration guards names as it does for the library's own metrics.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(CounterFamily("answers", "Help.", LABELS))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(Counter("answers", "Help.", LABELS, registry=None))
