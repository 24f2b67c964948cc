"""``bench/parse.py`` (the README's decode micro-benchmark) runs and writes its table; the
assertions are about what it records, never times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "bench" / "parse.py"


def test_parse_bench_writes_every_arm_for_every_size(tmp_path: Path) -> None:
    out = tmp_path / "parse.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--repeats",
            "1",
            "--seconds",
            "0.001",
            "--calibration",
            "0.001",
            "--idle-sample",
            "0.1",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert "idle_cpu_percent_before" in report["machine"]
    cells = {(row["protocol"], row["rows"], row["arm"]) for row in report["table"]}
    arms = {"generic", "fast", "asarray+astype", "fromstring", "orjson only"}
    assert cells == {(p, r, a) for p in ("v1", "v2") for r in (1, 32, 256) for a in arms}
    assert "× generic" in done.stdout
