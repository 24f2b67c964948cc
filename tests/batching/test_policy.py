import pytest

from mlkube.batching.policy import FlushDecision, QueueView, flush_decision


def view(requests=1, rows=1, wait=0.0, busy=False, expected=1, predict_s=0.010):
    return QueueView(requests, rows, wait, busy, expected, predict_s)


@pytest.mark.parametrize(
    ("queue", "decision"),
    [
        pytest.param(view(requests=0, rows=0), FlushDecision(False), id="empty-queue"),
        pytest.param(view(busy=True, requests=5, rows=5), FlushDecision(False), id="busy-waits"),
        pytest.param(view(), FlushDecision(True), id="lone-request-goes-at-once"),
        pytest.param(view(requests=4, rows=32, expected=10), FlushDecision(True), id="full-batch"),
        pytest.param(
            view(requests=10, rows=10, expected=10), FlushDecision(True), id="all-expected-arrived"
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.001, expected=10),
            FlushDecision(False, wait_s=0.004),
            id="waits-for-expected",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.005, expected=10),
            FlushDecision(True),
            id="latency-bound-reached",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.0, expected=10, predict_s=0.002),
            FlushDecision(False, wait_s=0.002),
            id="wait-no-longer-than-a-call",
        ),
        pytest.param(
            view(requests=3, rows=3, wait=0.0001, expected=10, predict_s=0.00005),
            FlushDecision(True),
            id="cheap-model-never-waits",
        ),
    ],
)
def test_flush_decision(queue, decision):
    got = flush_decision(queue, max_batch_size=32, max_latency_s=0.005)
    assert got.flush == decision.flush
    if decision.wait_s is None:
        assert got.wait_s is None
    else:
        assert got.wait_s == pytest.approx(decision.wait_s)
