"""The one seam to the Kubernetes API server (the only module that imports lightkube).

Why lightkube: server-side apply is one call (``Client.apply`` sends ``PATCH`` with
``application/apply-patch+yaml``, ``fieldManager`` and ``force``; ``dry_run`` adds
``dryRun=All``); its resources are typed dataclasses generated from the official OpenAPI, so
``codecs.from_dict`` checks our dicts against the real field names before anything is sent and
the round trip back is exact; CRDs become typed generic resources; and it speaks plain HTTP
through httpx, so tests point a kubeconfig at a local HTTP test double instead of patching.
The official ``kubernetes`` client needs the dynamic client for SSA and generated models of
2,000 classes; kr8s is async-first and untyped (dict-like) objects.

Everything returned is plain JSON-shaped data (``Manifest``); every failure is translated into
the backend's errors here, with the API server's own message kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mlkube.errors import BackendError

try:
    import httpx2
    from lightkube import ApiError, Client, ConfigError, KubeConfig, codecs
    from lightkube.config import client_adapter
    from lightkube.config.client_adapter import ConnectionParams
    from lightkube.core.resource_registry import resource_registry
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
    from lightkube.resources.core_v1 import Event, Pod
    from lightkube.types import CascadeType, PatchType
except ImportError as missing:  # the client is the optional extra mlkube[kubernetes]
    raise BackendError(
        f"the Kubernetes client is not installed ({missing.name} is missing): "
        "pip install 'mlkube[kubernetes]'"
    ) from missing

from mlkube.backends.kubernetes.errors import (
    ApiMissingError,
    ApplyError,
    ClusterError,
    ClusterUnreachableError,
    ConflictError,
    ForbiddenError,
    ObjectNotFoundError,
    UnauthorizedError,
)
from mlkube.backends.kubernetes.render.manifest import FIELD_MANAGER, KINDS, KindInfo, Manifest

logger = logging.getLogger(__name__)

_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')
"""How a 409 from server-side apply names each manager: ``conflict with "kubectl" using ...``
(one conflict) or ``conflicts with "kubectl" ...:`` (several)."""

API_NOT_SERVED = "the server could not find the requested resource"
"""client-go's words for a 404 that is not a JSON Status; a proxy in front of an API server may
pass them on. The API server itself answers a path no API serves (an API group that is not
installed) with the plain text ``404 page not found``."""

MESSAGE_MAX_CHARS = 400
"""API error messages are cut to this length: they may echo whole objects back."""


@dataclass(frozen=True, slots=True)
class Target:
    """Which cluster and namespace: a kubeconfig context (None: current) and a namespace."""

    context: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None
    """A kubeconfig file; None reads $KUBECONFIG, ~/.kube/config or the in-cluster account."""

    timeout_s: float = 15.0


class Cluster:
    """A connection to one API server, speaking JSON-shaped objects."""

    def __init__(self, target: Target) -> None:
        try:
            if target.kubeconfig is not None:
                config = KubeConfig.from_file(target.kubeconfig)
            else:
                config = KubeConfig.from_env()
            single = config.get(context_name=target.context)
        except ConfigError as error:
            raise ClusterUnreachableError(
                f"cannot load a kubeconfig: {error} (set KUBECONFIG or use --context)"
            ) from error
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise ClusterUnreachableError(
                f"the kubeconfig is not valid YAML{at}: {getattr(error, 'problem', error)}"
            ) from error
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            which = f"context {target.context!r}" if target.context else "current context"
            raise ClusterUnreachableError(
                f"the kubeconfig has no usable {which}: missing or malformed {error}"
            ) from error
        if single is None:
            raise ClusterUnreachableError("the kubeconfig names no current context")
        self.server = single.cluster.server
        self.namespace = target.namespace or single.namespace
        timeout = httpx2.Timeout(target.timeout_s)
        self._client = Client(
            single, namespace=self.namespace, timeout=timeout, field_manager=FIELD_MANAGER
        )
        self._http = client_adapter.Client(single, ConnectionParams(timeout=timeout))
        _register_crd_kinds()
        self._served: dict[str, frozenset[str]] = {}
        """Discovery: the resources (plurals) served per group/version, asked once each."""
        self._group_versions: frozenset[str] | None = None
        """Discovery: the group/versions ``/apis`` lists."""

    def close(self) -> None:
        self._client.close()
        self._http.close()

    def _translate(
        self, verb: str, info: KindInfo, namespace: str | None, name: str | None
    ) -> _Translate:
        return _Translate(verb, info, namespace, name, server=self.server)

    def served(self, infos: Iterable[KindInfo]) -> list[KindInfo]:
        """The kinds among ``infos`` this API server serves, found by discovery as kubectl
        does: ``/api/v1`` for the core group, ``/apis`` for the groups and versions, then
        ``/apis/<group>/<version>`` for each one asked about that the server has.

        A kind of an API group that is not installed (no KEDA, no Gateway API) is left out, so
        nothing asks for its objects (the server would answer a plain-text 404).
        """
        wanted = list(infos)
        for api_version in dict.fromkeys(info.api_version for info in wanted):
            if api_version not in self._served:
                self._served[api_version] = self._discover(api_version)
        return [info for info in wanted if info.plural in self._served[info.api_version]]

    def _discover(self, api_version: str) -> frozenset[str]:
        if "/" in api_version:
            if self._group_versions is None:
                groups = self._discovery_body("/apis") or {}
                self._group_versions = frozenset(
                    str(v.get("groupVersion"))
                    for g in groups.get("groups") or []
                    for v in g.get("versions") or []
                )
            if api_version not in self._group_versions:
                return frozenset()
            path = f"/apis/{api_version}"
        else:
            path = f"/api/{api_version}"
        body = self._discovery_body(path) or {}
        return frozenset(str(r.get("name")) for r in body.get("resources") or [])

    def _discovery_body(self, path: str) -> Any:
        """A discovery document; None when the server has no such path (404)."""
        status, body = self.raw_get(path)
        if status == 200:
            return body
        if status == 404:
            return None
        if status == 401:
            raise UnauthorizedError(self.server)
        reason = (body or {}).get("message") if isinstance(body, dict) else None
        raise ClusterError(
            f"API discovery failed: GET {path} answered {status}"
            + (f": {str(reason)[:MESSAGE_MAX_CHARS]}" if reason else "")
        )

    def apply(self, obj: Manifest, *, dry_run: bool, force: bool) -> Manifest:
        """Server-side apply ``obj`` as field manager ``mlkube``; returns the server's object."""
        info = _info(obj["kind"])
        typed = codecs.from_dict(obj)
        namespace = obj["metadata"].get("namespace")
        with self._translate("patch", info, namespace, obj["metadata"]["name"]):
            result = self._client.apply(
                typed, field_manager=FIELD_MANAGER, force=force, dry_run=dry_run
            )
        return _as_dict(result)

    def apply_fields(
        self, kind: str, name: str, namespace: str | None, fields: Manifest, *, manager: str
    ) -> Manifest:
        """Server-side apply of a few fields only (``fields``: e.g. ``{"spec": {"replicas":
        2}}``) as field manager ``manager``, never forced: an apply configuration need not be
        a whole object, and the server validates the object it produces."""
        info = _info(kind)
        body = {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            **fields,
        }
        with self._translate("patch", info, namespace, name):
            result = self._client.patch(
                _resource(info),
                name,
                body,
                namespace=_ns(info, namespace),
                patch_type=PatchType.APPLY,
                field_manager=manager,
                force=False,
            )
        return _as_dict(result)

    def get(self, info: KindInfo, name: str, namespace: str | None) -> Manifest | None:
        """The object, or None when it does not exist."""
        resource = _resource(info)
        try:
            with self._translate("get", info, namespace, name):
                found = self._client.get(resource, name, namespace=_ns(info, namespace))
        except ObjectNotFoundError:
            return None
        return _as_dict(found)

    def list_objects(
        self, info: KindInfo, namespace: str | None, labels: Mapping[str, Any]
    ) -> list[Manifest]:
        """Objects of a kind with all of ``labels`` (namespace ``"*"``: every namespace)."""
        resource = _resource(info)
        selector: dict[str, Any] = dict(labels)
        with self._translate("list", info, namespace, None):
            items = list(
                self._client.list(resource, namespace=_ns(info, namespace), labels=selector)
            )
        # List items come without apiVersion/kind on the wire; put them back.
        return [
            {"apiVersion": info.api_version, "kind": info.kind, **_as_dict(item)} for item in items
        ]

    def delete(self, info: KindInfo, name: str, namespace: str | None, *, dry_run: bool) -> bool:
        """Delete an object, its dependents in the background (as ``kubectl delete``: a Job's
        pods too, which the API's own default for batch/v1 Jobs would orphan); False when it
        was already gone."""
        try:
            with self._translate("delete", info, namespace, name):
                self._client.delete(
                    _resource(info),
                    name,
                    namespace=_ns(info, namespace),
                    cascade=CascadeType.BACKGROUND,
                    dry_run=dry_run,
                )
        except ObjectNotFoundError:
            return False
        return True

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        """Set a Deployment's replicas through its ``scale`` subresource."""
        info = _info("Deployment")
        with self._translate("patch", info, namespace, name):
            self._client.patch(
                Deployment.Scale,
                name,
                {"spec": {"replicas": replicas}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )

    def merge_patch(
        self, info: KindInfo, name: str, namespace: str | None, patch: Manifest, *, manager: str
    ) -> Manifest:
        """A JSON merge patch (RFC 7386) as field manager ``manager``: maps merge, lists are
        replaced whole. For the few fields another actor than ``mlkube apply`` owns (the
        rollout driver's annotation, a canary's weights); returns the server's object."""
        with self._translate("patch", info, namespace, name):
            result = self._client.patch(
                _resource(info),
                name,
                patch,
                namespace=_ns(info, namespace),
                patch_type=PatchType.MERGE,
                field_manager=manager,
            )
        return _as_dict(result)

    def logs(
        self, pod: str, namespace: str, *, follow: bool, since_s: float | None
    ) -> Iterator[str]:
        """Log lines of a pod's server container."""
        info = KindInfo("v1", "Pod", "pods", namespaced=True)
        since = int(since_s) if since_s is not None else None
        with self._translate("get", info, namespace, pod):
            yield from self._client.log(pod, namespace=namespace, follow=follow, since=since)

    def pods(self, namespace: str, labels: Mapping[str, Any]) -> list[Manifest]:
        """Pods with all of ``labels``."""
        info = KindInfo("v1", "Pod", "pods", namespaced=True)
        with self._translate("list", info, namespace, None):
            pods = self._client.list(Pod, namespace=namespace, labels=dict(labels))
            return [{"apiVersion": "v1", "kind": "Pod", **_as_dict(p)} for p in pods]

    def events(self, namespace: str, involved_name: str) -> list[Manifest]:
        """core/v1 Events about objects named ``involved_name`` (a field selector on
        ``involvedObject.name``, as ``kubectl describe`` asks for them)."""
        info = KindInfo("v1", "Event", "events", namespaced=True)
        with self._translate("list", info, namespace, None):
            events = self._client.list(
                Event, namespace=namespace, fields={"involvedObject.name": involved_name}
            )
            return [{"apiVersion": "v1", "kind": "Event", **_as_dict(e)} for e in events]

    def warning_events(self, namespace: str) -> list[Manifest]:
        """core/v1 Events of type Warning in ``namespace`` (a field selector on ``type``), for
        saying why a rollout is stuck (``diagnose``)."""
        info = KindInfo("v1", "Event", "events", namespaced=True)
        with self._translate("list", info, namespace, None):
            events = self._client.list(Event, namespace=namespace, fields={"type": "Warning"})
            return [{"apiVersion": "v1", "kind": "Event", **_as_dict(e)} for e in events]

    def raw_get(self, path: str) -> tuple[int, Any]:
        """GET a path (discovery, ``/version``); (status, JSON body or None)."""
        try:
            response = self._http.get(path)
        except httpx2.TransportError as error:
            raise ClusterUnreachableError(
                f"cannot reach the Kubernetes API at {self.server}: {error}"
            ) from error
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body

    def can_i(self, verb: str, resource: str, group: str, namespace: str | None) -> bool:
        """SelfSubjectAccessReview: may these credentials do ``verb`` on ``resource``?"""
        review: SelfSubjectAccessReview = SelfSubjectAccessReview.from_dict(  # type: ignore[assignment]
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": resource,
                        "group": group,
                        **({"namespace": namespace} if namespace else {}),
                    }
                },
            }
        )
        info = KindInfo(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            namespaced=False,
        )
        with self._translate("create", info, None, None):
            result = self._client.create(review)
        return bool(_as_dict(result).get("status", {}).get("allowed", False))


