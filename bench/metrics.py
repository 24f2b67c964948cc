"""Micro-benchmark: the metric updates of one answered request, prometheus_client against ours.

    python bench/metrics.py [--repeats 7] [--seconds 0.05]

A replica updates, for every request it answers alone (one request, one predict call), one
counter (``mlkube_requests_total``) and five histograms (request duration, batch rows, batch
requests, predict duration, queue wait). Both arms make exactly those updates on children
looked up once, as the server holds them:

- ``prometheus_client``: the library's ``Counter``/``Histogram`` children (a lock per update,
  a Python walk over the buckets);
- ``mlkube``: ``mlkube.observability.request_metrics`` (``bisect`` and two additions), which
  the server uses and which exports the same text (a test compares them).

Arms take turns within every repeat and the fastest repeat counts, so load from other
processes hits them alike. The ratio is prometheus_client ÷ mlkube in the same run (>1: ours is
cheaper). Writes bench/results/metrics.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import timeit
from collections.abc import Callable
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram

from mlkube.observability.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_S
from mlkube.observability.request_metrics import CounterFamily, HistogramFamily

ROOT = Path(__file__).resolve().parent.parent
# Values a fast model's lone request gives: a 0.2 ms request, one row, a 40 µs predict call.
REQUEST_S = 0.0002
PREDICT_S = 0.00004
WAIT_S = 0.0


def library_arm() -> Callable[[], None]:
    registry = CollectorRegistry()
    labels = ("m", "1")
    answered = Counter("a", "h", ["model", "revision", "code"], registry=registry)
    answered_child = answered.labels(*labels, "200")
    latency = [
        Histogram(name, "h", ["model", "revision"], buckets=LATENCY_BUCKETS_S, registry=registry)
        for name in ("d", "p", "w")
    ]
    sizes = [
        Histogram(name, "h", ["model", "revision"], buckets=BATCH_SIZE_BUCKETS, registry=registry)
        for name in ("r", "q")
    ]
    duration, predict, wait = (h.labels(*labels) for h in latency)
    rows, requests = (h.labels(*labels) for h in sizes)

    def one_request() -> None:
        wait.observe(WAIT_S)
        rows.observe(1)
        requests.observe(1)
        predict.observe(PREDICT_S)
        answered_child.inc()
        duration.observe(REQUEST_S)

    return one_request


def our_arm() -> Callable[[], None]:
    labels = ("m", "1")
    answered = CounterFamily("a", "h", ["model", "revision", "code"]).labels(*labels, "200")
    duration, predict, wait = (
        HistogramFamily(name, "h", ["model", "revision"], LATENCY_BUCKETS_S).labels(*labels)
        for name in ("d", "p", "w")
    )
    rows, requests = (
        HistogramFamily(name, "h", ["model", "revision"], BATCH_SIZE_BUCKETS).labels(*labels)
        for name in ("r", "q")
    )

    def one_request() -> None:
        wait.observe(WAIT_S)
        rows.observe(1)
        requests.observe(1)
        predict.observe(PREDICT_S)
        answered.inc()
        duration.observe(REQUEST_S)

    return one_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="turns per arm (fastest counts)")
    parser.add_argument("--seconds", type=float, default=0.05, help="length of one turn")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/metrics.json")
    args = parser.parse_args()
    busy = psutil.cpu_percent(interval=1.0)
    arms = {"prometheus_client": library_arm(), "mlkube": our_arm()}
    numbers = {name: timeit.Timer(call).autorange()[0] for name, call in arms.items()}
    numbers = {
        name: max(1, int(n * args.seconds / 0.2)) for name, n in numbers.items()
    }  # autorange aims at 0.2 s
    best = {name: float("inf") for name in arms}
    for _ in range(args.repeats):
        for name, call in arms.items():
            elapsed = timeit.Timer(call).timeit(numbers[name]) / numbers[name] * 1e6
            best[name] = min(best[name], elapsed)
    idle = round(100 - busy, 1)
    ratio = best["prometheus_client"] / best["mlkube"]
    report = {
        "machine": {"cpus": os.cpu_count(), "idle_cpu_percent_before": idle},
        "settings": {"repeats": args.repeats, "seconds": args.seconds},
        "measured": "1 counter increment + 5 histogram observations (one request's updates)",
        "table": [{"arm": name, "us_per_request": round(us, 3)} for name, us in best.items()],
        "library_over_ours": round(ratio, 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"idle CPU before: {idle}%")
    print(f"{'arm':<20}{'µs/request':>12}")
    for name, us in best.items():
        print(f"{name:<20}{us:>12.3f}")
    print(f"prometheus_client ÷ mlkube: {ratio:.2f}×")


if __name__ == "__main__":
    main()
