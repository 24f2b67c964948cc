"""Cold start of ``mlkube serve`` against a bare Starlette/uvicorn app, for every file format.

    python bench/cold_start.py [--runs 3] [--workers 1,2] [--formats skops,onnx,...]

Cold start is the time from starting the process to the first HTTP 200 on a predict request
(``POST /v1/models/NAME:predict``, one row), polled every 10 ms on new connections. For
each format mlkube serves from a file, a small model is built (``mlkube.testing.models``):

- ``skops``: a HistGradientBoostingClassifier (20 features) saved with skops;
- ``pickle``: the same estimator as a plain pickle (the spec sets ``trustPickle: true``);
- ``onnx``: the same estimator exported to ONNX;
- ``xgboost``: an XGBClassifier (10 trees, JSON); ``lightgbm``: an LGBMClassifier (text);
- ``torch``: a small MLP traced to TorchScript (``.pt`` with its sidecar).

The two servers of a pair:

- ``mlkube serve SPEC --port P --workers W``;
- ``uvicorn cold_apps:app --workers W`` (``bench/cold_apps.py``): the library's own loader
  on the same file and a predict route, nothing else.

Both get the same worker count, the same environment (``OMP_NUM_THREADS=1`` and the BLAS
equivalents, as ``bench/serve.py`` gives its baseline), the same cores and byte-compiled code
(mlkube and ``bench/`` are compiled first, as installing a wheel compiles every package).
Runs are fresh processes, interleaved (mlkube then bare, then bare then mlkube, ...), so the
machine's drift touches both; the medians of ``--runs`` runs are reported, with the ratio
mlkube / bare and the difference in seconds. The machine's idle CPU before and during the run
is recorded: the figures mean something only beside it.

Writes ``bench/results/cold_start.json``, prints a table and redraws the README's cold-start
table (between the ``cold-start-table`` markers) unless ``--no-readme``; ``--redraw``
redraws it from the JSON alone. ``--note`` labels the JSON (e.g. "noisy shared machine");
a run that starts on a machine less than 80% idle is labelled so on its own.
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkube.spec import load_spec
from mlkube.testing import models

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results" / "cold_start.json"
README = ROOT / "README.md"
BEGIN = "<!-- cold-start-table:begin (bench/cold_start.py writes this) -->"
END = "<!-- cold-start-table:end -->"
FORMATS = ("skops", "pickle", "onnx", "xgboost", "lightgbm", "torch")
FEATURES = 20
POLL_S = 0.01
START_TIMEOUT_S = 120.0
NOISY_IDLE_PERCENT = 80.0
# Same footing as bench/serve.py's baseline: one native thread per worker.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True, slots=True)
class Model:
    """One format's model: its spec for mlkube, its file for the bare app, a request body."""

    spec: Path
    file: Path
    name: str
    body: bytes


def build_models(folder: Path, wanted: tuple[str, ...]) -> dict[str, Model]:
    """Write one small model per wanted format (and its spec) into ``folder``."""
    built: dict[str, models.BuiltModel] = {}
    hgb = None
    if {"skops", "pickle", "onnx"} & set(wanted):
        hgb = models.hgb_classifier(n_samples=2000, n_features=FEATURES)
    for fmt in wanted:
        if fmt == "skops" and hgb is not None:
            built[fmt] = models.save_sklearn(hgb, folder, kind="skops", name="hgb")
        elif fmt == "pickle" and hgb is not None:
            built[fmt] = models.save_sklearn(hgb, folder, kind="pickle", name="hgb")
        elif fmt == "onnx" and hgb is not None:
            built[fmt] = models.save_onnx(hgb, folder, name="hgb")
        elif fmt == "xgboost":
            built[fmt] = models.xgboost_model(folder, task="binary")
        elif fmt == "lightgbm":
            built[fmt] = models.lightgbm_model(folder, task="binary")
        elif fmt == "torch":
            built[fmt] = models.torchscript_model(folder)
    found = {}
    for fmt, model in built.items():
        spec = models.write_spec(model, folder, name=f"cold-{fmt}")
        row = [round(float(v), 4) for v in model.rows[0]]
        found[fmt] = Model(
            spec=spec,
            file=model.path,
            name=load_spec(spec).model_name,
            body=json.dumps({"instances": [row]}).encode(),
        )
    return found


