"""Why a Deployment does not roll out, or its autoscaler cannot scale: conditions and events.

Counts ("0 of 1 replicas updated", "desired 0") say that something is wrong, never what. The
reason is in the objects' status conditions and in the Warning events about them, as
``kubectl describe`` shows them. The shapes read here are the API's:

- Deployment ``ReplicaFailure`` (reason ``FailedCreate``, message ``Error creating: pods "x-"
  is forbidden: exceeded quota: ...`` or ``... error looking up service account ...``) and
  ``Progressing`` False (``ProgressDeadlineExceeded``):
  https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#failed-deployment
- Pod ``PodScheduled`` False (reason ``Unschedulable``) and container ``waiting`` reasons
  (``ImagePullBackOff``, ``CrashLoopBackOff``, ``CreateContainerConfigError``):
  https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions
- HorizontalPodAutoscaler ``AbleToScale`` / ``ScalingActive`` False (``FailedGetScale``,
  ``FailedGetResourceMetric``):
  https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/#appendix-horizontal-pod-autoscaler-status-conditions
- core/v1 Events of type Warning, matched to the objects by ``involvedObject`` (kind, name):
  https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/ (the core/v1
  API lists events written through events.k8s.io/v1 too: one store, two views).

Everything is pure except ``collect``, the thin read of the pods, autoscalers and events.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import ClusterError
from mlkube.backends.kubernetes.render.manifest import LABEL_INSTANCE, Manifest, kind_info

AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")
MAX_EVENTS = 5
"""Recent Warning events shown per deployment: the newest ones say what is wrong now."""

MESSAGE_MAX_CHARS = 300
"""API messages are cut here: a scheduler message can list every node."""

NORMAL_WAITING = frozenset({"ContainerCreating", "PodInitializing"})
"""Container waiting reasons that are progress, not a problem."""

_HASH = r"[a-z0-9]+"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a deployment is not healthy: which object, why, the API's own message."""

    about: str
    """``Kind/name`` of the object the condition or event is on."""

    reason: str
    """``ReplicaFailure FailedCreate`` (condition type, reason) or ``Warning FailedScheduling``."""

    message: str
    count: int = 1

    def text(self) -> str:
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"{self.about} {self.reason}: {self.message}{times}"


def lines(problem: Problem, *, indent: str = "  ", width: int = 80) -> list[str]:
    """``problem`` wrapped to ``width`` columns, continuation lines indented further. Pure."""
    return textwrap.wrap(
        problem.text(),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=True,
        break_on_hyphens=False,
    )


def condition_problems(obj: Manifest) -> list[Problem]:
    """The problems the status conditions of a Deployment, ReplicaSet, Pod or autoscaler state.

    Pure. Conditions that are normal progress (``Progressing`` True, ``Available`` False during
    a rollout) are left out: the counts already say that much.
    """
    kind = obj.get("kind", "")
    about = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
    status = obj.get("status") or {}
    found: list[Problem] = []
    for condition in status.get("conditions") or []:
        ctype = str(condition.get("type", ""))
        state = str(condition.get("status", ""))
        bad = (
            (ctype == "ReplicaFailure" and state == "True")
            or (ctype == "Progressing" and state == "False")
            or (ctype in ("PodScheduled", "AbleToScale", "ScalingActive") and state == "False")
            or (kind == "ScaledObject" and ctype == "Ready" and state == "False")
        )
        if bad:
            reason = f"{ctype} {condition.get('reason') or state}".strip()
            found.append(Problem(about, reason, _message(condition.get("message"))))
    if kind == "Pod":
        found.extend(_container_problems(about, status))
    return found


def _container_problems(about: str, status: Manifest) -> list[Problem]:
    found = []
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in NORMAL_WAITING:
            message = _message(waiting.get("message")) or "waiting"
            found.append(Problem(f"{about} container {container.get('name')}", reason, message))
    return found


def owns_event(event: Manifest, deployment: str, others: Iterable[tuple[str, str]]) -> bool:
    """Whether ``event`` is about the Deployment ``deployment``, one of its ReplicaSets or pods,
    or one of ``others`` ((kind, name): its autoscalers, claims, pods). Pure.

    A Deployment names its ReplicaSets ``<deployment>-<hash>`` and their pods
    ``<deployment>-<hash>-<suffix>``; hash and suffix have no dash, so the pods of
    ``iris-canary`` are never taken for pods of ``iris``.
    """
    involved = event.get("involvedObject") or {}
    kind = involved.get("kind")
    name = str(involved.get("name", ""))
    if (kind, name) in set(others) or (kind == "Deployment" and name == deployment):
        return True
    stem = re.escape(deployment)
    if kind == "ReplicaSet":
        return re.fullmatch(f"{stem}-{_HASH}", name) is not None
    if kind == "Pod":
        return re.fullmatch(f"{stem}-{_HASH}-{_HASH}", name) is not None
    return False


