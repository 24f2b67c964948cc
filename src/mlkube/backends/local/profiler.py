"""``mlkube profile``: load-test one local replica on loopback and measure what it can do.

The load-test half of ``mlkube profile`` (``autoscale.profile`` holds the pure model): it starts
``python -m mlkube serve`` through the supervisor on 127.0.0.1, waits for ``/v2/health/ready``,
drives closed-loop load at rising concurrency through ``POST /v2/models/<name>/infer``, samples
the process tree's CPU and RSS with psutil, and stops the server. Every step is bounded in
requests and in time. The arithmetic that turns measurements into a ``Profile`` (``summarize``)
is pure.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from mlkube.autoscale.profile import LoadPoint, Profile
from mlkube.backends.local import supervisor
from mlkube.backends.local.supervisor import ProcessHandle
from mlkube.clock import SystemClock
from mlkube.errors import MlkubeError

CLOCK = SystemClock()
STOP_TIMEOUT_S = 15.0


class ProfileRunError(MlkubeError):
    """The load test could not run (server did not start, requests failed)."""


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """Bounds of one load test."""

    slo_ms: float = 500.0
    concurrency_levels: tuple[int, ...] = (1, 2, 4, 8, 16)
    step_seconds: float = 3.0
    max_requests_per_step: int = 5000
    startup_timeout_s: float = 120.0
    total_timeout_s: float = 120.0
    stop_at_slo_multiple: float = 4.0
    """Stop raising concurrency once p95 exceeds this many times the SLO."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))
    return ordered[index]


def _tree_cpu_times(proc: psutil.Process) -> float:
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += int(p.memory_info().rss)
        except psutil.Error:
            continue
    return total


def example_request(metadata: dict[str, Any]) -> dict[str, Any]:
    """A v2 inference body of zeros shaped like the model's inputs (batch 1)."""
    inputs = []
    for spec in metadata.get("inputs", []):
        shape = [1 if (not isinstance(d, int) or d < 0) else d for d in spec.get("shape", [1])]
        size = math.prod(shape)
        datatype = spec.get("datatype", "FP32")
        zero: float | int | bool | str = 0.0
        if datatype.startswith(("INT", "UINT")):
            zero = 0
        elif datatype == "BOOL":
            zero = False
        elif datatype == "BYTES":
            zero = ""
        inputs.append(
            {"name": spec["name"], "shape": shape, "datatype": datatype, "data": [zero] * size}
        )
    if not inputs:
        raise ProfileRunError("the model's v2 metadata lists no inputs to build a request from")
    return {"inputs": inputs}


