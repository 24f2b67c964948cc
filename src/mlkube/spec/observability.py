"""Monitoring (metrics, alerts) and logging settings.

Pure: no I/O. The alert thresholds here feed ``mlkube.observability.alerts`` (the local rule
file and the Kubernetes PrometheusRule alike); the logging settings feed the replica's access
log, its payload log and the local backend's rotating log files.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from mlkube.spec.base import Seconds, SpecModel
from mlkube.spec.quantity import Quantity

ALERT_NAMES = (
    "MlkubeHighErrorRate",
    "MlkubeHighLatencyP99",
    "MlkubeReplicasAtMax",
    "MlkubeCrashLooping",
    "MlkubeMemoryNearLimit",
    "MlkubeModelNotReady",
    "MlkubeNoTraffic",
    "MlkubeCanaryErrorRateWorse",
    "MlkubeCanaryLatencyWorse",
)
"""Every alert mlkube generates (docs/alerts.md has a runbook section for each)."""

_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class AlertsSpec(SpecModel):
    """Thresholds for the generated alert rules."""

    p99_latency_ms: Annotated[float, Field(gt=0)] = 500.0
    """The latency SLO: fire when the deployment's p99 request latency is above it."""

    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Fire when this fraction of requests or more fail with a 5xx status."""

    memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Fire when a replica's memory reaches this fraction of its limit."""

    expect_traffic: bool = False
    """Fire when no request arrives for ``noTrafficFor``."""

    no_traffic_for: Annotated[Seconds, Field(ge=60)] = 900.0
    for_duration: Seconds = 300.0
    """How long a condition must hold before an alert fires (the rules' `for`)."""

    max_replicas_for: Seconds = 900.0
    """Fire when the replica count has stayed at autoscaling.maxReplicas this long."""

    crash_loop_restarts: Annotated[int, Field(ge=1)] = 3
    """Fire when a replica restarted more than this many times within ``crashLoopWindow``."""

    crash_loop_window: Annotated[Seconds, Field(ge=60)] = 900.0
    canary_error_rate_margin: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Fire when a revision's 5xx ratio exceeds the best revision's by more than this."""

    canary_latency_ratio: Annotated[float, Field(gt=1)] = 1.5
    """Fire when a revision's p99 is more than this many times the best revision's."""

    window: Annotated[Seconds, Field(ge=30)] = 300.0
    """Rate window of the error, latency and canary rules (``rate(...[5m])``)."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels on every alert, for Alertmanager routing (e.g. {team: ml})."""

    disabled: tuple[str, ...] = ()
    """Alert names not to generate, e.g. [MlkubeNoTraffic]."""

    runbook_base_url: Annotated[str, Field(pattern=r"^https?://")] = (
        "https://github.com/mlkube/mlkube/blob/main/docs/alerts.md"
    )
    """Each alert's ``runbook_url`` is this plus ``#<alert name in lower case>``."""

    @field_validator("disabled")
    @classmethod
    def _known_alerts(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in ALERT_NAMES:
                raise ValueError(
                    f"unknown alert '{name}' in disabled (known: {', '.join(ALERT_NAMES)})"
                )
        return names

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not re.match(_LABEL_NAME, key) or key in ("severity", "alertname"):
                raise ValueError(
                    f"alert label '{key}' must match {_LABEL_NAME} and not be severity or alertname"
                )
        return labels


class MonitoringSpec(SpecModel):
    """Metrics and alerts."""

    enabled: bool = True
    """Render metrics scraping and alert rules (ServiceMonitor, PrometheusRule)."""
    alerts: AlertsSpec = AlertsSpec()
    scrape_interval: Seconds = 15.0


class RequestLoggingSpec(SpecModel):
    """Per-request log lines and optional payload logging."""

    enabled: bool = True
    """One JSON line per request (method, path, status, duration, request id)."""

    sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Fraction of requests that get a log line; errors are always logged."""

    payloads: bool = False
    """Also log request and response bodies (sampled with payloadSampleRate, redacted)."""

    payload_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Share of requests (0-1) whose payloads are logged when `payloads` is on."""
    redact_fields: tuple[str, ...] = ()
    """JSON field names whose values are replaced by "[REDACTED]" in payload logs."""

    max_payload_bytes: Annotated[int, Field(ge=64, le=1048576)] = 4096
    """Longest request or response body text kept in a payload line; longer ones are cut."""


class LogFilesSpec(SpecModel):
    """Rotation of the local backend's per-replica log files."""

    max_size: Quantity = Quantity.parse("10Mi")
    """Rotate a replica's log file when it reaches this size."""

    backups: Annotated[int, Field(ge=0, le=100)] = 5
    """Rotated files kept (``replica.log.1`` ... ``replica.log.N``)."""

    @field_validator("max_size")
    @classmethod
    def _at_least_a_kib(cls, size: Quantity) -> Quantity:
        if size.value < 1024:
            raise ValueError(f"logging.files.maxSize must be at least 1Ki, got '{size.text}'")
        return size


class LoggingSpec(SpecModel):
    """Logs of every process."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged: debug, info (default), warning or error."""
    format: Literal["json", "text"] = "json"
    """json (one object per line, default) or text."""
    requests: RequestLoggingSpec = RequestLoggingSpec()
    files: LogFilesSpec = LogFilesSpec()
