"""``bench/cold_start.py`` runs a pair and records what the README's table is drawn from; the
assertions are about what it records, never about times."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).parents[2] / "bench" / "cold_start.py"


def test_cold_start_bench_times_both_servers_and_labels_the_run(
    tmp_path: Path, run_bench: Callable[..., Any]
) -> None:
    done = run_bench(
        "cold_start.py",
        *("--runs", "1", "--formats", "onnx", "--workers", "1", "--no-readme"),
        *("--note", "test run"),
    )
    report, out = done.report, done.output
    assert report["note"].startswith("test run")
    assert {"idle_cpu_before_percent", "idle_cpu_during_percent"} <= set(report["machine"])
    (row,) = report["table"]
    assert (row["format"], row["workers"]) == ("onnx", 1)
    assert row["mlkube_s"] > 0 and row["bare_s"] > 0 and row["mlkube_cpu_s"] > 0
    assert "ratio" in done.stdout

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nText.\n\n## Next\n", encoding="utf-8")
    redraw = [sys.executable, str(BENCH), "--redraw", "--output", str(out), "--readme"]
    for _ in range(2):  # added once, then replaced in place
        subprocess.run([*redraw, str(readme)], check=True, capture_output=True, timeout=60)
    text = readme.read_text(encoding="utf-8")
    assert text.count("cold-start-table:begin") == 1
    assert text.index("| onnx | 1 |") < text.index("## Next")
    assert "Note: test run" in text


def test_cold_start_bench_refuses_an_unknown_format() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--formats", "onnx,keras"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown format 'keras'" in done.stderr
    assert "Traceback" not in done.stderr