def _drive(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    concurrency: int,
    settings: ProfileSettings,
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = CLOCK.monotonic() + settings.step_seconds
    budget = [settings.max_requests_per_step]

    def worker() -> None:
        nonlocal errors
        while CLOCK.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            start = CLOCK.monotonic()
            try:
                ok = client.post(url, json=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = (CLOCK.monotonic() - start) * 1000.0
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    started = CLOCK.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(settings.step_seconds + 30.0)
    return latencies, errors, CLOCK.monotonic() - started


def _wait_ready(client: httpx.Client, base: str, proc: ProcessHandle, timeout: float) -> float:
    started = CLOCK.monotonic()
    while CLOCK.monotonic() - started < timeout:
        ended = proc.poll()
        if ended is not None:
            raise ProfileRunError(f"mlkube serve {ended.reason} before it was ready")
        try:
            if client.get(f"{base}/v2/health/ready").status_code == 200:
                return CLOCK.monotonic() - started
        except httpx.HTTPError:
            pass
        CLOCK.sleep_blocking(0.05)
    raise ProfileRunError(f"mlkube serve was not ready within {timeout:.0f}s")


def run_profile(
    command: Sequence[str], model_name: str, port: int, settings: ProfileSettings
) -> Profile:
    """Start ``command`` (which must serve on 127.0.0.1:``port``), load-test it, stop it."""
    base = f"http://127.0.0.1:{port}"
    launched = CLOCK.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlkube-profile-") as folder:
        log = Path(folder) / "serve.log"
        proc = supervisor.spawn(command, env=dict(os.environ), log_path=log)
        try:
            limits = httpx.Limits(max_connections=max(settings.concurrency_levels) + 2)
            with httpx.Client(timeout=30.0, limits=limits) as client:
                try:
                    _wait_ready(client, base, proc, settings.startup_timeout_s)
                except ProfileRunError as exc:
                    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                    raise ProfileRunError(f"{exc}; its last lines:\n" + "\n".join(tail)) from exc
                startup = CLOCK.monotonic() - launched
                metadata = client.get(f"{base}/v2/models/{model_name}").json()
                body = example_request(metadata)
                url = f"{base}/v2/models/{model_name}/infer"
                points = _measure(client, url, body, proc, settings)
            return summarize(model_name, settings.slo_ms, startup, points, _idle_cpu(proc))
        finally:
            _stop(proc)


def _idle_cpu(proc: ProcessHandle) -> float:
    try:
        tree = psutil.Process(proc.pid)
        before = _tree_cpu_times(tree)
        CLOCK.sleep_blocking(1.0)
        return max(0.0, _tree_cpu_times(tree) - before)
    except psutil.Error:
        return 0.0


def _measure(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    proc: ProcessHandle,
    settings: ProfileSettings,
) -> list[LoadPoint]:
    tree = psutil.Process(proc.pid)
    points: list[LoadPoint] = []
    started = CLOCK.monotonic()
    for level in settings.concurrency_levels:
        if CLOCK.monotonic() - started > settings.total_timeout_s:
            break
        cpu_before = _tree_cpu_times(tree)
        latencies, errors, elapsed = _drive(client, url, body, level, settings)
        cpu = max(0.0, _tree_cpu_times(tree) - cpu_before) / max(elapsed, 1e-6)
        if not latencies:
            raise ProfileRunError(f"every request failed at concurrency {level} ({errors} errors)")
        point = LoadPoint(
            concurrency=level,
            requests_per_second=len(latencies) / elapsed,
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p95_ms=_percentile(latencies, 0.95),
            cpu_cores=cpu,
            memory_bytes=_tree_rss(tree),
            errors=errors,
        )
        points.append(point)
        if point.latency_p95_ms > settings.stop_at_slo_multiple * settings.slo_ms:
            break
    return points


def _stop(proc: ProcessHandle) -> None:
    """SIGTERM (the server drains), then SIGKILL of the group after ``STOP_TIMEOUT_S``."""
    if proc.poll() is None:
        proc.terminate()
        deadline = CLOCK.monotonic() + STOP_TIMEOUT_S
        while proc.poll() is None and CLOCK.monotonic() < deadline:
            CLOCK.sleep_blocking(0.05)
    proc.kill()


def summarize(
    model: str, slo_ms: float, startup_s: float, points: Sequence[LoadPoint], idle_cpu: float
) -> Profile:
    """Turn load-test points into a profile (pure)."""
    if not points:
        raise ProfileRunError("the load test produced no measurements")
    capacity = max(p.requests_per_second for p in points)
    within = [p.requests_per_second for p in points if p.latency_p95_ms <= slo_ms]
    slopes = [
        (p.cpu_cores - idle_cpu) / p.requests_per_second
        for p in points
        if p.requests_per_second > 0
    ]
    per_request = max(0.0, sum(slopes) / len(slopes)) if slopes else 0.0
    return Profile(
        model=model,
        slo_ms=slo_ms,
        startup_s=startup_s,
        base_latency_ms=points[0].latency_p50_ms,
        capacity_rps=capacity,
        capacity_at_slo_rps=max(within) if within else 0.0,
        cpu_per_request=per_request,
        idle_cpu_cores=idle_cpu,
        memory_bytes=max(p.memory_bytes for p in points),
        points=tuple(points),
    )
