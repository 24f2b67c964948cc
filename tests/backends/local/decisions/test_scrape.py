import pytest

from mlkube.backends.local.decisions.scrape import merge, parse_metrics, rates
from mlkube.desired.rollout import judge_canary

TEXT = """# HELP mlkube_requests_total Requests.
# TYPE mlkube_requests_total counter
mlkube_requests_total{model="iris",revision="1",protocol="v1",code="200"} %(ok)s
mlkube_requests_total{model="iris",revision="1",protocol="v1",code="500"} %(bad)s
mlkube_request_duration_seconds_bucket{model="iris",protocol="v1",le="0.01"} %(fast)s
mlkube_request_duration_seconds_bucket{model="iris",protocol="v1",le="0.1"} %(all)s
mlkube_request_duration_seconds_bucket{model="iris",protocol="v1",le="+Inf"} %(all)s
mlkube_in_flight_requests 3
mlkube_queue_depth 1
process_cpu_seconds_total %(cpu)s
process_resident_memory_bytes 1.5e+08
"""


def snap(at, ok, bad, fast, cpu):
    text = TEXT % {"ok": ok, "bad": bad, "fast": fast, "all": ok + bad, "cpu": cpu}
    return parse_metrics(text, at=at)


def test_parse_reads_the_series_we_need():
    s = snap(0, 90, 10, 50, 2.0)
    assert (s.requests, s.errors, s.in_flight, s.queue_depth) == (100, 10, 3, 1)
    assert s.rss_bytes == 150_000_000
    assert s.buckets == {0.01: 50, 0.1: 100, float("inf"): 100}


def test_rates_between_two_snapshots():
    r = rates(snap(0, 0, 0, 0, 1.0), snap(10, 90, 10, 50, 6.0))
    assert r.requests_per_second == 10
    assert r.error_rate == pytest.approx(0.1)
    assert r.cpu_cores == pytest.approx(0.5)
    # p99 lies in the 10-100 ms bucket: 10 + 90 * (99 - 50) / 50 ms.
    assert r.p99_ms == pytest.approx(98.2)


def test_a_counter_reset_counts_the_new_value():
    r = rates(snap(0, 500, 0, 500, 9.0), snap(10, 20, 0, 20, 1.0))
    assert r.requests == 20


def test_merge_sums_counts_and_takes_the_worst_p99():
    a = rates(snap(0, 0, 0, 0, 0), snap(1, 10, 0, 10, 0))
    b = rates(snap(0, 0, 0, 0, 0), snap(1, 5, 5, 0, 0))
    merged = merge([a, b])
    assert merged.requests == 20
    assert merged.error_rate == pytest.approx(0.25)
    assert a.p99_ms is not None and b.p99_ms is not None
    assert merged.p99_ms == max(a.p99_ms, b.p99_ms)


def test_judge_needs_enough_requests_then_checks_thresholds():
    few = rates(snap(0, 0, 0, 0, 0), snap(1, 3, 2, 5, 0))
    assert judge_canary(few, max_error_rate=0.01, max_p99_ms=None, min_requests=20) == (False, None)
    bad = rates(snap(0, 0, 0, 0, 0), snap(1, 80, 20, 100, 0))
    enough, reason = judge_canary(bad, max_error_rate=0.01, max_p99_ms=None, min_requests=20)
    assert enough
    assert reason == "error rate 0.200 over 100 requests exceeds maxErrorRate 0.01"
    slow = rates(snap(0, 0, 0, 0, 0), snap(1, 100, 0, 0, 0))
    _, reason = judge_canary(slow, max_error_rate=0.5, max_p99_ms=50, min_requests=1)
    assert reason is not None
    assert "exceeds maxP99LatencyMs 50" in reason
