"""Prometheus alert rules of a deployment, from its spec's ``monitoring.alerts`` thresholds.

Pure: no I/O. ``alert_rules(deployment)`` is the one source: the local Prometheus rule file
(``rule_file``) and the Kubernetes PrometheusRule (``backends.kubernetes.render_cluster``)
are both built from it. Every expression names only catalogue metrics (a test checks it) and
selects the deployment by the ``namespace`` and ``deployment`` target labels. Each alert has a
runbook section in ``docs/alerts.md`` (anchor: the alert name in lower case).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mlkube.observability.promql import selector
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.observability import AlertsSpec

GROUP_BY = "namespace, deployment"
CRASH_LOOP_FOR_S = 60.0
"""Crash-loop and no-traffic rules already look back over a long window; 1m of `for` only
rides out one scrape that races a restart."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert before it becomes a Prometheus rule object."""

    name: str
    expr: str
    for_s: float
    severity: str
    summary: str
    description: str


def duration(seconds: float) -> str:
    """A Prometheus duration for a number of seconds: ``5m``, ``90s``, ``1h``, ``1500ms``."""
    millis = max(0, round(seconds * 1000))
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def alert_rules(deployment: ModelDeployment) -> list[dict[str, Any]]:
    """The deployment's alert rules as Prometheus rule objects (``alert``, ``expr``, ...).

    Pure. Empty when ``monitoring.enabled`` is false. Rules that need a setting the spec lacks
    (maxReplicas without autoscaling, memory without a limit, no-traffic without
    ``expectTraffic``) are left out, and so are the names in ``alerts.disabled``.
    """
    monitoring = deployment.spec.monitoring
    if not monitoring.enabled:
        return []
    alerts = monitoring.alerts
    rules = [rule for build in _BUILDERS if (rule := build(deployment, alerts)) is not None]
    return [_as_object(rule, alerts) for rule in rules if rule.name not in alerts.disabled]


def rule_group(deployment: ModelDeployment) -> dict[str, Any]:
    """One rule group for the deployment: ``{"name": "mlkube.<ns>.<name>", "rules": [...]}``."""
    return {
        "name": f"mlkube.{deployment.namespace}.{deployment.name}",
        "rules": alert_rules(deployment),
    }


def rule_file(deployments: Iterable[ModelDeployment]) -> dict[str, Any]:
    """A Prometheus rule file (``groups:``) for several deployments. Pure."""
    groups = [rule_group(d) for d in deployments]
    return {"groups": [g for g in groups if g["rules"]]}


def _as_object(rule: Rule, alerts: AlertsSpec) -> dict[str, Any]:
    return {
        "alert": rule.name,
        "expr": rule.expr,
        "for": duration(rule.for_s),
        "labels": {**alerts.labels, "severity": rule.severity},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": f"{alerts.runbook_base_url}#{rule.name.lower()}",
        },
    }


# the rules -------------------------------------------------------------------------------
def _sel(deployment: ModelDeployment, **extra: str) -> str:
    labels = {"namespace": deployment.namespace, "deployment": deployment.name}
    return selector(labels, **extra)


def _one_series_per_replica(deployment: ModelDeployment) -> dict[str, str]:
    """A replica serving several models has a ``mlkube_model_ready`` series per model:
    counting replicas counts the first model's series only."""
    if deployment.spec.models is None:
        return {}
    return {"model": f'="{deployment.model_name}"'}


def _error_ratio(deployment: ModelDeployment, window: str, by: str) -> str:
    """5xx ratio per ``by``; a group with no 5xx series counts as 0, not as missing."""
    failed = _sel(deployment, code='=~"5.."')
    errors = f"sum by ({by}) (rate(mlkube_requests_total{{{failed}}}[{window}]))"
    total = f"sum by ({by}) (rate(mlkube_requests_total{{{_sel(deployment)}}}[{window}]))"
    return f"(({errors}) or ({total} * 0)) / {total}"


def _p99(deployment: ModelDeployment, window: str, by: str) -> str:
    return (
        f"histogram_quantile(0.99, sum by ({by}, le) "
        f"(rate(mlkube_request_duration_seconds_bucket{{{_sel(deployment)}}}[{window}])))"
    )


