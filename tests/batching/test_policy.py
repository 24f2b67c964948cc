import pytest

from mlkube.batching.cost import Cost
from mlkube.batching.policy import FlushDecision, Limits, QueueView, batch_length, flush_decision

LIMITS = Limits(max_rows=1024, max_requests=32, max_latency_s=0.005)
FLAT = Cost(fixed_s=0.004, per_row_s=0.0)
PER_ROW = Cost(fixed_s=0.0, per_row_s=0.0001)


def view(requests=1, rows=1, wait=0.0, busy=False, expected=1, cost=FLAT, may_arrive=8):
    return QueueView(requests, rows, wait, busy, expected, cost, may_arrive)


@pytest.mark.parametrize(
    ("queue", "decision"),
    [
        pytest.param(view(requests=0, rows=0), FlushDecision(False), id="empty-queue"),
        pytest.param(view(busy=True, requests=5, rows=5), FlushDecision(False), id="busy-waits"),
        pytest.param(view(), FlushDecision(True), id="lone-request-goes-at-once"),
        pytest.param(view(requests=4, rows=1024, expected=10), FlushDecision(True), id="rows-full"),
        pytest.param(
            view(requests=32, rows=32, expected=40), FlushDecision(True), id="requests-full"
        ),
        pytest.param(
            view(requests=10, rows=10, expected=10), FlushDecision(True), id="all-expected-arrived"
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.001, expected=10),
            FlushDecision(False, wait_s=0.003),
            id="waits-for-expected-no-longer-than-the-fixed-cost",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.001, expected=10, cost=Cost(0.02, 0.0)),
            FlushDecision(False, wait_s=0.004),
            id="waits-no-longer-than-max-latency",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.005, expected=10),
            FlushDecision(True),
            id="latency-bound-reached",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.0001, expected=10, cost=Cost(0.00005, 0.0)),
            FlushDecision(True),
            id="cheap-model-never-waits",
        ),
        pytest.param(
            view(requests=3, rows=3, expected=10, cost=PER_ROW),
            FlushDecision(True),
            id="per-row-model-never-waits",
        ),
        pytest.param(
            view(requests=3, rows=3, expected=10, may_arrive=0),
            FlushDecision(True),
            id="nothing-can-arrive",
        ),
    ],
)
def test_flush_decision(queue, decision):
    got = flush_decision(queue, LIMITS)
    assert got.flush == decision.flush
    if decision.wait_s is None:
        assert got.wait_s is None
    else:
        assert got.wait_s == pytest.approx(decision.wait_s)


def test_a_lone_request_at_one_connection_is_never_held_for_others():
    # Closed loop of 10 earlier, but every open connection's request is already queued.
    got = flush_decision(view(requests=2, rows=2, expected=10, may_arrive=0), LIMITS)
    assert got == FlushDecision(True, reason="nothing-can-arrive")


def test_each_decision_says_why():
    reasons = {
        flush_decision(v, LIMITS).reason
        for v in (
            view(requests=0, rows=0),
            view(busy=True),
            view(requests=32, rows=32, expected=40),
            view(may_arrive=0, expected=3),
            view(),
            view(requests=2, rows=2, expected=3),
            view(requests=2, rows=2, expected=3, wait=0.004),
            view(requests=2, rows=2, expected=3, cost=PER_ROW),
        )
    }
    assert reasons == {
        "empty",
        "busy",
        "full",
        "nothing-can-arrive",
        "all-expected",
        "waiting",
        "waited",
        "not-worth-waiting",
    }


def test_flat_cost_merges_multi_row_requests_up_to_the_request_limit():
    assert batch_length([32] * 40, LIMITS, FLAT) == 32


def test_the_row_limit_stops_a_batch():
    assert batch_length([32] * 40, Limits(100, 32, 0.005), FLAT) == 3


def test_a_request_over_the_row_limit_still_goes_alone():
    assert batch_length([5000, 1, 1], LIMITS, FLAT) == 1
    assert batch_length([5000], LIMITS, FLAT) == 1


def test_a_per_row_model_does_not_merge_what_would_only_delay_the_first_requests():
    # Cost all per row: merging saves nothing, so a request joins only while the rows queued
    # behind it outweigh the delay it puts on the ones before (about half of the queue).
    taken = batch_length([32] * 10, LIMITS, PER_ROW)
    assert 1 < taken < 10
    assert batch_length([32, 32], LIMITS, PER_ROW) == 1


def test_a_mostly_fixed_cost_merges_everything():
    assert batch_length([1] * 20, LIMITS, Cost(0.00004, 0.0000005)) == 20


def test_an_unknown_cost_merges_as_before():
    assert batch_length([1] * 20, LIMITS, Cost(0.0, 0.0)) == 20
