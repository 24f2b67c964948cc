"""gRPC beside REST, and v2 binary tensors beside JSON, on one ``mlkube serve`` process.

    python bench/grpc_serve.py [--duration 3] [--connections 16] [--workers 1]

The model is bench/serve.py's: a HistGradientBoostingClassifier with 20 float features,
exported to ONNX. The same server answers every arm in the same run, arms interleaved:
- REST v2 JSON and REST v2 binary tensors (``Inference-Header-Content-Length``), driven by
  ``wrk`` (a C client: it costs the machine little);
- gRPC v2 ``ModelInfer`` with raw contents, driven by a grpc.aio client process (Python: on
  a 2-core machine it takes CPU the server would have had, so its req/s understates gRPC).
Because the clients differ, the figure to compare across protocols is the **server's CPU
time per request** (the server's own utime+stime over the arm, divided by the requests it
answered), beside req/s, rows/s and latency. 1-, 32- and 256-row requests.

Writes bench/results/grpc.json (with the machine's idle CPU before the run) and prints a
table. The machine is shared: runs are short and ratios within one run are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

from mlkube.testing import models

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "grpc.json"
FEATURES = 20
ROWS = (1, 32, 256)

GRPC_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import grpc
    import numpy as np
    from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
    from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc

    address, model, rows, features, connections, seconds = sys.argv[1:7]
    rows, features, connections = int(rows), int(features), int(connections)
    seconds = float(seconds)
    data = np.random.default_rng(7).normal(size=(rows, features)).round(4).astype("<f4")
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=[rows, features])
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor],
                                   raw_input_contents=[data.tobytes()])
    latencies, errors = [], 0

    async def loop(stub, deadline):
        global errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=30)
                latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError:
                errors += 1

    async def main():
        channels = [grpc.aio.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
        stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in channels]
        for stub in stubs:
            await stub.ModelInfer(request, timeout=30)
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(loop(stubs[i % 4], deadline) for i in range(connections)))
        elapsed = time.perf_counter() - started
        for channel in channels:
            await channel.close()
        ordered = sorted(latencies) or [float("nan")]
        print(json.dumps({
            "requests": len(latencies), "errors": errors, "seconds": elapsed,
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        }), flush=True)

    asyncio.run(main())
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_spec(folder: Path) -> tuple[Path, str]:
    trained = models.hgb_classifier(n_samples=2000, n_features=FEATURES)
    built = models.save_onnx(trained, folder, name="hgb")
    spec = models.write_spec(built, folder, name="hgb-onnx")
    document = yaml.safe_load(spec.read_text())
    document["spec"].setdefault("server", {})["grpc"] = {"enabled": True}
    spec.write_text(yaml.safe_dump(document))
    return spec, document["metadata"]["name"]


def rows_of(count: int) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(count, FEATURES)).round(4).astype(np.float32)


def json_body(rows: np.ndarray) -> bytes:
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": rows.ravel().tolist()}]}).encode()


def binary_body(rows: np.ndarray) -> tuple[bytes, int]:
    raw = rows.astype("<f4").tobytes()
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP32"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},  # binary both ways
        }
    ).encode()
    return header + raw, len(header)


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the server and its children so far."""
    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_wrk(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: int
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    (folder / "body").write_bytes(body)
    lines = [
        'wrk.method = "POST"',
        f'local f = io.open("{folder / "body"}", "rb"); wrk.body = f:read("*a"); f:close()',
        *(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
    ]
    (folder / "script.lua").write_text("\n".join(lines) + "\n")
    wrk = shutil.which("wrk") or sys.exit("wrk is needed: apt-get install wrk")
    command = [wrk, "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    output = subprocess.run(
        [*command, "-s", str(folder / "script.lua"), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shutil.rmtree(folder)
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    assert requests is not None, output
    seconds_run = float(requests.group(2)) / (1000 if requests.group(3) == "ms" else 1)
    return {
        "requests": int(requests.group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "seconds": seconds_run,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
    }


def run_grpc(address: str, model: str, rows: int, connections: int, seconds: int) -> Any:
    """Start the client process (it warms up its channels), then the timed part."""
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            GRPC_CLIENT,
            address,
            model,
            str(rows),
            str(FEATURES),
            str(connections),
            str(seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert client.stdout is not None
    assert client.stdin is not None
    if client.stdout.readline().strip() != "ready":
        raise RuntimeError("the gRPC client did not start")
    return client


def measure(arm: str, rows: int, pid: int, args: argparse.Namespace, ctx: dict) -> dict:
    data = rows_of(rows)
    url = f"http://127.0.0.1:{ctx['port']}/v2/models/{ctx['model']}/infer"
    client = None
    if arm == "grpc":
        client = run_grpc(ctx["grpc"], ctx["model"], rows, args.connections, args.duration)
    before = server_cpu_s(pid)
    if arm == "rest-json":
        result = run_wrk(url, json_body(data), {"Content-Type": "application/json"},
                         args.connections, args.duration)  # fmt: skip
    elif arm == "rest-binary":
        body, length = binary_body(data)
        headers = {"Inference-Header-Content-Length": str(length)}
        result = run_wrk(url, body, headers, args.connections, args.duration)
    else:
        assert client is not None
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        result = json.loads(client.stdout.readline())
        client.wait(30)
    cpu = server_cpu_s(pid) - before
    answered = max(result["requests"], 1)
    return {
        "arm": arm,
        "rows": rows,
        "requests_per_s": result["requests"] / result["seconds"],
        "rows_per_s": result["requests"] * rows / result["seconds"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "errors": result["errors"],
        "server_cpu_us_per_request": cpu / answered * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per arm")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    busy = psutil.cpu_percent(interval=1.0)  # percent of all CPUs in use
    with tempfile.TemporaryDirectory() as tmp:
        spec, model = build_spec(Path(tmp))
        port, grpc_port = free_port(), free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlkube",
                "serve",
                str(spec),
                "--port",
                str(port),
                "--grpc-port",
                str(grpc_port),
                "--workers",
                str(args.workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            ctx = {"port": port, "grpc": f"127.0.0.1:{grpc_port}", "model": model}
            wait_ready(port)
            table = [
                measure(arm, rows, server.pid, args, ctx)
                for rows in ROWS
                for arm in ("rest-json", "rest-binary", "grpc")
            ]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    for row in table:
        base = next(r for r in table if r["rows"] == row["rows"] and r["arm"] == "rest-json")
        row["rows_per_s_vs_json"] = row["rows_per_s"] / base["rows_per_s"]
        row["cpu_per_request_vs_json"] = (
            row["server_cpu_us_per_request"] / base["server_cpu_us_per_request"]
        )
    report = {
        "machine": {"cpus": os.cpu_count(), "idle_cpu_percent_before": 100 - busy},
        "settings": vars(args) | {"output": str(args.output), "model": "HGB 20 features, ONNX"},
        "note": "shared machine; the gRPC client is Python and competes with the server for CPU",
        "table": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(table)


def wait_ready(port: int) -> None:
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the server did not become ready")


def print_table(table: list[dict[str, Any]]) -> None:
    print(f"{'arm':<12}{'rows':>5}{'req/s':>9}{'rows/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'cpu us/req':>11}{'rows/s x':>9}{'cpu x':>7}")  # fmt: skip
    for r in table:
        print(
            f"{r['arm']:<12}{r['rows']:>5}{r['requests_per_s']:>9.0f}{r['rows_per_s']:>10.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['server_cpu_us_per_request']:>11.0f}"
            f"{r['rows_per_s_vs_json']:>9.2f}{r['cpu_per_request_vs_json']:>7.2f}"
        )


if __name__ == "__main__":
    main()
