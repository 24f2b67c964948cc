"""A TEST DOUBLE of the Kubernetes API server: a real HTTP server on 127.0.0.1.

It is not a Kubernetes API server. It implements, at the HTTP transport edge, the calls mlkube
makes, with the semantics a real kube-apiserver gives them. What it models, and where the
real behaviour is documented (``test_k8s_double.py`` checks each against the double):

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``
  (APIResourceList), with configurable served CRD groups (a missing KEDA, VPA, Gateway API,
  Prometheus Operator) and metrics-server status
  (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api);
- a path no API serves (an API group that is not installed, an unknown resource) answers
  ``404 page not found`` in plain text (Go's ``http.NotFound``), not a JSON Status: what a
  real 1.36 server answered in issue 12; client-go words it "the server could not find the
  requested resource";
- errors as ``metav1.Status`` bodies with ``reason``, ``code`` and ``details``
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs and
  https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#response-status-kind):
  401 ``Unauthorized`` for a wrong bearer token
  (https://kubernetes.io/docs/reference/access-authn-authz/authentication/); 403 with the
  RBAC message ``User "tester" cannot <verb> resource "<plural>" in API group "<group>" in the
  namespace "<ns>"`` for configured (verb, resource) pairs, or (``restrict_to``) whatever
  exactly the rules of one Role do not allow, resourceNames included
  (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb);
  404 ``namespaces "x" not found``; 409 apply conflicts and 422 ``Invalid`` with one
  ``details.causes`` item (reason, field) per error;
- server-side apply (https://kubernetes.io/docs/reference/using-api/server-side-apply/):
  ``PATCH`` with ``application/apply-patch+yaml`` only, ``fieldManager`` required (400
  without), ``force=true``, ``dryRun=All`` (also on DELETE) validating without persisting
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run); field ownership per
  manager identity (name, operation Apply/Update, subresource), written to
  ``metadata.managedFields`` as FieldsV1; two appliers of one value share it; a conflict only
  when an apply changes a value another manager owns, worded as the API server does
  (``conflict with "mlkube" with subresource "scale" using apps/v1: .spec.replicas``); a field
  its applier stops sending is removed, or reset to its default (a Deployment's replicas: 1),
  unless another manager owns it; an Update that changes a value moves its ownership to the
  updater, one that changes nothing moves nothing; the object the apply produces is what is
  validated (the official schemas, ``k8s_validation``), so an apply may name a few fields;
- immutable fields of the kinds mlkube renders (``IMMUTABLE``, each with its documentation);
- the Deployment ``scale`` subresource (merge patch), an Update recorded under the request's
  ``fieldManager`` (else the User-Agent's product name) with ``subresource: scale``; JSON
  merge patches of whole objects (the rollout driver's writes), Updates by their manager
  (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/)
  (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/);
- a Service's cluster IP allocated on create and owned by no applier
  (https://kubernetes.io/docs/concepts/services-networking/cluster-ip-allocation/);
- get; list with ``labelSelector`` (equality terms)
  (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors)
  and ``fieldSelector`` (``=``, ``==``, ``!=`` on ``metadata.name``/``metadata.namespace``, and
  for core/v1 Events the ``involvedObject.*``, ``reason``, ``source``, ``type`` and
  ``reportingComponent`` fields; any other field is 400 ``field label not supported``)
  (https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/);
  delete; pod logs; SelfSubjectAccessReview
  (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access).

A Deployment's ``status`` is filled in by a simulated controller on reads, according to
``rollout`` ("ready" after ``ready_after_reads`` reads, "stuck", or "deadline") or to a test's
scripted steps (``k8s_cluster_sim``: conditions, available counts, the pod-count timeline of
available pods and Service endpoints, node-port allocation); like the real
Deployment controller it sets the ``deployment.kubernetes.io/revision`` annotation, one more
each time the pod template changes
(https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status).
``replicas_timeline`` reports every ``spec.replicas`` a Deployment had (0 once deleted), so a
test can assert that no apply, scale or switch dropped the pod count.

Not modelled, each an ``xfail(strict=True)`` test in ``test_k8s_double.py`` stating the real
behaviour: per-item ownership of associative lists (lists are atomic here), defaults other
than a Deployment's replicas, ``resourceVersion`` optimistic concurrency, garbage collection of
a deleted Deployment's pods. A PUT or a JSON patch is refused, never half-emulated.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from k8s_cluster_sim import ClusterSim
from k8s_validation import validate

TOKEN = "test-token"  # noqa: S105 - a fake token for the fake server
PAGE_NOT_FOUND = (404, "404 page not found\n", "text/plain; charset=utf-8")
"""What kube-apiserver answers for a path no API serves: an unregistered group/version (a CRD
group that is not installed), or an unknown resource: Go's ``http.NotFound``, plain text, not a
JSON Status (client-go turns it into "the server could not find the requested resource")."""


@dataclass(frozen=True)
class Res:
    """One resource type the double serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Res("", "v1", "namespaces", "Namespace", False),
    Res("", "v1", "configmaps", "ConfigMap", True),
    Res("", "v1", "services", "Service", True),
    Res("", "v1", "persistentvolumes", "PersistentVolume", False),
    Res("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    Res("", "v1", "resourcequotas", "ResourceQuota", True),
    Res("", "v1", "limitranges", "LimitRange", True),
    Res("", "v1", "pods", "Pod", True),
    Res("", "v1", "events", "Event", True),
    Res("", "v1", "nodes", "Node", False),
    Res("", "v1", "serviceaccounts", "ServiceAccount", True),
    Res("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Res("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Res("apps", "v1", "deployments", "Deployment", True),
    Res("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    Res("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    Res("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False),
    Res("storage.k8s.io", "v1", "storageclasses", "StorageClass", False),
    Res("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
    Res("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True),
    Res("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", True),
    Res("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject", True),
    Res("autoscaling.k8s.io", "v1", "verticalpodautoscalers", "VerticalPodAutoscaler", True),
    Res("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True),
    Res("batch", "v1", "jobs", "Job", True),
    Res("batch", "v1", "cronjobs", "CronJob", True),
    Res("tekton.dev", "v1", "pipelines", "Pipeline", True),
    Res("tekton.dev", "v1", "pipelineruns", "PipelineRun", True),
    Res("tekton.dev", "v1", "taskruns", "TaskRun", True),
    Res("argoproj.io", "v1alpha1", "workflows", "Workflow", True),
    Res("argoproj.io", "v1alpha1", "cronworkflows", "CronWorkflow", True),
    Res("argoproj.io", "v1alpha1", "workflowtaskresults", "WorkflowTaskResult", True),
    Res("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", True),
    Res("kueue.x-k8s.io", "v1beta1", "localqueues", "LocalQueue", True),
    Res("kueue.x-k8s.io", "v1beta1", "clusterqueues", "ClusterQueue", False),
    Res("kueue.x-k8s.io", "v1beta1", "workloads", "Workload", True),
]
CRD_GROUPS = {
    "monitoring.coreos.com",
    "keda.sh",
    "autoscaling.k8s.io",
    "gateway.networking.k8s.io",
    "kubeflow.org",
    "kueue.x-k8s.io",
    "tekton.dev",
    "argoproj.io",
}
POLL_S = 0.02
"""How often the server thread checks for shutdown (socketserver's default is 0.5 s, which
every ``shutdown()`` -- every test's teardown -- waited out)."""
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
EVENT_FIELDS = COMMON_FIELDS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}
"""The field labels kube-apiserver accepts in a fieldSelector (core/v1 Event: its own too)."""


Manager = tuple[str, str, str]
"""A field manager's identity as the API server keys managedFields: (manager name, operation
``Apply`` or ``Update``, subresource or ""). ``mlkube`` applying and ``mlkube`` scaling through
the ``scale`` subresource are two managers, as on a real server."""


def applier(name: str) -> Manager:
    return (name, "Apply", "")


def updater(name: str, subresource: str = "") -> Manager:
    return (name, "Update", subresource)


@dataclass
class Stored:
    """An object with its field owners: manager identity → set of leaf paths."""

    obj: dict[str, Any]
    owners: dict[Manager, set[tuple[str, ...]]] = field(default_factory=dict)
    reads: int = 0
    template: str = ""
    """Deployments: the pod template the simulated controller last saw, and its revision."""
    revision: int = 0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str


class FakeApiServer:
    """State and behaviour of the double; ``url`` once started."""

    def __init__(self) -> None:
        self.version = "v1.33.2"
        self.served_crd_groups = set(CRD_GROUPS)
        self.metrics_status = 200
        self.forbidden: set[tuple[str, str]] = set()
        """(verb, resource[.group]) pairs RBAC denies."""
        self.role_rules: list[dict[str, Any]] | None = None
        """When set, the caller holds exactly this Role (``restrict_to``)."""
        self.rollout = "ready"
        self.ready_after_reads = 2
        self.objects: dict[tuple[str, str, str], Stored] = {}
        self.replicas: dict[tuple[str, str], list[int]] = {}
        """(namespace, name) of a Deployment → its ``spec.replicas`` after each change."""
        self._cluster_ips = itertools.count(10)
        self._user_agent = ""
        self.requests: list[Request] = []
        self.logs: dict[str, list[str]] = {}
        self.sim = ClusterSim()
        """Controllers' behaviour for apply, wait and status: see k8s_cluster_sim."""
        self.lock = threading.Lock()
        self._uids = itertools.count(1)
        self._rv = itertools.count(100)
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_namespace("default")

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},  # shutdown() waits one poll
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            # Plain HTTP on loopback: there is no certificate to verify, and without the flag
            # every client the backend makes loads the system CA bundle (~25 ms each).
            "clusters": [
                {
                    "name": "double",
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "double",
                    "context": {"cluster": "double", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "double",
        }

    # --- state helpers for tests -----------------------------------------------------
    def put(self, res: Res, obj: dict[str, Any], manager: str = "seed") -> None:
        meta = obj["metadata"]
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        obj["metadata"].setdefault("generation", 1)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        key = (res.plural, meta.get("namespace", "") if res.namespaced else "", meta["name"])
        self.objects[key] = Stored(obj, {updater(manager): set(_leaves(_owned_part(obj)))})
        self._record_replicas(res, key, obj)

    def add_event(
        self,
        namespace: str,
        involved: tuple[str, str],
        reason: str,
        message: str,
        *,
        type_: str = "Normal",
        last_timestamp: str = "2026-01-01T00:00:00Z",
        count: int = 1,
        name: str | None = None,
    ) -> None:
        """A core/v1 Event about the (kind, name) object ``involved``."""
        kind, involved_name = involved
        self.put(
            Res("", "v1", "events", "Event", True),
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": name or f"{involved_name}.{next(self._uids):x}",
                    "namespace": namespace,
                },
                "involvedObject": {"kind": kind, "name": involved_name, "namespace": namespace},
                "reason": reason,
                "message": message,
                "type": type_,
                "count": count,
                "firstTimestamp": last_timestamp,
                "lastTimestamp": last_timestamp,
                "source": {"component": "test"},
            },
        )

    def add_namespace(self, name: str) -> None:
        self.put(
            Res("", "v1", "namespaces", "Namespace", False),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        stored = self.objects.get((plural, namespace, name))
        return None if stored is None else stored.obj

    def update_field(
        self,
        plural: str,
        namespace: str,
        name: str,
        path: tuple[str, ...],
        value: Any,
        manager: str,
        subresource: str = "",
    ) -> None:
        """Another manager (e.g. the HPA controller) writes one field with an Update.

        As on the API server, an Update that changes a value moves that field's ownership to
        the updater; one that leaves the value as it was changes no ownership."""
        key = (plural, namespace, name)
        stored = self.objects[key]
        if _get(stored.obj, path) == value:
            return
        _set(stored.obj, path, value)
        for owned in stored.owners.values():
            owned.discard(path)
        stored.owners.setdefault(updater(manager, subresource), set()).add(path)
        stored.owners = {m: p for m, p in stored.owners.items() if p}
        stored.obj["metadata"]["managedFields"] = _managed_fields(stored.owners, stored.obj)
        if plural == "deployments":
            stored.obj["metadata"]["generation"] = stored.obj["metadata"].get("generation", 1) + 1
            self._record_replicas(_res_of(plural), key, stored.obj)

    def replicas_timeline(self, namespace: str, name: str) -> list[int]:
        """Every ``spec.replicas`` a Deployment has had, in order (0 once deleted): the pod
        count its controller works towards, so a test can assert a change never dropped it."""
        return list(self.replicas.get((namespace, name), []))

    def _collect_job_pods(
        self, res: Res, key: tuple[str, str, str], query: dict[str, list[str]]
    ) -> None:
        """The garbage collector's part of deleting a Job: its pods go with a Background or
        Foreground ``propagationPolicy``; without one a batch/v1 Job's default is to orphan
        them ("If you delete the Job with the API, ... the pods are orphaned unless you set
        propagationPolicy", https://kubernetes.io/docs/concepts/workloads/controllers/job/
        #job-termination-and-cleanup). The pods are found by the controller's
        ``batch.kubernetes.io/job-name`` label."""
        policy = query.get("propagationPolicy", ["Orphan"])[0]
        if res.kind != "Job" or policy not in ("Background", "Foreground"):
            return
        _plural, namespace, name = key
        for pod_key in [k for k in self.objects if k[0] == "pods" and k[1] == namespace]:
            labels = self.objects[pod_key].obj["metadata"].get("labels") or {}
            if labels.get("batch.kubernetes.io/job-name") == name:
                del self.objects[pod_key]

    def _record_replicas(
        self, res: Res, key: tuple[str, str, str], obj: dict[str, Any] | None
    ) -> None:
        if res.kind != "Deployment":
            return
        count = 0 if obj is None else int(obj.get("spec", {}).get("replicas", 1))
        timeline = self.replicas.setdefault((key[1], key[2]), [])
        if not timeline or timeline[-1] != count:
            timeline.append(count)

    # --- request handling ------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, str]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        content_type = headers.get("content-type", "")
        with self.lock:
            self.requests.append(Request(method, parts.path, query, content_type))
            self._user_agent = headers.get("user-agent", "")
            if headers.get("authorization") != f"Bearer {TOKEN}":
                return 401, _status(401, "Unauthorized", "Unauthorized"), "application/json"
            answer = self._route(method, parts.path, query, content_type, body)
            self.sim.reconcile_pods(self.objects, Stored)  # ReplicaSets, when modelled
            self.sim.record(self.objects, f"{method} {parts.path}")  # the pod-count timeline
            return answer

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], content_type: str, body: bytes
    ) -> tuple[int, Any, str]:
        if path == "/version":
            return (
                200,
                {"major": "1", "minor": self.version.split(".")[1], "gitVersion": self.version},
                "application/json",
            )
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}, "application/json"
        if path == "/apis":
            return 200, self._groups(), "application/json"
        if path.startswith("/apis/metrics.k8s.io/"):
            if self.metrics_status != 200:
                return (
                    self.metrics_status,
                    _status(self.metrics_status, "ServiceUnavailable", "unavailable"),
                    "application/json",
                )
            return (
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": "metrics.k8s.io/v1beta1",
                    "resources": [
                        {
                            "name": "nodes",
                            "namespaced": False,
                            "kind": "NodeMetrics",
                            "verbs": ["get", "list"],
                        }
                    ],
                },
                "application/json",
            )
        route = self._parse(path)
        if route is None:
            return PAGE_NOT_FOUND
        res, namespace, name, sub = route
        if isinstance(res, str):  # discovery of a group/version
            return self._discovery(res)
        return self._resource(method, res, namespace, name, sub, query, content_type, body)

    def _groups(self) -> dict[str, Any]:
        versions: dict[str, set[str]] = {}
        for res in RESOURCES:
            if res.group and self._served(res):
                versions.setdefault(res.group, set()).add(res.version)
        return {
            "kind": "APIGroupList",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                }
                for g, vs in sorted(versions.items())
            ],
        }

    def _served(self, res: Res) -> bool:
        return res.group not in CRD_GROUPS or res.group in self.served_crd_groups

    def _discovery(self, group_version: str) -> tuple[int, Any, str]:
        resources = [r for r in RESOURCES if r.group_version == group_version and self._served(r)]
        if not resources:
            return PAGE_NOT_FOUND
        return (
            200,
            {
                "kind": "APIResourceList",
                "groupVersion": group_version,
                "resources": [
                    {
                        "name": r.plural,
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for r in resources
                ],
            },
            "application/json",
        )

    def _parse(self, path: str) -> tuple[Any, str | None, str | None, str | None] | None:
        segments = [s for s in path.split("/") if s]
        if segments[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", segments[2:]
        elif len(segments) >= 3 and segments[0] == "apis":
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            return None
        if not rest:
            return (f"{group}/{version}" if group else version), None, None, None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = (
            rest[0],
            (rest[1] if len(rest) > 1 else None),
            (rest[2] if len(rest) > 2 else None),
        )
        for res in RESOURCES:
            if (res.group, res.version, res.plural) == (group, version, plural) and self._served(
                res
            ):
                if (
                    res.plural == "namespaces"
                    and namespace is None
                    and name is None
                    and len(rest) == 1
                ):
                    return res, None, None, None
                return res, namespace, name, sub
        return None

    def restrict_to(self, rules: list[dict[str, Any]]) -> None:
        """Authorize every later request by these Role rules alone, as RBAC does: allowed when
        some rule lists the API group, the resource (``scale`` as ``deployments/scale``) and
        the verb, and, when it has ``resourceNames``, the object's name; a list, watch or
        create is never allowed by a rule with ``resourceNames``.
        https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources
        """
        self.role_rules = rules

    def _allowed_by_role(self, verb: str, res: Res, name: str | None, sub: str | None) -> bool:
        assert self.role_rules is not None
        resource = f"{res.plural}/{sub}" if sub else res.plural
        for rule in self.role_rules:
            names = rule.get("resourceNames")
            if (
                res.group in rule.get("apiGroups", [])
                and resource in rule.get("resources", [])
                and verb in rule.get("verbs", [])
                and (not names or (name is not None and name in names))
            ):
                return True
        return False

    def _forbidden(
        self,
        verb: str,
        res: Res,
        namespace: str | None,
        name: str | None,
        sub: str | None = None,
    ) -> tuple[int, Any, str] | None:
        resource = f"{res.plural}.{res.group}" if res.group else res.plural
        by_role = self.role_rules is not None and not self._allowed_by_role(verb, res, name, sub)
        if (verb, resource) not in self.forbidden and not by_role:
            return None
        what = f'{resource} "{name}"' if name else resource
        group = f'"{res.group}"' if res.group else '""'
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        message = (
            f'{what} is forbidden: User "tester" cannot {verb} resource "{res.plural}" '
            f"in API group {group}{where}"
        )
        details = {**({"name": name} if name else {}), "group": res.group, "kind": res.plural}
        return 403, _status(403, "Forbidden", message, details), "application/json"

    def _resource(
        self,
        method: str,
        res: Res,
        namespace: str | None,
        name: str | None,
        sub: str | None,
        query: dict[str, list[str]],
        content_type: str,
        body: bytes,
    ) -> tuple[int, Any, str]:
        verb = {
            "GET": "get" if name else "list",
            "PATCH": "patch",
            "DELETE": "delete",
            "POST": "create",
        }[method]
        denied = self._forbidden(verb, res, namespace, name, sub)
        if denied:
            return denied
        ns_key = (namespace or "") if res.namespaced else ""
        if res.plural == "selfsubjectaccessreviews" and method == "POST":
            return self._access_review(json.loads(body))
        if method == "GET" and name is None:
            return self._list(res, namespace, query)
        assert name is not None
        key = (res.plural, ns_key, name)
        if method == "GET" and sub == "log":
            lines = self.logs.get(name, [])
            return 200, "".join(line + "\n" for line in lines), "text/plain"
        if method == "GET":
            stored = self.objects.get(key)
            if stored is None:
                return 404, _not_found(res, name), "application/json"
            self._simulate_controller(res, stored)
            return 200, _out(res, stored.obj), "application/json"
        if method == "DELETE":
            return self._delete(res, key, name, query)
        if method == "PATCH" and sub == "scale":
            return self._scale(res, key, name, query, body, content_type)
        if method == "PATCH" and sub is None and content_type == "application/merge-patch+json":
            return self._merge_patch(res, key, name, query, body)
        if method == "PATCH":
            return self._apply(res, key, namespace, name, query, content_type, body)
        return (
            405,
            _status(405, "MethodNotAllowed", f"{method} not supported by the double"),
            "application/json",
        )

    def _delete(
        self, res: Res, key: tuple[str, str, str], name: str, query: dict[str, list[str]]
    ) -> tuple[int, Any, str]:
        if key not in self.objects:
            return 404, _not_found(res, name), "application/json"
        if query.get("dryRun", [""])[0] != "All":  # a dry-run delete deletes nothing
            del self.objects[key]
            self._record_replicas(res, key, None)
            self._collect_job_pods(res, key, query)
        return (
            200,
            {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}},
            "application/json",
        )

    def _list(
        self, res: Res, namespace: str | None, query: dict[str, list[str]]
    ) -> tuple[int, Any, str]:
        selector = _selector(query.get("labelSelector", [""])[0])
        fields = _field_selector(query.get("fieldSelector", [""])[0])
        supported = EVENT_FIELDS if res.kind == "Event" else COMMON_FIELDS
        unsupported = [path for path, _op, _value in fields if path not in supported]
        if unsupported:
            message = (
                f'Unable to find "{res.group_version}, Resource={res.plural}" that match '
                f'field selector "{query["fieldSelector"][0]}": '
                f"field label not supported: {unsupported[0]}"
            )
            return 400, _status(400, "BadRequest", message), "application/json"
        items = []
        for (plural, ns, _name), stored in sorted(self.objects.items()):
            if plural != res.plural or (res.namespaced and namespace and ns != namespace):
                continue
            labels = stored.obj["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in selector.items()) and _fields_match(
                stored.obj, fields
            ):
                self._simulate_controller(res, stored)
                item = copy.deepcopy(stored.obj)
                item.pop("apiVersion", None)  # list items come without apiVersion/kind
                item.pop("kind", None)
                items.append(item)
        body = {
            "apiVersion": res.group_version,
            "kind": f"{res.kind}List",
            "metadata": {"resourceVersion": str(next(self._rv))},
            "items": items,
        }
        return 200, body, "application/json"

    def _access_review(self, review: dict[str, Any]) -> tuple[int, Any, str]:
        attrs = review["spec"]["resourceAttributes"]
        resource = (
            f"{attrs['resource']}.{attrs['group']}" if attrs.get("group") else attrs["resource"]
        )
        review["status"] = {"allowed": (attrs["verb"], resource) not in self.forbidden}
        return 201, review, "application/json"

    def _scale(
        self,
        res: Res,
        key: tuple[str, str, str],
        name: str,
        query: dict[str, list[str]],
        body: bytes,
        content_type: str,
    ) -> tuple[int, Any, str]:
        """PATCH .../deployments/NAME/scale: an Update through the ``scale`` subresource,
        recorded in managedFields as (fieldManager, "Update", subresource "scale")."""
        if content_type not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            return 415, _status(415, "UnsupportedMediaType", content_type), "application/json"
        stored = self.objects.get(key)
        if stored is None:
            return 404, _not_found(res, name), "application/json"
        replicas = json.loads(body)["spec"]["replicas"]
        manager = self._manager_name(query)
        path = ("spec", "replicas")
        self.update_field(res.plural, key[1], name, path, replicas, manager, "scale")
        return (
            200,
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": key[1]},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas},
            },
            "application/json",
        )

    def _manager_name(self, query: dict[str, list[str]]) -> str:
        """``fieldManager``, else the User-Agent up to its first "/" (what kube-apiserver
        infers for a request other than an apply)."""
        given = query.get("fieldManager", [""])[0]
        return given or self._user_agent.split("/", 1)[0][:128]

    def _apply(
        self,
        res: Res,
        key: tuple[str, str, str],
        namespace: str | None,
        name: str,
        query: dict[str, list[str]],
        content_type: str,
        body: bytes,
    ) -> tuple[int, Any, str]:
        if content_type != "application/apply-patch+yaml":
            return (
                415,
                _status(
                    415, "UnsupportedMediaType", f"the double only applies, got {content_type}"
                ),
                "application/json",
            )
        manager_name = query.get("fieldManager", [""])[0]
        if not manager_name:
            return (
                400,
                _status(400, "BadRequest", "PATCH with apply requires fieldManager"),
                "application/json",
            )
        manager = applier(manager_name)
        config = yaml.safe_load(body)
        problems = self._invalid(res, config, namespace, name)
        if problems:
            return _invalid_status(res, name, [("", "FieldValueInvalid", p) for p in problems])
        if res.namespaced and ("namespaces", "", namespace or "") not in self.objects:
            details = {"name": namespace, "kind": "namespaces"}
            message = f'namespaces "{namespace}" not found'
            return 404, _status(404, "NotFound", message, details), "application/json"
        force = query.get("force", ["false"])[0] == "true"
        dry_run = query.get("dryRun", [""])[0] == "All"
        refused = self.sim.refuse_apply(self.objects, res.plural, key[1], config, dry_run)
        if refused is not None:  # node ports, changes between dry run and apply: k8s_cluster_sim
            code, message = refused
            return (
                code,
                _status(code, "Invalid" if code == 422 else "Forbidden", message),
                ("application/json"),
            )
        stored = self.objects.get(key)
        applied = set(_leaves(_owned_part(config)))
        if stored is None:
            result = Stored(copy.deepcopy(config), {manager: applied})
            meta = result.obj["metadata"]
            meta.update(
                uid=f"uid-{next(self._uids)}",
                generation=1,
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            self._allocate(res, result.obj)
            _default(res, result.obj)
        else:
            conflicts = self._conflicts(stored, config, applied, manager)
            if conflicts and not force:
                return _conflict_status(conflicts, res.group_version)
            result = self._merge(res, stored, config, applied, manager)
            errors = _immutable_changes(res, stored.obj, result.obj)
            if errors:
                return _invalid_status(res, name, errors)
        # Like the API server, validate the object the apply produces, not the request: an
        # apply may name a few fields only (the replicas-only handover apply).
        problems = validate(_as_submitted(result.obj), "1.33.0")
        if problems:
            return _invalid_status(res, name, [("", "FieldValueInvalid", p) for p in problems])
        result.obj["metadata"]["resourceVersion"] = str(next(self._rv))
        result.obj["metadata"]["managedFields"] = _managed_fields(result.owners, result.obj)
        if not dry_run:
            self.objects[key] = result
            self._record_replicas(res, key, result.obj)
        return 200, _out(res, result.obj), "application/json"

    def _merge_patch(
        self,
        res: Res,
        key: tuple[str, str, str],
        name: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> tuple[int, Any, str]:
        """A JSON merge patch (RFC 7386: maps merge, lists are replaced, null deletes), as an
        Update by ``fieldManager``: the fields whose value it changes become that manager's.

        Models https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
        (merge patch) and the Update operation of
        https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management .
        The merged object is validated like an applied one (422), and immutable fields too.
        """
        stored = self.objects.get(key)
        if stored is None:
            return 404, _not_found(res, name), "application/json"
        manager = updater(self._manager_name(query))
        patch = json.loads(body)
        obj = copy.deepcopy(stored.obj)
        _merge_json(obj, patch)
        problems = validate(_as_submitted(obj), "1.33.0")
        if problems:
            return _invalid_status(res, name, [("", "FieldValueInvalid", p) for p in problems])
        errors = _immutable_changes(res, stored.obj, obj)
        if errors:
            return _invalid_status(res, name, errors)
        before_spec = json.dumps(stored.obj.get("spec"), sort_keys=True)
        if json.dumps(obj.get("spec"), sort_keys=True) != before_spec:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        owners = {m: set(p) for m, p in stored.owners.items()}
        for path in _leaves(_owned_part(patch)):
            if _get(patch, path) is None:  # deleted: nobody owns it or anything under it
                for owned in owners.values():
                    owned -= {p for p in owned if p[: len(path)] == path}
                continue
            if _get(stored.obj, path) == _get(obj, path):
                continue  # a value left as it was: no ownership moves
            for owned in owners.values():
                owned.discard(path)
            owners.setdefault(manager, set()).add(path)
        kept = {m: p for m, p in owners.items() if p}
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        obj["metadata"]["managedFields"] = _managed_fields(kept, obj)
        self.objects[key] = Stored(obj, kept, stored.reads, stored.template, stored.revision)
        self._record_replicas(res, key, obj)
        return 200, _out(res, obj), "application/json"

    def _allocate(self, res: Res, obj: dict[str, Any]) -> None:
        """What the API server allocates on create: a Service's cluster IP (unless headless
        or ExternalName). Nobody's applied configuration owns it."""
        spec = obj.get("spec", {})
        if res.kind != "Service" or spec.get("type") == "ExternalName":
            return
        if "clusterIP" not in spec:
            spec["clusterIP"] = f"10.96.0.{next(self._cluster_ips)}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])

    def _invalid(self, res: Res, config: Any, namespace: str | None, name: str) -> list[str]:
        if not isinstance(config, dict) or config.get("kind") != res.kind:
            found = config.get("kind") if isinstance(config, dict) else None
            return [f"body kind {found!r} does not match {res.kind}"]
        if config.get("apiVersion") != res.group_version:
            return [f"apiVersion {config.get('apiVersion')!r} does not match {res.group_version}"]
        meta = config.get("metadata", {})
        if meta.get("name") != name:
            return [f"metadata.name {meta.get('name')!r} does not match the URL's {name!r}"]
        if res.namespaced and meta.get("namespace") not in (None, namespace):
            return ["the namespace of the object does not match the namespace on the request"]
        return []

    def _conflicts(
        self,
        stored: Stored,
        config: dict[str, Any],
        applied: set[tuple[str, ...]],
        manager: Manager,
    ) -> list[tuple[Manager, tuple[str, ...]]]:
        """Applied fields whose value differs from the live one and that another manager owns
        (two appliers of the same value share a field without a conflict)."""
        conflicts = []
        for path in sorted(applied):
            new = _get(config, path)
            if _get(stored.obj, path) == new:
                continue  # same value: shared ownership, no conflict
            for other, owned in sorted(stored.owners.items()):
                if other != manager and path in owned:
                    conflicts.append((other, path))
        return conflicts

    def _merge(
        self,
        res: Res,
        stored: Stored,
        config: dict[str, Any],
        applied: set[tuple[str, ...]],
        manager: Manager,
    ) -> Stored:
        """The live object with ``config`` applied by ``manager``: a field it applied before and
        leaves out now is removed unless another manager owns it too; a field it sets to a new
        value (forced, or owned by nobody else) is no longer anyone else's."""
        obj = copy.deepcopy(stored.obj)
        owners = {m: set(p) for m, p in stored.owners.items()}
        before_spec = json.dumps(
            {k: v for k, v in obj.items() if k not in ("metadata", "status")}, sort_keys=True
        )
        for path in owners.get(manager, set()) - applied:
            if not any(path in p for m, p in owners.items() if m != manager):
                _delete(obj, path)
        for path in applied:
            _set(obj, path, copy.deepcopy(_get(config, path)))
            for other, owned in owners.items():
                if other != manager and _get(stored.obj, path) != _get(config, path):
                    owned.discard(path)
        owners[manager] = applied
        _default(res, obj)
        after_spec = json.dumps(
            {k: v for k, v in obj.items() if k not in ("metadata", "status")}, sort_keys=True
        )
        if before_spec != after_spec:
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        kept = {m: p for m, p in owners.items() if p}  # a manager left owning nothing goes
        return Stored(obj, kept, stored.reads, stored.template, stored.revision)

    def _simulate_controller(self, res: Res, stored: Stored) -> None:
        if res.kind != "Deployment":
            return
        stored.reads += 1
        obj = stored.obj
        template = json.dumps(obj["spec"].get("template"), sort_keys=True)
        if template != stored.template:  # a new ReplicaSet: the next revision
            stored.template = template
            stored.revision += 1
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations[REVISION_ANNOTATION] = str(stored.revision)
        scripted = self.sim.deployment_status(obj)  # a test's pod-count timeline
        if scripted is not None:
            obj["status"] = scripted
            return
        replicas = obj["spec"].get("replicas", 1)
        generation = obj["metadata"].get("generation", 1)
        name = obj["metadata"]["name"]
        if self.rollout == "deadline":
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": 0,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{name}-abc" has timed out progressing.',
                    }
                ],
            }
        elif self.rollout == "ready" and stored.reads >= self.ready_after_reads:
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        else:
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": 0,
            }


