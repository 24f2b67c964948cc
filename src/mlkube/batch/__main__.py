"""``python -m mlkube.batch FILE``: run a file's BatchInference jobs with a progress bar.

The entry point tests and the job runner use until ``mlkube run`` starts batch jobs; exit 0
when every job finished, 1 with ``error: ...`` when one failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from mlkube.batch.plan import Progress
from mlkube.batch.runner import BatchResult, run_batch
from mlkube.errors import MlkubeError
from mlkube.spec.job import BatchInference
from mlkube.spec.loading import load_documents

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def progress_line(name: str, progress: Progress) -> str:
    """``default/score: 3/10 shards, 30000/100000 rows, 41,000 rows/s``."""
    return (
        f"{name}: {progress.shards_done}/{progress.shards_total} shards, "
        f"{progress.rows_done}/{progress.rows_total} rows, {progress.rows_per_s:,.0f} rows/s"
    )


def result_line(name: str, result: BatchResult) -> str:
    return (
        f"{name}: {result.shards} shards, {result.rows} rows: {result.ran} predicted now, "
        f"{result.skipped} already done, {result.retries} retries, {result.elapsed_s:.1f} s"
    )


def progress_json(name: str, progress: Progress) -> str:
    """One JSON line per update (``--json``), for a program reading the job's log."""
    return orjson.dumps(
        {
            "job": name,
            "shardsTotal": progress.shards_total,
            "shardsDone": progress.shards_done,
            "shardsSkipped": progress.shards_skipped,
            "rowsTotal": progress.rows_total,
            "rowsDone": progress.rows_done,
            "rowsPerSecond": round(progress.rows_per_s, 1),
            "retries": progress.retries,
            "running": progress.running,
        }
    ).decode()


def run_with_bar(
    job: BatchInference, state_dir: str | None, plain: bool, as_json: bool = False
) -> BatchResult:
    """``run_batch`` with a rich progress bar on stderr (or a line per update: ``plain``; a
    JSON line on stdout: ``as_json``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    name = f"{job.namespace}/{job.metadata.name}"
    console = Console(stderr=True)
    columns = (
        TextColumn(name),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Bar(*columns, console=console, disable=plain or as_json) as bar:
        task = bar.add_task(name, total=None, rate="")

        def show(progress: Progress) -> None:
            rate = f"shards {progress.rows_per_s:,.0f} rows/s"
            bar.update(task, total=progress.shards_total, completed=progress.shards_done, rate=rate)
            if as_json:
                _say(progress_json(name, progress), sys.stdout)
            elif plain:
                _say(progress_line(name, progress))

        return run_batch(job, state_dir=state_dir, on_progress=show)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlkube.batch")
    parser.add_argument("file", help="a spec file holding BatchInference documents")
    parser.add_argument("--state-dir", default=None, help="whose model registry to use")
    parser.add_argument("--plain", action="store_true", help="progress as lines, no bar")
    parser.add_argument("--json", action="store_true", help="progress as JSON lines on stdout")
    parser.add_argument("--name", default=None, help="only this job (NAME or NAMESPACE/NAME)")
    args = parser.parse_args(argv)
    try:
        jobs = [d for d in load_documents(args.file) if isinstance(d, BatchInference)]
        if args.name is not None:
            jobs = [
                j
                for j in jobs
                if args.name in (j.metadata.name, f"{j.namespace}/{j.metadata.name}")
            ]
        if not jobs:
            named = f" named {args.name}" if args.name else ""
            raise MlkubeError(f"{args.file}: no BatchInference document{named}")
        for job in jobs:
            result = run_with_bar(job, args.state_dir, args.plain, args.json)
            _say(result_line(f"{job.namespace}/{job.metadata.name}", result), sys.stdout)
    except KeyboardInterrupt:
        _say("error: interrupted; run it again to resume")
        return EXIT_INTERRUPTED
    except MlkubeError as error:
        _say(f"error: {error}")
        return EXIT_FAILED
    return 0


def _say(line: str, stream: TextIO | None = None) -> None:
    """One line to a stream (a process entry point: the CLI's output module is not here)."""
    out = stream or sys.stderr
    out.write(line + "\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
