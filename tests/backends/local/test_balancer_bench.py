"""``bench/balancer.py`` (the README's balancer-cost benchmark) runs every arm it can and
records what each proxy costs; the assertions are about what it records, never times."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).parents[3] / "bench" / "balancer.py"

# wrk 4.2's text output for `wrk -t1 -c2 -d1s --latency URL`, captured on this machine.
WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.08ms    8.41ms  56.28ms   88.80%
    Req/Sec   221.90     39.24   310.00     80.00%
  Latency Distribution
     50%  753.00us
     75%   11.32ms
     90%   19.71ms
     99%    1.17s
  222 requests in 1.01s, 2.24MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    219.52
Transfer/sec:      2.21MB
"""


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_balancer", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_wrk_output_is_read_with_its_units() -> None:
    run = load_bench().parse_wrk(WRK_OUTPUT)
    assert run == {
        "requests": 222,
        "rps": 219.52,
        "p50_ms": pytest.approx(0.753),
        "p99_ms": pytest.approx(1170.0),
        "non_2xx": 3,
        "socket_errors": "",
    }


def test_wrk_output_without_totals_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        load_bench().parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_help_teaches_the_arms_within_80_columns() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, check=True
    )
    for arm in ("direct", "mlkube", "haproxy", "nginx", "--quick"):
        assert arm in done.stdout
    assert max(map(len, done.stdout.splitlines())) <= 80


def test_an_unknown_arm_is_one_readable_line() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--arms", "envoy"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown arm 'envoy'; known: direct, mlkube, haproxy, nginx" in done.stderr


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_quick_run_measures_every_arm_it_can(run_bench: Callable[..., Any]) -> None:
    # HAProxy and nginx join when installed; the test never installs them.
    arms = ["direct", "mlkube"]
    arms += [a for a in ("haproxy", "nginx") if shutil.which(a, path="/usr/sbin:/usr/bin")]
    done = run_bench(
        "balancer.py",
        *("--duration", "1", "--rounds", "1", "--no-warm-up", "--idle-sample", "0.2"),
        *("--arms", ",".join(arms)),
        timeout_s=600,
    )
    report = done.report
    assert set(report["results"]) == {
        "1 replica, 1 conn",
        "1 replica, 64 conn",
        "2 replicas, 1 conn",
        "2 replicas, 64 conn",
    }
    for label, row in report["results"].items():
        expected = arms if label.startswith("1 ") else arms[1:]
        assert list(row) == expected, label
        for arm, figures in row.items():
            assert figures["non_2xx"] == 0, (label, arm)
            assert figures["requests"] > 0, (label, arm)
            if arm != "direct":
                assert figures["proxy_cpu_us_per_request"] > 0, (label, arm)
                assert "added_p99_ms" in figures and "vs_direct_rps" in figures
    # Our balancer counted what wrk sent through it: both routers, nothing failed.
    counters = report["balancer_counters"]
    assert set(counters) == {"bench/iris-1", "bench/iris-2"}
    assert all(c["requests"] > 0 and c["failed"] == 0 for c in counters.values())
    assert set(counters["bench/iris-2"]["backends"]) == {"r0", "r1"}
    assert "idle_percent_before" in report["machine"]
    assert report["wrk"]["warmed_up"] is False
    budget = report["cpu_budget_64_connections"]
    assert set(budget) == {f"{a}, 1 replica(s)" for a in arms} | {
        f"{a}, 2 replica(s)" for a in arms[1:]
    }
    assert all(
        row["replica_us"] > 0 and row["idle_machine_ceiling_rps"] > 0 for row in budget.values()
    )
    again = subprocess.run(
        [sys.executable, str(BENCH), "--reprint", "--output", str(done.output)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "x direct" in again.stdout and "mlkube, 2 replica(s)" in again.stdout
    table = [line for line in done.stdout.splitlines() if not line.startswith("wrote ")]
    assert max(map(len, table)) <= 80  # the output file's path is the caller's
