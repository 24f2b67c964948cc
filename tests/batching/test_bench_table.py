"""bench/readme_table.py: the README's serving tables are drawn from serve.json, all of it."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _report(ratio_rows: float) -> dict:
    row = {
        "model": "forest",
        "shape": "flat ~4 ms",
        "rows": 32,
        "connections": 64,
        "mlkube_rows_per_s": ratio_rows * 1000,
        "baseline_rows_per_s": 1000.0,
        "ratio_rps": ratio_rows,
        "mlkube_p50_ms": 5.0,
        "baseline_p50_ms": 6.0,
    }
    return {
        "machine": {"cpus": 2, "idle_cpu_before_percent": 80.0},
        "settings": {"workers": 2, "rounds": 3, "duration_s": 5},
        "table": [row, {**row, "model": "knn", "shape": "per row"}],
    }


def _full_report() -> dict:
    """A report of a run with every arm: starlette+batcher, paced tail latency, binary."""
    report = _report(2.5)
    for row in report["table"]:
        row.update(
            batcher_rows_per_s=1250.0,
            core_ratio_rps=2.0,
            batcher_p50_ms=123.456,
            mlkube_p99_ms=9.0,
            baseline_p99_ms=1234.5,
        )
    report["tail"] = [
        {
            "model": "forest",
            "rows": 32,
            **{f"mlkube_sat_{k}": v for k, v in zip(PERCENTILES, (5.0, 9.0, 12.5), strict=True)},
            **{f"baseline_sat_{k}": v for k, v in zip(PERCENTILES, (6, 1234.5, 2000), strict=True)},
            **{f"mlkube_half_{k}": v for k, v in zip(PERCENTILES, (2.0, 4.0, 4.5), strict=True)},
            **{f"baseline_half_{k}": None for k in PERCENTILES},
            "mlkube_half_load": 0.48,
            "baseline_half_load": None,
        }
    ]
    report["binary"] = [
        {
            "model": "onnx",
            "rows": 32,
            "connections": 64,
            "binary_rows_per_s": 400_000.0,
            "ratio_vs_baseline_json": 4.25,
            "ratio_vs_mlkube_json": 2.0,
            "binary_p50_ms": 3.25,
            "binary_p99_ms": 11.0,
        }
    ]
    report["paired"] = {
        "forest": {
            "1": {
                "rounds": 900,
                "p50_ms": {"baseline": 4.25, "mlkube": 4.3},
                "difference_ms": {"mlkube": {"median": 0.0412, "low": -0.01, "high": 0.09}},
            }
        }
    }
    return report


PERCENTILES = ("p50_ms", "p99_ms", "p999_ms")


def test_a_run_with_every_arm_renders_each_table_within_100_columns(readme_table):
    text = readme_table.render(_full_report())
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert (
        "| forest | 32 | 64 | 2,500 | 1,000 | 2.50× | 1,250 | 2.00× | 5.00 / 6.00 / 123 |" in lines
    )
    assert "| forest | 32 | 64 conns | 5.00 / 9.00 / 12.5 | 6.00 / 1234 / 2000 |" in lines
    # The bare app's paced run is missing: shown as such, not as a number.
    assert "| forest | 32 | ~50% (48% / –) | 2.00 / 4.00 / 4.50 | – / – / – |" in lines
    assert "| onnx | 32 | 64 | 400,000 | 4.25× | 2.00× | 3.25 / 11.0 |" in lines
    assert "| forest | 1 | 4.30 | 4.25 | +0.041 (-0.010 to +0.090) | 900 |" in lines
    assert "what" in text and "HTTP core buys" in text
    # Three tables, each a block of its own: a blank line before each header row.
    headers = [i for i, line in enumerate(lines) if line.startswith("| model |")]
    assert len(headers) == 4
    assert all(i == 0 or lines[i - 1] == "" for i in headers)
    # and the line after each table is blank (markdown would take prose as a table row).
    ends = [i for i, line in enumerate(lines[:-1]) if line.startswith("|") and lines[i + 1]]
    assert all(lines[i + 1].startswith("|") for i in ends)


def test_a_report_without_the_newer_arms_renders_without_their_columns(readme_table):
    text = readme_table.render(_report(2.5))
    assert "s+b" not in text and "p99.9" not in text and "binary" not in text
    assert "paired" not in text and "rounds" not in text
    assert "Models: forest (flat ~4 ms), knn (per row)." in text


def test_the_table_is_added_once_and_then_replaced(readme_table, tmp_path):
    table = readme_table
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nSome text.\n\n## Next\n\nmore\n")
    table.update_readme(_report(2.5), readme)
    table.update_readme(_report(3.5), readme)
    text = readme.read_text()
    assert text.count(table.BEGIN) == 1 and text.count(table.END) == 1
    assert "| forest | 32 | 64 | 3,500 | 1,000 | 3.50× | 5.00 / 6.00 |" in text
    assert "| knn | 32 | 64 |" in text
    assert "2.50×" not in text
    assert text.index("Some text.") < text.index(table.BEGIN) < text.index("## Next")
    assert "80.0% idle" in text


def test_the_committed_readme_shows_every_row_of_the_committed_results(readme_table):
    table = readme_table
    report = json.loads((ROOT / "bench" / "results" / "serve.json").read_text())
    assert table.render(report) in (ROOT / "README.md").read_text()
    shapes = {row["model"] for row in report["table"]}
    assert {"onnx", "forest", "knn"} <= shapes


def test_the_run_line_says_other_work_shared_the_machine_only_when_it_did(readme_table):
    busy = _report(2.5)
    idle = _report(2.5)
    idle["machine"] = {"cpus": 2, "idle_cpu_before_percent": 99.3, "loadavg_before": [0.5]}
    assert "other work shares it" in readme_table.render(busy)
    assert "other work shares it" not in readme_table.render(idle)
    assert "(load average 0.5)." in readme_table.render(idle)
