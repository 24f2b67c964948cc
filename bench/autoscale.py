"""Benchmark the mlkube autoscaling policies against HPA at 70% CPU.

    python bench/autoscale.py [--startup 5] [--profile profile.json] [--real [--warmup 20]]

Replays the built-in traces (step, spike, diurnal, sawtooth) through the simulator with the
reactive default (``mlkube``), the start-up-aware forecast (``mlkube-predictive``), the
forecast with one warm standby replica (``mlkube-standby``) and HPA at 70% CPU on the same
replica model, prints a table, and writes ``bench/results/autoscale.json``. The beat-HPA
criterion: at most half the seconds over the SLO, for no more replica-seconds (standby
counted). A sweep of the start-up from 2 s to 120 s repeats it for every trace and policy,
and issue 19's criterion (``DONE_STARTUPS`` x ``DONE_TRACES``, for the forecast without and
with one warm standby replica) is printed as measured. The
exit status is the reactive default's verdict at the model's own start-up.

``--real`` adds one short real local run (``real_local_run``): an 80 s step trace replayed by
an open-loop paced client against ``mlkube up`` once per policy of ``REAL_POLICIES`` (the
reactive default, the forecast with one warm standby replica, HPA at 70% CPU), on a python
model that sleeps 40 ms and burns 10 ms of CPU per
request (one request at a time: about 20 req/s per replica). It reports seconds over the SLO
(p95 per second of the client's own latencies, measured from each request's scheduled send
time, failures counted as over) and replica-seconds (running replica processes, from status
polling), next to the simulator's figures for the same trace and replica model. The
controller runs with its production settings except a 1 s scrape period
(``REAL_METRICS_PERIOD_S``); everything binds 127.0.0.1 and every process started is ended
by PID. ``--warmup S`` makes the model's ``load()`` sleep S seconds (a stand-in for a model
that warms up). Replica-seconds count every running replica process, standby ones included.
Without ``--real`` the results file keeps the previous real run's section, marked as such.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlkube.autoscale import presets, traces
from mlkube.autoscale.profile import Profile, model_from
from mlkube.autoscale.simulator import ReplicaModel, simulate
from mlkube.spec.autoscaling import AutoscalingSpec

RESULTS = Path(__file__).parent / "results" / "autoscale.json"
SWEEP_STARTUPS = (2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
DONE_STARTUPS = (10.0, 30.0, 60.0)
"""Issue 19's criterion: at these start-ups, on the step and spike traces, the new policy
with standby has at most half HPA's seconds over the SLO for no more replica-seconds."""
DONE_TRACES = ("step", "spike")
POLICIES = (
    ("mlkube", "mlkube"),
    ("mlkubePredictive", "mlkube-predictive"),
    ("mlkubeStandby", "mlkube-standby"),
    ("hpaCpu70", "hpa-cpu70"),
)
"""(JSON key, preset name): the reactive default, with the forecast, with the forecast and
one warm standby replica, and HPA at 70% CPU."""
REAL_POLICIES = ("mlkube", "mlkube-standby", "hpa-cpu70")
"""The policies the real run replays: old (reactive), new (forecast + standby), HPA."""


def compare(model: ReplicaModel) -> list[dict[str, Any]]:
    rows = []
    for trace in traces.BUILTIN:
        rates = traces.builtin(trace, model.capacity_at_slo())
        results = {
            key: simulate(presets.policy(name, model, None), rates, model, trace=trace)
            for key, name in POLICIES
        }
        hpa = results["hpaCpu70"]
        row: dict[str, Any] = {"trace": trace, "startupSeconds": model.startup_s}
        for key, result in results.items():
            row[key] = result.summary()
        for key in ("mlkube", "mlkubePredictive", "mlkubeStandby"):
            ours = results[key]
            row[key]["sloSecondsRatio"] = _ratio(ours.seconds_over_slo, hpa.seconds_over_slo)
            row[key]["replicaSecondsRatio"] = round(ours.replica_seconds / hpa.replica_seconds, 3)
            row[key]["beatsHpa"] = _beats(ours.seconds_over_slo, hpa.seconds_over_slo) and (
                ours.replica_seconds <= hpa.replica_seconds
            )
        row["beatsHpa"] = row["mlkube"]["beatsHpa"]
        rows.append(row)
    return rows


