"""The whole metrics catalogue: replica, process, GPU and controller metrics, and its Markdown.

Pure: no I/O. ``REPLICA_METRICS`` (``metrics.py``) lists what the inference server exports;
this module adds the process metrics every replica exports through prometheus_client's
``ProcessCollector``, the GPU metrics a replica exports where a GPU exists
(``gpu.GpuCollector``), and the per-deployment metrics of the local controller
(``controller_metrics.ControllerMetrics``). ``docs/metrics.md`` is ``render_markdown()``; a
test fails when the file drifts from the code. Dashboards and alert rules may only name
metrics listed here (``promql.metric_names`` + ``base_name``).

Labels stay bounded: model, revision, protocol, code, namespace, deployment, replica, gpu
index, job, pipeline, and small enums (phase, direction, reason, cache). Never request ids
or raw paths.
"""

from __future__ import annotations

from mlkube.observability.metrics import REPLICA_METRICS, MetricInfo

# Labels Prometheus adds from the scrape target (local file_sd groups, or the ServiceMonitor's
# relabelling on Kubernetes); every query of ours selects a deployment with them.
TARGET_LABELS: tuple[str, ...] = ("namespace", "deployment", "replica", "revision")

PROCESS_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "process_cpu_seconds_total",
        "counter",
        "seconds",
        (),
        "CPU time (user + system) the replica process used.",
    ),
    MetricInfo(
        "process_resident_memory_bytes",
        "gauge",
        "bytes",
        (),
        "Resident memory (RSS) of the replica process.",
    ),
    MetricInfo(
        "process_virtual_memory_bytes",
        "gauge",
        "bytes",
        (),
        "Virtual memory size of the replica process.",
    ),
    MetricInfo(
        "process_start_time_seconds",
        "gauge",
        "seconds",
        (),
        "Start time of the process since the Unix epoch; a change means a restart.",
    ),
    MetricInfo(
        "process_open_fds",
        "gauge",
        "file descriptors",
        (),
        "Open file descriptors (sockets included).",
    ),
    MetricInfo(
        "process_max_fds",
        "gauge",
        "file descriptors",
        (),
        "The process's limit on open file descriptors.",
    ),
)

GPU_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "mlkube_gpu_utilization_ratio",
        "gauge",
        "ratio",
        ("gpu",),
        "Fraction of the last sample period the GPU was busy (0-1), per GPU index the "
        "replica was given. Exported only where a GPU exists.",
    ),
    MetricInfo(
        "mlkube_gpu_memory_used_bytes",
        "gauge",
        "bytes",
        ("gpu",),
        "GPU memory in use on the GPU (all processes on it).",
    ),
    MetricInfo("mlkube_gpu_memory_total_bytes", "gauge", "bytes", ("gpu",), "GPU memory size."),
)

_DEP = ("namespace", "deployment")

