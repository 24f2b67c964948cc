"""The catalogue: Prometheus naming rules, bounded labels, and docs/metrics.md kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlkube.observability.catalogue import (
    CATALOGUE,
    base_name,
    render_markdown,
    series_names,
)

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"
BOUNDED_LABELS = {
    "model",
    "revision",
    "protocol",
    "code",
    "namespace",
    "deployment",
    "job",
    "phase",
    "input",
    "direction",
    "reason",
    "role",
    "gpu",
    "pipeline",
    "cache",
}
UNITS = (
    "_seconds",
    "_bytes",
    "_ratio",
    "_total",
    "_replicas",
    "_size",
    "_requests",
    "_depth",
    "_ready",
    "_weight_ratio",
    "_fds",
    "_revision",
    "_phase",
    "_value",
)


def test_docs_metrics_md_is_generated_from_the_code():
    assert DOCS.read_text() == render_markdown(), (
        "docs/metrics.md drifted: run `mlkube metrics-catalogue -o docs/metrics.md`"
    )


def test_names_are_unique_and_follow_prometheus_rules():
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    for metric in CATALOGUE:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", metric.name), metric.name
        assert metric.name.startswith(("mlkube_", "process_")), metric.name
        assert metric.type in {"counter", "gauge", "histogram"}
        assert metric.name.endswith("_total") == (metric.type == "counter"), metric.name
        assert metric.name.endswith(UNITS), metric.name
        assert metric.help.endswith("."), metric.name


def test_labels_are_bounded():
    for metric in CATALOGUE:
        assert set(metric.labels) <= BOUNDED_LABELS, metric.name
        assert "le" not in metric.labels and "quantile" not in metric.labels


@pytest.mark.parametrize(
    ("series", "base"),
    [
        ("mlkube_request_duration_seconds_bucket", "mlkube_request_duration_seconds"),
        ("mlkube_batch_size_count", "mlkube_batch_size"),
        ("mlkube_requests_total", "mlkube_requests_total"),
        ("process_resident_memory_bytes", "process_resident_memory_bytes"),
        ("mlkube_requests_total_bucket", None),
        ("up", None),
        ("node_cpu_seconds_total", None),
    ],
)
def test_base_name(series, base):
    assert base_name(series) == base
    assert (series in series_names()) == (base is not None)


def test_the_replica_really_exports_the_replica_and_process_sections():
    """A replica's registry, built as the server builds it, exports what the catalogue says."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.process_collector import ProcessCollector

    from mlkube.observability.catalogue import PROCESS_METRICS
    from mlkube.observability.metrics import REPLICA_METRICS, ServerMetrics

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = ServerMetrics(registry, model="m", revision="1", state=lambda: (0, 0, True, 1.0))
    metrics.request_done("v1", 200, 0.01)
    exported = {
        s.name
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    for metric in (*REPLICA_METRICS, *PROCESS_METRICS):
        suffix = "_count" if metric.type == "histogram" else ""
        assert metric.name + suffix in exported, metric.name
    assert {base_name(n) for n in exported} <= {m.name for m in CATALOGUE}
