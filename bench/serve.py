"""Benchmark ``mlkube serve`` against a bare Starlette/uvicorn app on the same model and cores.

    python bench/serve.py [--duration 5] [--rounds 3] [--workers 2] [--quick] [--models ...]

Both servers get the same worker count and serve the same files, models of four cost shapes
(20 float features each; ``MODELS``):

- ``onnx``: a HistGradientBoostingClassifier exported to ONNX, ~40 µs a call: the cost is
  HTTP and JSON;
- ``sklearn``: the same classifier natively (skops), ~2 ms a call whatever its rows;
- ``forest``: a RandomForestClassifier of 100 trees (depth 8, ``n_jobs=1``), ~4 ms a call
  at 1 row or 32: a flat cost, the per-tree Python overhead of scikit-learn's forests;
- ``knn``: a brute-force KNeighborsClassifier over 50,000 rows, a cost per row (the
  distances to every stored row) on top of ~0.5 ms a call.

``wrk`` (Debian package; installed if missing and we are root) drives each at 1 and 64
connections with 1-row and 32-row requests. Recorded: req/s, rows/s, p50/p99, non-2xx
answers, idle and loaded PSS, cold start (process start to first 200), the in-process
ceiling (rows/s of a bare predict loop on the same runtime) and the machine's idle CPU over
the run. Ratios against the baseline of the same run are what to read: the machine is shared
and noisy.

Writes bench/results/serve.json, prints a table, and rewrites the README's benchmark table
(``bench/readme_table.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from mlkube.runtimes import load_runtime
from mlkube.spec import load_spec
from mlkube.testing import models

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve.json"
CONNECTIONS = (1, 64)
ROWS = (1, 32)
FEATURES = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install wrk")
    return found


MODELS = ("onnx", "sklearn", "forest", "knn")
SHAPES = {
    "onnx": "cheap, HTTP/JSON",
    "sklearn": "flat ~2 ms",
    "forest": "flat ~4 ms",
    "knn": "per row",
}


def build_models(folder: Path, wanted: tuple[str, ...] = MODELS) -> dict[str, Path]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    trained = models.hgb_classifier(n_samples=2000, n_features=FEATURES)
    built: dict[str, models.BuiltModel] = {}
    if "sklearn" in wanted:
        built["sklearn"] = models.save_sklearn(trained, folder, kind="skops", name="hgb")
    if "onnx" in wanted:
        built["onnx"] = models.save_onnx(trained, folder, name="hgb")
    if "forest" in wanted:
        forest = RandomForestClassifier(n_estimators=100, max_depth=8, n_jobs=1, random_state=0)
        forest.fit(trained.rows, trained.model.predict(trained.rows))
        built["forest"] = models.save_sklearn(
            models.Trained(forest, trained.rows), folder, kind="skops", name="forest"
        )
    if "knn" in wanted:
        rows, labels = make_classification(
            n_samples=50_000, n_features=FEATURES, n_informative=10, random_state=0
        )
        knn = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(rows, labels)
        built["knn"] = models.save_sklearn(
            models.Trained(knn, rows), folder, kind="skops", name="knn"
        )
    return {
        label: models.write_spec(model, folder, name=f"bench-{label}")
        for label, model in built.items()
        if label in wanted
    }


class Server:
    """One server process tree under test."""

    def __init__(self, kind: str, model: str, spec: Path, workers: int) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = load_spec(spec).model_name if kind == "mlkube" else "model"
        if kind == "mlkube":
            command = [
                sys.executable,
                "-m",
                "mlkube",
                "serve",
                str(spec),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ]
            env = dict(os.environ)
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "baseline_app:app",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            # One native thread per worker, as mlkube runs its workers: the same footing.
            env = dict(
                os.environ,
                BASELINE_MODEL=str(model_file(spec)),
                PYTHONPATH=str(ROOT / "bench"),
                OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1",
                MKL_NUM_THREADS="1",
            )
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait_first_answer(self, body: bytes) -> float:
        deadline = self.started + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{self.kind} exited: {stderr}")
            try:
                response = httpx.post(
                    f"{self.url}/v1/models/{self.name}:predict",
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=2,
                )
                if response.status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        raise TimeoutError(f"{self.kind} never answered")

    def wait_all_workers(self, body: bytes, consecutive: int = 20) -> None:
        """Each new connection may land on any worker: wait until many in a row answer 200."""
        deadline = time.monotonic() + 120
        streak = 0
        while streak < consecutive and time.monotonic() < deadline:
            with httpx.Client() as client:  # a new connection each time
                try:
                    response = client.post(
                        f"{self.url}/v1/models/{self.name}:predict",
                        content=body,
                        headers={"content-type": "application/json"},
                        timeout=5,
                    )
                    streak = streak + 1 if response.status_code == 200 else 0
                except httpx.TransportError:
                    streak = 0
            if streak == 0:
                time.sleep(0.05)

    def pss_mib(self) -> dict[str, float]:
        pids = [self.process.pid, *children(self.process.pid)]
        return {str(pid): pss_kib(pid) / 1024 for pid in pids}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def model_file(spec: Path) -> Path:
    return Path(load_spec(spec).model_path())


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        for child in map(int, text):
            found.extend([child, *children(child)])
    return found


def pss_kib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1])
    except OSError:
        return 0.0
    return 0.0


def request_body(rows: int, seed: int = 7) -> bytes:
    data = np.random.default_rng(seed).normal(size=(rows, FEATURES)).round(4)
    return json.dumps({"instances": data.tolist()}).encode()


def run_wrk(wrk: str, url: str, body: bytes, connections: int, duration: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    threads = 1 if connections == 1 else 2
    output = subprocess.run(
        [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(script.name)
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, Any]:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def in_process_ceiling(spec: Path, seconds: float = 2.0) -> dict[str, float]:
    runtime = load_runtime(load_spec(spec))
    name = runtime.inputs[0].name
    dtype = np.float32 if runtime.inputs[0].datatype == "FP32" else np.float64
    result = {}
    for rows in ROWS:
        batch = {name: np.random.default_rng(1).normal(size=(rows, FEATURES)).astype(dtype)}
        runtime.predict(batch)
        calls = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            runtime.predict(batch)
            calls += 1
        result[f"rows_per_s_{rows}_row_batches"] = calls * rows / (time.perf_counter() - started)
    return result


def start_ready(kind: str, model: str, spec: Path, workers: int) -> tuple[Server, float]:
    """Start a server; return it with its cold start (process start to first 200)."""
    server = Server(kind, model, spec, workers)
    cold_start = server.wait_first_answer(request_body(1))
    server.wait_all_workers(request_body(1))
    return server, cold_start


def measure_pair(model: str, spec: Path, args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Both servers on the same model, runs interleaved round by round; medians per setting.

    Interleaving (baseline, mlkube, mlkube, baseline, ...) spreads the machine's drift over
    both, so the ratios compare like with like.
    """
    servers: dict[str, Server] = {}
    entry: dict[str, Any] = {}
    try:
        for kind in ("baseline", "mlkube"):
            server, cold_start = start_ready(kind, model, spec, args.workers)
            servers[kind] = server
            time.sleep(1.0)
            entry[kind] = {"cold_start_s": cold_start, "idle_pss_mib": server.pss_mib()}
        samples: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {
            "baseline": {},
            "mlkube": {},
        }
        for rows in ROWS:
            body = request_body(rows)
            for connections in CONNECTIONS:
                for round_index in range(args.rounds):
                    order = (
                        ("baseline", "mlkube") if round_index % 2 == 0 else ("mlkube", "baseline")
                    )
                    for kind in order:
                        server = servers[kind]
                        result = run_wrk(
                            wrk,
                            f"{server.url}/v1/models/{server.name}:predict",
                            body,
                            connections,
                            args.duration,
                        )
                        samples[kind].setdefault((rows, connections), []).append(result)
                for kind in ("baseline", "mlkube"):
                    runs = samples[kind][(rows, connections)]
                    result = median_run(runs)
                    result.update(
                        rows=rows,
                        connections=connections,
                        rows_per_s=result["requests_per_s"] * rows,
                        rounds=[r["requests_per_s"] for r in runs],
                    )
                    entry[kind].setdefault("runs", []).append(result)
                    print(
                        f"  {kind:8} {model:8} rows={rows:<3} c={connections:<3} "
                        f"{result['requests_per_s']:>9.0f} req/s  p50 {result['p50_ms']:.2f} ms  "
                        f"p99 {result['p99_ms']:.2f} ms  non-2xx {result['non_2xx']}",
                        flush=True,
                    )
        for kind, server in servers.items():
            entry[kind]["loaded_pss_mib"] = server.pss_mib()
    finally:
        for server in servers.values():
            server.stop()
    return entry


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per field, the median over the rounds (non-2xx answers are summed)."""

    def median(key: str) -> float:
        return float(np.median([run[key] for run in runs]))

    return {
        "requests_per_s": median("requests_per_s"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"]),
    }


def worker_pss(values: dict[str, float], workers: int) -> float:
    """Mean PSS of the worker processes (the largest N of the tree)."""
    largest = sorted(values.values(), reverse=True)[:workers]
    return sum(largest) / len(largest)


def summarise(results: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    rows = []
    for model in results["mlkube"]:
        ours, base = results["mlkube"][model], results["baseline"][model]
        for mine, theirs in zip(ours["runs"], base["runs"], strict=True):
            rows.append(
                {
                    "model": model,
                    "shape": SHAPES[model],
                    "rows": mine["rows"],
                    "connections": mine["connections"],
                    "mlkube_rps": mine["requests_per_s"],
                    "baseline_rps": theirs["requests_per_s"],
                    "mlkube_rows_per_s": mine["rows_per_s"],
                    "baseline_rows_per_s": theirs["rows_per_s"],
                    "ratio_rps": mine["requests_per_s"] / max(theirs["requests_per_s"], 1e-9),
                    "mlkube_p50_ms": mine["p50_ms"],
                    "baseline_p50_ms": theirs["p50_ms"],
                    "mlkube_p99_ms": mine["p99_ms"],
                    "baseline_p99_ms": theirs["p99_ms"],
                    "mlkube_non_2xx": mine["non_2xx"],
                    "baseline_non_2xx": theirs["non_2xx"],
                }
            )
        for kind in ("mlkube", "baseline"):
            entry = results[kind][model]
            entry["idle_pss_per_worker_mib"] = worker_pss(entry["idle_pss_mib"], workers)
            entry["loaded_pss_per_worker_mib"] = worker_pss(entry["loaded_pss_mib"], workers)
    return rows


def targets(table: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, float]:
    """The issues' targets that this run's models can answer."""

    def pick(model: str, rows: int, connections: int) -> dict[str, Any]:
        return next(
            r
            for r in table
            if (r["model"], r["rows"], r["connections"]) == (model, rows, connections)
        )

    found: dict[str, float] = {}
    models_run = set(results["mlkube"])
    if "forest" in models_run:
        found["forest_32row_64c_rows_ratio (target >= 2.0)"] = pick("forest", 32, 64)["ratio_rps"]
    for model in sorted(models_run):
        alone = pick(model, 1, 1)
        found[f"{model}_p50_1c_delta_ms (target <= 0.1)"] = (
            alone["mlkube_p50_ms"] - alone["baseline_p50_ms"]
        )
    if "onnx" in models_run:
        found["onnx_32row_64c_rows_ratio (target >= 2.0)"] = pick("onnx", 32, 64)["ratio_rps"]
        found["onnx_1row_64c_ratio (target >= 1.3)"] = pick("onnx", 1, 64)["ratio_rps"]
    if "sklearn" in models_run:
        found["sklearn_1row_64c_rps (target >= 6000)"] = pick("sklearn", 1, 64)["mlkube_rps"]
    return found


class CpuMeter:
    """The machine's idle CPU share between two readings of /proc/stat."""

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
    """Idle CPU of the machine before the benchmark starts: what other work leaves us."""
    meter = CpuMeter()
    time.sleep(seconds)
    return meter.idle_percent()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved runs per setting; medians are reported"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2-second runs (smoke test)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-readme", action="store_true", help="leave the README's benchmark table alone"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 2, 1
    wanted = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
    wrk = ensure_wrk()
    idle_before = machine_idle_before()
    load_before = os.getloadavg()
    meter = CpuMeter()
    with tempfile.TemporaryDirectory() as folder:
        specs = build_models(Path(folder), wanted)
        results: dict[str, Any] = {"mlkube": {}, "baseline": {}}
        ceilings = {}
        for model in wanted:
            spec = specs[model]
            ceilings[model] = in_process_ceiling(spec)
            pair = measure_pair(model, spec, args, wrk)
            for kind in ("baseline", "mlkube"):
                results[kind][model] = pair[kind]
    table = summarise(results, args.workers)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "idle_cpu_before_percent": round(idle_before, 1),
            "loadavg_before": [round(v, 2) for v in load_before],
            "idle_cpu_during_percent": round(meter.idle_percent(), 1),
        },
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "workers": args.workers,
            "features": FEATURES,
            "models": {model: SHAPES[model] for model in wanted},
            "wrk_threads": "1 at 1 connection, 2 at 64",
        },
        "in_process_ceiling": ceilings,
        "results": results,
        "table": table,
        "targets": targets(table, results),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print_table(table, report, args.output)
    if not args.no_readme:
        sys.path.insert(0, str(ROOT / "bench"))
        importlib.import_module("readme_table").update_readme(report)
        print("rewrote the README's benchmark table")


