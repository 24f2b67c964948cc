"""bench/readme_table.py: the README's serving table is drawn from serve.json, all of it."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "readme_table", ROOT / "bench" / "readme_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_table_is_added_once_and_then_replaced(tmp_path):
    table = _module()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nSome text.\n\n## Next\n\nmore\n")
    table.update_readme(_report(2.5), readme)
    table.update_readme(_report(3.5), readme)
    text = readme.read_text()
    assert text.count(table.BEGIN) == 1 and text.count(table.END) == 1
    assert "| forest (flat ~4 ms) | 32 | 64 | 3,500 | 1,000 | 3.50× | 5.00 / 6.00 |" in text
    assert "| knn (per row) |" in text
    assert "2.50×" not in text
    assert text.index("Some text.") < text.index(table.BEGIN) < text.index("## Next")
    assert "80.0% idle" in text


def test_the_committed_readme_shows_every_row_of_the_committed_results():
    table = _module()
    report = json.loads((ROOT / "bench" / "results" / "serve.json").read_text())
    assert table.render(report) in (ROOT / "README.md").read_text()
    shapes = {row["model"] for row in report["table"]}
    assert {"onnx", "forest", "knn"} <= shapes
