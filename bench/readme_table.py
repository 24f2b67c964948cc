"""Write the README's serving benchmark tables from bench/results/serve.json.

    python bench/readme_table.py [--results bench/results/serve.json] [--readme README.md]

``bench/serve.py`` calls ``update_readme`` after each run; run this alone to redraw the table
from the committed JSON. The tables sit between two HTML comments in the README's Benchmarks
section and are replaced whole. A report without the newer arms (starlette+batcher, tail
latency, binary tensors) renders without their columns and tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- serve-table:begin (bench/readme_table.py writes this) -->"
END = "<!-- serve-table:end -->"


def render(report: dict[str, Any]) -> str:
    """The markdown tables (throughput; tail latency and binary tensors when the run has
    them) and a few lines on the run, every line at most 100 characters."""
    machine = report["machine"]
    settings = report["settings"]
    table = report["table"]
    core = any(row.get("batcher_rows_per_s") is not None for row in table)
    if core:
        header = (
            "| model | rows | conn | mlkube rows/s | bare rows/s | ratio | s+b rows/s | core "
            "| p50 m/b/s+b ms |"
        )
        rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    else:
        header = (
            "| model | rows | conns | mlkube rows/s | bare rows/s | ratio | p50 ms mlkube / bare |"
        )
        rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    lines = [header, rule]
    for row in table:
        line = (
            f"| {row['model']} | {row['rows']} | {row['connections']} "
            f"| {_count(row['mlkube_rows_per_s'])} | {_count(row['baseline_rows_per_s'])} "
            f"| {_times(row['ratio_rps'])} "
        )
        p50 = f"{_ms(row['mlkube_p50_ms'])} / {_ms(row['baseline_p50_ms'])}"
        if core:
            line += f"| {_count(row.get('batcher_rows_per_s'))} "
            line += f"| {_times(row.get('core_ratio_rps'))} "
            p50 += f" / {_ms(row.get('batcher_p50_ms'))}"
        lines.append(line + f"| {p50} |")
    shapes = ", ".join(dict.fromkeys(f"{row['model']} ({row['shape']})" for row in table))
    lines += ["", f"Models: {shapes}."]
    if core:
        lines += [
            "m: mlkube; b, bare: a bare Starlette/uvicorn app (no batching); s+b: mlkube's own app",
            "and batcher under Starlette/uvicorn; ratio: mlkube ÷ bare; core: mlkube ÷ s+b, what",
            "mlkube's HTTP core buys.",
        ]
    else:
        lines += ["bare: a bare Starlette/uvicorn app (no batching); ratio: mlkube ÷ bare."]
    lines += _tail(report.get("tail") or [])
    lines += _binary(report.get("binary") or [])
    lines += _paired(report.get("paired") or {})
    idle = machine.get("idle_cpu_before_percent")
    load = machine.get("loadavg_before", ["?"])[0]
    # Below 90% idle other work shared the cores: the reader should know the run was noisy.
    shared = ": other work shares it" if idle is None or idle < 90 else ""
    lines += [
        "",
        f"{machine['cpus']} CPUs, {settings['workers']} workers each, medians of "
        f"{settings['rounds']} interleaved {settings['duration_s']} s `wrk` runs;",
        f"the machine was {idle if idle is not None else '?'}% idle before the run "
        f"(load average {load}{shared}).",
    ]
    return "\n".join(lines)


def _tail(rows: list[dict[str, Any]]) -> list[str]:
    """Latency percentiles at saturation (64 connections) and paced at ~50% of it."""
    if not rows:
        return []
    lines = [
        "",
        "| model | rows | load | mlkube ms p50 / p99 / p99.9 | bare ms p50 / p99 / p99.9 |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        for load in ("sat", "half"):
            if load == "sat":
                label = "64 conns"
            else:
                reached = [row.get(f"{kind}_half_load") for kind in ("mlkube", "baseline")]
                label = "~50% (" + " / ".join(_percent(value) for value in reached) + ")"
            cells = [
                " / ".join(_ms(row.get(f"{kind}_{load}_{key}")) for key in _PERCENTILES)
                for kind in ("mlkube", "baseline")
            ]
            lines.append(f"| {row['model']} | {row['rows']} | {label} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "~50%: paced at half of each server's saturated req/s (the load each reached: mlkube /",
        "bare); `wrk` is closed-loop, so both loads under-report coordinated omission.",
    ]
    return lines


def _binary(rows: list[dict[str, Any]]) -> list[str]:
    """v2 binary tensors against the v1 JSON rows/s of the same setting."""
    if not rows:
        return []
    lines = [
        "",
        "| model | rows | conns | binary rows/s | ÷ bare JSON | ÷ mlkube JSON | p50 / p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['rows']} | {row['connections']} "
            f"| {_count(row['binary_rows_per_s'])} | {_times(row['ratio_vs_baseline_json'])} "
            f"| {_times(row['ratio_vs_mlkube_json'])} "
            f"| {_ms(row['binary_p50_ms'])} / {_ms(row['binary_p99_ms'])} |"
        )
    return lines


def _paired(paired: dict[str, Any]) -> list[str]:
    """One connection, requests alternated between the servers: mlkube − bare per round."""
    found = [
        (model, rows, report)
        for model, by_rows in paired.items()
        for rows, report in by_rows.items()
        if "mlkube" in report.get("difference_ms", {})
    ]
    if not found:
        return []
    lines = [
        "",
        "| model | rows | mlkube p50 ms | bare p50 ms | mlkube − bare ms (95% interval) | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, rows, report in found:
        d = report["difference_ms"]["mlkube"]
        lines.append(
            f"| {model} | {rows} | {_ms(report['p50_ms'].get('mlkube'))} "
            f"| {_ms(report['p50_ms'].get('baseline'))} "
            f"| {d['median']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f}) | {report['rounds']} |"
        )
    lines += [
        "",
        "One connection to each server, the same request sent to each in turn (random order",
        "per round): the median of the per-round differences (`bench/paired.py`). The p50",
        "columns of the first table come from separate `wrk` runs, which the machine's drift",
        "moves by more than these differences.",
    ]
    return lines


_PERCENTILES = ("p50_ms", "p99_ms", "p999_ms")
_MISSING = "–"


def _count(value: float | None) -> str:
    return _MISSING if value is None else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return _MISSING if value is None else f"{value:.2f}×"


def _percent(value: float | None) -> str:
    return _MISSING if value is None else f"{value:.0%}"


def _ms(value: float | None) -> str:
    """Milliseconds to about three significant digits (0.46, 24.8, 941)."""
    if value is None:
        return _MISSING
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def update_readme(report: dict[str, Any], readme: Path = ROOT / "README.md") -> None:
    """Replace the table between the markers (added at the end of Benchmarks when missing)."""
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{render(report)}\n{END}"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        text = before + block + after
    else:
        heading = "## Benchmarks\n"
        if heading not in text:
            raise SystemExit(f"{readme} has no '## Benchmarks' section")
        start = text.index(heading) + len(heading)
        following = text.find("\n## ", start)
        end = len(text) if following < 0 else following + 1
        text = text[:end].rstrip("\n") + "\n\n" + block + "\n" + text[end:]
    readme.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    update_readme(json.loads(args.results.read_text(encoding="utf-8")), args.readme)
    print(f"rewrote the benchmark table in {args.readme}")


if __name__ == "__main__":
    main()
