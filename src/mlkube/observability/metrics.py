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

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlkube.observability.request_metrics import (
    CounterChild,
    CounterFamily,
    HistogramChild,
    HistogramFamily,
)

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
        "Inference and metadata requests answered, by HTTP status code (gRPC calls: "
        "protocol grpc-v1 or grpc-v2, and the status REST gives the same answer).",
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


ModelState = tuple[int, int, bool, float]
"""In flight, queue depth, ready, load seconds: one model's state gauges."""


class _StateCollector(Collector):
    """Reads in-flight, queue depth and readiness when Prometheus scrapes."""

    def __init__(
        self,
        labels: tuple[str, str],
        state: Callable[[], ModelState],
        models: Callable[[], dict[str, ModelState]] | None = None,
    ):
        self._labels = list(labels)
        self._state = state
        self._models = models

    def describe(self) -> Iterator[Metric]:
        for name in _STATE_GAUGES:
            yield GaugeMetricFamily(name, _HELP[name], labels=["model", "revision"])

    def collect(self) -> Iterator[Metric]:
        states = {self._labels[0]: self._state()} if self._models is None else self._models()
        families = {
            name: GaugeMetricFamily(name, _HELP[name], labels=["model", "revision"])
            for name in _STATE_GAUGES
        }
        for model, (in_flight, queue_depth, ready, load_s) in states.items():
            labels = [model, self._labels[1]]
            for name, value in (
                ("mlkube_in_flight_requests", in_flight),
                ("mlkube_queue_depth", queue_depth),
                ("mlkube_model_ready", 1.0 if ready else 0.0),
                ("mlkube_model_load_seconds", load_s),
            ):
                families[name].add_metric(labels, float(value))
        yield from families.values()


class ServerMetrics:
    """The metrics of one replica process, labelled by model (``model`` is the first one:
    the label of whatever names no model this replica serves).

    A replica serving several models passes ``models``: each model's state gauges at scrape
    time; ``observer(name)`` gives each model's batcher its own labelled histograms."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        model: str,
        revision: str,
        state: Callable[[], ModelState],
        models: Callable[[], dict[str, ModelState]] | None = None,
    ) -> None:
        # *_created series double the series count and no dashboard or alert of ours uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self._model = model
        self._revision = revision
        help_of = {m.name: m.help for m in REPLICA_METRICS}
        # What every request and batch updates: our own plain-number families (see
        # request_metrics), exported through this registry like the library's own.
        self._requests = CounterFamily(
            "mlkube_requests",
            help_of["mlkube_requests_total"],
            ["model", "revision", "protocol", "code"],
        )
        self._duration = HistogramFamily(
            "mlkube_request_duration_seconds",
            help_of["mlkube_request_duration_seconds"],
            ["model", "revision", "protocol"],
            LATENCY_BUCKETS_S,
        )
        labels = (model, revision)
        self._batch_rows_family = HistogramFamily(
            "mlkube_batch_size",
            help_of["mlkube_batch_size"],
            ["model", "revision"],
            BATCH_SIZE_BUCKETS,
        )
        self._batch_requests_family = HistogramFamily(
            "mlkube_batch_requests",
            help_of["mlkube_batch_requests"],
            ["model", "revision"],
            BATCH_SIZE_BUCKETS,
        )
        self._predict_family = HistogramFamily(
            "mlkube_predict_duration_seconds",
            help_of["mlkube_predict_duration_seconds"],
            ["model", "revision"],
            LATENCY_BUCKETS_S,
        )
        self._queue_wait_family = HistogramFamily(
            "mlkube_queue_wait_seconds",
            help_of["mlkube_queue_wait_seconds"],
            ["model", "revision"],
            LATENCY_BUCKETS_S,
        )
        self._predict_errors_family = CounterFamily(
            "mlkube_predict_errors",
            help_of["mlkube_predict_errors_total"],
            ["model", "revision"],
        )
        for family in (
            self._requests,
            self._duration,
            self._batch_rows_family,
            self._batch_requests_family,
            self._predict_family,
            self._queue_wait_family,
            self._predict_errors_family,
        ):
            registry.register(family)
        self._fixed_cost_family = Gauge(
            "mlkube_predict_fixed_seconds",
            help_of["mlkube_predict_fixed_seconds"],
            ["model", "revision"],
            registry=registry,
        )
        self._row_cost_family = Gauge(
            "mlkube_predict_row_seconds",
            help_of["mlkube_predict_row_seconds"],
            ["model", "revision"],
            registry=registry,
        )
        registry.register(_StateCollector(labels, state, models))
        self._request_children: dict[tuple[str, str, int], CounterChild] = {}
        self._duration_children: dict[tuple[str, str], HistogramChild] = {}
        self._observers: dict[str, ModelBatchMetrics] = {}
        self._first = self.observer(model)

    def observer(self, model: str) -> ModelBatchMetrics:
        """The batch metrics of ``model`` (a batcher's observer), made once per model."""
        observer = self._observers.get(model)
        if observer is None:
            labels = (model, self._revision)
            observer = ModelBatchMetrics(
                self._batch_rows_family.labels(*labels),
                self._batch_requests_family.labels(*labels),
                self._predict_family.labels(*labels),
                self._queue_wait_family.labels(*labels),
                self._predict_errors_family.labels(*labels),
                self._fixed_cost_family.labels(*labels),
                self._row_cost_family.labels(*labels),
            )
            self._observers[model] = observer
        return observer

    def request_done(
        self, protocol: str, code: int, seconds: float, *, model: str | None = None
    ) -> None:
        model = model or self._model
        key = (model, protocol, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._requests.labels(model, self._revision, protocol, str(code))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get((model, protocol))
        if histogram is None:
            histogram = self._duration.labels(model, self._revision, protocol)
            self._duration_children[(model, protocol)] = histogram
        histogram.observe(seconds)

    # BatchObserver (of the first model)
    def batch_done(self, *, rows: int, requests: int, predict_s: float) -> None:
        self._first.batch_done(rows=rows, requests=requests, predict_s=predict_s)

    def queue_wait(self, seconds: float) -> None:
        self._first.queue_wait(seconds)

    def predict_failed(self) -> None:
        self._first.predict_failed()

    def cost_estimated(self, *, fixed_s: float, per_row_s: float) -> None:
        self._first.cost_estimated(fixed_s=fixed_s, per_row_s=per_row_s)


@dataclass(frozen=True, slots=True)
class ModelBatchMetrics:
    """One model's batch histograms, error counter and cost estimates: the observer of its
    batchers."""

    rows: HistogramChild
    requests: HistogramChild
    predict: HistogramChild
    wait: HistogramChild
    errors: CounterChild
    fixed_cost: Gauge
    row_cost: Gauge

    def batch_done(self, *, rows: int, requests: int, predict_s: float) -> None:
        self.rows.observe(rows)
        self.requests.observe(requests)
        self.predict.observe(predict_s)

    def queue_wait(self, seconds: float) -> None:
        self.wait.observe(seconds)

    def predict_failed(self) -> None:
        self.errors.inc()

    def cost_estimated(self, *, fixed_s: float, per_row_s: float) -> None:
        self.fixed_cost.set(fixed_s)
        self.row_cost.set(per_row_s)
