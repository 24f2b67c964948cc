"""Fault injection against a local deployment under a paced load: failed/total per fault.

One deployment (a small generated python model, 2 replicas, loopback only) serves a paced
load of ``--rate`` requests per second for the whole run while the faults below are injected
one after the other. Each fault's window runs from the injection until the deployment is
healthy again (every replica ready, no rollout in progress) plus ``--settle-seconds`` (1);
the requests *sent* in that window are that fault's. A request fails when it gets no answer
(refused, reset, client timeout of ``--timeout`` seconds) or a status other than 200 -- except
the fault's own probe requests (the query of death, the slowloris and oversized clients), which
are reported in the notes, not in the counts.

Faults (``--fault NAME``, repeatable; all by default, in this order):
  replica-kill        SIGKILL one replica
  replica-stop        SIGSTOP one replica for --stop-seconds, then SIGCONT
  controller-restart  SIGKILL the controller, wait --headless-seconds, `mlkube up -d`
  scale               scale to 3, then back to 2
  rollout-good        apply a new good revision (rolling update)
  rollout-corrupt     apply a revision whose model does not load, then the good one
  query-of-death      one request that kills the replica serving it
  slowloris           --slow-clients connections sending headers one byte a second
  oversized           one --oversized-mb upload; the balancer's RSS is sampled during it
  balancer-kill       SIGKILL the balancer process (the controller starts a new one)

Usage: .venv/bin/python bench/faults.py [--fault NAME]... [--rate 60] [--out PATH]
Prints a table (80 columns) and writes JSON (default bench/results/faults.json).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from mlkube.backends.local.ports import free_port
from mlkube.errors import BackendError
from mlkube.testing.local import LocalController

RESULTS = Path(__file__).parent / "results" / "faults.json"
FAULTS = (
    "replica-kill",
    "replica-stop",
    "controller-restart",
    "scale",
    "rollout-good",
    "rollout-corrupt",
    "query-of-death",
    "slowloris",
    "oversized",
    "balancer-kill",
)
REPLICAS = 2
POISON = -666.0
ROW = [5.1, 3.5, 1.4, 0.2]
RECOVERY_TIMEOUT_S = 120.0
SETTLE_S = 1.0
SLOW_MS = 1000.0  # an answer slower than this counts as held up (shown, not failed)
# Shorter than the defaults so the run stays short; still the same mechanisms.
SETTINGS = {
    "MLKUBE_PROBE_PERIOD_S": "0.5",
    "MLKUBE_RECONCILE_PERIOD_S": "0.2",
    "MLKUBE_BACKOFF_BASE_S": "1",
    "MLKUBE_BACKOFF_MAX_S": "5",
    "MLKUBE_STOP_GRACE_S": "3",
}

MODEL = f"""
import os

import numpy as np


class Model:
    inputs = [{{"name": "input", "datatype": "FP64", "shape": [-1, 4]}}]
    outputs = [{{"name": "label", "datatype": "INT64", "shape": [-1]}}]

    def load(self):
        pass

    def predict(self, batch):
        rows = batch["input"]
        if (rows == {POISON}).any():
            os._exit(137)  # the query of death: the process dies mid-request
        return {{"label": (rows.sum(axis=1) > 10).astype(np.int64)}}
"""
CORRUPT_MODEL = "this is not python (\n"


# the load -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Sent:
    at: float
    outcome: str
    """``200``, another status code, or the exception's name (``timeout`` for a hang)."""
    latency_ms: float


