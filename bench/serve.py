"""Benchmark ``mlkube serve`` against Starlette/uvicorn apps on the same model and cores.

    python bench/serve.py [--duration 5] [--rounds 3] [--workers 2] [--quick]
                          [--models onnx,...] [--arms baseline,mlkube,...]

The arms (``--arms``, default all), each with the same worker count on the same files:

- ``baseline``: a bare Starlette/uvicorn app (``bench/baseline_app.py``), no batching, as a
  user would write one;
- ``mlkube``: ``mlkube serve``;
- ``batcher`` ("starlette+batcher"): mlkube's own app, decode path, batcher and cost model
  under uvicorn and Starlette with the baseline's flags (``bench/batcher_app.py``): it differs
  from ``mlkube serve`` only in the HTTP core, so mlkube ÷ batcher is what that core buys;
- ``binary``: ``mlkube serve`` over v2 with binary tensors (JSON header + raw little-endian
  bytes, ``Inference-Header-Content-Length``; binary outputs too), 32-row requests at 64
  connections, read as rows/s against the bare app's v1 JSON rows/s.

Models of four cost shapes (20 float features each; ``MODELS``):

- ``onnx``: a HistGradientBoostingClassifier exported to ONNX, ~40 µs a call: the cost is
  HTTP and JSON;
- ``sklearn``: the same classifier natively (skops), ~2 ms a call whatever its rows;
- ``forest``: a RandomForestClassifier of 100 trees (depth 8, ``n_jobs=1``), ~4 ms a call
  at 1 row or 32: a flat cost, the per-tree Python overhead of scikit-learn's forests;
- ``knn``: a brute-force KNeighborsClassifier over 50,000 rows, a cost per row (the
  distances to every stored row) on top of ~0.5 ms a call.

``wrk`` (Debian package; installed if missing and we are root) drives each at 1 and 64
connections with 1-row and 32-row requests, the arms interleaved round by round (each arm
takes each position in turn). Recorded: req/s, rows/s, p50/p99/p99.9 (printed by a Lua
``done`` hook; wrk's timeout is raised to 10 s so slow answers count as latencies, not
errors), non-2xx answers, idle and loaded PSS, cold start (process start to first 200), the
in-process ceiling (rows/s of a bare predict loop on the same runtime), the requests merged
per predict call at 64 connections (mlkube's ``mlkube_batch_requests`` metric, for
``mlkube`` and ``batcher``) and the machine's idle CPU over the run.

Tail latency at 50% of saturation: after each 64-connection setting, ``mlkube`` and
``baseline`` run once more paced at half the req/s they reached there (``--paced-rounds``,
1 by default rather than 3: so the full run stays near 20 minutes on 2 cores). wrk's Lua
``delay()`` holds each connection an exponentially distributed time between an answer and
its next request, of a mean that makes the total rate the target: first guessed with the
1-connection p50 as the time an answer takes, then set again from what a 1-second trial run
reached. Connections: enough that each sends about ten requests a second, at most 64,
because wrk starts every connection at once, a burst it cannot stagger. wrk is closed-loop:
a connection waiting on a slow answer sends nothing meanwhile, so both the saturated and
the paced figures under-report coordinated omission (requests that would have arrived during
a stall are never sent, so never counted late). The load each reached is recorded.

Ratios against the baseline of the same run are what to read: the machine is shared and
noisy. A full default run is 3 arms x 4 models x 4 settings x 3 rounds x 5 s, plus binary
(4 x 3 x 5 s) and paced (2 x 4 x 2 x (1 + 5) s) runs: about 15 minutes of wrk, 18-20 in all
(server starts, warm-ups and the in-process ceilings are the rest).

Writes bench/results/serve.json, prints a table, and rewrites the README's benchmark tables
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
SERVERS = ("baseline", "mlkube", "batcher")
"""Arms that are server processes of their own."""
ARMS = (*SERVERS, "binary")
LABELS = {
    "baseline": "bare app",
    "mlkube": "mlkube",
    "batcher": "starlette+batcher",
    "binary": "mlkube binary",
}
PACED = ("baseline", "mlkube")
"""Arms also run at 50% of their saturation."""
BINARY_ROWS = 32
BINARY_CONNECTIONS = 64
PACED_FRACTION = 0.5
PACED_PER_CONNECTION_RPS = 10.0
CALIBRATION_S = 1
"""Seconds of the trial run that sets a paced run's think time."""
WRK_TIMEOUT = "10s"
# The uvicorn flags both Starlette arms run with.
UVICORN_FLAGS = (
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
)
# One native thread per worker, as mlkube runs its workers: the same footing.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def sibling(name: str) -> Any:
    """Another module of bench/ (this file also runs loaded by path, from the tests)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(name)


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

    def __init__(self, kind: str, spec: Path, workers: int) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = "model" if kind == "baseline" else load_spec(spec).model_name
        if kind == "mlkube":
            command = [sys.executable, "-m", "mlkube", "serve", str(spec)]
            command += ["--port", str(self.port), "--workers", str(workers)]
            env = dict(os.environ)
        else:
            module = "baseline_app:app" if kind == "baseline" else "batcher_app:app"
            command = [sys.executable, "-m", "uvicorn", module, "--port", str(self.port)]
            command += ["--workers", str(workers), *UVICORN_FLAGS]
            env = dict(os.environ, **THREAD_ENV)
            if kind == "baseline":
                env.update(BASELINE_MODEL=str(model_file(spec)), PYTHONPATH=str(ROOT / "bench"))
            else:  # this tree's mlkube first, as `python -m mlkube` gets it from PYTHONPATH
                paths = [str(ROOT / "bench"), str(ROOT / "src"), env.get("PYTHONPATH", "")]
                env.update(BATCHER_SPEC=str(spec), PYTHONPATH=os.pathsep.join(filter(None, paths)))
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.name}:predict"

    def wait_first_answer(self, body: bytes) -> float:
        deadline = self.started + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{self.kind} exited: {stderr}")
            try:
                response = httpx.post(
                    self.predict_url,
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
                        self.predict_url,
                        content=body,
                        headers={"content-type": "application/json"},
                        timeout=5,
                    )
                    streak = streak + 1 if response.status_code == 200 else 0
                except httpx.TransportError:
                    streak = 0
            if streak == 0:
                time.sleep(0.05)

    def batch_counts(self, scrapes: int = 8) -> dict[str, tuple[float, float]]:
        """Per worker seen (by process start time): the sum and count of mlkube's
        ``mlkube_batch_requests`` histogram. Each scrape is a new connection, which may
        reach any worker."""
        found: dict[str, tuple[float, float]] = {}
        for _ in range(scrapes):
            try:
                text = httpx.get(f"{self.url}/metrics", timeout=5).text
            except httpx.TransportError:
                continue
            values = dict(re.findall(r"^(\w+)(?:\{[^}]*\})? ([\d.e+-]+)$", text, re.MULTILINE))
            worker = values.get("process_start_time_seconds")
            if worker is not None and "mlkube_batch_requests_count" in values:
                found[worker] = (
                    float(values["mlkube_batch_requests_sum"]),
                    float(values["mlkube_batch_requests_count"]),
                )
        return found

    def input_spec(self) -> tuple[str, str]:
        """The name and datatype of the model's (first) input, from its v2 metadata."""
        metadata = httpx.get(f"{self.url}/v2/models/{self.name}", timeout=5).json()
        first = metadata["inputs"][0]
        return str(first["name"]), str(first["datatype"])

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