def _make_handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, content_type = api.handle(self.command, self.path, headers, body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_POST = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A metav1.Status failure, the body of every JSON error the API server sends."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


def _not_found(res: Res, name: str) -> dict[str, Any]:
    resource = f"{res.plural}.{res.group}" if res.group else res.plural
    details = {"name": name, "group": res.group, "kind": res.plural}
    return _status(404, "NotFound", f'{resource} "{name}" not found', details)


def _out(res: Res, obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["apiVersion"] = res.group_version
    out["kind"] = res.kind
    return out


def _owned_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What a manager can own: everything but identity and server-set metadata."""
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    meta = obj.get("metadata", {})
    owned_meta = {k: meta[k] for k in ("labels", "annotations") if k in meta}
    if owned_meta:  # name and namespace identify the object: nobody owns them
        out["metadata"] = owned_meta
    return out


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*prefix, k))]
    return [prefix] if prefix else []


def _merge_json(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_json(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = value


def _delete(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parents = [obj]
    for part in path[:-1]:
        if not isinstance(parents[-1].get(part), dict):
            return
        parents.append(parents[-1][part])
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):  # drop maps left empty
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def _selector(text: str) -> dict[str, str]:
    terms = [t for t in text.split(",") if t]
    return dict(t.split("=", 1) for t in terms)


def _field_selector(text: str) -> list[tuple[str, str, str]]:
    """(field path, "=" or "!=", value) terms; ``==`` means ``=`` as on the API server."""
    terms = []
    for term in (t for t in text.split(",") if t):
        if "!=" in term:
            path, value = term.split("!=", 1)
            terms.append((path, "!=", value))
        else:
            path, value = term.replace("==", "=", 1).split("=", 1)
            terms.append((path, "=", value))
    return terms


def _fields_match(obj: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for path, op, value in terms:
        found = obj
        for part in ("source", "component") if path == "source" else path.split("."):
            found = found.get(part, {}) if isinstance(found, dict) else {}
        actual = "" if found == {} or found is None else str(found)
        if (actual == value) != (op == "="):
            return False
    return True


def _res_of(plural: str) -> Res:
    return next(r for r in RESOURCES if r.plural == plural)


def _as_submitted(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as a client could send it: without status and server-set metadata."""
    out = {k: v for k, v in obj.items() if k != "status"}
    server_set = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in server_set}
    return out


# --- server-side apply: defaults, managedFields, conflicts ----------------------------------

DEFAULTS: dict[str, dict[tuple[str, ...], Any]] = {"Deployment": {("spec", "replicas"): 1}}
"""Defaults the API server sets when a field is absent, on create and when an apply removes
the field: "If the field is not owned by any other field managers, it is either deleted from
the live object or reset to its default value, if it has one"
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management). A
Deployment's replicas default to 1
(https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#replicas). Other
defaults (strategy, revisionHistoryLimit, ...) are not modelled: nothing here reads them."""


def _default(res: Res, obj: dict[str, Any]) -> None:
    for path, value in DEFAULTS.get(res.kind, {}).items():
        if _get(obj, path) is None:
            _set(obj, path, value)


def _managed_fields(owners: dict[Manager, set[tuple[str, ...]]], obj: dict[str, Any]) -> Any:
    """``metadata.managedFields`` as the API server writes it: one entry per manager identity,
    its fields as FieldsV1 (``{"f:spec": {"f:replicas": {}}}``; lists are atomic here, so a
    list is one ``f:`` leaf where a real server may list ``k:{...}`` items), ``subresource``
    for an update through a subresource."""
    api_version = obj.get("apiVersion", "")
    entries = []
    for (name, operation, subresource), paths in sorted(owners.items()):
        tree: dict[str, Any] = {}
        for path in sorted(paths):
            node = tree
            for part in path:
                node = node.setdefault(f"f:{part}", {})
        entry: dict[str, Any] = {
            "manager": name,
            "operation": operation,
            "apiVersion": api_version,
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": tree,
        }
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
    return entries


def _manager_text(manager: Manager, api_version: str) -> str:
    """How kube-apiserver names a manager in a conflict (printManager in
    k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager/internal/conflict.go): the name,
    ``with subresource "x"``, and ``using <apiVersion>`` for an Update."""
    name, operation, subresource = manager
    text = f'"{name}"'
    if subresource:
        text += f' with subresource "{subresource}"'
    if operation == "Update":
        text += f" using {api_version}"
    return text


def _conflict_status(
    conflicts: list[tuple[Manager, tuple[str, ...]]], api_version: str
) -> tuple[int, Any, str]:
    """409 Conflict with one ``FieldManagerConflict`` cause per field, as the API server
    answers an apply that would change another manager's field."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_manager_text(m, api_version)}",
            "field": "." + ".".join(p),
        }
        for m, p in conflicts
    ]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f"conflicts with {_manager_text(manager, api_version)}:")
            lines += [f"- .{'.'.join(p)}" for m, p in conflicts if m == manager]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    status = _status(409, "Conflict", message, {"causes": causes})
    return 409, status, "application/json"


# --- validation errors and immutable fields --------------------------------------------------


def _invalid_status(
    res: Res, name: str, errors: list[tuple[str, str, str]]
) -> tuple[int, Any, str]:
    """422 Invalid as the API server writes it: ``Deployment.apps "x" is invalid: <field>:
    <detail>`` (several errors in brackets) and one ``details.causes`` item per error, with its
    ``reason`` (FieldValueInvalid, FieldValueForbidden...) and ``field``."""
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    texts = [f"{f}: {m}" if f else m for f, _r, m in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    causes = [
        {"reason": reason, "message": message, **({"field": f} if f else {})}
        for f, reason, message in errors
    ]
    details = {"name": name, "group": res.group, "kind": res.kind, "causes": causes}
    return (
        422,
        _status(422, "Invalid", f'{kind} "{name}" is invalid: {joined}', details),
        ("application/json"),
    )


def _go_value(value: Any) -> str:
    """A value the way field errors print it (JSON, no spaces)."""
    return json.dumps(value, separators=(",", ":"))


PV_SOURCES = (
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "cephfs",
    "rbd",
    "azureFile",
    "azureDisk",
    "gcePersistentDisk",
    "awsElasticBlockStore",
)
"""The volume-source fields of a PersistentVolume spec (its ``persistentvolumesource``)."""


def _immutable_changes(res: Res, before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    """(field, cause reason, detail) for each field an update may not change, for the kinds
    mlkube renders, in the words of the API server's validation code:

    - Deployment ``spec.selector``: "In API version apps/v1, a Deployment's label selector is
      immutable after it gets created"
      (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#label-selector-updates);
    - Service ``spec.clusterIP``/``clusterIPs``: "may not change once set"
      (https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/#ServiceSpec:
      "cannot be updated unless type is changed to ExternalName");
    - PersistentVolumeClaim ``spec``: immutable except ``resources.requests``
      (https://kubernetes.io/docs/concepts/storage/persistent-volumes/#expanding-persistent-volumes-claims);
    - PersistentVolume: its volume source
      (https://kubernetes.io/docs/concepts/storage/persistent-volumes/#persistent-volumes);
    - PriorityClass ``value`` ("may not be changed in an update"; the PriorityClass docs:
      https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/#priorityclass);
    - ConfigMap ``data`` once ``immutable: true``
      (https://kubernetes.io/docs/concepts/configuration/configmap/#configmap-immutable).

    The other kinds mlkube renders have no immutable spec fields (a PodDisruptionBudget's spec
    is mutable since policy/v1; HPA, ResourceQuota, LimitRange, Namespace; the CRD kinds declare
    none); a Job's template, completions and completionMode. mlkube renders no StatefulSet.
    """
    check = IMMUTABLE.get(res.kind)
    return [] if check is None else check(before, after)


FieldError = tuple[str, str, str]
"""(field, cause reason, detail) of one validation error."""


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj.get("spec") or {}
    return spec


def _deployment_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    old, new = _spec(before).get("selector"), _spec(after).get("selector")
    if old == new:
        return []
    return [
        (
            "spec.selector",
            "FieldValueInvalid",
            f"Invalid value: {_go_value(new)}: field is immutable",
        )
    ]


def _service_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    old, new = _spec(before), _spec(after)
    if "ExternalName" in (old.get("type"), new.get("type")) or not old.get("clusterIP"):
        return []
    if new.get("clusterIP") == old["clusterIP"]:
        return []
    value = _go_value([new.get("clusterIP") or ""])
    return [
        (
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
            f"Invalid value: {value}: may not change once set",
        )
    ]


def _claim_fixed_part(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k != "volumeAttributesClassName"}
    out["resources"] = {k: v for k, v in (spec.get("resources") or {}).items() if k != "requests"}
    return out


def _claim_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    if _claim_fixed_part(_spec(before)) == _claim_fixed_part(_spec(after)):
        return []
    detail = (
        "Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"
    )
    return [("spec", "FieldValueForbidden", detail)]


def _volume_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    if all(_spec(before).get(k) == _spec(after).get(k) for k in PV_SOURCES):
        return []
    detail = "Forbidden: spec.persistentvolumesource is immutable after creation"
    return [("spec.persistentvolumesource", "FieldValueForbidden", detail)]


def _priority_class_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    if before.get("value") == after.get("value"):
        return []
    return [("value", "FieldValueForbidden", "Forbidden: may not be changed in an update.")]


def _config_map_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    if before.get("immutable") is not True:
        return []
    detail = "Forbidden: field is immutable when `immutable` is set"
    return [
        (name, "FieldValueForbidden", detail)
        for name in ("data", "binaryData", "immutable")
        if before.get(name) != after.get(name)
    ]


def _job_immutable(before: dict[str, Any], after: dict[str, Any]) -> list[FieldError]:
    """A Job's pod template, completions (outside elastic Indexed Jobs, which mlkube does not
    use) and completionMode are immutable: "field is immutable"
    (https://kubernetes.io/docs/concepts/workloads/controllers/job/#mutable-scheduling-directives:
    only a suspended, never-started Job may change its template's scheduling fields)."""
    old, new = _spec(before), _spec(after)
    errors: list[FieldError] = []
    for name in ("completionMode", "completions", "template"):
        if old.get(name) != new.get(name):
            value = _go_value(new.get(name))[:200]
            errors.append(
                (f"spec.{name}", "FieldValueInvalid", f"Invalid value: {value}: field is immutable")
            )
    return errors


IMMUTABLE: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[FieldError]]] = {
    "Deployment": _deployment_immutable,
    "Service": _service_immutable,
    "PersistentVolumeClaim": _claim_immutable,
    "PersistentVolume": _volume_immutable,
    "PriorityClass": _priority_class_immutable,
    "ConfigMap": _config_map_immutable,
    "Job": _job_immutable,
}
