"""What mlkube's load balancer costs per request, beside a direct connection,
HAProxy and nginx, on the same replicas.

    python bench/balancer.py            # full run: 3 rounds of 7 s, ~7 min
    python bench/balancer.py --quick    # smoke run: 1 round of 2 s, ~1 min

Two `mlkube serve` replicas (the iris ONNX model of mlkube.testing.models,
1 worker each) start once. Each proxy listens twice: in front of the first
replica, and in front of both. wrk (1 thread) sends 1-row POST
/v1/models/iris:predict requests at 1 and at 64 connections to each arm:

  direct   the first replica itself: the baseline, also for 2 replicas
  mlkube   mlkube's balancer process, started as the local controller starts
           it (python -m mlkube.backends.local.balancer) and given its
           routes over its control channel
  haproxy  HAProxy -db, one thread, HTTP mode, server connections reused
  nginx    nginx, daemon off, one worker, HTTP/1.1 upstream keepalive pool

All are plain HTTP/1.1 reverse proxies on 127.0.0.1 with one process or
worker. HAProxy and nginx are Debian packages, installed with apt-get when
missing and we are root; a proxy that cannot be found is skipped.

Per run: req/s; p50 and p99, and what the proxy adds to the direct run of
the same round; the proxy's CPU per request (utime + stime of its process
tree from /proc, over the requests wrk completed); and the share of the
machine's CPU taken by the proxy, the replicas and wrk, beside its idle
share. On 2 cores these compete: CPU the proxy takes is CPU the replicas do
not get, which is how 2 replicas behind a proxy can serve less than one
replica served directly.

Arms are interleaved (their order rotates each round); medians of the
rounds are reported. Writes bench/results/balancer.json (with a "note"
when the machine was not idle) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mlkube.backends.local.balancer.protocol import encode, read_info
from mlkube.backends.local.ports import free_port
from mlkube.testing.models import iris_classifier, save_onnx, write_spec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "balancer.json"
ARMS = ("direct", "mlkube", "haproxy", "nginx")
PROXIES = ARMS[1:]
CONNECTIONS = (1, 64)
REPLICA_SETS = (1, 2)
PATH = "/v1/models/iris:predict"
SHARED_BELOW_IDLE = 90.0  # idle CPU before the run under this: the JSON says it was shared
BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


# the machine ------------------------------------------------------------------------------------
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


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (live ones, and the exited
    children it waited for)."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
    except psutil.NoSuchProcess:
        return 0.0
    return total


def ensure_tool(command: str, package: str) -> str | None:
    """``command``'s path; installed with apt-get when missing and we are root; else None."""
    found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin")
    if found or os.geteuid() != 0:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-q", package],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin")


