"""Every metric a replica exports: names, types, units, labels, meaning. The catalogue.

Names follow Prometheus rules (``mlkube_<noun>_<unit>``, ``_total`` on counters, base units).
Labels stay bounded: model, revision, protocol and status code, never request ids or raw paths.
Nothing registers on the global registry: ``ServerMetrics(registry)`` builds everything, so
tests use a fresh registry. State-shaped gauges (in-flight, queue depth, readiness) are read at
scrape time by a collector, so the hot path only increments counters and observes histograms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Inference latency spans sub-millisecond tabular models to multi-second generative ones.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One catalogue entry."""

    name: str
    type: str
    unit: str
    labels: tuple[str, ...]
    help: str


REPLICA_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "mlkube_requests_total",
        "counter",
        "requests",
        ("model", "revision", "protocol", "code"),
        "Inference and metadata requests answered, by HTTP status code.",
    ),
    MetricInfo(
        "mlkube_request_duration_seconds",
        "histogram",
        "seconds",
        ("model", "revision", "protocol"),
        "Time from a request's last byte received to its response written.",
    ),
    MetricInfo(
        "mlkube_batch_size",
        "histogram",
        "rows",
        ("model", "revision"),
        "Rows per predict call after adaptive batching.",
    ),
    MetricInfo(
        "mlkube_batch_requests",
        "histogram",
        "requests",
        ("model", "revision"),
        "Requests merged into one predict call.",
    ),
    MetricInfo(
        "mlkube_predict_duration_seconds",
        "histogram",
        "seconds",
        ("model", "revision"),
        "Duration of one predict call on a merged batch.",
    ),
    MetricInfo(
        "mlkube_queue_wait_seconds",
        "histogram",
        "seconds",
        ("model", "revision"),
        "Time a request waited in the batching queue before its predict call began.",
    ),
    MetricInfo(
        "mlkube_predict_errors_total",
        "counter",
        "requests",
        ("model", "revision"),
        "Requests the model failed on when predicted alone (a failed merged batch is "
        "predicted again in halves, so batch-mates still get their answers).",
    ),
    MetricInfo(
        "mlkube_predict_fixed_seconds",
        "gauge",
        "seconds",
        ("model", "revision"),
        "The batcher's estimate of a predict call's fixed cost, whatever its rows (timed at "
        "warm-up, then followed from real calls); the batcher merges and waits by it.",
    ),
    MetricInfo(
        "mlkube_predict_row_seconds",
        "gauge",
        "seconds",
        ("model", "revision"),
        "The batcher's estimate of a predict call's cost per row, on top of the fixed cost.",
    ),
    MetricInfo(
        "mlkube_queue_depth",
        "gauge",
        "requests",
        ("model", "revision"),
        "Requests waiting in the batching queue.",
    ),
    MetricInfo(
        "mlkube_in_flight_requests",
        "gauge",
        "requests",
        ("model", "revision"),
        "Prediction requests received and not yet answered (the concurrency autoscalers use);"
        " probes and scrapes are not counted.",
    ),
    MetricInfo(
        "mlkube_model_ready",
        "gauge",
        "boolean",
        ("model", "revision"),
        "1 when the model is loaded, warmed up and the server accepts requests.",
    ),
    MetricInfo(
        "mlkube_model_load_seconds",
        "gauge",
        "seconds",
        ("model", "revision"),
        "Time the model took to load and answer its warm-up prediction.",
    ),
)


_HELP = {m.name: m.help for m in REPLICA_METRICS}
_STATE_GAUGES = (
    "mlkube_in_flight_requests",
    "mlkube_queue_depth",
    "mlkube_model_ready",
    "mlkube_model_load_seconds",
)


class _StateCollector(Collector):
    """Reads in-flight, queue depth and readiness when Prometheus scrapes."""

    def __init__(self, labels: tuple[str, str], state: Callable[[], tuple[int, int, bool, float]]):
        self._labels = list(labels)
        self._state = state

    def describe(self) -> Iterator[Metric]:
        for name in _STATE_GAUGES:
            yield GaugeMetricFamily(name, _HELP[name], labels=["model", "revision"])

    def collect(self) -> Iterator[Metric]:
        in_flight, queue_depth, ready, load_s = self._state()
        for name, value in (
            ("mlkube_in_flight_requests", in_flight),
            ("mlkube_queue_depth", queue_depth),
            ("mlkube_model_ready", 1.0 if ready else 0.0),
            ("mlkube_model_load_seconds", load_s),
        ):
            family = GaugeMetricFamily(name, _HELP[name], labels=["model", "revision"])
            family.add_metric(self._labels, float(value))
            yield family


class ServerMetrics:
    """The metrics of one replica process for one model."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        model: str,
        revision: str,
        state: Callable[[], tuple[int, int, bool, float]],
    ) -> None:
        # *_created series double the series count and no dashboard or alert of ours uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self._model = model
        self._revision = revision
        help_of = {m.name: m.help for m in REPLICA_METRICS}
        self._requests = Counter(
            "mlkube_requests",
            help_of["mlkube_requests_total"],
            ["model", "revision", "protocol", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "mlkube_request_duration_seconds",
            help_of["mlkube_request_duration_seconds"],
            ["model", "revision", "protocol"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        labels = (model, revision)
        self._batch_rows = Histogram(
            "mlkube_batch_size",
            help_of["mlkube_batch_size"],
            ["model", "revision"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        ).labels(*labels)
        self._batch_requests = Histogram(
            "mlkube_batch_requests",
            help_of["mlkube_batch_requests"],
            ["model", "revision"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        ).labels(*labels)
        self._predict = Histogram(
            "mlkube_predict_duration_seconds",
            help_of["mlkube_predict_duration_seconds"],
            ["model", "revision"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        ).labels(*labels)
        self._queue_wait = Histogram(
            "mlkube_queue_wait_seconds",
            help_of["mlkube_queue_wait_seconds"],
            ["model", "revision"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        ).labels(*labels)
        self._predict_errors = Counter(
            "mlkube_predict_errors",
            help_of["mlkube_predict_errors_total"],
            ["model", "revision"],
            registry=registry,
        ).labels(*labels)
        self._fixed_cost = Gauge(
            "mlkube_predict_fixed_seconds",
            help_of["mlkube_predict_fixed_seconds"],
            ["model", "revision"],
            registry=registry,
        ).labels(*labels)
        self._row_cost = Gauge(
            "mlkube_predict_row_seconds",
            help_of["mlkube_predict_row_seconds"],
            ["model", "revision"],
            registry=registry,
        ).labels(*labels)
        registry.register(_StateCollector(labels, state))
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}

    def request_done(self, protocol: str, code: int, seconds: float) -> None:
        key = (protocol, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._requests.labels(self._model, self._revision, protocol, str(code))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get(protocol)
        if histogram is None:
            histogram = self._duration.labels(self._model, self._revision, protocol)
            self._duration_children[protocol] = histogram
        histogram.observe(seconds)

    # BatchObserver
    def batch_done(self, *, rows: int, requests: int, predict_s: float) -> None:
        self._batch_rows.observe(rows)
        self._batch_requests.observe(requests)
        self._predict.observe(predict_s)

    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def predict_failed(self) -> None:
        self._predict_errors.inc()

    def cost_estimated(self, *, fixed_s: float, per_row_s: float) -> None:
        self._fixed_cost.set(fixed_s)
        self._row_cost.set(per_row_s)
