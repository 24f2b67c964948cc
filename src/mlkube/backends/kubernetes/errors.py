"""Errors of the Kubernetes backend, each a full sentence naming what failed and what to do.

BackendError
  RenderError           the spec cannot be expressed as Kubernetes objects
  ClusterError          talking to the API server failed
    ClusterUnreachableError   no connection (wrong context, cluster down)
    UnauthorizedError         the API server rejected the credentials (401)
    ForbiddenError            RBAC refused a verb on a resource
    ApiMissingError           a needed API (CRD, group/version) is not served
    ApplyError                the server rejected an object (validation, conflict)
      ConflictError             another field manager owns a field the apply changes (409)
    ObjectNotFoundError       the named object does not exist
  RolloutError          a rollout failed or did not finish in time
"""

from __future__ import annotations

from mlkube.errors import BackendError


class RenderError(BackendError):
    """The spec cannot be rendered as Kubernetes objects; the message names the field."""


class ClusterError(BackendError):
    """A call to the Kubernetes API server failed."""


class ClusterUnreachableError(ClusterError):
    """The API server could not be reached at all."""


class UnauthorizedError(ClusterError):
    """The API server did not accept the credentials at all (HTTP 401)."""

    def __init__(self, server: str) -> None:
        super().__init__(
            f"unauthorized: the API server at {server} rejected the credentials (401 "
            "Unauthorized): the token or certificate is wrong or expired; refresh it (log in "
            "again) or pick another context with --context"
        )


class ForbiddenError(ClusterError):
    """RBAC denied a request; ``verb`` and ``resource`` say which."""

    def __init__(self, verb: str, resource: str, namespace: str | None, detail: str) -> None:
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        where = f" in namespace '{namespace}'" if namespace else " (cluster-wide)"
        super().__init__(
            f"forbidden: your credentials may not '{verb}' {resource}{where}: {detail} "
            "(ask a cluster admin for that permission; `mlkube doctor` lists what is missing)"
        )


class ApiMissingError(ClusterError):
    """The cluster does not serve an API group/version the objects need."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        super().__init__(
            f"the cluster does not serve {kind} ({api_version}); install the component that "
            "provides it or turn the feature off in the spec. Run `mlkube doctor` to check "
            "the cluster."
        )


class ApplyError(ClusterError):
    """The API server rejected an object."""


class ConflictError(ApplyError):
    """Server-side apply found fields other field managers own (409 Conflict)."""

    def __init__(self, message: str, managers: tuple[str, ...]) -> None:
        super().__init__(message)
        self.managers = managers
        """The managers named in the conflict, e.g. ``("mlkube-rollout",)``."""


class ObjectNotFoundError(ClusterError):
    """The named object is not in the cluster."""


class RolloutError(BackendError):
    """A Deployment's rollout failed or timed out."""