def version_of(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# the processes ----------------------------------------------------------------------------------
def spawn(command: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )


def end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started (by its PID), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def wait_answering(port: int, what: str, timeout_s: float = 120.0) -> None:
    """Until ``POST PATH`` on ``port`` answers 200."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}",
        data=BODY.encode(),
        headers={"Content-Type": "application/json"},
    )
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} on port {port} never answered 200")


@dataclass
class Proxy:
    """One proxy process listening on one port per replica set."""

    arm: str
    process: subprocess.Popen[bytes]
    ports: dict[int, int]
    """Replica count → the port whose upstreams are that many replicas."""


class BalancerControl:
    """The controller's side of the balancer's control channel (``balancer/protocol.py``),
    synchronous: each op is answered before the next is sent."""

    def __init__(self, port: int, token: str) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._file = self._socket.makefile("rwb")
        self._id = 0
        self.call({"op": "hello", "token": token})

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        self._file.write(encode({"id": self._id, **message}))
        self._file.flush()
        while True:
            answer: dict[str, Any] = json.loads(self._file.readline())
            if "event" not in answer:
                break
        if not answer.get("ok"):
            raise RuntimeError(f"the balancer refused {message['op']}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        self._file.close()
        self._socket.close()


def start_mlkube(work: Path, replicas: list[int]) -> tuple[Proxy, BalancerControl]:
    """The balancer process as the local controller starts it, then its routes."""
    state = work / "mlkube-state"
    state.mkdir()
    process = spawn(
        [sys.executable, "-m", "mlkube.backends.local.balancer", "--state-dir", str(state)],
        work / "mlkube-balancer.log",
    )
    deadline = time.monotonic() + 30
    info = read_info(state)
    while info is None or info.pid != process.pid:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the balancer did not start; see {work / 'mlkube-balancer.log'}")
        time.sleep(0.05)
        info = read_info(state)
    control = BalancerControl(info.port, info.token)
    ports = {}
    for count in REPLICA_SETS:
        key, port = f"bench/iris-{count}", free_port()
        control.call({"op": "serve", "key": key, "host": "127.0.0.1", "port": port})
        backends = [
            {"name": f"r{i}", "port": p, "revision": 1, "draining": False, "grpcPort": 0}
            for i, p in enumerate(replicas[:count])
        ]
        control.call(
            {
                "op": "configure",
                "key": key,
                "backends": backends,
                "weights": {b["name"]: 1.0 for b in backends},
                "headerRule": None,
                "holdS": 10.0,
                "maxBodyBytes": None,
                "requestTimeoutS": None,
            }
        )
        ports[count] = port
    return Proxy("mlkube", process, ports), control


def start_haproxy(binary: str, work: Path, replicas: list[int]) -> Proxy:
    ports = {count: free_port() for count in REPLICA_SETS}
    sections = []
    for count, port in ports.items():
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{p}" for i, p in enumerate(replicas[:count])
        )
        sections.append(
            f"frontend in{count}\n    bind 127.0.0.1:{port}\n    default_backend up{count}\n"
            f"backend up{count}\n    balance roundrobin\n{servers}\n"
        )
    config = work / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(
            """\
            global
                nbthread 1
                maxconn 4096
            defaults
                mode http
                option http-keep-alive
                http-reuse always
                timeout connect 5s
                timeout client 60s
                timeout server 60s
            """
        )
        + "".join(sections)
    )
    process = spawn([binary, "-db", "-f", str(config)], work / "haproxy.log")
    return Proxy("haproxy", process, ports)


def start_nginx(binary: str, work: Path, replicas: list[int]) -> Proxy:
    prefix = work / "nginx"
    for folder in ("logs", "tmp"):
        (prefix / folder).mkdir(parents=True)
    ports = {count: free_port() for count in REPLICA_SETS}
    blocks = []
    for count, port in ports.items():
        servers = " ".join(f"server 127.0.0.1:{p};" for p in replicas[:count])
        blocks.append(
            f"upstream up{count} {{ {servers} keepalive 64; keepalive_requests 1000000; }}\n"
            f"server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up{count}; "
            'proxy_http_version 1.1; proxy_set_header Connection ""; } }\n'
        )
    temp = prefix / "tmp"
    config = prefix / "nginx.conf"
    config.write_text(
        f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n access_log off;\n keepalive_requests 1000000;\n"
        f" client_body_temp_path {temp}/body;\n proxy_temp_path {temp}/proxy;\n"
        f" fastcgi_temp_path {temp}/fastcgi;\n uwsgi_temp_path {temp}/uwsgi;\n"
        f" scgi_temp_path {temp}/scgi;\n" + "".join(blocks) + "}\n"
    )
    process = spawn([binary, "-p", str(prefix), "-c", str(config)], work / "nginx.log")
    return Proxy("nginx", process, ports)


# measuring --------------------------------------------------------------------------------------
def wrk_run(wrk: str, port: int, connections: int, duration: int, lua: Path) -> dict[str, Any]:
    """One wrk run; its text output parsed (totals, p50, p99, errors)."""
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, Any]:
    """Totals, p50, p99 and errors from wrk's ``--latency`` text output."""

    def latency_ms(percent: str) -> float:
        found = re.search(rf"\s{percent}%\s+([\d.]+)(us|ms|s)\b", out)
        if found is None:
            raise RuntimeError(f"no {percent}% latency in wrk's output:\n{out}")
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]

    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if total is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(total.group(1)),
        "rps": float(rps.group(1)),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children: wrk's, read around each run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    wrk: str,
    port: int,
    connections: int,
    duration: int,
    lua: Path,
    proxy_pid: int | None,
    replica_pids: list[int],
) -> dict[str, Any]:
    """One wrk run with the CPU time of the proxy, the replicas, wrk and the machine around it."""
    cpus = os.cpu_count() or 1
    proxy_before = tree_cpu_s(proxy_pid) if proxy_pid else 0.0
    replicas_before = sum(tree_cpu_s(pid) for pid in replica_pids)
    wrk_before = children_cpu_s()
    meter = CpuMeter()
    started = time.monotonic()
    run = wrk_run(wrk, port, connections, duration, lua)
    wall = time.monotonic() - started
    run["idle_percent"] = meter.idle_percent()
    proxy_s = (tree_cpu_s(proxy_pid) - proxy_before) if proxy_pid else 0.0
    replicas_s = sum(tree_cpu_s(pid) for pid in replica_pids) - replicas_before
    wrk_s = children_cpu_s() - wrk_before
    share = 100.0 / (wall * cpus)
    run["proxy_cpu_us_per_request"] = 1e6 * proxy_s / max(run["requests"], 1)
    run["replica_cpu_us_per_request"] = 1e6 * replicas_s / max(run["requests"], 1)
    run["wrk_cpu_us_per_request"] = 1e6 * wrk_s / max(run["requests"], 1)
    run["proxy_cpu_percent"] = proxy_s * share
    run["replicas_cpu_percent"] = replicas_s * share
    run["wrk_cpu_percent"] = wrk_s * share
    return run


