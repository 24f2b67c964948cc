"""What the API-server double adds to model a cluster's controllers for apply, wait and status.

``k8s_apiserver.FakeApiServer`` holds one ``ClusterSim`` (``api.sim``) and calls it at three
points: when a Deployment is read (its status), when an object is applied (admission and
allocation the server does past validation) and after every request (the pod-count timeline).
Each behaviour and the Kubernetes documentation of what it models:

- **Scripted rollouts** (``script_rollout``): a Deployment's ``status`` follows a list of
  steps, one per read, the last one holding: available/updated counts and conditions such as
  ``ReplicaFailure`` (reason ``FailedCreate``, message ``Error creating: pods "x-" is
  forbidden: exceeded quota: ...``) or ``Progressing`` False ``ProgressDeadlineExceeded``, the
  shapes of https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status
  (the Deployment controller writes them; the double replays them).
- **Status of other objects** (``set_status``): an HPA's ``AbleToScale`` / ``ScalingActive``
  conditions (https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/#appendix-horizontal-pod-autoscaler-status-conditions)
  or a pod's ``PodScheduled`` False ``Unschedulable``
  (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions);
  ``add_pod`` stores a pod with them. Events are served by the double's core/v1 Event list
  (``FakeApiServer.add_event``; field selectors on ``involvedObject.*`` and ``type``, as in
  https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/).
- **Node ports** (``refuse_apply``): a Service asking for a ``nodePort`` another Service holds
  is refused with 422 ``spec.ports[0].nodePort: Invalid value: 30050: provided port is already
  allocated``, in a dry run too: the server's dry-run port allocator checks ``Has(port)``
  without allocating (kubernetes ``pkg/registry/core/service/portallocator/operation.go``;
  https://kubernetes.io/docs/concepts/services-networking/service/#nodeport-custom-port: "you
  need to take care of possible port collisions yourself"). It runs after the namespace check,
  as the allocator runs in storage, after admission.
- **A change between dry run and apply** (``fail_real_apply``): another client can take a port
  or a quota after mlkube's dry run and before its apply; the double refuses the real apply of
  a chosen object with a chosen status, to test what a half-done apply reports.
- **The pod-count timeline** (``timeline``): after every request, the available pods of each
  Deployment and the endpoints of each Service (the available pods of the Deployments whose
  pod template labels its selector matches: https://kubernetes.io/docs/concepts/services-networking/service/#services-in-kubernetes),
  recorded when they change, with the request that changed them. Tests read it to prove that
  nothing stopped serving.

Not modelled: pods as separate objects kept by a ReplicaSet (a Deployment's pods are its
counts), endpoint readiness gates, and quota admission itself (a test scripts its outcome).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    """One observation of a Deployment by its controller."""

    available: int
    updated: int | None = None
    """Pods of the newest template; default: ``available``."""
    conditions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Moment:
    """The serving capacity after one request: ``namespace/name`` → pods."""

    request: str
    available: dict[str, int]
    """Available pods of each Deployment that exists."""
    endpoints: dict[str, int]
    """Ready endpoints of each Service that exists."""


@dataclass
class ClusterSim:
    """The modelled controllers' state (see the module docstring)."""

    scripts: dict[tuple[str, str], list[Step]] = field(default_factory=dict)
    failing: dict[tuple[str, str, str], tuple[int, str]] = field(default_factory=dict)
    timeline: list[Moment] = field(default_factory=list)

    # --- for tests ----------------------------------------------------------------------
    def script_rollout(self, namespace: str, name: str, steps: list[Step]) -> None:
        """Deployment ``name`` reports ``steps`` one read at a time (the last one holds)."""
        self.scripts[(namespace, name)] = list(steps)

    def fail_real_apply(
        self, plural: str, namespace: str, name: str, code: int, message: str
    ) -> None:
        """The next real (not dry-run) apply of that object is refused with ``code``."""
        self.failing[(plural, namespace, name)] = (code, message)

    def serving(self, namespace: str, deployments: list[str]) -> list[int]:
        """The timeline of the available pods of ``deployments`` together."""
        return [
            sum(m.available.get(f"{namespace}/{d}", 0) for d in deployments) for m in self.timeline
        ]

    # --- hooks the double calls -----------------------------------------------------------
    def deployment_status(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The next scripted status of a Deployment being read, or None when unscripted."""
        meta = obj["metadata"]
        steps = self.scripts.get((meta.get("namespace", ""), meta["name"]))
        if not steps:
            return None
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        replicas = obj["spec"].get("replicas", 1)
        updated = step.available if step.updated is None else step.updated
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": max(replicas, updated),
            "updatedReplicas": updated,
            "readyReplicas": step.available,
            "availableReplicas": step.available,
        }
        if step.conditions:
            status["conditions"] = [copy.deepcopy(c) for c in step.conditions]
        return status

    def refuse_apply(
        self,
        objects: dict[tuple[str, str, str], Any],
        plural: str,
        namespace: str,
        config: dict[str, Any],
        dry_run: bool,
    ) -> tuple[int, str] | None:
        """(code, message) when the server refuses to store ``config`` past validation."""
        name = config["metadata"]["name"]
        if not dry_run and (plural, namespace, name) in self.failing:
            return self.failing.pop((plural, namespace, name))
        if plural != "services":
            return None
        taken = {
            port.get("nodePort"): key
            for key, stored in objects.items()
            if key[0] == "services" and key[1:] != (namespace, name)
            for port in (stored.obj.get("spec") or {}).get("ports", [])
            if port.get("nodePort")
        }
        for index, port in enumerate((config.get("spec") or {}).get("ports", [])):
            if port.get("nodePort") in taken:
                return (
                    422,
                    f'Service "{name}" is invalid: spec.ports[{index}].nodePort: Invalid '
                    f"value: {port['nodePort']}: provided port is already allocated",
                )
        return None

    def record(self, objects: dict[tuple[str, str, str], Any], request: str) -> None:
        """Append a ``Moment`` when the serving capacity differs from the last one."""
        available: dict[str, int] = {}
        templates: dict[str, tuple[str, dict[str, str], int]] = {}
        for (plural, namespace, name), stored in objects.items():
            if plural != "deployments":
                continue
            count = int((stored.obj.get("status") or {}).get("availableReplicas") or 0)
            available[f"{namespace}/{name}"] = count
            labels = stored.obj["spec"]["template"]["metadata"].get("labels", {})
            templates[f"{namespace}/{name}"] = (namespace, labels, count)
        endpoints: dict[str, int] = {}
        for (plural, namespace, name), stored in objects.items():
            if plural != "services":
                continue
            selector = (stored.obj.get("spec") or {}).get("selector") or {}
            endpoints[f"{namespace}/{name}"] = sum(
                count
                for ns, labels, count in templates.values()
                if ns == namespace
                and selector
                and all(labels.get(k) == v for k, v in selector.items())
            )
        last = self.timeline[-1] if self.timeline else None
        if last is None or (last.available, last.endpoints) != (available, endpoints):
            self.timeline.append(Moment(request, available, endpoints))


def deployment_condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """A Deployment (or ReplicaSet) status condition as the controller writes it."""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
