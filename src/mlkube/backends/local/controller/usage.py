"""Usage history for ``mlkube recommend NAME``: what each scrape adds to the store.

After every metrics scrape the controller records, per replica that answered, the CPU cores
it used over the scrape period and its RSS (from ``process_cpu_seconds_total`` and
``process_resident_memory_bytes``), the request rate the load balancer sent it and its p95
latency; and, once per kill, every replica OOMKilled since. The VPA math
(``autoscale.vpa``) reads these back through the control API's ``GET /usage``.
"""

from __future__ import annotations

from typing import Any

from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import Snapshot, rates
from mlkube.backends.local.store import OomRow, UsageRow
from mlkube.spec.deployment import ModelDeployment

OOM_REASON = "OOMKilled"

_LB_SEEN: dict[str, tuple[float, int]] = {}
"""Replica name → (monotonic time, requests the load balancer had sent it)."""
_OOMS_SEEN: set[tuple[str, int]] = set()
"""(replica, restart count) of kills already written, so each tick does not write again."""


def record(ctrl: Controller, now: float) -> None:
    """Write this scrape's samples and any new OOM kills of every deployment."""
    wall = ctrl.clock.wall()
    for dep in ctrl.deployments.values():
        rows = [
            row
            for replica in dep.replicas.values()
            if (row := _sample(dep, replica, now, wall)) is not None
        ]
        if rows:
            ctrl.store.add_usage(dep.key, rows, now=wall)
        for replica in dep.replicas.values():
            _record_oom(ctrl, dep, replica, wall)


def _sample(dep: Deployment, replica: Replica, now: float, wall: float) -> UsageRow | None:
    """The replica's usage since its previous scrape; None unless it was scraped at ``now``."""
    if len(replica.snapshots) < 2 or replica.snapshots[-1].at != now:
        return None
    before, after = replica.snapshots[-2], replica.snapshots[-1]
    measured = rates(before, after)
    return UsageRow(
        replica=replica.name,
        ts=wall,
        cpu_cores=measured.cpu_cores,
        memory_bytes=after.rss_bytes,
        cpu_request_cores=_request_cores(dep, replica),
        rps=_lb_rate(dep, replica.name, now),
        p95_ms=measured.p95_ms,
    )


def _lb_rate(dep: Deployment, name: str, now: float) -> float | None:
    """Requests/s the load balancer sent this replica since the last scrape.

    Counted at the load balancer: the replica's own counter also counts readiness probes and
    scrapes, which would make an idle replica look busy.
    """
    backend = dep.router.backends.get(name)
    if backend is None:
        _LB_SEEN.pop(name, None)
        return None
    seen = _LB_SEEN.get(name)
    _LB_SEEN[name] = (now, backend.requests)
    if seen is None or now <= seen[0] or backend.requests < seen[1]:
        return None
    return (backend.requests - seen[1]) / (now - seen[0])


def _request_cores(dep: Deployment, replica: Replica) -> float | None:
    doc = dep.revisions.get(replica.revision, dep.doc)
    cpu = doc.spec.resources.effective_requests().get("cpu")
    return float(cpu.value) if cpu is not None else None


def _record_oom(ctrl: Controller, dep: Deployment, replica: Replica, wall: float) -> None:
    if not replica.last_reason.startswith(OOM_REASON) or replica.phase is not Phase.BACKOFF:
        return
    seen = (replica.name, replica.backoff.restart_count)
    if seen in _OOMS_SEEN:
        return
    _OOMS_SEEN.add(seen)
    doc = dep.revisions.get(replica.revision, dep.doc)
    ctrl.store.add_oom(
        dep.key,
        OomRow(
            replica=replica.name,
            restart=replica.backoff.restart_count,
            ts=wall,
            memory_bytes=oom_memory(replica.snapshots[-1] if replica.snapshots else None, doc),
            memory_request_bytes=_whole(doc, "memory", limit=False),
        ),
    )


def oom_memory(last: Snapshot | None, doc: ModelDeployment) -> int:
    """What an OOM-killed replica held: its last RSS, and at least its memory limit (the kill
    happened when it crossed it). Pure."""
    rss = last.rss_bytes if last is not None and last.rss_bytes is not None else 0
    return max(rss, _whole(doc, "memory", limit=True) or 0)


def _whole(doc: ModelDeployment, name: str, *, limit: bool) -> int | None:
    resources = doc.spec.resources
    quantity = resources.limits.get(name) if limit else resources.effective_requests().get(name)
    return quantity.whole if quantity is not None else None


def usage_document(ctrl: Controller, dep: Deployment, since: float) -> dict[str, Any]:
    """``GET /usage``: the samples and OOM kills in the ``--samples`` file format, plus the
    spec the deployment runs (its limits and SLO shape the recommendation)."""
    samples = [
        {
            "t": r.ts,
            "replica": r.replica,
            "cpuCores": r.cpu_cores,
            "memoryBytes": r.memory_bytes,
            "cpuRequestCores": r.cpu_request_cores,
            "rps": r.rps,
            "latencyP95Ms": r.p95_ms,
        }
        for r in ctrl.store.usage(dep.key, since)
    ]
    ooms = [
        {
            "t": o.ts,
            "replica": o.replica,
            "restart": o.restart,
            "memoryBytes": o.memory_bytes,
            "memoryRequestBytes": o.memory_request_bytes,
        }
        for o in ctrl.store.ooms(dep.key, since)
    ]
    return {
        "name": dep.key,
        "revision": dep.rollout.stable,
        "spec": dep.doc.model_dump(mode="json", by_alias=True),
        "sourceDir": dep.doc.source_dir,
        "scrapePeriodSeconds": ctrl.settings.metrics_period_s,
        "deployment": {"requestsPerSecond": dep.rps, "p95Ms": dep.router.latency_quantile_ms(0.95)},
        "samples": samples,
        "ooms": ooms,
    }
