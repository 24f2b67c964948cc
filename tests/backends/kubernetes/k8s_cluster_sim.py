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

- **ReplicaSets keeping pods** (``replica_sets = True``, off by default: a Deployment's pods
  are then its counts): every Deployment's current ReplicaSet (``<name>-<pod-template-hash>``,
  selector: the Deployment's plus ``pod-template-hash``,
  https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#pod-template-hash-label)
  keeps ``spec.replicas`` pods as Pod objects after every request. Pods start not ready and
  become Ready after ``pod_ready_after`` more requests. A pod whose labels stop matching its
  ReplicaSet's selector is released (its controller ownerReference goes) and a replacement is
  created; an orphan pod that matches a ReplicaSet's selector is adopted; surplus pods are
  deleted not-ready first, then the newest
  (https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works,
  #isolating-pods-from-a-replicaset and #scaling-a-replicaset: "Pending (and unschedulable)
  pods are scaled down first", "If both pods were created at the same time ... the pod
  created more recently"). A Service's endpoints are then its selector's Ready pods
  (https://kubernetes.io/docs/concepts/services-networking/service/#services-in-kubernetes).
  A new pod template replaces the old ReplicaSet's pods at once (no rolling update).

Not modelled: endpoint readiness gates, rolling updates between ReplicaSets, and quota
admission itself (a test scripts its outcome).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POD_TEMPLATE_HASH = "pod-template-hash"


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
    replica_sets: bool = False
    """Model Deployments' pods as Pod objects kept by ReplicaSets (module docstring)."""
    pod_ready_after: int = 2
    """Requests after its creation before a modelled pod is Ready."""
    _ages: dict[tuple[str, str], int] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

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

    def reconcile_pods(
        self, objects: dict[tuple[str, str, str], Any], stored: Callable[[dict[str, Any]], Any]
    ) -> None:
        """The ReplicaSet controller's pass after a request (``replica_sets`` only):
        ``stored`` wraps a new Pod as the double stores objects."""
        if not self.replica_sets:
            return
        for key in [k for k in objects if k[0] == "pods" and (k[1], k[2]) in self._ages]:
            self._ages[(key[1], key[2])] += 1
            if self._ages[(key[1], key[2])] >= self.pod_ready_after:
                _set_ready(objects[key].obj)
        # Two passes: a pod one ReplicaSet releases is adopted by another in the same turn,
        # whichever order they run in (each reacts to the pod's label change).
        for _ in range(2):
            for key, dep in list(objects.items()):
                if key[0] == "deployments":
                    self._sync(objects, stored, key[1], dep.obj)

    def _sync(
        self,
        objects: dict[tuple[str, str, str], Any],
        stored: Callable[[dict[str, Any]], Any],
        namespace: str,
        dep: dict[str, Any],
    ) -> None:
        name, uid = dep["metadata"]["name"], dep["metadata"]["uid"]
        template = dep["spec"]["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        rs_uid, family = f"rs-{uid}-{digest}", f"rs-{uid}-"
        selector = {**dep["spec"]["selector"]["matchLabels"], POD_TEMPLATE_HASH: digest}
        owned: list[dict[str, Any]] = []
        for key in [k for k in objects if k[0] == "pods" and k[1] == namespace]:
            pod = objects[key].obj
            labels = pod["metadata"].get("labels") or {}
            ref = _controller(pod)
            matches = all(labels.get(k) == v for k, v in selector.items())
            if ref is not None and ref["uid"].startswith(family) and ref["uid"] != rs_uid:
                del objects[key]  # an old ReplicaSet's pod: replaced at once
                continue
            if ref is not None and ref["uid"] == rs_uid and not matches:
                pod["metadata"]["ownerReferences"] = [  # released: no longer selected
                    r for r in pod["metadata"]["ownerReferences"] if not r.get("controller")
                ]
                continue
            if ref is None and matches:
                pod["metadata"].setdefault("ownerReferences", []).append(
                    _owner(f"{name}-{digest}", rs_uid)
                )
                ref = _controller(pod)
            if ref is not None and ref["uid"] == rs_uid:
                owned.append(pod)
        wanted = int(dep["spec"].get("replicas", 1))
        for _ in range(wanted - len(owned)):
            serial = next(self._serial)
            pod_name = f"{name}-{digest}-p{serial:04d}"
            labels = {**(template["metadata"].get("labels") or {}), POD_TEMPLATE_HASH: digest}
            meta: dict[str, Any] = {
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "uid": f"pod-{serial}",
                "creationTimestamp": f"2026-01-01T{serial // 3600:02d}:"
                f"{serial // 60 % 60:02d}:{serial % 60:02d}Z",
                "ownerReferences": [_owner(f"{name}-{digest}", rs_uid)],
            }
            if template["metadata"].get("annotations"):
                meta["annotations"] = dict(template["metadata"]["annotations"])
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": copy.deepcopy(template["spec"]),
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "Ready", "status": "False"}],
                },
            }
            objects[("pods", namespace, pod_name)] = stored(pod)
            self._ages[(namespace, pod_name)] = 0
        surplus = len(owned) - wanted
        if surplus > 0:
            # Not ready first, then the newest (ReplicaSet scale-down ranking).
            owned.sort(key=lambda p: (_is_ready(p), p["metadata"]["creationTimestamp"]))
            ready = [p for p in owned if _is_ready(p)]
            victims = [p for p in owned if not _is_ready(p)] + ready[::-1]
            for pod in victims[:surplus]:
                objects.pop(("pods", namespace, pod["metadata"]["name"]), None)

    def set_pod_ready(self, objects: dict[tuple[str, str, str], Any], namespace: str) -> None:
        """Every modelled pod in ``namespace`` Ready now (a test that need not wait)."""
        for key in objects:
            if key[0] == "pods" and key[1] == namespace and (key[1], key[2]) in self._ages:
                self._ages[(key[1], key[2])] = self.pod_ready_after
                _set_ready(objects[key].obj)

    def record(self, objects: dict[tuple[str, str, str], Any], request: str) -> None:
        """Append a ``Moment`` when the serving capacity differs from the last one."""
        if self.replica_sets:
            self._record_pods(objects, request)
            return
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

    def _record_pods(self, objects: dict[tuple[str, str, str], Any], request: str) -> None:
        """``record`` when pods are objects: a Deployment's available pods are its
        ReplicaSets' Ready ones; a Service's endpoints, the Ready pods its selector matches."""
        pods = [(k[1], s.obj) for k, s in objects.items() if k[0] == "pods"]
        available: dict[str, int] = {}
        for (plural, namespace, name), stored in objects.items():
            if plural == "deployments":
                family = f"rs-{stored.obj['metadata']['uid']}-"
                available[f"{namespace}/{name}"] = sum(
                    1
                    for ns, pod in pods
                    if ns == namespace
                    and _is_ready(pod)
                    and (_controller(pod) or {}).get("uid", "").startswith(family)
                )
        endpoints: dict[str, int] = {}
        for (plural, namespace, name), stored in objects.items():
            if plural != "services":
                continue
            selector = (stored.obj.get("spec") or {}).get("selector") or {}
            endpoints[f"{namespace}/{name}"] = len(self.endpoints_of(objects, namespace, selector))
        last = self.timeline[-1] if self.timeline else None
        if last is None or (last.available, last.endpoints) != (available, endpoints):
            self.timeline.append(Moment(request, available, endpoints))

    @staticmethod
    def endpoints_of(
        objects: dict[tuple[str, str, str], Any], namespace: str, selector: dict[str, str]
    ) -> list[str]:
        """The Ready pods a Service with ``selector`` sends traffic to, by name."""
        return sorted(
            s.obj["metadata"]["name"]
            for k, s in objects.items()
            if k[0] == "pods"
            and k[1] == namespace
            and selector
            and _is_ready(s.obj)
            and all(
                (s.obj["metadata"].get("labels") or {}).get(a) == b for a, b in selector.items()
            )
        )


def _controller(pod: dict[str, Any]) -> dict[str, Any] | None:
    refs = pod["metadata"].get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def _owner(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _set_ready(pod: dict[str, Any]) -> None:
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


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
