"""Per-job metrics of the local controller (catalogue: ``JOB_METRICS``).

Read at scrape time from plain ``JobSnapshot`` values the controller hands over, like the
deployment gauges of ``controller_metrics``; nothing registers on the global registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlkube.observability.catalogue import JOB_METRICS

JOB_PHASES = ("Queued", "Running", "Succeeded", "Failed", "Cancelled")
_HELP = {m.name: m.help for m in JOB_METRICS}
_LABELS = ["namespace", "job"]


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the controller knows about one job, as plain values."""

    namespace: str
    name: str
    phase: str
    queued_s: float
    run_s: float
    restarts: int
    preemptions: int


class JobCollector(Collector):
    """The ``mlkube_job_*`` families, from ``jobs()`` at each scrape."""

    def __init__(self, jobs: Callable[[], Iterable[JobSnapshot]]) -> None:
        self._jobs = jobs

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the series depend on live state

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "mlkube_job_phase", _HELP["mlkube_job_phase"], labels=[*_LABELS, "phase"]
        )
        queued = GaugeMetricFamily(
            "mlkube_job_queued_seconds", _HELP["mlkube_job_queued_seconds"], labels=_LABELS
        )
        run = GaugeMetricFamily(
            "mlkube_job_run_seconds", _HELP["mlkube_job_run_seconds"], labels=_LABELS
        )
        restarts = CounterMetricFamily(
            "mlkube_job_restarts", _HELP["mlkube_job_restarts_total"], labels=_LABELS
        )
        preemptions = CounterMetricFamily(
            "mlkube_job_preemptions", _HELP["mlkube_job_preemptions_total"], labels=_LABELS
        )
        for job in self._jobs():
            key = [job.namespace, job.name]
            for name in JOB_PHASES:
                phase.add_metric([*key, name], 1.0 if name == job.phase else 0.0)
            queued.add_metric(key, job.queued_s)
            run.add_metric(key, job.run_s)
            restarts.add_metric(key, job.restarts)
            preemptions.add_metric(key, job.preemptions)
        yield from (phase, queued, run, restarts, preemptions)
