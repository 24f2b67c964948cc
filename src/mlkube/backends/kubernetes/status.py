"""What ``mlkube status --target kubernetes`` shows: one summary per deployment instance.

Pure: the live objects (JSON) in, plain data out; the command prints it as a table, JSON or YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlkube.backends.kubernetes.render.manifest import LABEL_INSTANCE, Manifest
from mlkube.backends.kubernetes.wait import rollout_state

TABLE_COLUMNS = ("NAME", "NAMESPACE", "DEPLOYMENT", "READY", "UP-TO-DATE", "AUTOSCALER", "SERVICE")


def summarize(objects: Sequence[Manifest]) -> list[dict[str, Any]]:
    """One entry per instance: its Deployments, autoscalers and Services, by name. Pure."""
    by_instance: dict[tuple[str, str], list[Manifest]] = {}
    for obj in objects:
        meta = obj["metadata"]
        instance = meta.get("labels", {}).get(LABEL_INSTANCE, meta["name"])
        by_instance.setdefault((meta.get("namespace", ""), instance), []).append(obj)
    return [_instance(ns, name, objs) for (ns, name), objs in sorted(by_instance.items())]


def _instance(namespace: str, name: str, objects: list[Manifest]) -> dict[str, Any]:
    deployments = []
    autoscalers = []
    services = []
    for obj in sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"])):
        kind = obj["kind"]
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        if kind == "Deployment":
            deployments.append(
                {
                    "name": obj["metadata"]["name"],
                    "replicas": spec.get("replicas", 1),
                    "ready": status.get("readyReplicas", 0),
                    "updated": status.get("updatedReplicas", 0),
                    "available": status.get("availableReplicas", 0),
                    "rollout": rollout_state(obj).message,
                }
            )
        elif kind == "HorizontalPodAutoscaler":
            autoscalers.append(
                {
                    "name": obj["metadata"]["name"],
                    "kind": kind,
                    "min": spec.get("minReplicas", 1),
                    "max": spec.get("maxReplicas"),
                    "current": status.get("currentReplicas"),
                    "desired": status.get("desiredReplicas"),
                }
            )
        elif kind == "ScaledObject":
            autoscalers.append(
                {
                    "name": obj["metadata"]["name"],
                    "kind": kind,
                    "min": spec.get("minReplicaCount", 0),
                    "max": spec.get("maxReplicaCount"),
                    "ready": _condition(status, "Ready"),
                    "active": _condition(status, "Active"),
                }
            )
        elif kind == "Service":
            ports = [
                f"{p.get('port')}" + (f":{p['nodePort']}" if p.get("nodePort") else "")
                for p in spec.get("ports", [])
            ]
            services.append(
                {
                    "name": obj["metadata"]["name"],
                    "type": spec.get("type", "ClusterIP"),
                    "ports": ports,
                }
            )
    return {
        "name": name,
        "namespace": namespace,
        "deployments": deployments,
        "autoscalers": autoscalers,
        "services": services,
    }


def _condition(status: Manifest, kind: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def table_rows(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows under ``TABLE_COLUMNS``: one per Deployment of each instance. Pure."""
    rows: list[tuple[str, ...]] = []
    for summary in summaries:
        autoscaler = (
            ", ".join(
                f"{(a['kind'] == 'ScaledObject' and 'keda') or 'hpa'} {a['min']}-{a['max']}"
                for a in summary["autoscalers"]
            )
            or "-"
        )
        service = (
            ", ".join(
                f"{s['name']} {s['type']} {'/'.join(s['ports'])}" for s in summary["services"]
            )
            or "-"
        )
        for deployment in summary["deployments"] or [
            {"name": "-", "ready": 0, "replicas": 0, "updated": 0}
        ]:
            rows.append(
                (
                    summary["name"],
                    summary["namespace"],
                    deployment["name"],
                    f"{deployment['ready']}/{deployment['replicas']}",
                    str(deployment["updated"]),
                    autoscaler,
                    service,
                )
            )
    return rows
