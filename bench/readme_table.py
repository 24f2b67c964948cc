"""Write the README's serving benchmark table from bench/results/serve.json.

    python bench/readme_table.py [--results bench/results/serve.json] [--readme README.md]

``bench/serve.py`` calls ``update_readme`` after each run; run this alone to redraw the table
from the committed JSON. The table sits between two HTML comments in the README's Benchmarks
section and is replaced whole.
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
    """The markdown table (and a line on the run) for ``report``."""
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        "| model (cost) | rows | conns | mlkube rows/s | bare app rows/s | ratio "
        "| p50 ms mlkube / bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["table"]:
        lines.append(
            f"| {row['model']} ({row['shape']}) | {row['rows']} | {row['connections']} "
            f"| {row['mlkube_rows_per_s']:,.0f} | {row['baseline_rows_per_s']:,.0f} "
            f"| {row['ratio_rps']:.2f}× "
            f"| {row['mlkube_p50_ms']:.2f} / {row['baseline_p50_ms']:.2f} |"
        )
    idle = machine.get("idle_cpu_before_percent")
    load = machine.get("loadavg_before", ["?"])[0]
    lines += [
        "",
        f"{machine['cpus']} CPUs, {settings['workers']} workers each, medians of "
        f"{settings['rounds']} interleaved {settings['duration_s']} s `wrk` runs;",
        f"the machine was {idle if idle is not None else '?'}% idle before the run "
        f"(load average {load}: other work shares it).",
    ]
    return "\n".join(lines)


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