def merged_per_batch(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> float | None:
    """Requests per predict call between two ``batch_counts`` (workers seen in both)."""
    requests = calls = 0.0
    for worker, (total, count) in after.items():
        if worker in before:
            requests += total - before[worker][0]
            calls += count - before[worker][1]
    return requests / calls if calls > 0 else None


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


def request_rows(rows: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, FEATURES)).round(4)


def request_body(rows: int, seed: int = 7) -> bytes:
    return json.dumps({"instances": request_rows(rows, seed).tolist()}).encode()


def binary_body(rows: int, input_name: str, datatype: str) -> tuple[bytes, int]:
    """A v2 binary-tensor body of the same values as ``request_body(rows)``, asking for
    binary outputs too (what a client after throughput sends), and its JSON header's length."""
    dtype = {"FP32": "<f4", "FP64": "<f8"}[datatype]
    raw = request_rows(rows).astype(dtype).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [rows, FEATURES],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, len(header)


# Printed by wrk at the end of a run: counts, then latencies in microseconds.
SUMMARY = "bench-summary"
_DONE = (
    "done = function(summary, latency, requests)\n"
    f'  io.write(string.format("{SUMMARY} %d %d %d %d %d %d %d %.1f %.1f %.1f %.1f\\n",\n'
    "    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,\n"
    "    summary.errors.read, summary.errors.write, summary.errors.timeout,\n"
    "    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),\n"
    "    latency.max))\n"
    "end\n"
)
# Exponential think time of mean `mean` ms; wrk takes whole milliseconds, so the fraction is
# rounded up with its own probability (the mean stays exact).
_DELAY = (
    "delay = function()\n"
    "  local d = -mean * math.log(1 - math.random())\n"
    "  local low = math.floor(d)\n"
    "  if math.random() < d - low then return low + 1 end\n"
    "  return low\n"
    "end\n"
)


