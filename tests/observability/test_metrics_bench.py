"""``bench/metrics.py`` (why the request path has its own counters and histograms) runs and
writes its table; the assertions are about what it records, never times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "metrics.py"


def test_metrics_bench_times_both_arms_and_writes_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--repeats", "1", "--seconds", "0.001", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert "idle_cpu_percent_before" in report["machine"]
    assert {row["arm"] for row in report["table"]} == {"prometheus_client", "mlkube"}
    assert all(row["us_per_request"] > 0 for row in report["table"])
    assert report["library_over_ours"] > 0
    assert "prometheus_client ÷ mlkube" in done.stdout