@dataclass(frozen=True)
class Setting:
    replicas: int
    connections: int

    @property
    def label(self) -> str:
        return f"{self.replicas} replica{'s' if self.replicas > 1 else ''}, {self.connections} conn"


def settings() -> list[Setting]:
    return [Setting(r, c) for r in REPLICA_SETS for c in CONNECTIONS]


def arms_of(setting: Setting, available: list[str]) -> list[str]:
    """Direct runs go to one replica: they are measured with the 1-replica settings."""
    return [a for a in available if a != "direct" or setting.replicas == 1]


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    summary: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    summary["non_2xx"] = sum(r["non_2xx"] for r in runs)
    summary["socket_errors"] = [r["socket_errors"] for r in runs if r["socket_errors"]]
    summary["rounds"] = len(runs)
    return summary


def summarise(runs: dict[tuple[Setting, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per setting and arm, with what each proxy adds to the direct runs (the direct
    run of the same connection count: one replica, no proxy)."""
    table: dict[str, Any] = {}
    for (setting, arm), arm_runs in runs.items():
        row = medians(arm_runs)
        direct_runs = runs.get((Setting(1, setting.connections), "direct"))
        if direct_runs and arm != "direct":
            direct = medians(direct_runs)
            row["vs_direct_rps"] = row["rps"] / direct["rps"]
            # Added latency per round (the same round's direct run), then the median.
            pairs = list(zip(arm_runs, direct_runs, strict=False))
            row["added_p50_ms"] = statistics.median(a["p50_ms"] - d["p50_ms"] for a, d in pairs)
            row["added_p99_ms"] = statistics.median(a["p99_ms"] - d["p99_ms"] for a, d in pairs)
        table.setdefault(setting.label, {})[arm] = row
    return table


def capacity(table: dict[str, Any], cpus: int) -> dict[str, Any]:
    """The CPU budget at 64 connections, a model of an idle machine from measured costs.

    Per request: CPU of the replicas, the proxy and wrk. ``cpus`` idle cores could sustain
    ``cpus`` s of CPU a second, and each replica (one worker, one thread) at most one core:
    the ceiling is the lower of the two. ``vs_direct`` compares it with the direct ceiling,
    which is how a proxy in front of 2 replicas can end below 1 replica served directly.
    """
    budget: dict[str, Any] = {}
    connections = CONNECTIONS[-1]
    for setting in (Setting(1, connections), Setting(2, connections)):
        for arm, row in table.get(setting.label, {}).items():
            replica = row["replica_cpu_us_per_request"]
            total = replica + row["proxy_cpu_us_per_request"] + row["wrk_cpu_us_per_request"]
            ceiling = min(cpus * 1e6 / total, setting.replicas * 1e6 / replica) if replica else 0.0
            budget[f"{arm}, {setting.replicas} replica(s)"] = {
                "replica_us": replica,
                "proxy_us": row["proxy_cpu_us_per_request"],
                "wrk_us": row["wrk_cpu_us_per_request"],
                "idle_machine_ceiling_rps": ceiling,
            }
    direct = budget.get("direct, 1 replica(s)", {}).get("idle_machine_ceiling_rps")
    for row in budget.values():
        row["vs_direct"] = row["idle_machine_ceiling_rps"] / direct if direct else None
    return budget


def print_capacity(budget: dict[str, Any], cpus: int) -> None:
    print(f"\nCPU per request at 64 conn (us); what {cpus} idle cores could serve at that cost")
    print(
        f"{'arm, replicas':<24}{'replica':>8}{'proxy':>7}{'wrk':>6}{'ceiling req/s':>15}"
        f"{'x direct':>10}"
    )
    for name, row in budget.items():
        ratio = f"{row['vs_direct']:.2f}" if row["vs_direct"] is not None else "-"
        print(
            f"{name:<24}{row['replica_us']:>8.0f}{row['proxy_us']:>7.0f}{row['wrk_us']:>6.0f}"
            f"{row['idle_machine_ceiling_rps']:>15.0f}{ratio:>10}"
        )


def reprint(path: Path) -> None:
    """Print the tables of a written JSON again (its CPU budget recomputed and kept)."""
    report = json.loads(path.read_text())
    cpus = int(report["machine"]["cpus"])
    print_table(report["results"])
    report["cpu_budget_64_connections"] = budget = capacity(report["results"], cpus)
    print_capacity(budget, cpus)
    path.write_text(json.dumps(report, indent=2) + "\n")


def print_table(table: dict[str, Any]) -> None:
    header = (
        f"{'arm':<8}{'req/s':>7}{'x dir':>6}{'p50':>6}{'+p50':>6}{'p99':>7}{'+p99':>7}"
        f"{'us/req':>7}{'proxy%':>7}{'repl%':>6}{'wrk%':>5}{'idle%':>6}"
    )
    print("latency in ms; us/req: proxy CPU per request; %: of the machine's CPU")
    for label, arms in table.items():
        print(f"\n{label}\n{header}")
        for arm, row in arms.items():
            ratio = f"{row['vs_direct_rps']:.2f}" if "vs_direct_rps" in row else "1"
            added50 = f"{row['added_p50_ms']:+.2f}" if "added_p50_ms" in row else "-"
            added99 = f"{row['added_p99_ms']:+.1f}" if "added_p99_ms" in row else "-"
            cost = f"{row['proxy_cpu_us_per_request']:.0f}" if arm != "direct" else "-"
            print(
                f"{arm:<8}{row['rps']:>7.0f}{ratio:>6}{row['p50_ms']:>6.2f}{added50:>6}"
                f"{row['p99_ms']:>7.1f}{added99:>7}{cost:>7}{row['proxy_cpu_percent']:>7.0f}"
                f"{row['replicas_cpu_percent']:>6.0f}{row['wrk_cpu_percent']:>5.0f}"
                f"{row['idle_percent']:>6.0f}"
            )


def profile_balancer(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` on the balancer for one run (its sampling costs CPU: figures of a
    profiled run are marked)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    command += ["--nonblocking", "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="A run takes about 14 x rounds x (duration + 1) s, plus ~30 s to start.\n"
        "Read ratios and CPU per request, not absolute req/s: other work on the\n"
        "machine moves those (its idle CPU before and during is recorded).",
    )
    parser.add_argument("--duration", type=int, default=7, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians kept")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s runs (smoke test)")
    parser.add_argument(
        "--idle-sample",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds the machine's idle CPU is read for before the run",
    )
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="measure at once (a smoke test of the bench itself: no 1 s run per path first)",
    )
    parser.add_argument(
        "--arms",
        default=",".join(ARMS),
        help=f"comma-separated subset of {','.join(ARMS)} (direct is always run)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON written")
    parser.add_argument("--note", default="", help="a note kept in the JSON")
    parser.add_argument(
        "--reprint",
        action="store_true",
        help="measure nothing: print the tables of --output's JSON again",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile mlkube's balancer with py-spy in round 1's 64-connection runs",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 2, 1
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm {unknown[0]!r}; known: {', '.join(ARMS)}")
    return args


def find_proxies(wanted: list[str]) -> dict[str, str]:
    """HAProxy's and nginx's binaries, of those wanted (installed when missing and root)."""
    binaries: dict[str, str] = {}
    for arm, package in (("haproxy", "haproxy"), ("nginx", "nginx-light")):
        if arm in wanted:
            found = ensure_tool(arm, package)
            if found is None:
                print(f"{arm} not found and not installable here: its arms are skipped")
            else:
                binaries[arm] = found
    return binaries


@dataclass
class Bench:
    """Everything started for one benchmark run, and the ports to send load to."""

    wrk: str
    lua: Path
    replica_pids: list[int]
    proxies: dict[str, Proxy]
    ports: dict[tuple[int, str], int]
    """(replica count, arm) → the port."""
    available: list[str]

    def warm_up(self) -> None:
        """Every path once (pools filled, caches hot) before anything is measured."""
        for setting in settings():
            for arm in arms_of(setting, self.available):
                port = self.ports[(setting.replicas, arm)]
                wrk_run(self.wrk, port, setting.connections, 1, self.lua)

    def run(self, setting: Setting, arm: str, duration: int, spy_to: Path | None) -> dict[str, Any]:
        proxy = self.proxies.get(arm)
        spy = None
        if spy_to is not None and proxy is not None:
            spy_to.mkdir(parents=True, exist_ok=True)
            out = spy_to / f"{arm}-{setting.replicas}-replicas.txt"
            spy = profile_balancer(proxy.process.pid, duration, out)
        run = measure(
            self.wrk,
            self.ports[(setting.replicas, arm)],
            setting.connections,
            duration,
            self.lua,
            proxy.process.pid if proxy else None,
            self.replica_pids[: setting.replicas],
        )
        if spy is not None:
            spy.wait(timeout=60)
            run["profiled"] = 1
        return run


def start(
    work: Path, wrk: str, available: list[str], binaries: dict[str, str], started: list[Any]
) -> tuple[Bench, BalancerControl | None]:
    """The replicas, then every proxy in front of them; each process is appended to
    ``started`` as soon as it runs (the caller ends them)."""
    spec = write_spec(save_onnx(iris_classifier(), work, "iris"), work, name="iris")
    lua = work / "post.lua"
    lua.write_text(LUA)
    replica_ports = [free_port() for _ in range(max(REPLICA_SETS))]
    for i, port in enumerate(replica_ports):
        command = [sys.executable, "-m", "mlkube", "serve", str(spec)]
        command += ["--port", str(port), "--workers", "1"]
        started.append(spawn(command, work / f"replica-{i}.log"))
    replica_pids = [p.pid for p in started]
    for port in replica_ports:
        wait_answering(port, "a replica")
    proxies: dict[str, Proxy] = {}
    control = None
    for arm in available[1:]:
        if arm == "mlkube":
            proxies[arm], control = start_mlkube(work, replica_ports)
        elif arm == "haproxy":
            proxies[arm] = start_haproxy(binaries[arm], work, replica_ports)
        else:
            proxies[arm] = start_nginx(binaries[arm], work, replica_ports)
        started.append(proxies[arm].process)
    ports: dict[tuple[int, str], int] = {(1, "direct"): replica_ports[0]}
    for arm, proxy in proxies.items():
        for count, port in proxy.ports.items():
            wait_answering(port, arm)
            ports[(count, arm)] = port
    return Bench(wrk, lua, replica_pids, proxies, ports, available), control


def run_rounds(
    bench: Bench, args: argparse.Namespace
) -> dict[tuple[Setting, str], list[dict[str, Any]]]:
    """Every setting and arm, ``args.rounds`` times; the arms' order rotates each round."""
    runs: dict[tuple[Setting, str], list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        for setting in settings():
            arms = arms_of(setting, bench.available)
            shift = round_index % len(arms)
            for arm in arms[shift:] + arms[:shift]:
                profile = (
                    arm == "mlkube" and round_index == 0 and setting.connections == CONNECTIONS[-1]
                )
                run = bench.run(setting, arm, args.duration, args.py_spy if profile else None)
                runs.setdefault((setting, arm), []).append(run)
                print(
                    f"round {round_index + 1} {setting.label:<20} {arm:<8}{run['rps']:>8.0f} req/s",
                    flush=True,
                )
    return runs


def main() -> None:
    args = parse_args()
    if args.reprint:
        reprint(args.output)
        return
    wrk = ensure_tool("wrk", "wrk")
    if wrk is None:
        sys.exit("wrk is needed: apt-get install wrk")
    binaries = find_proxies(args.arms)
    # The direct runs are the baseline: always there; a proxy not found is skipped.
    wanted = {"direct", *binaries, *(["mlkube"] if "mlkube" in args.arms else [])}
    available = [a for a in ARMS if a in wanted]
    idle_meter = CpuMeter()
    time.sleep(args.idle_sample)
    idle_before = idle_meter.idle_percent()
    load_before = os.getloadavg()
    started: list[subprocess.Popen[bytes]] = []
    control: BalancerControl | None = None
    with tempfile.TemporaryDirectory(prefix="mlkube-bench-balancer-") as folder:
        try:
            bench, control = start(Path(folder), wrk, available, binaries, started)
            if args.warm_up:
                bench.warm_up()
            meter = CpuMeter()
            runs = run_rounds(bench, args)
            idle_during = meter.idle_percent()
            counters = control.call({"op": "stats"})["routers"] if control else {}
        finally:
            if control is not None:
                control.close()
            for process in reversed(started):
                end(process)
    table = summarise(runs)
    print()
    print_table(table)
    cpus = os.cpu_count() or 1
    budget = capacity(table, cpus)
    print_capacity(budget, cpus)
    notes = [args.note] if args.note else []
    if idle_before < SHARED_BELOW_IDLE:
        notes.append(
            f"shared machine: {idle_before:.0f}% idle before the run (load average "
            f"{load_before[0]:.1f}); noisy figures, rerun on an idle machine to quote them"
        )
    if args.py_spy and "mlkube" in available:
        notes.append("py-spy sampled the balancer in round 1's 64-connection runs")
    report: dict[str, Any] = {"note": "; ".join(notes)} if notes else {}
    report.update(
        {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "idle_percent_before": idle_before,
                "idle_percent_during": idle_during,
                "load_average_before": load_before,
            },
            "wrk": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "warmed_up": args.warm_up,
                "threads": 1,
                "request": f"POST {PATH}, one iris row (ONNX), 1 replica worker each",
            },
            "versions": {arm: version_of([path, "-v"]) for arm, path in binaries.items()},
            "results": table,
            "cpu_budget_64_connections": budget,
            "balancer_counters": {
                key: {k: v for k, v in value.items() if k != "latencyCounts"}
                for key, value in counters.items()
            },
            "runs": [
                {"setting": setting.label, "arm": arm, "runs": arm_runs}
                for (setting, arm), arm_runs in runs.items()
            ],
        }
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