def problems(
    deployment: Manifest,
    *,
    pods: Sequence[Manifest] = (),
    autoscalers: Sequence[Manifest] = (),
    events: Sequence[Manifest] = (),
) -> list[Problem]:
    """Why ``deployment`` (and its autoscalers) are not healthy: conditions first, then the
    newest ``MAX_EVENTS`` Warning events about its objects whose message no condition already
    gives. Pure."""
    name = deployment.get("metadata", {}).get("name", "")
    found: list[Problem] = []
    for obj in (deployment, *pods, *autoscalers):
        found.extend(condition_problems(obj))
    others = {("Pod", p["metadata"]["name"]) for p in pods}
    others.update((a.get("kind", ""), a["metadata"]["name"]) for a in autoscalers)
    others.update(("PersistentVolumeClaim", claim) for claim in claims(deployment))
    said = {p.message for p in found}
    merged: dict[tuple[str, str, str], tuple[str, int]] = {}
    for event in events:
        if str(event.get("type")) != "Warning" or not owns_event(event, name, others):
            continue
        involved = event.get("involvedObject") or {}
        about = f"{involved.get('kind')}/{involved.get('name')}"
        message = _message(event.get("message"))
        if any(message in text for text in said):
            continue  # a condition already says it (the Deployment copies its ReplicaSet's)
        key = (about, f"Warning {event.get('reason', '')}", message)
        when, count = merged.get(key, ("", 0))
        merged[key] = (max(when, _when(event)), max(count, int(event.get("count") or 1)))
    newest = sorted(merged.items(), key=lambda item: item[1][0])[-MAX_EVENTS:]
    found.extend(
        Problem(about, reason, message, count) for (about, reason, message), (_, count) in newest
    )
    return _unique(found)


def claims(deployment: Manifest) -> list[str]:
    """The PersistentVolumeClaims the pod template mounts. Pure."""
    template = (deployment.get("spec") or {}).get("template") or {}
    volumes = (template.get("spec") or {}).get("volumes") or []
    return [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if v.get("persistentVolumeClaim")
    ]


def _unique(found: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in found:
        if problem.text() not in seen:
            seen.add(problem.text())
            out.append(problem)
    return out


def _message(value: object) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= MESSAGE_MAX_CHARS else text[: MESSAGE_MAX_CHARS - 1] + "…"


def _when(event: Manifest) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str((event.get("metadata") or {}).get("creationTimestamp") or "")


def collect(
    cluster: Cluster,
    namespace: str,
    deployment: Manifest,
    autoscalers: Sequence[Manifest] | None = None,
) -> list[Problem]:
    """Read the pods and Warning events of ``deployment`` (and its autoscalers, unless given)
    and say what is wrong.

    Best effort: a list the credentials may not make leaves that part out, and an autoscaler
    API the cluster does not serve (no KEDA) is not asked for; diagnosing must never be what
    fails a command.
    """
    spec = deployment.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    pods: list[Manifest] = []
    events: list[Manifest] = []
    with contextlib.suppress(ClusterError):
        pods = cluster.pods(namespace, selector) if selector else []
    if autoscalers is None:
        autoscalers = _autoscalers(cluster, namespace, deployment)
    with contextlib.suppress(ClusterError):
        events = cluster.warning_events(namespace)
    return problems(deployment, pods=pods, autoscalers=autoscalers, events=events)


def _autoscalers(cluster: Cluster, namespace: str, deployment: Manifest) -> list[Manifest]:
    meta = deployment.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(LABEL_INSTANCE)
    if instance is None:
        return []
    found: list[Manifest] = []
    with contextlib.suppress(ClusterError):  # discovery (cached per connection) skips no-KEDA
        for info in cluster.served(kind_info(kind) for kind in AUTOSCALER_KINDS):
            with contextlib.suppress(ClusterError):
                found.extend(cluster.list_objects(info, namespace, {LABEL_INSTANCE: instance}))
    return [a for a in found if targets(a, meta.get("name"))]


def targets(autoscaler: Manifest, deployment: object) -> bool:
    """Whether an HPA or ScaledObject scales the Deployment named ``deployment``. Pure."""
    return bool((autoscaler.get("spec") or {}).get("scaleTargetRef", {}).get("name") == deployment)


def collect_instances(
    cluster: Cluster, objects: Sequence[Manifest], pending: Sequence[Manifest]
) -> dict[tuple[str, str], list[Problem]]:
    """The problems of each (namespace, instance) among ``objects`` (its Deployments and
    autoscalers). Pods and events are read only for the ``pending`` Deployments (not rolled
    out); for the others the autoscalers' conditions in ``objects`` suffice."""
    slow = {(d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in pending}
    found: dict[tuple[str, str], list[Problem]] = {}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        meta = deployment["metadata"]
        namespace = meta.get("namespace", "")
        instance = (meta.get("labels") or {}).get(LABEL_INSTANCE, meta["name"])
        autoscalers = [
            a
            for a in objects
            if a["kind"] in AUTOSCALER_KINDS
            and a["metadata"].get("namespace", "") == namespace
            and targets(a, meta["name"])
        ]
        if (namespace, meta["name"]) in slow:
            seen = collect(cluster, namespace, deployment, autoscalers)
        else:
            seen = problems(deployment, autoscalers=autoscalers)
        if seen:
            found.setdefault((namespace, instance), []).extend(seen)
    return found