def wrk_script(body_file: Path, headers: dict[str, str], delay_ms: float | None) -> str:
    """The Lua script: the body read as bytes (binary bodies too), headers, the summary hook
    and, for a paced run, the think time."""
    lines = [
        'wrk.method = "POST"',
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()',
        *(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()),
    ]
    script = "\n".join(lines) + "\n" + _DONE
    if delay_ms is not None:
        script += f"local mean = {delay_ms:.4f}\n" + _DELAY
    return script


def run_wrk(
    wrk: str,
    url: str,
    body: bytes,
    connections: int,
    duration: int,
    *,
    headers: dict[str, str] | None = None,
    delay_ms: float | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body"
        body_file.write_bytes(body)
        script = Path(folder) / "script.lua"
        script.write_text(
            wrk_script(body_file, headers or {"Content-Type": "application/json"}, delay_ms)
        )
        threads = 1 if connections == 1 else 2
        command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s"]
        command += ["--timeout", WRK_TIMEOUT, "-s", str(script), url]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, Any]:
    """req/s, latencies (ms) and errors from wrk's output with our summary line."""
    match = re.search(rf"^{SUMMARY} (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    fields = match.group(1).split()
    requests, duration_us, status, connect, read, write, timeout = map(int, fields[:7])
    p50, p99, p999, worst = (float(v) / 1000 for v in fields[7:])
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests": requests,
        "requests_per_s": requests / max(duration_us / 1e6, 1e-9),
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": worst,
        "non_2xx": status,
        "timeouts": timeout,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "connect_read_write_errors": connect + read + write,
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


def start_ready(kind: str, spec: Path, workers: int) -> tuple[Server, float]:
    """Start a server; return it with its cold start (process start to first 200)."""
    server = Server(kind, spec, workers)
    cold_start = server.wait_first_answer(request_body(1))
    server.wait_all_workers(request_body(1))
    return server, cold_start


def rotated(arms: list[str], round_index: int) -> list[str]:
    """The arms in round ``round_index``'s order: each takes each position in turn, so the
    machine's drift spreads over all of them."""
    if not arms:
        return []
    shift = round_index % len(arms)
    return arms[shift:] + arms[:shift]


class Arms:
    """The running servers of one model and how each arm is driven."""

    def __init__(self, servers: dict[str, Server], wanted: tuple[str, ...]) -> None:
        self.servers = servers
        self.wanted = wanted
        self.binary: tuple[str, bytes, dict[str, str]] | None = None
        if "binary" in wanted:
            mlkube = servers["mlkube"]
            name, datatype = mlkube.input_spec()
            body, header_length = binary_body(BINARY_ROWS, name, datatype)
            headers = {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(header_length),
            }
            self.binary = (f"{mlkube.url}/v2/models/{mlkube.name}/infer", body, headers)

    def at(self, rows: int, connections: int) -> list[str]:
        """The arms that run at this setting."""
        arms = [kind for kind in SERVERS if kind in self.wanted]
        if self.binary is not None and (rows, connections) == (BINARY_ROWS, BINARY_CONNECTIONS):
            arms.append("binary")
        return arms

    def run(
        self,
        kind: str,
        wrk: str,
        body: bytes,
        connections: int,
        duration: int,
        delay_ms: float | None = None,
    ) -> dict[str, Any]:
        """One wrk run of ``kind``; at many connections, with the requests merged per predict
        call meanwhile (mlkube's batcher metrics, where the arm has them)."""
        server = self.servers["mlkube" if kind == "binary" else kind]
        counted = kind != "baseline" and connections > 1
        before = server.batch_counts() if counted else {}
        if kind == "binary":
            assert self.binary is not None
            url, binary, headers = self.binary
            result = run_wrk(wrk, url, binary, connections, duration, headers=headers)
        else:
            result = run_wrk(
                wrk, server.predict_url, body, connections, duration, delay_ms=delay_ms
            )
        if counted:
            result["mean_batch_requests"] = merged_per_batch(before, server.batch_counts())
        return result


def measure_model(model: str, spec: Path, args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Every arm on one model, runs interleaved round by round; medians per setting."""
    wanted: tuple[str, ...] = args.arms
    kinds = [k for k in SERVERS if k in wanted or (k == "mlkube" and "binary" in wanted)]
    servers: dict[str, Server] = {}
    entry: dict[str, Any] = {}
    try:
        for kind in kinds:
            server, cold_start = start_ready(kind, spec, args.workers)
            servers[kind] = server
            time.sleep(1.0)
            if kind in wanted:
                entry[kind] = {"cold_start_s": cold_start, "idle_pss_mib": server.pss_mib()}
        arms = Arms(servers, wanted)
        if "binary" in wanted:
            entry["binary"] = {}
        for rows in ROWS:
            body = request_body(rows)
            for connections in CONNECTIONS:
                measure_setting(arms, entry, model, rows, connections, args, wrk)
                if connections == max(CONNECTIONS):
                    paced = [kind for kind in PACED if kind in arms.at(rows, connections)]
                    run_paced(arms, paced, entry, model, rows, body, args, wrk)
        for kind in SERVERS:
            if kind in entry:
                entry[kind]["loaded_pss_mib"] = servers[kind].pss_mib()
        entry["paired"] = measure_paired(servers, model, args)
    finally:
        for server in servers.values():
            server.stop()
    return entry


def measure_paired(
    servers: dict[str, Server], model: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One connection, the arms' requests alternated (``bench/paired.py``): per request
    size, each arm's p50 and its paired difference from the bare app's."""
    urls = {kind: servers[kind].predict_url for kind in SERVERS if kind in args.arms}
    if "baseline" not in urls or len(urls) < 2 or args.pairs <= 0:
        return {}
    found = {}
    for rows in ROWS:
        report = sibling("paired").measure(
            urls, request_body(rows), "baseline", rounds=args.pairs, max_seconds=args.pair_seconds
        )
        found[str(rows)] = report
        differences = ", ".join(
            f"{LABELS[kind]} {d['median']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
            for kind, d in report["difference_ms"].items()
        )
        print(f"  paired  {model:7} r={rows:<2} c=1  {report['rounds']} rounds: {differences}")
    return found


def measure_setting(
    arms: Arms,
    entry: dict[str, Any],
    model: str,
    rows: int,
    connections: int,
    args: argparse.Namespace,
    wrk: str,
) -> None:
    """The arms of one setting, interleaved round by round: medians in ``entry``."""
    body = request_body(rows)
    setting = arms.at(rows, connections)
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in setting}
    for round_index in range(args.rounds):
        for kind in rotated(setting, round_index):
            samples[kind].append(arms.run(kind, wrk, body, connections, args.duration))
    for kind in setting:
        result = median_run(samples[kind])
        result.update(rows=rows, connections=connections)
        result["rows_per_s"] = result["requests_per_s"] * rows
        result["rounds"] = [r["requests_per_s"] for r in samples[kind]]
        entry[kind].setdefault("runs", []).append(result)
        print_run(kind, model, result)


def run_paced(
    arms: Arms,
    kinds: list[str],
    entry: dict[str, Any],
    model: str,
    rows: int,
    body: bytes,
    args: argparse.Namespace,
    wrk: str,
) -> None:
    """Each arm of ``kinds`` at ~50% of the req/s it just reached at saturation."""
    plans = {}
    for kind in kinds:
        runs = entry[kind]["runs"]
        saturated = next(r for r in runs if r["rows"] == rows and r["connections"] > 1)
        alone = [r for r in runs if r["rows"] == rows and r["connections"] == 1]
        if saturated["requests_per_s"] <= 0:
            continue
        plan = pace(
            saturated["requests_per_s"], alone[0]["p50_ms"] if alone else 0.0, max(CONNECTIONS)
        )
        # The time an answer takes at this load is not known beforehand: a short run with the
        # first guess measures it, and the think time is set again from what it reached.
        trial = arms.run(kind, wrk, body, plan["connections"], CALIBRATION_S, plan["delay_ms"])
        plans[kind] = repace(plan, trial["requests_per_s"])
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in plans}
    for round_index in range(args.paced_rounds):
        for kind in rotated(list(plans), round_index):
            plan = plans[kind]
            samples[kind].append(
                arms.run(kind, wrk, body, plan["connections"], args.duration, plan["delay_ms"])
            )
    for kind, plan in plans.items():
        result = median_run(samples[kind])
        result.update(rows=rows, **plan)
        result["rows_per_s"] = result["requests_per_s"] * rows
        result["load"] = result["requests_per_s"] / plan["saturated_rps"]
        entry[kind].setdefault("paced", []).append(result)
        print_run(kind, model, result, paced=True)