def _register_crd_kinds() -> None:
    for info in KINDS:
        if not info.crd:
            continue
        group, version = info.api_version.split("/")
        if resource_registry.get(info.api_version, info.kind) is not None:
            continue
        make = create_namespaced_resource if info.namespaced else create_global_resource
        make(group, version, info.kind, info.plural)


def _info(kind: str) -> KindInfo:
    for info in KINDS:
        if info.kind == kind:
            return info
    raise KeyError(kind)


def _resource(info: KindInfo) -> Any:
    return resource_registry.load(info.api_version, info.kind)


def _ns(info: KindInfo, namespace: str | None) -> str | None:
    return namespace if info.namespaced else None


def _as_dict(obj: Any) -> Manifest:
    data: Manifest = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def _resource_name(info: KindInfo) -> str:
    group = info.api_version.rpartition("/")[0]
    return f"{info.plural}.{group}" if group else info.plural


class _Translate:
    """Context manager turning lightkube/httpx failures into the backend's errors: every
    answer that is not a success becomes one ``ClusterError`` whose message says what failed,
    whether the body was a JSON Status (``ApiError``) or plain text (``404 page not found``
    for an API group the server does not have)."""

    def __init__(
        self, verb: str, info: KindInfo, namespace: str | None, name: str | None, *, server: str
    ):
        self.verb = verb
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.name = name
        self.server = server

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any
    ) -> None:
        if error is None:
            return
        if isinstance(error, ApiError):
            raise self._api_error(error) from error
        if isinstance(error, httpx2.HTTPStatusError):  # a body that is not a JSON Status
            raise self._plain_error(error.response) from error
        if isinstance(error, httpx2.TransportError):
            raise ClusterUnreachableError(
                f"cannot reach the Kubernetes API: {error} (is the cluster up, and is the "
                "kubeconfig context right? `mlkube doctor` checks)"
            ) from error

    def _what(self) -> str:
        what = f"{self.info.kind} '{self.name}'" if self.name else f"{self.info.kind} objects"
        where = f" in namespace '{self.namespace}'" if self.namespace else ""
        return what + where

    def _plain_error(self, response: httpx2.Response) -> ClusterError:
        code = response.status_code
        text = " ".join(response.text.split())[:MESSAGE_MAX_CHARS] or response.reason_phrase
        if code == 401:
            return UnauthorizedError(self.server)
        if code == 403:
            return ForbiddenError(self.verb, _resource_name(self.info), self.namespace, text)
        if code == 404:  # no API serves the path: the group/version is not installed
            return ApiMissingError(self.info.api_version, self.info.kind)
        return ClusterError(f"{self.verb} {self._what()} failed ({code}): {text}")

    def _api_error(self, error: ApiError) -> ClusterError:
        code = error.status.code or 0
        message = (error.status.message or str(error))[:MESSAGE_MAX_CHARS]
        what = f"{self.info.kind} '{self.name}'" if self.name else f"{self.info.kind} objects"
        where = f" in namespace '{self.namespace}'" if self.namespace else ""
        if code == 401:
            return UnauthorizedError(self.server)
        if code == 403:
            return ForbiddenError(self.verb, _resource_name(self.info), self.namespace, message)
        if code == 404:
            if 'namespaces "' in message and self.info.kind != "Namespace":
                return ApplyError(
                    f"namespace '{self.namespace}' does not exist (create it, or set "
                    "kubernetes.createNamespace: true)"
                )
            if API_NOT_SERVED in message:
                return ApiMissingError(self.info.api_version, self.info.kind)
            return ObjectNotFoundError(f"{what} not found{where}")
        if code == 409:
            return ConflictError(
                f"conflict applying {what}{where}: {message} (another field manager owns these "
                "fields; set kubernetes.forceConflicts: true to take them over)",
                tuple(sorted(set(_CONFLICT_MANAGER.findall(error.status.message or "")))),
            )
        if code == 422:
            return ApplyError(f"the API server rejected {what}{where}: {message}")
        return ApplyError(f"{self.verb} {what}{where} failed ({code}): {message}")