def _high_error_rate(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    return Rule(
        "MlkubeHighErrorRate",
        f"{_error_ratio(deployment, duration(alerts.window), GROUP_BY)} > {alerts.error_rate:g}",
        alerts.for_duration,
        "critical",
        "{{ $labels.deployment }}: {{ $value | humanizePercentage }} of requests fail",
        f"More than {alerts.error_rate:.2%} of the requests to {{{{ $labels.namespace }}}}/"
        f"{{{{ $labels.deployment }}}} got a 5xx answer over the last {duration(alerts.window)} "
        "(now {{ $value | humanizePercentage }}).",
    )


def _high_latency(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    slo_s = alerts.p99_latency_ms / 1000
    return Rule(
        "MlkubeHighLatencyP99",
        f"{_p99(deployment, duration(alerts.window), GROUP_BY)} > {slo_s:g}",
        alerts.for_duration,
        "warning",
        "{{ $labels.deployment }}: p99 latency {{ $value | humanizeDuration }} is above the SLO",
        f"The 99th percentile of request latency of {{{{ $labels.namespace }}}}/"
        f"{{{{ $labels.deployment }}}} is {{{{ $value | humanizeDuration }}}}, above the "
        f"{alerts.p99_latency_ms:g} ms objective.",
    )


def _replicas_at_max(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule | None:
    autoscaling = deployment.spec.autoscaling
    if autoscaling is None:
        return None
    top = autoscaling.max_replicas
    sel = _sel(deployment, **_one_series_per_replica(deployment))
    return Rule(
        "MlkubeReplicasAtMax",
        f"(max by ({GROUP_BY}) (mlkube_deployment_desired_replicas{{{sel}}}) >= {top}) "
        f"or (count by ({GROUP_BY}) (mlkube_model_ready{{{sel}}}) >= {top})",
        alerts.max_replicas_for,
        "warning",
        "{{ $labels.deployment }} has been at maxReplicas for "
        f"{duration(alerts.max_replicas_for)}",
        f"{{{{ $labels.namespace }}}}/{{{{ $labels.deployment }}}} runs {{{{ $value }}}} "
        f"replicas, its autoscaling.maxReplicas ({top}): the autoscaler cannot add capacity.",
    )


def _crash_looping(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    window = duration(alerts.crash_loop_window)
    limit = alerts.crash_loop_restarts
    sel = _sel(deployment)
    return Rule(
        "MlkubeCrashLooping",
        f"(changes(process_start_time_seconds{{{sel}}}[{window}]) > {limit}) "
        f"or (increase(mlkube_replica_restarts_total{{{sel}}}[{window}]) > {limit})",
        CRASH_LOOP_FOR_S,
        "critical",
        "{{ $labels.deployment }}: a replica keeps restarting",
        f"A replica of {{{{ $labels.namespace }}}}/{{{{ $labels.deployment }}}} restarted "
        f"{{{{ $value }}}} times in {window} (more than {limit}).",
    )


def _memory_near_limit(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule | None:
    limit = deployment.spec.resources.limits.get("memory")
    if limit is None:
        return None
    return Rule(
        "MlkubeMemoryNearLimit",
        f"process_resident_memory_bytes{{{_sel(deployment)}}} / {limit.whole} "
        f"> {alerts.memory_utilization:g}",
        alerts.for_duration,
        "warning",
        "{{ $labels.deployment }}: a replica uses {{ $value | humanizePercentage }} of its "
        "memory limit",
        f"Replica {{{{ $labels.replica }}}} of {{{{ $labels.namespace }}}}/"
        f"{{{{ $labels.deployment }}}} uses {{{{ $value | humanizePercentage }}}} of its "
        f"{limit.text} memory limit; near 100% it is OOM-killed.",
    )


def _model_not_ready(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    return Rule(
        "MlkubeModelNotReady",
        f"mlkube_model_ready{{{_sel(deployment)}}} == 0",
        alerts.for_duration,
        "critical",
        "{{ $labels.deployment }}: model not ready on {{ $labels.replica }}",
        "Replica {{ $labels.replica }} of {{ $labels.namespace }}/{{ $labels.deployment }} "
        f"has not been ready to serve for {duration(alerts.for_duration)}.",
    )


def _no_traffic(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule | None:
    if not alerts.expect_traffic:
        return None
    window = duration(alerts.no_traffic_for)
    sel = _sel(deployment)
    return Rule(
        "MlkubeNoTraffic",
        f"(sum by ({GROUP_BY}) (rate(mlkube_batch_requests_sum{{{sel}}}[{window}])) == 0) "
        f"or absent(mlkube_batch_requests_sum{{{sel}}})",
        CRASH_LOOP_FOR_S,
        "warning",
        "{{ $labels.deployment }}: no predictions for " + window,
        f"{{{{ $labels.namespace }}}}/{{{{ $labels.deployment }}}} answered no prediction "
        f"request in {window}, and monitoring.alerts.expectTraffic says it should.",
    )


def _canary_errors(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    by = f"{GROUP_BY}, revision"
    ratio = _error_ratio(deployment, duration(alerts.window), by)
    margin = alerts.canary_error_rate_margin
    return Rule(
        "MlkubeCanaryErrorRateWorse",
        f"({ratio}) - on ({GROUP_BY}) group_left () min by ({GROUP_BY}) ({ratio}) > {margin:g}",
        alerts.for_duration,
        "warning",
        "{{ $labels.deployment }}: revision {{ $labels.revision }} fails more than the others",
        f"Revision {{{{ $labels.revision }}}} of {{{{ $labels.namespace }}}}/"
        f"{{{{ $labels.deployment }}}} answers 5xx to {{{{ $value | humanizePercentage }}}} "
        f"more of its requests than the best revision (margin {margin:.2%}).",
    )


def _canary_latency(deployment: ModelDeployment, alerts: AlertsSpec) -> Rule:
    by = f"{GROUP_BY}, revision"
    p99 = _p99(deployment, duration(alerts.window), by)
    ratio = alerts.canary_latency_ratio
    return Rule(
        "MlkubeCanaryLatencyWorse",
        f"({p99}) / on ({GROUP_BY}) group_left () min by ({GROUP_BY}) ({p99}) > {ratio:g}",
        alerts.for_duration,
        "warning",
        "{{ $labels.deployment }}: revision {{ $labels.revision }} is slower than the others",
        f"The p99 latency of revision {{{{ $labels.revision }}}} of {{{{ $labels.namespace }}}}/"
        f'{{{{ $labels.deployment }}}} is {{{{ $value | printf "%.2f" }}}} times the best '
        f"revision's (limit {ratio:g}x).",
    )


_BUILDERS: tuple[Callable[[ModelDeployment, AlertsSpec], Rule | None], ...] = (
    _high_error_rate,
    _high_latency,
    _replicas_at_max,
    _crash_looping,
    _memory_near_limit,
    _model_not_ready,
    _no_traffic,
    _canary_errors,
    _canary_latency,
)


JOB_QUEUED_TOO_LONG_S = 3600.0
RUNBOOK = "https://github.com/mlkube/mlkube/blob/main/docs/alerts.md"


def job_rule_group(runbook_base_url: str = RUNBOOK) -> dict[str, Any]:
    """Alerts about the local controller's TrainingJobs (``mlkube_job_*``): a job that failed,
    and one that has waited in its queue for over an hour. Pure."""
    waited = duration(JOB_QUEUED_TOO_LONG_S)
    rules = [
        Rule(
            "MlkubeJobFailed",
            'mlkube_job_phase{phase="Failed"} == 1',
            0.0,
            "warning",
            "job {{ $labels.namespace }}/{{ $labels.job }} failed",
            "The job {{ $labels.namespace }}/{{ $labels.job }} failed after its retries "
            "(backoffLimit) or its deadline: `mlkube jobs {{ $labels.job }} -o yaml` says why.",
        ),
        Rule(
            "MlkubeJobQueuedTooLong",
            f"mlkube_job_queued_seconds > {JOB_QUEUED_TOO_LONG_S:g}",
            0.0,
            "warning",
            "job {{ $labels.namespace }}/{{ $labels.job }} waits to be admitted",
            f"The job {{{{ $labels.namespace }}}}/{{{{ $labels.job }}}} has been queued for over "
            f"{waited}: its workers do not fit the machine or its namespace's quota.",
        ),
    ]
    objects = []
    for rule in rules:
        objects.append(
            {
                "alert": rule.name,
                "expr": rule.expr,
                "for": duration(rule.for_s),
                "labels": {"severity": rule.severity},
                "annotations": {
                    "summary": rule.summary,
                    "description": rule.description,
                    "runbook_url": f"{runbook_base_url}#{rule.name.lower()}",
                },
            }
        )
    return {"name": "mlkube.jobs", "rules": objects}
