"""The root of every error mlkube raises on purpose.

Our exception hierarchy::

    MlkubeError
      SpecError              a spec file is invalid (carries every SpecIssue at once)
      ModelLoadError         a model file is missing, truncated or of the wrong format
      ServingError           a request the server refuses (mapped to HTTP in serving/errors.py)
        InvalidInputError      the caller's mistake: 400
        ModelNotFoundError     unknown model or version: 404
        UnauthorizedError      management request without the right token: 401
        ForbiddenError         management request while management is off: 403
        ModelNotReadyError     not loaded yet, or draining: 503
        PayloadTooLargeError   body over the limit: 413
        OverloadedError        queue full: 429 with Retry-After
        RequestTimeoutError    no answer within the deadline: 504
        PredictError           the model itself failed on valid input: 500
      BackendError           a backend could not act (start a replica, apply an object)
        UnsupportedOperationError   this backend has no such operation (the message says
                                    what to do instead)

Nothing here imports a third-party package: domain errors must not depend on the web stack.
"""

from __future__ import annotations

from dataclasses import dataclass


class MlkubeError(Exception):
    """Base class of every error mlkube raises on purpose; the CLI prints these without a trace."""


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a spec: where it is, what was expected and what was found."""

    path: str
    message: str
    line: int | None = None
    found: str | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        text = f"{where}: {self.path or '<document>'}: {self.message}"
        if self.found is not None:
            text += f" (found {self.found})"
        return text


class SpecError(MlkubeError):
    """A spec is invalid. Holds every issue found, not just the first."""

    def __init__(self, source: str, issues: list[SpecIssue] | tuple[SpecIssue, ...]) -> None:
        self.source = source
        self.issues = tuple(issues)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        count = len(self.issues)
        if count == 1 and not self.issues[0].path and self.issues[0].line is None:
            # A problem with the file itself (missing, unreadable, empty): one line says it.
            return f"{self.source}: {self.issues[0].message}"
        head = f"{self.source}: {count} problem{'s' if count != 1 else ''} in the spec"
        return "\n".join([head, *("  " + issue.render(self.source) for issue in self.issues)])


class ModelLoadError(MlkubeError):
    """A model could not be loaded; the message names the file and the format."""

    def __init__(self, path: str, model_format: str, reason: str) -> None:
        self.path = path
        self.model_format = model_format
        self.reason = reason
        super().__init__(f"cannot load {model_format} model from '{path}': {reason}")


class BackendError(MlkubeError):
    """A backend could not carry out an action."""


class UnsupportedOperationError(BackendError):
    """The chosen backend cannot do this operation at all; the message says what to do instead."""

    def __init__(self, backend: str, operation: str, instead: str) -> None:
        self.backend = backend
        self.operation = operation
        self.instead = instead
        super().__init__(f"the {backend} backend cannot {operation}: {instead}")


class ServingError(MlkubeError):
    """A request the server refuses. ``status`` is the HTTP status it maps to."""

    status = 500
    kind = "internal"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.message = message
        self.retry_after_s = retry_after_s
        super().__init__(message)


class InvalidInputError(ServingError):
    """The request is malformed or does not match the model's inputs."""

    status = 400
    kind = "invalid_input"


class ModelNotFoundError(ServingError):
    """No model (or version) of that name is served here."""

    status = 404
    kind = "not_found"


class MethodNotAllowedError(ServingError):
    """The path exists but not for this HTTP method."""

    status = 405
    kind = "method_not_allowed"


class UnauthorizedError(ServingError):
    """A management request without the right token."""

    status = 401
    kind = "unauthenticated"


class ForbiddenError(ServingError):
    """A management request to a server whose management API is off."""

    status = 403
    kind = "permission_denied"


class ModelNotReadyError(ServingError):
    """The model is not loaded yet, or the server is draining."""

    status = 503
    kind = "not_ready"


class PayloadTooLargeError(ServingError):
    """The request body is larger than the configured limit."""

    status = 413
    kind = "payload_too_large"


class OverloadedError(ServingError):
    """The batching queue is full; the caller should retry after a while."""

    status = 429
    kind = "overloaded"


class RequestTimeoutError(ServingError):
    """The prediction did not finish within the per-request timeout."""

    status = 504
    kind = "timeout"


class PredictError(ServingError):
    """The model raised on input that passed validation."""

    status = 500
    kind = "predict_failed"
