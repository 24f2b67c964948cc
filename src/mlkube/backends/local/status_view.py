"""The local controller's status document as tables and notes for people. Pure.

``status_report`` turns ``GET /status`` (what ``-o json`` prints unchanged) into a
``StatusReport``: a table of deployments, a table of their replicas, and lines under them with
why a replica is not ready, each deployment's last event and why the autoscaler chose its
count. The tables are narrow enough for 80 columns (the live view of ``mlkube up`` and
``status --watch`` draws the same ones). ``rollout_progress`` judges whether a deployment has
rolled out after an apply (``apply --wait``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlkube.backends.base import StatusReport, Table

DEPLOYMENT_COLUMNS = (
    "deployment",
    "revision",
    "ready",
    "req/s",
    "p50/p99 ms",
    "cpu",
    "memory",
)
REPLICA_COLUMNS = ("replica", "rev", "phase", "port", "pid", "restarts", "cpu", "memory")
# Why a replica is not ready goes under the tables, one line each: as a column its long words
# (a model path) squeezed the names and phases of every row at 80 columns.
REASON_MAX_CHARS = 200


def status_report(document: dict[str, Any], deployments: Sequence[dict[str, Any]]) -> StatusReport:
    """``document`` for programs; tables and notes of ``deployments`` (some of its own)."""
    controller = document["controller"]
    top = Table(
        DEPLOYMENT_COLUMNS,
        tuple(deployment_row(d) for d in deployments),
        title=f"mlkube · limits enforced by {controller['enforcement']}",
    )
    replicas = Table(
        REPLICA_COLUMNS,
        tuple(replica_row(r) for d in deployments for r in d["replicas"]),
    )
    notes = [
        f"{r['name']}: {reason}"
        for d in deployments
        for r in d["replicas"]
        if (reason := replica_reason(r))
    ]
    notes.extend(
        f"{d['name']}: last event: {d['lastEvent']}" for d in deployments if d["lastEvent"]
    )
    notes.extend(line for line in map(autoscaler_line, deployments) if line is not None)
    notes.extend(line for line in map(standby_line, deployments) if line is not None)
    if controller.get("prometheus"):
        notes.append(f"prometheus: {controller['prometheus']}")
    if controller.get("alertmanager"):
        notes.append(f"alertmanager: {controller['alertmanager']}")
    return StatusReport(document=document, tables=(top, replicas), notes=tuple(notes))


def deployment_row(dep: dict[str, Any]) -> tuple[str, ...]:
    """One row under ``DEPLOYMENT_COLUMNS``."""
    rollout = dep["rollout"]
    revision = str(dep["revision"])
    if rollout.get("target") is not None:
        revision += f" → {rollout['target']} {rollout['strategy']} {rollout['phase']}"
    elif rollout.get("phase") in ("Failed", "RolledBack"):
        revision += f" ({rollout['phase']})"
    cpu = sum(r["cpuCores"] or 0.0 for r in dep["replicas"])
    memory = sum(r["memoryBytes"] or 0 for r in dep["replicas"])
    req, lim = dep["requests"], dep["limits"]
    return (
        f"{dep['namespace']}/{dep['name']} :{dep['port']}",
        revision,
        f"{dep['ready']}/{dep['desired']}",
        f"{dep['requestsPerSecond']:.1f}",
        f"{_ms(dep['p50Ms'])}/{_ms(dep['p99Ms'])}",
        f"{cpu:.2f} (req {req.get('cpu', '-')}, lim {lim.get('cpu', '-')})",
        f"{memory / 2**20:.0f}Mi (req {req.get('memory', '-')}, lim {lim.get('memory', '-')})",
    )


def replica_row(rep: dict[str, Any]) -> tuple[str, ...]:
    """One row under ``REPLICA_COLUMNS``."""
    return (
        rep["name"],
        str(rep["revision"]),
        replica_phase(rep),
        str(rep["port"] or "-"),
        str(rep["pid"] or "-"),
        str(rep["restarts"]),
        "-" if rep["cpuCores"] is None else f"{rep['cpuCores']:.2f}",
        "-" if rep["memoryBytes"] is None else f"{rep['memoryBytes'] / 2**20:.0f}Mi",
    )


def replica_phase(rep: dict[str, Any]) -> str:
    """The phase column: a warm standby says so (Standby when ready, Warming before)."""
    if not rep.get("standby"):
        return str(rep["phase"])
    return "Standby" if rep["phase"] == "Ready" else f"Warming ({rep['phase']})"


def standby_line(dep: dict[str, Any]) -> str | None:
    """The warm standby pool and what it has cost: ``iris: standby 1 (1 ready, not
    serving), cost 42 replica-seconds``; None when it has none and never had."""
    standby = dep.get("standby")
    if not standby or (not standby["replicas"] and not standby["replicaSeconds"]):
        return None
    return (
        f"{dep['name']}: standby {standby['replicas']} ({standby['ready']} ready, not "
        f"serving), cost {standby['replicaSeconds']:g} replica-seconds"
    )


def replica_reason(rep: dict[str, Any]) -> str:
    """Why a replica waits or failed last ("" when nothing to say): the last error line it
    wrote says more than "exited with code 1"."""
    reason = rep["pendingReason"] or rep.get("lastError") or rep["lastReason"] or ""
    return str(reason)[:REASON_MAX_CHARS]


def autoscaler_line(dep: dict[str, Any]) -> str | None:
    """Why the replica count is what it is: the autoscaler's last decision.

    ``iris: autoscaler wants 3 (desired 3): cpu 83% above the 70% target
    [cpu_utilization=83.33, desired_by_cpu=3]; limited by maxReplicas``.
    """
    decision = dep.get("autoscaler")
    if not decision:
        return None
    values = ", ".join(f"{k}={_value(v)}" for k, v in (decision.get("metrics") or {}).items())
    text = (
        f"{dep['name']}: autoscaler wants {decision['desiredReplicas']} "
        f"(desired {dep['desired']}): {decision['reason']}"
    )
    if values:
        text += f" [{values}]"
    if decision.get("limitedBy"):
        text += f"; limited by {decision['limitedBy']}"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, slots=True)
class RolloutProgress:
    """How far one deployment is on its way to having rolled out after an apply."""

    done: bool
    failed: bool
    message: str


def rollout_progress(key: str, dep: dict[str, Any] | None, revision: int | None) -> RolloutProgress:
    """Judge one deployment of ``GET /status`` after an apply that made ``revision``.

    Rolled out: no rollout in progress (or a steady A/B test), ``revision`` (when the apply
    made one) is the stable one, and every desired replica is ready. Failed: the deployment is
    gone, or the rollout to ``revision`` ended with another revision stable.
    """
    if dep is None:
        return RolloutProgress(False, True, f"{key}: no longer runs")
    rollout = dep["rollout"]
    phase = rollout["phase"]
    if rollout.get("target") is not None and phase != "ABTest":
        step = f", step {rollout['step']}" if rollout.get("step") is not None else ""
        return RolloutProgress(
            False,
            False,
            f"{key}: {rollout['strategy']} {rollout['stable']} → {rollout['target']}{step} "
            f"({phase})",
        )
    if revision is not None and rollout.get("target") is None and rollout["stable"] != revision:
        reason = f": {rollout['reason']}" if rollout.get("reason") else ""
        return RolloutProgress(
            False, True, f"{key}: revision {revision} did not roll out ({phase}){reason}"
        )
    if dep["ready"] < dep["desired"]:
        return RolloutProgress(False, False, f"{key}: {dep['ready']} of {dep['desired']} ready")
    return RolloutProgress(
        True, False, f"{key}: rolled out (revision {rollout['stable']}, {dep['ready']} ready)"
    )
