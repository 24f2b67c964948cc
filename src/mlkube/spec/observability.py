"""Monitoring (metrics, alerts) and logging settings.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mlkube.spec.base import Seconds, SpecModel


class AlertsSpec(SpecModel):
    """Thresholds for the generated alert rules."""

    p99_latency_ms: Annotated[float, Field(gt=0)] = 500.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Fire when a replica's memory reaches this fraction of its limit."""

    expect_traffic: bool = False
    """Fire when no request arrives for ``noTrafficFor``."""

    no_traffic_for: Seconds = 900.0
    for_duration: Seconds = 300.0
    """How long a condition must hold before an alert fires (the rules' `for`)."""


class MonitoringSpec(SpecModel):
    """Metrics and alerts."""

    enabled: bool = True
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
    redact_fields: tuple[str, ...] = ()
    """JSON field names whose values are replaced by "[REDACTED]" in payload logs."""


class LoggingSpec(SpecModel):
    """Logs of every process."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    requests: RequestLoggingSpec = RequestLoggingSpec()