def repace(plan: dict[str, Any], reached_rps: float) -> dict[str, Any]:
    """``plan`` with its think time set again after a trial run with it reached
    ``reached_rps``: in a closed loop, rate = connections / (answer time + think time), so
    the trial tells the answer time, and the think time for the target follows."""
    if reached_rps <= 0:
        return plan
    connections, target = plan["connections"], plan["target_rps"]
    answer_ms = max(0.0, connections * 1000 / reached_rps - plan["delay_ms"])
    return {**plan, "delay_ms": max(0.0, connections * 1000 / target - answer_ms)}


def pace(saturated_rps: float, service_ms: float, most_connections: int) -> dict[str, Any]:
    """Connections and mean think time (ms) for PACED_FRACTION of ``saturated_rps``: about
    PACED_PER_CONNECTION_RPS per connection (wrk opens all at once: the burst stays small),
    each waiting ``connections / target - service_ms`` on average between an answer and
    its next request."""
    target = PACED_FRACTION * saturated_rps
    connections = max(1, min(most_connections, round(target / PACED_PER_CONNECTION_RPS)))
    delay_ms = max(0.0, connections * 1000 / target - service_ms)
    return {
        "connections": connections,
        "delay_ms": delay_ms,
        "target_rps": target,
        "saturated_rps": saturated_rps,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per field, the median over the rounds (errors and requests are summed)."""

    def median(key: str) -> float:
        return float(np.median([run[key] for run in runs]))

    result: dict[str, Any] = {
        key: median(key) for key in ("requests_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms")
    }
    for key in ("requests", "non_2xx", "timeouts", "connect_read_write_errors"):
        result[key] = sum(run[key] for run in runs)
    result["socket_errors"] = "; ".join(r["socket_errors"] for r in runs if r["socket_errors"])
    merged = [r["mean_batch_requests"] for r in runs if r.get("mean_batch_requests") is not None]
    if merged:
        result["mean_batch_requests"] = float(np.median(merged))
    return result


def print_run(kind: str, model: str, result: dict[str, Any], *, paced: bool = False) -> None:
    label = f"{kind}{'@50%' if paced else ''}"
    merged = result.get("mean_batch_requests")
    print(
        f"  {label:12} {model:7} r={result['rows']:<2} c={result['connections']:<2} "
        f"{result['requests_per_s']:>7.0f}/s p50 {result['p50_ms']:.2f} "
        f"p99 {result['p99_ms']:.2f} p99.9 {result['p999_ms']:.2f}"
        + (f" b={merged:.1f}" if merged is not None else "")
        + (f" non-2xx {result['non_2xx']}" if result["non_2xx"] else ""),
        flush=True,
    )


def worker_pss(values: dict[str, float], workers: int) -> float:
    """Mean PSS of the worker processes (the largest N of the tree)."""
    largest = sorted(values.values(), reverse=True)[:workers]
    return sum(largest) / len(largest)


def run_at(entry: dict[str, Any] | None, rows: int, connections: int) -> dict[str, Any] | None:
    if entry is None:
        return None
    return next(
        (r for r in entry.get("runs", []) if (r["rows"], r["connections"]) == (rows, connections)),
        None,
    )


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def summarise(results: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """One row per model and setting with every server arm's figures (None: not run)."""
    table = []
    for model in models_in(results):
        for rows in ROWS:
            for connections in CONNECTIONS:
                row: dict[str, Any] = {
                    "model": model,
                    "shape": SHAPES[model],
                    "rows": rows,
                    "connections": connections,
                }
                for kind in SERVERS:
                    run = run_at(results.get(kind, {}).get(model), rows, connections)
                    row[f"{kind}_rps"] = run["requests_per_s"] if run else None
                    row[f"{kind}_rows_per_s"] = run["rows_per_s"] if run else None
                    for key in ("p50_ms", "p99_ms", "p999_ms", "non_2xx"):
                        row[f"{kind}_{key}"] = run[key] if run else None
                    if kind != "baseline":
                        row[f"{kind}_batch_requests"] = (
                            run.get("mean_batch_requests") if run else None
                        )
                row["ratio_rps"] = ratio(row["mlkube_rps"], row["baseline_rps"])
                row["core_ratio_rps"] = ratio(row["mlkube_rps"], row["batcher_rps"])
                table.append(row)
    for kind in SERVERS:
        for entry in results.get(kind, {}).values():
            entry["idle_pss_per_worker_mib"] = worker_pss(entry["idle_pss_mib"], workers)
            entry["loaded_pss_per_worker_mib"] = worker_pss(entry["loaded_pss_mib"], workers)
    return table


def models_in(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(model for arm in results.values() for model in arm))


def tail_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """p50/p99/p99.9 at saturation (64 connections) and paced at ~50% of it, per model and
    request size, for the paced arms."""
    table = []
    for model in models_in(results):
        for rows in ROWS:
            row: dict[str, Any] = {"model": model, "rows": rows}
            for kind in PACED:
                entry = results.get(kind, {}).get(model)
                saturated = run_at(entry, rows, max(CONNECTIONS))
                paced = next((p for p in (entry or {}).get("paced", []) if p["rows"] == rows), None)
                for load, run in (("sat", saturated), ("half", paced)):
                    for key in ("p50_ms", "p99_ms", "p999_ms"):
                        row[f"{kind}_{load}_{key}"] = run[key] if run else None
                row[f"{kind}_half_load"] = paced["load"] if paced else None
                row[f"{kind}_half_connections"] = paced["connections"] if paced else None
            if any(row[f"{kind}_sat_p50_ms"] is not None for kind in PACED):
                table.append(row)
    return table


def binary_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Binary-tensor rows/s beside the JSON rows/s of mlkube and the bare app."""
    table = []
    for model, entry in results.get("binary", {}).items():
        run = run_at(entry, BINARY_ROWS, BINARY_CONNECTIONS)
        if run is None:
            continue
        json_mlkube = run_at(results.get("mlkube", {}).get(model), BINARY_ROWS, BINARY_CONNECTIONS)
        json_bare = run_at(results.get("baseline", {}).get(model), BINARY_ROWS, BINARY_CONNECTIONS)
        mlkube_rows = json_mlkube["rows_per_s"] if json_mlkube else None
        bare_rows = json_bare["rows_per_s"] if json_bare else None
        table.append(
            {
                "model": model,
                "rows": BINARY_ROWS,
                "connections": BINARY_CONNECTIONS,
                "binary_rows_per_s": run["rows_per_s"],
                "binary_p50_ms": run["p50_ms"],
                "binary_p99_ms": run["p99_ms"],
                "binary_non_2xx": run["non_2xx"],
                "mlkube_json_rows_per_s": mlkube_rows,
                "baseline_json_rows_per_s": bare_rows,
                "ratio_vs_baseline_json": ratio(run["rows_per_s"], bare_rows),
                "ratio_vs_mlkube_json": ratio(run["rows_per_s"], mlkube_rows),
            }
        )
    return table


def targets(
    table: list[dict[str, Any]],
    results: dict[str, Any],
    binary: list[dict[str, Any]] | None = None,
    paired: dict[str, Any] | None = None,
) -> dict[str, float]:
    """The issues' targets (18, then 16) that this run's models and arms can answer."""

    def pick(model: str, rows: int, connections: int) -> dict[str, Any]:
        return next(
            (
                r
                for r in table
                if (r["model"], r["rows"], r["connections"]) == (model, rows, connections)
            ),
            {},
        )

    found: dict[str, float | None] = {}
    run = set(models_in(results))
    # issue 18
    if "forest" in run:
        found["forest_32row_64c_rows_ratio (target >= 2.0)"] = pick("forest", 32, 64).get(
            "ratio_rps"
        )
    if "onnx" in run:
        found["onnx_32row_64c_rows_ratio (target >= 2.0)"] = pick("onnx", 32, 64).get("ratio_rps")
        found["onnx_1row_64c_ratio (target >= 1.3)"] = pick("onnx", 1, 64).get("ratio_rps")
    if "sklearn" in run:
        found["sklearn_1row_64c_rps (target >= 6000)"] = pick("sklearn", 1, 64).get("mlkube_rps")
    # issue 16 (its JSON 32-row target is issue 18's onnx_32row_64c_rows_ratio above)
    onnx_binary = next((b for b in binary or [] if b["model"] == "onnx"), {})
    found["onnx_binary_32row_64c_rows_ratio (vs bare JSON, target >= 4.0)"] = onnx_binary.get(
        "ratio_vs_baseline_json"
    )
    if "onnx" in run:
        # What the HTTP core buys: mlkube ÷ the same app and batcher under Starlette/uvicorn.
        for rows in ROWS:
            for connections in CONNECTIONS:
                found[
                    f"onnx_{rows}row_{connections}c_core_ratio (mlkube / starlette+batcher, "
                    "target > 1.0)"
                ] = pick("onnx", rows, connections).get("core_ratio_rps")
    for model in sorted(run):
        for rows in ROWS:
            saturated = pick(model, rows, max(CONNECTIONS))
            found[f"{model}_{rows}row_64c_mlkube_p99_over_p50 (target <= 3.0)"] = ratio(
                saturated.get("mlkube_p99_ms"), saturated.get("mlkube_p50_ms")
            )
    found.update(paired_targets(paired or {}))
    return {key: value for key, value in found.items() if value is not None}


def paired_targets(paired: dict[str, Any]) -> dict[str, float | None]:
    """The 1-connection p50 targets (18: within 0.1 ms of the bare app for every model; 16:
    within 0.05 for ONNX), from the paired rounds (``bench/paired.py``): the difference of
    two wrk runs' medians drifts with the machine by more than the targets."""

    def delta(model: str, rows: int, kind: str, bound: str) -> float | None:
        differences = paired.get(model, {}).get(str(rows), {}).get("difference_ms", {})
        value = differences.get(kind, {}).get(bound)
        return None if value is None else float(value)

    found: dict[str, float | None] = {}
    for model in sorted(paired):
        for rows in ROWS:
            key = f"{model}_{rows}row_p50_1c_paired_delta_ms"
            found[f"{key} (target <= 0.1)"] = delta(model, rows, "mlkube", "median")
            found[f"{key} upper 95% bound"] = delta(model, rows, "mlkube", "high")
    if "onnx" in paired:
        found["onnx_1row_p50_1c_paired_delta_ms (issue 16 target <= 0.05)"] = delta(
            "onnx", 1, "mlkube", "median"
        )
        # Both were paired with the bare app in the same rounds.
        found["onnx_1row_p50_1c_core_delta_ms (mlkube - starlette+batcher, target <= 0)"] = (
            difference(delta("onnx", 1, "mlkube", "median"), delta("onnx", 1, "batcher", "median"))
        )
    return found


def difference(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else first - second


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
    parser.add_argument(
        "--paced-rounds", type=int, default=1, help="runs at 50%% of saturation per setting"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--pairs",
        type=int,
        default=1000,
        help="paired 1-connection rounds per model and request size (0: none)",
    )
    parser.add_argument(
        "--pair-seconds", type=float, default=15.0, help="at most this long per paired setting"
    )
    parser.add_argument("--quick", action="store_true", help="2-second runs, 1 round (smoke test)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-readme", action="store_true", help="leave the README's benchmark tables alone"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.paced_rounds = 2, 1, 1
        args.pairs, args.pair_seconds = min(args.pairs, 200), min(args.pair_seconds, 3.0)
    wanted = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
    given = [a for a in args.arms.split(",") if a]
    unknown = [a for a in given if a not in ARMS]
    if unknown or not given:
        parser.error(f"unknown arm {(unknown or [''])[0]!r}; known: {', '.join(ARMS)}")
    args.arms = tuple(a for a in ARMS if a in given)
    wrk = ensure_wrk()
    idle_before = machine_idle_before()
    load_before = os.getloadavg()
    meter = CpuMeter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        specs = build_models(Path(folder), wanted)
        results: dict[str, Any] = {kind: {} for kind in args.arms}
        ceilings = {}
        paired: dict[str, Any] = {}
        for model in wanted:
            spec = specs[model]
            ceilings[model] = in_process_ceiling(spec)
            entry = measure_model(model, spec, args, wrk)
            for kind in args.arms:
                results[kind][model] = entry[kind]
            paired[model] = entry["paired"]
    table = summarise(results, args.workers)
    binary = binary_table(results)
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
            "paced_rounds": args.paced_rounds,
            "workers": args.workers,
            "features": FEATURES,
            "models": {model: SHAPES[model] for model in wanted},
            "arms": {arm: LABELS[arm] for arm in args.arms},
            "wrk_threads": "1 at 1 connection, 2 at more",
            "wrk_timeout": WRK_TIMEOUT,
            "paced": f"{PACED_FRACTION:.0%} of saturation, ~{PACED_PER_CONNECTION_RPS:g} "
            "req/s per connection, exponential think times (closed loop)",
            "wall_s": round(time.monotonic() - started, 1),
        },
        "in_process_ceiling": ceilings,
        "results": results,
        "table": table,
        "tail": tail_table(results),
        "binary": binary,
        "paired": paired,
        "targets": targets(table, results, binary, paired),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print_report(report, args.output)
    if not args.no_readme:
        sibling("readme_table").update_readme(report)
        print("rewrote the README's benchmark tables")


def cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(report: dict[str, Any], output: Path) -> None:
    """The run's tables, within 80 columns."""
    print(
        f"\n{'model':7} {'rows':>4} {'conn':>4} {'mlkube':>8} {'bare':>8} {'s+batch':>8} "
        f"{'ratio':>5} {'core':>5}  p50 ms m/b/s"
    )
    for r in report["table"]:
        p50 = f"{cell(r['mlkube_p50_ms'], 2)}/{cell(r['baseline_p50_ms'], 2)}/"
        p50 += cell(r["batcher_p50_ms"], 2)
        print(
            f"{r['model']:7} {r['rows']:>4} {r['connections']:>4} "
            f"{cell(r['mlkube_rows_per_s']):>8} {cell(r['baseline_rows_per_s']):>8} "
            f"{cell(r['batcher_rows_per_s']):>8} {cell(r['ratio_rps'], 2):>5} "
            f"{cell(r['core_ratio_rps'], 2):>5}  {p50}"
        )
    print("\ntail (ms p50/p99/p99.9) at saturation and at ~50%:")
    for r in report["tail"]:
        for kind in PACED:
            sat = "/".join(cell(r[f"{kind}_sat_{k}"], 1) for k in ("p50_ms", "p99_ms", "p999_ms"))
            half = "/".join(cell(r[f"{kind}_half_{k}"], 1) for k in ("p50_ms", "p99_ms", "p999_ms"))
            print(
                f"  {r['model']:7} {r['rows']:>2} {kind:8} sat {sat:>20}  "
                f"half ({cell(r[f'{kind}_half_load'], 2)}) {half}"
            )
    for b in report["binary"]:
        print(
            f"binary {b['model']:7} {b['rows']} rows: {b['binary_rows_per_s']:.0f} rows/s, "
            f"{cell(b['ratio_vs_baseline_json'], 2)}x bare JSON, "
            f"{cell(b['ratio_vs_mlkube_json'], 2)}x mlkube JSON"
        )
    print("\nin-process ceiling (rows/s):")
    for model, ceiling in report["in_process_ceiling"].items():
        print(f"  {model:8} " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()))
    for kind in SERVERS:
        for model, entry in report["results"].get(kind, {}).items():
            print(
                f"{kind:8} {model:8} cold start {entry['cold_start_s']:.2f} s, "
                f"PSS/worker idle {entry['idle_pss_per_worker_mib']:.0f} MiB, "
                f"loaded {entry['loaded_pss_per_worker_mib']:.0f} MiB"
            )
    machine = report["machine"]
    print(
        f"\nmachine: {machine['cpus']} CPUs, idle before {machine['idle_cpu_before_percent']}% "
        f"(load {machine['loadavg_before'][0]}), idle during {machine['idle_cpu_during_percent']}%"
        f"; {report['settings']['wall_s']:.0f} s"
    )
    print("targets:")
    for key, value in report["targets"].items():
        print(f"  {key}: {value:.3f}")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
