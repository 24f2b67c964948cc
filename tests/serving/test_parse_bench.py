"""``bench/parse.py`` (the README's decode micro-benchmark) runs and writes its table; the
assertions are about what it records, never times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_parse_bench_writes_every_arm_for_every_size(run_bench: Callable[..., Any]) -> None:
    done = run_bench(
        "parse.py",
        *("--repeats", "1", "--seconds", "0.001", "--calibration", "0.001"),
        *("--idle-sample", "0.1"),
    )
    report = done.report
    assert "idle_cpu_percent_before" in report["machine"]
    cells = {(row["protocol"], row["rows"], row["arm"]) for row in report["table"]}
    arms = {"generic", "fast", "orjson lists", "asarray+astype", "fromstring"}
    arms |= {"orjson only", "simdjson only"}
    assert cells == {(p, r, a) for p in ("v1", "v2") for r in (1, 32, 256) for a in arms}
    assert "× generic" in done.stdout
