"""``bench/metrics.py`` (why the request path has its own counters and histograms) runs and
writes its table; the assertions are about what it records, never times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_metrics_bench_times_both_arms_and_writes_the_ratio(run_bench: Callable[..., Any]) -> None:
    done = run_bench("metrics.py", "--repeats", "1", "--seconds", "0.001")
    report = done.report
    assert "idle_cpu_percent_before" in report["machine"]
    assert {row["arm"] for row in report["table"]} == {"prometheus_client", "mlkube"}
    assert all(row["us_per_request"] > 0 for row in report["table"])
    assert report["library_over_ours"] > 0
    assert "prometheus_client ÷ mlkube" in done.stdout
