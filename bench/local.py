"""Load balancer overhead and replica scaling of `mlkube up`, measured with wrk in one run.

Compares, with the same iris ONNX model and the same wrk settings (64 connections):
  direct   wrk → one `mlkube serve` replica (the baseline)
  lb-1     wrk → mlkube's load balancer → 1 replica
  lb-2     wrk → mlkube's load balancer → 2 replicas
and prints throughput and p99 ratios; figures go to bench/results/local.json.

Usage: .venv/bin/python bench/local.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.ports import free_port
from mlkube.testing.models import iris_classifier, save_onnx

WRK = "/usr/bin/wrk"
RESULTS = Path(__file__).parent / "results" / "local.json"
LUA = """wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(port: int, *, duration: int, connections: int, lua: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            WRK,
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/v1/models/iris:predict",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def wait_ready(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing ready on port {port}")


def mlkube(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mlkube", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def wait_replicas(state: Path, count: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dep = Client(state).call("GET", "/status")["deployments"][0]
        if dep["ready"] == count and len(dep["replicas"]) == count:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{count} replicas did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlkube-bench-"))
    model = save_onnx(iris_classifier(), work, "iris").path
    lb_port = free_port()
    spec = work / "iris.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlkube.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {
                    "model": {"uri": str(model), "format": "onnx"},
                    "replicas": 1,
                    "service": {"port": lb_port},
                },
            }
        )
    )
    lua = work / "post.lua"
    lua.write_text(LUA)
    run = {"duration": args.duration, "connections": args.connections}
    results: dict[str, dict[str, float]] = {}

    direct_port = free_port()
    direct = subprocess.Popen(
        [sys.executable, "-m", "mlkube", "serve", str(spec), "--port", str(direct_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready(direct_port)
        results["direct"] = wrk(direct_port, lua=lua, **run)
    finally:
        os.killpg(direct.pid, signal.SIGTERM)
        direct.wait(timeout=30)

    state = work / "state"
    env = {**os.environ, "MLKUBE_STATE_DIR": str(state)}
    mlkube(env, "up", "-d", str(spec))
    try:
        wait_replicas(state, 1)
        results["lb-1"] = wrk(lb_port, lua=lua, **run)
        mlkube(env, "scale", "iris", "2")
        wait_replicas(state, 2)
        results["lb-2"] = wrk(lb_port, lua=lua, **run)
    finally:
        mlkube(env, "down")

    base = results["direct"]
    ratios = {
        "lb1_vs_direct_throughput": results["lb-1"]["rps"] / base["rps"],
        "lb1_vs_direct_p99": results["lb-1"]["p99_ms"] / base["p99_ms"],
        "lb2_vs_lb1_throughput": results["lb-2"]["rps"] / results["lb-1"]["rps"],
        "lb2_vs_direct_throughput": results["lb-2"]["rps"] / base["rps"],
    }
    print(f"{'setup':<8} {'req/s':>10} {'p99 ms':>8} {'non-2xx':>8}")
    for name, figures in results.items():
        print(
            f"{name:<8} {figures['rps']:>10.0f} {figures['p99_ms']:>8.2f} "
            f"{figures['non_2xx']:>8.0f}"
        )
    for name, value in ratios.items():
        print(f"{name:<28} {value:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count()},
                "wrk": {
                    **run,
                    "threads": 2,
                    "request": "POST /v1/models/iris:predict, one iris row",
                },
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