class PacedLoad:
    """``rate`` requests a second on a fixed schedule, over ``threads`` keep-alive
    connections (a hung request delays that thread only)."""

    def __init__(self, port: int, rate: float, threads: int, timeout_s: float) -> None:
        self.port, self.rate, self.timeout_s = port, rate, timeout_s
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._start = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.body = json.dumps({"instances": [ROW]})

    def __enter__(self) -> PacedLoad:
        self._start = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)

    def _slot(self) -> float:
        with self._lock:
            index, self._next = self._next, self._next + 1
        return self._start + index / self.rate

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)

    def _run(self) -> None:
        conn = self._connect()
        while not self._stop.is_set():
            due = self._slot()
            wait = due - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                if self._stop.is_set():
                    break
            sent = time.monotonic()
            try:
                conn.request(
                    "POST",
                    "/v1/models/faults:predict",
                    self.body,
                    {"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                response.read()
                outcome = str(response.status)
                if response.will_close:
                    conn.close()
                    conn = self._connect()
            except TimeoutError:
                outcome = "timeout"
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
            if outcome not in ("200",) and not outcome.isdigit():
                conn.close()
                conn = self._connect()
            with self._lock:
                self.sent.append(Sent(sent, outcome, (time.monotonic() - sent) * 1000.0))
        conn.close()

    def window(self, start: float, end: float) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if start <= s.at < end]


# the deployment -----------------------------------------------------------------------------
@dataclass
class Bench:
    work: Path
    local: LocalController
    port: int
    spec: Path
    model_dir: Path
    revision_dirs: int = 0
    notes: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def write_spec(self, model_dir: Path, replicas: int = REPLICAS) -> None:
        document = {
            "apiVersion": "mlkube.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "faults"},
            "spec": {
                "model": {"uri": str(model_dir), "format": "python", "entrypoint": "m:Model"},
                "replicas": replicas,
                "service": {"port": self.port},
                "server": {"drainTimeout": "5s"},
            },
        }
        self.spec.write_text(yaml.safe_dump(document, sort_keys=False))

    def new_model_dir(self, source: str) -> Path:
        self.revision_dirs += 1
        folder = self.work / f"model-{self.revision_dirs}"
        folder.mkdir()
        (folder / "m.py").write_text(source)
        return folder

    def deployment(self) -> dict[str, Any] | None:
        try:
            return self.local.deployment("faults")
        except (BackendError, OSError):  # no controller (being restarted): not healthy yet
            return None

    def healthy(self, count: int = REPLICAS) -> bool:
        dep = self.deployment()
        if dep is None:
            return False
        rollout = dep["rollout"]
        rolling = rollout.get("target") is not None and rollout["phase"] in (
            "Progressing",
            "ABTest",
        )
        return (
            not rolling
            and dep["ready"] == count
            and len(dep["replicas"]) == count
            and all(r["phase"] == "Ready" for r in dep["replicas"])
        )

    def wait(self, what: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def replicas(self) -> list[dict[str, Any]]:
        dep = self.deployment()
        return list(dep["replicas"]) if dep else []


# the faults ---------------------------------------------------------------------------------
def replica_kill(bench: Bench) -> None:
    victim = bench.replicas()[0]
    os.kill(int(victim["pid"]), signal.SIGKILL)
    bench.wait(
        "the killed replica back",
        lambda: (
            bench.healthy() and any(r["restarts"] > victim["restarts"] for r in bench.replicas())
        ),
    )
    bench.notes["replica-kill"] = "restarted"


def replica_stop(bench: Bench, stop_s: float) -> None:
    victim = int(bench.replicas()[0]["pid"])
    os.killpg(victim, signal.SIGSTOP)
    try:
        time.sleep(stop_s)
    finally:
        os.killpg(victim, signal.SIGCONT)
    bench.wait("the stopped replica ready again", bench.healthy)
    bench.notes["replica-stop"] = f"stopped {stop_s:g}s"


def controller_restart(bench: Bench, headless_s: float) -> None:
    before = {r["name"]: r["pid"] for r in bench.replicas()}
    balancer = bench.local.balancer_pid()
    controller = bench.local.controller_pid()
    os.kill(controller, signal.SIGKILL)
    time.sleep(headless_s)  # traffic with no controller at all
    bench.local.run("up", "-d", str(bench.spec))
    bench.wait("the restarted controller", bench.healthy)
    after = {r["name"]: r["pid"] for r in bench.replicas()}
    kept = after == before and bench.local.balancer_pid() == balancer
    bench.extra["controller-restart"] = {"pidsKept": kept}
    bench.notes["controller-restart"] = "replica+balancer pids kept" if kept else "pids CHANGED"


def scale(bench: Bench) -> None:
    bench.local.run("scale", "faults", "3")
    bench.wait("3 ready replicas", lambda: bench.healthy(3))
    bench.local.run("scale", "faults", str(REPLICAS))
    bench.wait("back to 2 replicas", bench.healthy)
    bench.notes["scale"] = f"{REPLICAS} -> 3 -> {REPLICAS}"


def rollout_good(bench: Bench) -> None:
    bench.model_dir = bench.new_model_dir(MODEL)
    bench.write_spec(bench.model_dir)
    revision = _revision(bench)
    bench.local.run("apply", str(bench.spec))
    bench.wait("the new revision", lambda: bench.healthy() and _revision(bench) > revision)
    bench.notes["rollout-good"] = f"revision {revision} -> {_revision(bench)}"


def rollout_corrupt(bench: Bench) -> None:
    corrupt = bench.new_model_dir(CORRUPT_MODEL)
    bench.write_spec(corrupt)
    revision = _revision(bench)
    bench.local.run("apply", str(bench.spec))

    def failed() -> bool:
        dep = bench.deployment()
        return dep is not None and dep["rollout"]["phase"] in ("Failed", "RolledBack")

    bench.wait("the corrupt rollout to fail", failed)
    bench.write_spec(bench.model_dir)
    bench.local.run("apply", str(bench.spec))
    bench.wait("the good revision serving", bench.healthy)
    kept = _revision(bench) == revision
    bench.notes["rollout-corrupt"] = "failed, stable kept" if kept else "revision changed"


def query_of_death(bench: Bench) -> None:
    restarts = sum(int(r["restarts"]) for r in bench.replicas())
    body = json.dumps({"instances": [[POISON, 0.0, 0.0, 0.0]]})
    conn = http.client.HTTPConnection("127.0.0.1", bench.port, timeout=30)
    try:
        conn.request("POST", "/v1/models/faults:predict", body)
        answer = str(conn.getresponse().status)
    except (OSError, http.client.HTTPException) as error:
        answer = type(error).__name__
    finally:
        conn.close()
    time.sleep(2.0)  # let the controller see every exit
    bench.wait("the replicas back", bench.healthy)
    killed = sum(int(r["restarts"]) for r in bench.replicas()) - restarts
    bench.extra["query-of-death"] = {"answer": answer, "replicasKilled": killed}
    bench.notes["query-of-death"] = f"answer {answer}; {killed} replica(s) killed"[:40]


def slowloris(bench: Bench, clients: int, hold_s: float) -> None:
    sockets = []
    for _ in range(clients):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", bench.port), timeout=5)
            sock.sendall(b"POST /v1/models/faults:predict HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            sockets.append(sock)
    closed: set[int] = set()
    end = time.monotonic() + hold_s
    while time.monotonic() < end:
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            try:
                sock.send(b"X")
                with contextlib.suppress(BlockingIOError):
                    if sock.recv(65536) == b"":
                        closed.add(index)
            except OSError:
                closed.add(index)
        time.sleep(1.0)
    for sock in sockets:
        sock.close()
    bench.extra["slowloris"] = {"clients": len(sockets), "closedByServer": len(closed)}
    bench.notes["slowloris"] = f"{len(closed)}/{len(sockets)} closed by balancer"


def oversized(bench: Bench, megabytes: int) -> None:
    balancer = psutil.Process(bench.local.balancer_pid())
    idle = balancer.memory_info().rss
    peak = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], balancer.memory_info().rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answer = "none"
    chunk = b"0" * 2**20
    try:
        with socket.create_connection(("127.0.0.1", bench.port), timeout=30) as sock:
            head = (
                "POST /v1/models/faults:predict HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {megabytes * 2**20}\r\n\r\n"
            )
            try:
                sock.sendall(head.encode())
                for _ in range(megabytes):
                    sock.sendall(chunk)
            except OSError as error:
                answer = type(error).__name__
            with contextlib.suppress(OSError):
                first = sock.recv(64)
                answer = first.split(b" ")[1].decode() if first.startswith(b"HTTP/") else answer
    except OSError as error:
        answer = type(error).__name__
    time.sleep(0.5)
    done.set()
    sampler.join()
    after = idle
    with contextlib.suppress(psutil.Error):
        after = balancer.memory_info().rss
    grow = (peak[0] - idle) / 2**20
    bench.extra["oversized"] = {
        "megabytes": megabytes,
        "answer": answer,
        "balancerRssIdleMiB": idle / 2**20,
        "balancerRssPeakMiB": peak[0] / 2**20,
        "balancerRssAfterMiB": after / 2**20,
    }
    bench.notes["oversized"] = f"{megabytes} MB: {answer}; balancer RSS +{grow:.0f} MiB"


def balancer_kill(bench: Bench) -> None:
    first = bench.local.balancer_pid()
    os.kill(first, signal.SIGKILL)

    def replaced() -> bool:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return bench.local.balancer_pid() != first and _answers(bench.port)
        return False

    bench.wait("a new balancer", replaced)
    bench.notes["balancer-kill"] = "a new balancer took every route"


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v1/models/faults:predict", json.dumps({"instances": [ROW]}))
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _revision(bench: Bench) -> int:
    dep = bench.deployment()
    return int(dep["revision"]) if dep else 0


# the run ------------------------------------------------------------------------------------
def summarize(requests: list[Sent]) -> dict[str, Any]:
    failures = Counter(s.outcome for s in requests if s.outcome != "200")
    latencies = sorted(s.latency_ms for s in requests)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else None
    return {
        "sent": len(requests),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "over1s": sum(1 for s in requests if s.latency_ms > SLOW_MS),
        "p99Ms": round(p99, 1) if p99 is not None else None,
        "maxMs": round(latencies[-1], 1) if latencies else None,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'fault':<19}{'failed/sent':>12}{'>1s':>5}{'max ms':>8}  notes"]
    for name, row in results.items():
        ratio = f"{row['failed']}/{row['sent']}"
        notes = row.get("notes", "")
        line = f"{name:<19}{ratio:>12}{row['over1s']:>5}{row['maxMs'] or 0:>8.0f}  {notes}"
        lines.append(line[:80])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", action="append", choices=FAULTS, help="repeatable")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout, s")
    parser.add_argument("--stop-seconds", type=float, default=6.0)
    parser.add_argument("--slow-clients", type=int, default=100)
    parser.add_argument("--slow-seconds", type=float, default=8.0)
    parser.add_argument("--oversized-mb", type=int, default=100)
    parser.add_argument(
        "--baseline-seconds", type=float, default=2.0, help="load before the first fault"
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=SETTLE_S, help="kept in a fault's window after"
    )
    parser.add_argument(
        "--headless-seconds",
        type=float,
        default=2.0,
        help="load with no controller in controller-restart",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = [f for f in FAULTS if f in (args.fault or FAULTS)]
    work = Path(tempfile.mkdtemp(prefix="mlkube-faults-"))
    local = LocalController(work / "state", SETTINGS)
    bench = Bench(work, local, free_port(), work / "faults.yaml", work / "unused")
    bench.model_dir = bench.new_model_dir(MODEL)
    bench.write_spec(bench.model_dir)
    actions: dict[str, Callable[[], None]] = {
        "replica-kill": lambda: replica_kill(bench),
        "replica-stop": lambda: replica_stop(bench, args.stop_seconds),
        "controller-restart": lambda: controller_restart(bench, args.headless_seconds),
        "scale": lambda: scale(bench),
        "rollout-good": lambda: rollout_good(bench),
        "rollout-corrupt": lambda: rollout_corrupt(bench),
        "query-of-death": lambda: query_of_death(bench),
        "slowloris": lambda: slowloris(bench, args.slow_clients, args.slow_seconds),
        "oversized": lambda: oversized(bench, args.oversized_mb),
        "balancer-kill": lambda: balancer_kill(bench),
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        local.run("up", "-d", str(bench.spec))
        bench.wait("the deployment ready", bench.healthy)
        with PacedLoad(bench.port, args.rate, args.threads, args.timeout) as load:
            time.sleep(args.baseline_seconds)
            results["baseline"] = {**summarize(load.window(0.0, time.monotonic())), "notes": ""}
            for name in chosen:
                start = time.monotonic()
                try:
                    actions[name]()
                except RuntimeError as error:
                    bench.notes[name] = f"ERROR {error}"
                time.sleep(args.settle_seconds)
                results[name] = {
                    **summarize(load.window(start, time.monotonic())),
                    "notes": bench.notes.get(name, ""),
                    **bench.extra.get(name, {}),
                }
                local.status()  # remember every pid for the cleanup
    finally:
        local.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count()},
                "load": {
                    "rate": args.rate,
                    "threads": args.threads,
                    "clientTimeoutS": args.timeout,
                    "baselineS": args.baseline_seconds,
                    "settleS": args.settle_seconds,
                    "headlessS": args.headless_seconds,
                    "request": "POST /v1/models/faults:predict, one row, python model",
                },
                "controllerSettings": SETTINGS,
                "faults": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