def _beats(ours: int, hpa: int) -> bool:
    return ours * 2 <= hpa


def _ratio(a: float, b: float) -> float | None:
    if b == 0:
        return 0.0 if a == 0 else None
    return round(a / b, 3)


CRITERION_POLICIES = (
    ("mlkubePredictive", "mlkube-predictive"),
    ("mlkubeStandby", "mlkube-standby"),
)
"""The new policy without and with one warm standby replica: issue 19's criterion is judged
for each (the pool is a choice the spec makes)."""


def done_when(sweep: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 19's criterion, one entry per start-up, trace and new-policy configuration."""
    out = []
    for entry in sweep:
        if entry["startupSeconds"] not in DONE_STARTUPS:
            continue
        for row in entry["rows"]:
            if row["trace"] not in DONE_TRACES:
                continue
            hpa = row["hpaCpu70"]
            for key, name in CRITERION_POLICIES:
                ours = row[key]
                out.append(
                    {
                        "startupSeconds": entry["startupSeconds"],
                        "trace": row["trace"],
                        "policy": name,
                        "secondsOverSlo": [ours["secondsOverSlo"], hpa["secondsOverSlo"]],
                        "replicaSeconds": [ours["replicaSeconds"], hpa["replicaSeconds"]],
                        "halfTheSloSeconds": _beats(ours["secondsOverSlo"], hpa["secondsOverSlo"]),
                        "noMoreReplicaSeconds": ours["replicaSeconds"] <= hpa["replicaSeconds"],
                        "met": ours["beatsHpa"],
                    }
                )
    return out


def print_sweep(sweep: list[dict[str, Any]]) -> None:
    """One line per start-up and trace: seconds over the SLO / replica-seconds per policy."""
    print("start-up sweep: seconds over the SLO / replica-seconds (standby counted)")
    header = f"{'start':>5} {'trace':8}" + "".join(f" {name[:12]:>12}" for _, name in POLICIES)
    print(header + "  new+sb")
    print("-" * (len(header) + 8))
    for entry in sweep:
        for row in entry["rows"]:
            cells = "".join(
                f" {row[key]['secondsOverSlo']:>5}/{row[key]['replicaSeconds']:<6.0f}"
                for key, _ in POLICIES
            )
            verdict = "beats" if row["mlkubeStandby"]["beatsHpa"] else "-"
            print(f"{entry['startupSeconds']:>4.0f}s {row['trace']:8}{cells}  {verdict}")


# the short real local run --------------------------------------------------------------
REAL_MODEL = """
import time

import numpy as np


class Model:
    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def load(self):
        time.sleep(WARMUP_S)  # a stand-in for loading weights and warming up (--warmup)

    def predict(self, batch):
        rows = len(batch["input"])
        time.sleep(SLEEP_S * rows)
        end = time.thread_time() + BURN_S * rows
        while time.thread_time() < end:
            pass
        return {"label": np.zeros(rows, dtype=np.int64)}
"""
REAL_SLEEP_S = 0.040
REAL_BURN_S = 0.010
REAL_CPU_REQUEST = "200m"
"""About the CPU one replica uses at its capacity at the SLO: HPA's 70% means the same load
as the default policy's target, so neither policy is handicapped by a badly sized request."""
REAL_POLL_S = 0.5
REAL_METRICS_PERIOD_S = "1"
"""The controller's replica scrape period for the run. The production default (5 s) is
longer than the default policy's 2 s tick, so its rps readings would lag up to 5 s; the
simulator gives the default policy fresh averages at every tick. HPA's CPU reading gets the
same 1 s scrapes (fresher than metrics-server's 15 s, which the simulator models)."""
REAL_REQUEST_TIMEOUT_S = 10.0
REAL_CLIENT_THREADS = 96
ROW = [5.1, 3.5, 1.4, 0.2]


def real_trace(unit_rps: float) -> tuple[float, ...]:
    """An 80 s step in units of one replica's capacity at the SLO: 0.3 → 2.4 → 0.3."""
    return tuple((2.4 if 15 <= t < 60 else 0.3) * unit_rps for t in range(80))


def real_model() -> ReplicaModel:
    """The simulator's picture of the real run's replica (start-up replaced by a measurement)."""
    return ReplicaModel(
        capacity_rps=1.0 / (REAL_SLEEP_S + REAL_BURN_S),
        base_latency_ms=1000.0 * (REAL_SLEEP_S + REAL_BURN_S),
        cpu_per_request=REAL_BURN_S,
        idle_cpu_cores=0.005,
        cpu_request_cores=0.2,
        cpu_limit_cores=None,
    )


class PacedClient:
    """Open loop: requests are sent on a schedule whatever the answers do (bounded threads)."""

    def __init__(self, port: int, name: str, rates: tuple[float, ...]) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.port, self.name, self.rates = port, name, rates
        self.results: list[tuple[float, float, int]] = []
        """(scheduled offset s, latency ms from the scheduled time, status; 0 = failed)."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(REAL_CLIENT_THREADS)

    def run(self) -> None:
        import time

        start = time.monotonic()
        due = 0.0
        try:
            for second, rate in enumerate(self.rates):
                if rate <= 0:
                    continue
                gap = 1.0 / rate
                due = max(due, float(second))
                while due < second + 1:
                    delay = start + due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self._pool.submit(self._send, start, due)
                    due += gap
        finally:
            self._pool.shutdown(wait=True)  # each request is bounded by its timeout

    def _send(self, start: float, offset: float) -> None:
        import http.client
        import time

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, REAL_REQUEST_TIMEOUT_S)
            self._local.conn = conn
        status = 0
        try:
            conn.request(
                "POST",
                f"/v1/models/{self.name}:predict",
                json.dumps({"instances": [ROW]}),
                {"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
        latency_ms = (time.monotonic() - (start + offset)) * 1000.0
        with self._lock:
            self.results.append((offset, latency_ms, status))

    def seconds_over_slo(self, slo_ms: float) -> tuple[int, list[float]]:
        """Seconds whose p95 (failures as infinitely slow) exceeds the SLO, and the p95s."""
        by_second: dict[int, list[float]] = {}
        for offset, latency, status in self.results:
            by_second.setdefault(int(offset), []).append(latency if status == 200 else float("inf"))
        p95s = []
        for second in range(len(self.rates)):
            values = sorted(by_second.get(second, []))
            if values:
                p95s.append(values[min(len(values) - 1, int(0.95 * len(values)))])
        return sum(1 for p in p95s if p > slo_ms), p95s


def _real_spec(
    folder: Path, name: str, port: int, autoscaling: dict[str, Any], warmup_s: float = 0.0
) -> Path:
    import yaml

    model_dir = folder / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    source = (
        REAL_MODEL.replace("SLEEP_S", repr(REAL_SLEEP_S))
        .replace("BURN_S", repr(REAL_BURN_S))
        .replace("WARMUP_S", repr(warmup_s))
    )
    (model_dir / "bench_model.py").write_text(source)
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": str(model_dir), "format": "python", "entrypoint": "bench_model:Model"},
            "service": {"port": port},
            "resources": {"requests": {"cpu": REAL_CPU_REQUEST}},
            "batching": {"maxBatchSize": 1, "maxLatencyMs": 0},
            "autoscaling": autoscaling,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _autoscaling_yaml(spec: AutoscalingSpec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _run_policy(
    label: str, spec: AutoscalingSpec, rates: tuple[float, ...], warmup_s: float = 0.0
) -> dict[str, Any]:
    """One real run of ``rates`` against ``mlkube up`` with the ``spec`` autoscaling section."""
    import contextlib
    import os
    import signal
    import subprocess
    import tempfile
    import threading
    import time

    from mlkube.backends.local.controller.api import Client
    from mlkube.backends.local.ports import free_port

    with tempfile.TemporaryDirectory(prefix="mlkube-bench-") as tmp:
        folder = Path(tmp)
        state = folder / "state"
        env = {
            **os.environ,
            "MLKUBE_STATE_DIR": str(state),
            "MLKUBE_METRICS_PERIOD_S": REAL_METRICS_PERIOD_S,
        }
        port = free_port()
        path = _real_spec(folder, "bench", port, _autoscaling_yaml(spec), warmup_s)
        pids: set[int] = set()

        def cli(*args: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "mlkube", *args],
                env=env,
                capture_output=True,
                timeout=90,
                check=True,
            )

        def status() -> dict[str, Any]:
            dep: dict[str, Any] = Client(state).call("GET", "/status?name=bench")["deployments"][0]
            pids.update(r["pid"] for r in dep["replicas"] if r["pid"])
            return dep

        up_at = time.monotonic()
        try:
            cli("up", "-d", str(path))
            pids.add(int(json.loads((state / "controller.json").read_text())["pid"]))
            deadline = time.monotonic() + 60
            while status()["ready"] < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: no replica became ready within 60 s")
                time.sleep(0.1)
            startup_s = time.monotonic() - up_at
            time.sleep(3.0)  # let the first scrapes in
            client = PacedClient(port, "bench", rates)
            polls: list[tuple[float, int, int]] = []
            done = threading.Event()

            def poll() -> None:
                begin = time.monotonic()
                while not done.is_set() and time.monotonic() - begin < len(rates) + 30:
                    with contextlib.suppress(Exception):
                        dep = status()
                        running = sum(1 for r in dep["replicas"] if r["pid"])
                        polls.append((time.monotonic() - begin, running, dep["ready"]))
                    time.sleep(REAL_POLL_S)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            client.run()
            done.set()
            poller.join(timeout=10)
            final = status()
        finally:
            with contextlib.suppress(Exception):
                cli("down")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    slo_ms = real_model().slo_ms
    over, p95s = client.seconds_over_slo(slo_ms)
    horizon = float(len(rates))
    replica_seconds = 0.0
    for (t0, running, _), (t1, _, _) in itertools.pairwise(polls):
        if t0 < horizon:
            replica_seconds += running * (min(t1, horizon) - t0)
    statuses: dict[str, int] = {}
    for _, _, code in client.results:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    return {
        "policy": label,
        "secondsOverSlo": over,
        "replicaSeconds": round(replica_seconds, 1),
        "maxReplicas": max((p[1] for p in polls), default=0),
        "requests": len(client.results),
        "statuses": statuses,
        "worstP95Ms": round(max(p95s), 1) if p95s else None,
        "startupSeconds": round(startup_s, 2),
        "lastDecision": (final.get("autoscaler") or {}).get("reason"),
        "standbyReplicaSeconds": (final.get("standby") or {}).get("replicaSeconds"),
        "decisionMetrics": (final.get("autoscaler") or {}).get("metrics"),
        "replicasOverTime": [[round(t, 1), n] for t, n, _ in polls[:: max(1, len(polls) // 40)]],
    }


def real_local_run(warmup_s: float = 0.0) -> dict[str, Any]:
    """The same short step trace against ``mlkube up``: the default policy, then HPA 70% CPU.

    ``warmup_s``: the model's ``load()`` sleeps this long, so every replica's start-up is at
    least that.
    """
    model = real_model()
    rates = real_trace(model.capacity_at_slo())
    real = [
        _run_policy(name, presets.policy(name, model, None).spec, rates, warmup_s)
        for name in REAL_POLICIES
    ]
    startup = sum(r["startupSeconds"] for r in real) / len(real)
    simulated_model = replace(model, startup_s=startup)
    simulated = [
        simulate(
            presets.policy(name, simulated_model, None), rates, simulated_model, trace="step80"
        )
        for name in REAL_POLICIES
    ]
    return {
        "status": "run",
        "trace": "step80: 15 s at 0.3, 45 s at 2.4, 20 s at 0.3 x capacity at the SLO",
        "rps": [round(r, 2) for r in rates],
        "model": {k: getattr(simulated_model, k) for k in simulated_model.__dataclass_fields__},
        "sloMs": model.slo_ms,
        "warmupSeconds": warmup_s,
        "real": real,
        "simulated": [s.summary() for s in simulated],
    }


def print_real(result: dict[str, Any]) -> None:
    print(f"real local run ({result['trace']}), SLO p95 {result['sloMs']:.0f} ms:")
    header = (
        f"{'policy':14} {'real s>SLO':>10} {'sim s>SLO':>9} {'real rep-s':>10} "
        f"{'sim rep-s':>9} {'max':>4} {'requests':>8}  non-200"
    )
    print(header)
    print("-" * len(header))
    for real, sim in zip(result["real"], result["simulated"], strict=True):
        bad = {k: v for k, v in real["statuses"].items() if k != "200"}
        print(
            f"{real['policy']:14} {real['secondsOverSlo']:>10} {sim['secondsOverSlo']:>9} "
            f"{real['replicaSeconds']:>10.0f} {sim['replicaSeconds']:>9.0f} "
            f"{real['maxReplicas']:>4} {real['requests']:>8}  {bad or '-'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup", type=float, default=None, help="replica start-up seconds")
    parser.add_argument("--profile", help="profile JSON from 'mlkube profile'")
    parser.add_argument(
        "--real", action="store_true", help="also run the short real local run (about 6 min)"
    )
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds the real run's model warms up"
    )
    args = parser.parse_args()
    profile = None
    if args.profile:
        profile = Profile.from_json(json.loads(Path(args.profile).read_text()), args.profile)
    model = model_from(None, profile)
    if args.startup is not None:
        model = replace(model, startup_s=args.startup)
    rows = compare(model)
    print(
        f"replica model: capacity {model.capacity_rps:.1f} req/s, "
        f"at SLO {model.capacity_at_slo():.1f}, start-up {model.startup_s:.1f}s, "
        f"SLO p95 {model.slo_ms:.0f} ms"
    )
    header = f"{'trace':9} {'policy':17} {'s over SLO':>10} {'replica-s':>10} {'max':>4}  verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        for key, label in POLICIES:
            s = row[key]
            verdict = ""
            if key != "hpaCpu70":
                verdict = "beats HPA" if s["beatsHpa"] else "DOES NOT beat HPA"
            print(
                f"{row['trace']:9} {label:17} {s['secondsOverSlo']:>10} "
                f"{s['replicaSeconds']:>10.0f} {s['maxReplicas']:>4}  {verdict}"
            )
    sweep: list[dict[str, Any]] = []
    for startup in SWEEP_STARTUPS:
        swept = compare(replace(model, startup_s=startup))
        beats = {
            key: all(r[key]["beatsHpa"] for r in swept)
            for key in ("mlkube", "mlkubePredictive", "mlkubeStandby")
        }
        sweep.append({"startupSeconds": startup, "allBeatHpa": beats, "rows": swept})
    print_sweep(sweep)
    criterion = done_when(sweep)
    print("issue 19 criterion (new policy vs hpa-cpu70, s over SLO and replica-s):")
    for c in criterion:
        (ours, hpa), (ours_rs, hpa_rs) = c["secondsOverSlo"], c["replicaSeconds"]
        print(
            f"  {c['startupSeconds']:>3.0f}s {c['trace']:6} {c['policy']:17} {ours:>4} vs "
            f"{hpa:<4} {ours_rs:>5.0f} vs {hpa_rs:<5.0f} {'met' if c['met'] else 'NOT met'}"
        )
    real = real_local_run(args.warmup) if args.real else None
    if real is not None:
        print_real(real)
    else:
        real = _previous_real_run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "autoscale",
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "model": {k: getattr(model, k) for k in model.__dataclass_fields__},
                "capacityAtSloRps": model.capacity_at_slo(),
                "standbyReplicas": presets.DEFAULT_STANDBY,
                "simulated": rows,
                "startupSweep": sweep,
                "issue19Criterion": criterion,
                "realLocalRun": real,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")
    return 0 if all(r["beatsHpa"] for r in rows) else 1


def _previous_real_run() -> dict[str, Any]:
    """The last real run's section of the results file (the simulation does not redo it)."""
    try:
        previous: dict[str, Any] = json.loads(RESULTS.read_text())["realLocalRun"]
    except (OSError, ValueError, KeyError):
        return {"status": "not run", "why": "run with --real"}
    if previous.get("status") == "run":
        previous["note"] = "from an earlier --real run (only the simulation was rerun)"
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