CONTROLLER_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "mlkube_deployment_desired_replicas",
        "gauge",
        "replicas",
        _DEP,
        "Replicas the controller wants running now (autoscaler or `mlkube scale`).",
    ),
    MetricInfo(
        "mlkube_deployment_ready_replicas",
        "gauge",
        "replicas",
        _DEP,
        "Replicas that pass their readiness probe and receive traffic.",
    ),
    MetricInfo(
        "mlkube_deployment_replicas",
        "gauge",
        "replicas",
        (*_DEP, "phase"),
        "Replicas by phase (Pending, Starting, Ready, NotReady, CrashLoopBackOff, Terminating).",
    ),
    MetricInfo(
        "mlkube_deployment_min_replicas",
        "gauge",
        "replicas",
        _DEP,
        "autoscaling.minReplicas (absent without autoscaling).",
    ),
    MetricInfo(
        "mlkube_deployment_max_replicas",
        "gauge",
        "replicas",
        _DEP,
        "autoscaling.maxReplicas (absent without autoscaling).",
    ),
    MetricInfo(
        "mlkube_autoscaler_desired_replicas",
        "gauge",
        "replicas",
        _DEP,
        "What the autoscaler's last decision asked for, before rollouts or manual scale.",
    ),
    MetricInfo(
        "mlkube_autoscaler_metric_value",
        "gauge",
        "metric's own unit",
        (*_DEP, "input"),
        "The values behind the last decision, e.g. input=cpu_utilization (percent), "
        "concurrency_stable (requests), latency_p95_ms, desired_by_cpu.",
    ),
    MetricInfo(
        "mlkube_autoscaler_decisions_total",
        "counter",
        "decisions",
        (*_DEP, "direction"),
        "Autoscaler decisions, by direction: up, down or none.",
    ),
    MetricInfo(
        "mlkube_rollout_phase",
        "gauge",
        "boolean",
        (*_DEP, "phase"),
        "1 for the rollout's current phase (Progressing, Complete, Failed, RolledBack, "
        "ABTest), 0 for the others.",
    ),
    MetricInfo(
        "mlkube_rollout_canary_weight_ratio",
        "gauge",
        "ratio",
        _DEP,
        "Share of traffic (0-1) the rollout's new revision gets; 0 when none is active.",
    ),
    MetricInfo(
        "mlkube_rollout_revision",
        "gauge",
        "revision number",
        (*_DEP, "role"),
        "The revision number in each role: stable, and canary while a rollout runs.",
    ),
    MetricInfo(
        "mlkube_replica_restarts_total",
        "counter",
        "restarts",
        (*_DEP, "reason"),
        "Replica restarts by reason: OOMKilled, Error (non-zero exit), Signal, "
        "Readiness (killed after failing readiness), Other.",
    ),
)

_JOB = ("namespace", "job")
JOB_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "mlkube_job_phase",
        "gauge",
        "1 for the job's phase",
        (*_JOB, "phase"),
        "1 for the phase a job is in (Queued, Running, Succeeded, Failed, Cancelled), else 0.",
    ),
    MetricInfo(
        "mlkube_job_queued_seconds",
        "gauge",
        "seconds",
        _JOB,
        "How long a queued job has waited to be admitted; 0 once it runs.",
    ),
    MetricInfo(
        "mlkube_job_run_seconds",
        "gauge",
        "seconds",
        _JOB,
        "How long a job has run since its first start (retries included), or ran in all.",
    ),
    MetricInfo(
        "mlkube_job_restarts_total",
        "counter",
        "restarts",
        _JOB,
        "Restarts of a job's whole gang of workers after a worker failed.",
    ),
    MetricInfo(
        "mlkube_job_preemptions_total",
        "counter",
        "preemptions",
        _JOB,
        "Times a job was stopped and requeued for a higher-priority job or replica.",
    ),
)

_PIPELINE = ("namespace", "pipeline")
PIPELINE_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "mlkube_pipeline_runs_total",
        "counter",
        "runs",
        (*_PIPELINE, "phase"),
        "Kept runs of a pipeline by phase (Running, Succeeded, Failed, Stopped at a gate).",
    ),
    MetricInfo(
        "mlkube_pipeline_last_run_phase",
        "gauge",
        "1 for the phase",
        (*_PIPELINE, "phase"),
        "1 for the phase of a pipeline's latest run, else 0.",
    ),
    MetricInfo(
        "mlkube_pipeline_last_run_seconds",
        "gauge",
        "seconds",
        _PIPELINE,
        "How long a pipeline's latest run took (or has run so far).",
    ),
    MetricInfo(
        "mlkube_pipeline_steps_total",
        "counter",
        "steps",
        (*_PIPELINE, "cache"),
        "Job steps of the kept runs: cache=hit reused earlier outputs, cache=miss ran a job.",
    ),
)