def print_table(table: list[dict[str, Any]], report: dict[str, Any], output: Path) -> None:
    print(
        f"\n{'model':8} {'rows':>4} {'conn':>4} {'mlkube rows/s':>13} {'baseline':>10} "
        f"{'ratio':>6} {'p50 ms':>14} {'p99 ms':>15}"
    )
    for r in table:
        print(
            f"{r['model']:8} {r['rows']:>4} {r['connections']:>4} "
            f"{r['mlkube_rows_per_s']:>13.0f} {r['baseline_rows_per_s']:>10.0f} "
            f"{r['ratio_rps']:>6.2f} "
            f"{r['mlkube_p50_ms']:>6.2f}/{r['baseline_p50_ms']:<7.2f} "
            f"{r['mlkube_p99_ms']:>6.2f}/{r['baseline_p99_ms']:<7.2f}"
        )
    print("\nin-process ceiling (rows/s):")
    for model, ceiling in report["in_process_ceiling"].items():
        print(f"  {model:8} " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()))
    for model in report["results"]["mlkube"]:
        for kind in ("mlkube", "baseline"):
            entry = report["results"][kind][model]
            print(
                f"{kind:8} {model:8} cold start {entry['cold_start_s']:.2f} s, "
                f"PSS/worker idle {entry['idle_pss_per_worker_mib']:.0f} MiB, "
                f"loaded {entry['loaded_pss_per_worker_mib']:.0f} MiB"
            )
    machine = report["machine"]
    print(
        f"\nmachine: {machine['cpus']} CPUs, idle before {machine['idle_cpu_before_percent']}% "
        f"(load {machine['loadavg_before'][0]}), idle during {machine['idle_cpu_during_percent']}%"
    )
    print("targets:")
    for key, value in report["targets"].items():
        print(f"  {key}: {value:.3f}")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
