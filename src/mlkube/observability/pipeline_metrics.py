"""Per-pipeline metrics of the local controller (catalogue: ``PIPELINE_METRICS``).

Read at scrape time from plain ``PipelineSnapshot`` values the runner hands over, like the
job metrics; nothing registers on the global registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlkube.observability.catalogue import PIPELINE_METRICS

RUN_PHASES = ("Running", "Succeeded", "Failed", "Stopped")
_HELP = {m.name: m.help for m in PIPELINE_METRICS}
_LABELS = ["namespace", "pipeline"]


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    """What the controller knows about one pipeline's kept runs, as plain values."""

    namespace: str
    name: str
    runs: dict[str, int]
    """Kept runs by phase."""
    last_phase: str
    last_run_s: float
    cached_steps: int
    run_steps: int


class PipelineCollector(Collector):
    """The ``mlkube_pipeline_*`` families, from ``pipelines()`` at each scrape."""

    def __init__(self, pipelines: Callable[[], Iterable[PipelineSnapshot]]) -> None:
        self._pipelines = pipelines

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the series depend on live state

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "mlkube_pipeline_runs",
            _HELP["mlkube_pipeline_runs_total"],
            labels=[*_LABELS, "phase"],
        )
        last = GaugeMetricFamily(
            "mlkube_pipeline_last_run_phase",
            _HELP["mlkube_pipeline_last_run_phase"],
            labels=[*_LABELS, "phase"],
        )
        duration = GaugeMetricFamily(
            "mlkube_pipeline_last_run_seconds",
            _HELP["mlkube_pipeline_last_run_seconds"],
            labels=_LABELS,
        )
        steps = CounterMetricFamily(
            "mlkube_pipeline_steps",
            _HELP["mlkube_pipeline_steps_total"],
            labels=[*_LABELS, "cache"],
        )
        for pipeline in self._pipelines():
            key = [pipeline.namespace, pipeline.name]
            for phase in RUN_PHASES:
                runs.add_metric([*key, phase], pipeline.runs.get(phase, 0))
                last.add_metric([*key, phase], 1.0 if phase == pipeline.last_phase else 0.0)
            duration.add_metric(key, pipeline.last_run_s)
            steps.add_metric([*key, "hit"], pipeline.cached_steps)
            steps.add_metric([*key, "miss"], pipeline.run_steps)
        yield from (runs, last, duration, steps)