CATALOGUE: tuple[MetricInfo, ...] = (
    *REPLICA_METRICS,
    *PROCESS_METRICS,
    *GPU_METRICS,
    *CONTROLLER_METRICS,
    *JOB_METRICS,
    *PIPELINE_METRICS,
)
"""Every metric mlkube exports or relies on, once."""

SECTIONS: tuple[tuple[str, str, tuple[MetricInfo, ...]], ...] = (
    ("Replica", "Exported by every replica on `/metrics` (`mlkube serve`).", REPLICA_METRICS),
    (
        "Process",
        "Exported by every replica (prometheus_client's process collector; Linux).",
        PROCESS_METRICS,
    ),
    ("GPU", "Exported by a replica that was given GPUs.", GPU_METRICS),
    (
        "Deployment (controller)",
        "Exported by the local controller (`mlkube up`), one series set per deployment.",
        CONTROLLER_METRICS,
    ),
    (
        "Job (controller)",
        "Exported by the local controller for every TrainingJob it knows (`mlkube jobs`).",
        JOB_METRICS,
    ),
    (
        "Pipeline (controller)",
        "Exported by the local controller for every pipeline it knows (`mlkube pipeline`).",
        PIPELINE_METRICS,
    ),
)

_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def by_name() -> dict[str, MetricInfo]:
    """The catalogue keyed by metric name. Pure."""
    return {m.name: m for m in CATALOGUE}


def series_names() -> frozenset[str]:
    """Every name a series of a catalogue metric can have (histograms: its three suffixes)."""
    names: set[str] = set()
    for metric in CATALOGUE:
        names.add(metric.name)
        names.update(metric.name + s for s in _SUFFIXES.get(metric.type, ()))
    return frozenset(names)


def base_name(series: str) -> str | None:
    """The catalogue metric a series name belongs to, or None when it is not ours.

    ``mlkube_request_duration_seconds_bucket`` → ``mlkube_request_duration_seconds``. Pure.
    """
    known = by_name()
    if series in known:
        return series
    for metric in CATALOGUE:
        for suffix in _SUFFIXES.get(metric.type, ()):
            if series == metric.name + suffix:
                return metric.name
    return None


def render_markdown() -> str:
    """``docs/metrics.md``: one table per section. Pure and deterministic."""
    lines = [
        "# Metrics catalogue",
        "",
        "<!-- Generated by `mlkube metrics-catalogue -o docs/metrics.md`; do not edit. -->",
        "",
        "Every metric mlkube exports, identical in local (`mlkube up`) and Kubernetes runs.",
        "Names follow the Prometheus conventions: base units (seconds, bytes), `_total` on",
        "counters, `_ratio` for 0-1 fractions. Histograms expose `_bucket`, `_sum` and",
        "`_count` series. Every series also carries the target labels",
        ", ".join(f"`{label}`" for label in TARGET_LABELS)
        + " (from the local file_sd targets, or the ServiceMonitor's",
        "relabelling on Kubernetes), plus `job` and `instance`.",
        "Label values are bounded: there is never a request id or a raw path in a label.",
        "",
    ]
    for title, intro, metrics in SECTIONS:
        lines += [
            f"## {title}",
            "",
            intro,
            "",
            "| name | type | unit | labels | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for metric in metrics:
            labels = ", ".join(f"`{label}`" for label in metric.labels) or "-"
            lines.append(
                f"| `{metric.name}` | {metric.type} | {metric.unit} | {labels} | {metric.help} |"
            )
        lines.append("")
    lines += [
        "## Latency buckets",
        "",
        "Request, predict and queue-wait histograms share these upper bounds (seconds): "
        + ", ".join(_bucket_text(b) for b in _latency_buckets())
        + ", +Inf.",
        "",
    ]
    return "\n".join(lines)


def _latency_buckets() -> tuple[float, ...]:
    from mlkube.observability.metrics import LATENCY_BUCKETS_S

    return LATENCY_BUCKETS_S


def _bucket_text(bound: float) -> str:
    return f"{bound:g}"
