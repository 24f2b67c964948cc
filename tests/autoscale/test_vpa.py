"""VPA recommender math: buckets, percentiles, decay, confidence, OOM bump, minimums."""

from __future__ import annotations

import math

import pytest

from mlkube.autoscale import vpa


def test_bucket_schemes_match_the_vpa_defaults() -> None:
    assert vpa.CPU_BUCKETS.num_buckets == 176
    assert vpa.MEMORY_BUCKETS.num_buckets == 176
    assert vpa.CPU_BUCKETS.start(175) == pytest.approx(1021, rel=0.01)
    assert vpa.CPU_BUCKETS.find(0.005) == 0
    for b in (1, 10, 100):
        start = vpa.CPU_BUCKETS.start(b)
        assert vpa.CPU_BUCKETS.find(start * 1.0000001) == b
        assert vpa.CPU_BUCKETS.find(start * 0.9999999) == b - 1


def test_percentile_returns_the_upper_edge_of_the_bucket() -> None:
    h = vpa.DecayingHistogram(vpa.CPU_BUCKETS)
    for value in (0.1, 0.2, 0.3, 0.4, 1.0):
        h.add(value, 1.0, 0.0)
    p50 = h.percentile(0.5)
    bucket = vpa.CPU_BUCKETS.find(0.3)
    assert p50 == pytest.approx(vpa.CPU_BUCKETS.start(bucket + 1))
    assert h.percentile(1.0) == pytest.approx(vpa.CPU_BUCKETS.start(vpa.CPU_BUCKETS.find(1.0) + 1))
    assert vpa.DecayingHistogram(vpa.CPU_BUCKETS).percentile(0.9) == 0.0


def test_decay_halves_old_samples_per_half_life() -> None:
    h = vpa.DecayingHistogram(vpa.CPU_BUCKETS)
    h.add(1.0, 1.0, 0.0)  # one day older...
    h.add(0.1, 1.0, vpa.HALF_LIFE)  # ...so it weighs half of this one
    w_old = h.weights[vpa.CPU_BUCKETS.find(1.0)]
    w_new = h.weights[vpa.CPU_BUCKETS.find(0.1)]
    assert w_new / w_old == pytest.approx(2.0)
    # Far in the future the reference shifts; relative weights are unchanged.
    h.add(0.5, 1.0, 150 * vpa.HALF_LIFE)
    assert h.reference > 0


@pytest.mark.parametrize(
    ("minutes", "upper", "lower"),
    [(5, 289.0, 0.60), (60, 25.0, 0.954), (12 * 60, 3.0, 0.996), (24 * 60, 2.0, 0.998)],
)
def test_confidence_factors_match_the_vpa_table(minutes: int, upper: float, lower: float) -> None:
    samples = [vpa.UsageSample(at=60.0 * i, cpu_cores=0.5) for i in range(minutes + 1)]
    rec = vpa.recommend_resources(samples)
    base = rec.cpu.target  # p90 == p50 == p95 for a constant: same bucket edge
    assert rec.cpu.upper / base == pytest.approx(upper, rel=0.02)
    assert rec.cpu.lower / base == pytest.approx(lower, rel=0.01)


def test_target_is_p90_plus_margin_and_minimums_apply() -> None:
    samples = [
        vpa.UsageSample(at=60.0 * i, cpu_cores=0.01 * (i % 100), memory_bytes=10**8)
        for i in range(2000)
    ]
    rec = vpa.recommend_resources(samples)
    p90_edge = vpa.CPU_BUCKETS.start(vpa.CPU_BUCKETS.find(0.89) + 1)
    assert rec.cpu.target == pytest.approx(p90_edge * 1.15)
    tiny = vpa.recommend_resources([vpa.UsageSample(at=0.0, cpu_cores=0.001, memory_bytes=1000)])
    assert tiny.cpu.target == vpa.POD_MIN_CPU
    assert tiny.memory.target == vpa.POD_MIN_MEMORY
    assert tiny.confidence_days == 0
    assert math.isinf(tiny.cpu.upper)  # no history: never force an eviction


def test_oom_bumps_memory() -> None:
    base = [
        vpa.UsageSample(at=60.0 * i, memory_bytes=400 * 2**20, cpu_cores=0.1) for i in range(100)
    ]
    plain = vpa.recommend_resources(base)
    bumped = vpa.recommend_resources(base, [vpa.OomEvent(at=3000.0, memory_bytes=400 * 2**20)])
    assert bumped.memory.target > plain.memory.target
    assert vpa.oom_bump(100 * 2**20) == 200 * 2**20  # +100 MiB beats x1.2 when small
    assert vpa.oom_bump(1000 * 2**20) == pytest.approx(1200 * 2**20)


def test_memory_keeps_one_peak_per_day() -> None:
    day = 86400.0
    samples = [
        vpa.UsageSample(at=day * 0.1 + i, memory_bytes=m)
        for i, m in enumerate((10**8, 5 * 10**8, 2 * 10**8))
    ]
    agg = vpa.recommend_resources(samples)
    # Only the 5e8 peak of that day counts: p50 is its bucket edge.
    assert agg.memory.target == pytest.approx(
        vpa.MEMORY_BUCKETS.start(vpa.MEMORY_BUCKETS.find(5e8) + 1) * 1.15
    )