def compile_bytecode() -> None:
    """Byte-compile mlkube and the bare app, as installing a wheel does for every package.

    The bare app's libraries (uvicorn, starlette) were compiled when pip installed them; an
    editable install of mlkube under ``PYTHONDONTWRITEBYTECODE`` (this machine sets it) would
    compile every module from source at every start, about 0.1 s that no user's install pays.
    """
    for folder in (ROOT / "src" / "mlkube", BENCH):
        compileall.compile_dir(folder, quiet=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_for(kind: str, model: Model, port: int) -> list[str]:
    if kind == "mlkube":
        return [sys.executable, "-m", "mlkube", "serve", str(model.spec), "--port", str(port)]
    return [
        *(sys.executable, "-m", "uvicorn", "cold_apps:app", "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        *("--log-level", "warning"),
    ]


def environment_for(kind: str, fmt: str, model: Model) -> dict[str, str]:
    env = dict(os.environ, **THREAD_ENV)
    if kind == "bare":
        path = [str(BENCH), env.get("PYTHONPATH", "")]
        env.update(
            COLD_MODEL=str(model.file),
            COLD_FORMAT=fmt,
            PYTHONPATH=os.pathsep.join(p for p in path if p),
        )
    return env


@dataclass(frozen=True, slots=True)
class Start:
    """One cold start: wall seconds to the first 200, and the CPU seconds spent by then."""

    wall_s: float
    cpu_s: float


def cold_start(kind: str, fmt: str, model: Model, workers: int) -> Start:
    """Start one server, time it to its first 200, stop it."""
    port = free_port()
    command = [*command_for(kind, model, port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            env=environment_for(kind, fmt, model),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            wall = first_answer(process, port, model, started)
            return Start(wall, tree_cpu_seconds(process.pid))
        except (RuntimeError, TimeoutError) as error:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{kind} {fmt} ({workers} workers): {error}\n{tail}") from None
        finally:
            stop(process)


def first_answer(
    process: subprocess.Popen[bytes], port: int, model: Model, started: float
) -> float:
    path = f"/v1/models/{model.name}:predict"
    headers = {"content-type": "application/json"}
    while time.monotonic() - started < START_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before answering")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT_S)
        try:
            connection.request("POST", path, body=model.body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(POLL_S)
    raise TimeoutError(f"no 200 within {START_TIMEOUT_S:.0f} s")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live descendants.

    On a shared machine the wall time to the first answer swings with other work; the CPU
    the server spent to get there does much less, so it is recorded beside it.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return total


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group and wait, so the next start has the cores."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Workers in the group may outlive the parent by a moment.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


class CpuMeter:
    """The machine's idle CPU share between two readings of /proc/stat (as bench/serve.py)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    def idle_percent(self) -> float:
        idle, total = self._read()
        return 100.0 * (idle - self.start[0]) / max(total - self.start[1], 1)


def machine_idle_before(seconds: float = 3.0) -> float:
    meter = CpuMeter()
    time.sleep(seconds)
    return meter.idle_percent()


Samples = dict[tuple[str, int], dict[str, list[Start]]]


def measure(built: dict[str, Model], worker_counts: tuple[int, ...], runs: int) -> Samples:
    """Every (format, workers) pair, ``runs`` times each, interleaved."""
    samples: Samples = {
        (fmt, w): {"mlkube": [], "bare": []} for fmt in built for w in worker_counts
    }
    for run in range(runs):
        for index, ((fmt, workers), pair) in enumerate(samples.items()):
            order = ("mlkube", "bare") if (run + index) % 2 == 0 else ("bare", "mlkube")
            for kind in order:
                pair[kind].append(cold_start(kind, fmt, built[fmt], workers))
            ours, bare = pair["mlkube"][-1], pair["bare"][-1]
            print(
                f"  run {run + 1}/{runs} {fmt:8} w={workers} "
                f"mlkube {ours.wall_s:5.2f} s ({ours.cpu_s:.2f} CPU s)  "
                f"bare {bare.wall_s:5.2f} s ({bare.cpu_s:.2f} CPU s)",
                flush=True,
            )
    return samples


def summarise(samples: Samples) -> list[dict[str, Any]]:
    table = []
    for (fmt, workers), pair in samples.items():
        ours = statistics.median(s.wall_s for s in pair["mlkube"])
        bare = statistics.median(s.wall_s for s in pair["bare"])
        table.append(
            {
                "format": fmt,
                "workers": workers,
                "mlkube_s": round(ours, 3),
                "bare_s": round(bare, 3),
                "ratio": round(ours / bare, 3),
                "delta_s": round(ours - bare, 3),
                "mlkube_cpu_s": round(statistics.median(s.cpu_s for s in pair["mlkube"]), 3),
                "bare_cpu_s": round(statistics.median(s.cpu_s for s in pair["bare"]), 3),
                "mlkube_runs_s": [round(s.wall_s, 3) for s in pair["mlkube"]],
                "bare_runs_s": [round(s.wall_s, 3) for s in pair["bare"]],
            }
        )
    return table


def render_readme_table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "| format | workers | mlkube s | bare app s | ratio | delta s | CPU s mlkube / bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["table"]:
        lines.append(
            f"| {row['format']} | {row['workers']} | {row['mlkube_s']:.2f} "
            f"| {row['bare_s']:.2f} | {row['ratio']:.2f}× | {row['delta_s']:+.2f} "
            f"| {row['mlkube_cpu_s']:.2f} / {row['bare_cpu_s']:.2f} |"
        )
    lines += [
        "",
        f"{machine['cpus']} CPUs, medians of {report['settings']['runs']} interleaved "
        "fresh-process runs;",
        f"the machine was {machine['idle_cpu_before_percent']}% idle before the run and "
        f"{machine['idle_cpu_during_percent']}% during it.",
    ]
    if report.get("note"):
        lines.append(f"Note: {report['note']}.")
    return "\n".join(lines)


def update_readme(report: dict[str, Any], readme: Path = README) -> None:
    """Replace the table between the markers (added at the end of Benchmarks when missing)."""
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{render_readme_table(report)}\n{END}"
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


def print_table(report: dict[str, Any], output: Path) -> None:
    print(
        f"\n{'format':9} {'workers':>7} {'mlkube s':>9} {'bare s':>7} {'ratio':>6} "
        f"{'delta s':>8} {'CPU s mlkube/bare':>18}"
    )
    for row in report["table"]:
        cpu = f"{row['mlkube_cpu_s']:.2f}/{row['bare_cpu_s']:.2f}"
        print(
            f"{row['format']:9} {row['workers']:>7} {row['mlkube_s']:>9.2f} "
            f"{row['bare_s']:>7.2f} {row['ratio']:>6.2f} {row['delta_s']:>+8.2f} {cpu:>18}"
        )
    machine = report["machine"]
    print(
        f"\nmachine: {machine['cpus']} CPUs, idle before {machine['idle_cpu_before_percent']}% "
        f"(load {machine['loadavg_before'][0]}), idle during {machine['idle_cpu_during_percent']}%"
    )
    if report.get("note"):
        print(f"note: {report['note']}")
    print(f"wrote {output}")


def parse_list(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}"
            if unknown
            else f"name at least one {what}"
        )
    return items


def parse_workers(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,2, got {text!r}") from None
    if not counts or any(c < 1 or c > 64 for c in counts):
        raise argparse.ArgumentTypeError(f"worker counts must be 1..64, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Cold start = process start to first HTTP 200 on a 1-row predict request. "
        "Defaults: 6 formats x 2 worker counts x 3 runs x 2 servers, ~4 minutes on 2 "
        "idle cores. Read the ratios beside the machine's idle CPU: other work skews them.",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="fresh-process runs per server; medians reported"
    )
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=(1, 2),
        help="comma-separated worker counts (default 1,2; bench/serve.py uses 2)",
    )
    parser.add_argument(
        "--formats",
        type=lambda text: parse_list(text, FORMATS, "format"),
        default=FORMATS,
        help=f"comma-separated, of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON to write")
    parser.add_argument("--note", default="", help="a label kept in the JSON (and README)")
    parser.add_argument(
        "--no-readme", action="store_true", help="leave the README's cold-start table alone"
    )
    parser.add_argument("--readme", type=Path, default=README, help="the README to redraw")
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="measure nothing: redraw the README's table from the --output JSON",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.redraw:
        update_readme(json.loads(args.output.read_text(encoding="utf-8")), args.readme)
        print(f"redrew the README's cold-start table from {args.output}")
        return
    idle_before = machine_idle_before()
    load_before = os.getloadavg()
    compile_bytecode()
    meter = CpuMeter()
    with tempfile.TemporaryDirectory() as folder:
        built = build_models(Path(folder), args.formats)
        samples = measure(built, args.workers, args.runs)
    idle_during = meter.idle_percent()
    note = args.note
    if idle_before < NOISY_IDLE_PERCENT:
        busy = f"the machine was only {idle_before:.0f}% idle before the run: noisy figures"
        note = f"{note}; {busy}" if note else busy
    report: dict[str, Any] = {
        "note": note,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "idle_cpu_before_percent": round(idle_before, 1),
            "loadavg_before": [round(v, 2) for v in load_before],
            "idle_cpu_during_percent": round(idle_during, 1),
        },
        "settings": {
            "runs": args.runs,
            "workers": list(args.workers),
            "formats": list(args.formats),
            "thread_env": THREAD_ENV,
            "measured": "process start to first HTTP 200 on a 1-row v1 predict request",
            "cpu_s": "user+system CPU of the server's processes by that first 200",
            "bytecode": "mlkube and bench/ byte-compiled before the runs, as a wheel install is",
        },
        "table": summarise(samples),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report, args.output)
    if not args.no_readme:
        update_readme(report, args.readme)
        print("rewrote the README's cold-start table")


if __name__ == "__main__":
    main()
