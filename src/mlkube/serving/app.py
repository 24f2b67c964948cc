"""The inference application: routes a parsed request to its protocol handler.

``InferenceApp.handle`` answers health, metadata and metrics requests at once and returns a
future for predictions, which resolve when the request's batch has run. Which model version a
request reaches is the model set's answer (``serving/models.py``: ``ModelSet.lookup``), the
same one the gRPC service gets. Every caller mistake becomes a 4xx in the protocol's own error
shape (``errors.error_response``); nothing a client sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlkube.clock import Clock
from mlkube.errors import (
    ForbiddenError,
    InvalidInputError,
    MethodNotAllowedError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServingError,
    UnauthorizedError,
)
from mlkube.observability.logging import AccessLog, PayloadLog
from mlkube.observability.metrics import ServerMetrics
from mlkube.runtimes.base import Batch
from mlkube.runtimes.device import DeviceChoice
from mlkube.serving import binary_tensors, fast_decode, v1, v2
from mlkube.serving.errors import error_response, serving_error_response
from mlkube.serving.http import Request, Respond, Response
from mlkube.serving.models import ModelSet, NotFound, ServedVersion, VersionState, VersionStatus
from mlkube.serving.repository import (
    Repository,
    check_repository_body,
    repository_index,
    repository_index_filter,
)
from mlkube.serving.routes import Action, Route, resolve

logger = logging.getLogger(__name__)

SERVER_NAME = "mlkube"
REQUEST_ID_HEADER = "x-request-id"
# Longest caller-supplied request id we echo back and log; longer ones are replaced.
MAX_REQUEST_ID_CHARS = 128
# The Open Inference Protocol extensions this server implements (GET /v2, gRPC's
# ServerMetadata).
EXTENSIONS = ("model_repository", binary_tensors.EXTENSION)
# Probes and scrapes are not traffic: counting them would dilute error rates and request rates.
_PREDICTIONS = frozenset({Action.V1_PREDICT, Action.V2_INFER})
_UNCOUNTED = frozenset({Action.METRICS, Action.V2_LIVE, Action.V2_READY, Action.V2_MODEL_READY})
_REPOSITORY = frozenset(
    {Action.V2_REPOSITORY_INDEX, Action.V2_REPOSITORY_LOAD, Action.V2_REPOSITORY_UNLOAD}
)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What the endpoints say about the server."""

    protocols: frozenset[str]
    server_version: str


class InferenceApp:
    """Routes requests to the models of a model set; owns readiness and draining state."""

    def __init__(
        self,
        identity: ServerIdentity,
        models: ModelSet,
        *,
        clock: Clock,
        metrics: ServerMetrics,
        access_log: AccessLog,
        payload_log: PayloadLog | None = None,
        peers_ready: Callable[[], bool] = lambda: True,
        repository: Repository | None = None,
        management_token: str | None = None,
    ) -> None:
        self.identity = identity
        self.models = models
        self.clock = clock
        self.metrics = metrics
        self.access_log = access_log
        self.payload_log = payload_log
        self.peers_ready = peers_ready
        """Whether the other worker processes of this replica are ready (multi-worker)."""
        self.ready = False
        """Every model finished its first load (set by the replica)."""
        self.draining = False
        self.predicting = 0
        """Prediction requests received and not yet answered: the concurrency autoscalers use.
        Probes and scrapes are left out, so an idle replica reads 0."""
        self.repository = repository
        """Loads and unloads models for the repository extension (the version manager)."""
        self.management_token = management_token
        """The bearer token the repository extension asks for; None: the extension is off."""
        self._changes: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{os.urandom(3).hex()}"

    def handle(self, request: Request, respond: Respond) -> Response | None:
        """The response now, or None and ``respond(response)`` later (predictions)."""
        started = self.clock.monotonic()
        request_id = self._request_id(request)
        route = resolve(request.method, request.path)
        try:
            if not route.method_allowed:
                raise MethodNotAllowedError(
                    f"{request.method} is not allowed on {request.path}; use {route.allowed}"
                )
            if route.protocol in ("v1", "v2") and route.protocol not in self.identity.protocols:
                raise ModelNotFoundError(
                    f"the {route.protocol} protocol is not enabled for this deployment"
                )
            if route.action is Action.V1_PREDICT or route.action is Action.V2_INFER:
                return self._predict(request, route, request_id, started, respond)
            if route.action in _REPOSITORY:
                return self._repository(request, route, request_id, started, respond)
            response = self._immediate(route, request)
        except ServingError as error:
            response = serving_error_response(error, route.protocol)
        self._finish(request, route, response, request_id, started)
        return response

    # immediate answers
    def _immediate(self, route: Route, request: Request) -> Response:
        action = route.action
        if action is Action.METRICS:
            return Response(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        if action is Action.V2_LIVE:
            return Response(200, b'{"live":true}')
        if action is Action.V2_READY:
            return self._readiness(b'{"ready":true}', b'{"ready":false}')
        if action is Action.V2_SERVER:
            return Response(
                200,
                orjson.dumps(
                    {
                        "name": SERVER_NAME,
                        "version": self.identity.server_version,
                        "extensions": list(EXTENSIONS),
                    }
                ),
            )
        if action is Action.NOT_FOUND:
            raise ModelNotFoundError(f"no endpoint at {request.path}")
        if action is Action.V1_UNSUPPORTED:
            verb = request.path.rsplit(":", 1)[-1]
            raise InvalidInputError(
                f"TF Serving's :{verb} is not supported by mlkube; use :predict (the model's "
                "outputs carry what classify and regress would return)"
            )
        return self._model_endpoint(route)

    def _model_endpoint(self, route: Route) -> Response:
        name = route.model or ""
        action = route.action
        if action is Action.V1_STATUS:
            return self._v1_status(name, route.version)
        if action is Action.V2_MODEL_READY:
            ready = self.model_ready(name, route.version)
            body = orjson.dumps({"name": self.models.known(name).name, "ready": ready})
            return Response(200 if ready else 503, body)
        served = self._served(route)
        runtime = served.runtime
        if action is Action.V1_METADATA:
            return Response(
                200,
                v1.metadata_body(served.model, served.version, runtime.inputs, runtime.outputs),
            )
        versions = self.metadata_versions(name, route.version, served)
        return Response(
            200,
            v2.model_metadata(
                served.model,
                versions,
                runtime.platform,
                runtime.inputs,
                runtime.outputs,
                _device_fields(runtime),
            ),
        )

    def _v1_status(self, name: str, version: str | None) -> Response:
        return Response(200, v1.status_body(self.version_statuses(name, version)))

    # what REST and gRPC both answer
    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether ``name`` (``version``) takes requests now; ModelNotFoundError if unknown."""
        found = self.models.lookup(name, version)
        if isinstance(found, NotFound):
            raise found.error()
        return isinstance(found, ServedVersion) and self._serving()

    def metadata_versions(self, name: str, version: str | None, served: ServedVersion) -> list[int]:
        """The versions a model's metadata lists: every served one, or the one asked for."""
        return sorted(self.models.known(name).available) if version is None else [served.version]

    def version_statuses(self, name: str, version: str | None) -> list[VersionStatus]:
        """TF Serving's model status: every version's state (or the one asked for)."""
        model = self.models.known(name)
        statuses = model.status_list()
        if version is not None:
            statuses = [s for s in statuses if str(s.version) == version]
            if not statuses:
                raise self.models.lookup(name, version).error()  # type: ignore[union-attr]
        if not self.peers_ready():  # another worker still loading: this one is not serving
            statuses = [
                VersionStatus(s.version, VersionState.LOADING)
                if s.state is VersionState.AVAILABLE
                else s
                for s in statuses
            ]
        return statuses

    def _readiness(self, ok: bytes, not_ok: bytes) -> Response:
        return Response(200, ok) if self._serving() else Response(503, not_ok)

    def _serving(self) -> bool:
        return self.ready and not self.draining and self.peers_ready() and self.models.ready

    def serving(self) -> bool:
        """Ready for traffic: loaded, warmed up, not draining (gRPC's readiness calls too)."""
        return self._serving()

    def served(self, model: str, version: str | None) -> ServedVersion:
        """The version a call for ``model`` (and ``version``) goes to, or the same
        ModelNotFoundError / ModelNotReadyError a REST request gets (gRPC routes here)."""
        return self._served(Route(Action.V2_INFER, "grpc", model, version))

    def _served(self, route: Route) -> ServedVersion:
        """The version ``route`` reaches, or the reason it cannot (404 or 503)."""
        if self.draining:
            self.models.known(route.model or "")  # an unknown name is still a 404
            raise ModelNotReadyError("the server is draining", retry_after_s=1.0)
        return self.models.require(route.model or "", route.version)

    # predictions
    def _predict(
        self, request: Request, route: Route, request_id: str, started: float, respond: Respond
    ) -> Response | None:
        served: ServedVersion | None = None
        try:
            served = self._served(route)
            runtime = served.runtime
            if route.action is Action.V1_PREDICT:
                inputs, request_format = fast_decode.decode_predict(request.body, runtime.inputs)
                context: Any = request_format
            else:
                parsed = fast_decode.decode_infer(
                    request.body,
                    request.headers.get(binary_tensors.HEADER),
                    runtime.inputs,
                    runtime.outputs,
                )
                inputs, context = parsed.inputs, parsed
            target = served

            def predicted(outputs: Batch | None, error: BaseException | None) -> None:
                self._predicted(
                    outputs, error, request, route, target, context, request_id, started, respond
                )

            # Counted first: a lone request may be answered before ``submit`` returns.
            self.predicting += 1
            try:
                served.submit(inputs, predicted)
            except BaseException:
                self.predicting -= 1
                raise
        except ServingError as error:
            response = serving_error_response(error, route.protocol)
            self._finish(request, route, response, request_id, started, served)
            return response
        return None

    def _predicted(
        self,
        outputs: Batch | None,
        error: BaseException | None,
        request: Request,
        route: Route,
        served: ServedVersion,
        context: Any,
        request_id: str,
        started: float,
        respond: Respond,
    ) -> None:
        try:
            if error is None and outputs is not None:
                response = self._encode(outputs, route, served, context)
            elif isinstance(error, ServingError):
                response = serving_error_response(error, route.protocol)
            else:  # pragma: no cover - the batcher only fails requests with ServingError
                raise RuntimeError(f"unexpected failure: {error!r}")
        except Exception:
            # A bug of ours (or a model output we cannot encode): answer, never hang.
            logger.exception("encoding the prediction failed")
            response = error_response(
                500, "the model's output could not be encoded", route.protocol
            )
        self.predicting -= 1
        self._finish(request, route, response, request_id, started, served)
        respond(response)

    def _encode(
        self, outputs: Batch, route: Route, served: ServedVersion, context: Any
    ) -> Response:
        if route.action is Action.V1_PREDICT:
            return Response(200, v1.encode_predict(outputs, context))
        body, header_length = binary_tensors.encode_infer(
            outputs, model=served.model, version=served.version, request=context
        )
        if header_length is None:
            return Response(200, body)
        return Response(
            200,
            body,
            binary_tensors.CONTENT_TYPE,
            [(binary_tensors.HEADER, str(header_length))],
        )

    # the repository extension (management)
    def _repository(
        self, request: Request, route: Route, request_id: str, started: float, respond: Respond
    ) -> Response | None:
        try:
            self._authorize(request)
            repository = self.repository
            if repository is None:
                raise ForbiddenError("this server has no model repository to manage")
            if route.action is Action.V2_REPOSITORY_INDEX:
                ready_only = repository_index_filter(request.body)
                body = orjson.dumps(repository_index(self.models, ready_only=ready_only))
                response = Response(200, body)
                self._finish(request, route, response, request_id, started)
                return response
            check_repository_body(request.body)
            model = self.models.known(route.model or "")
            change = (
                repository.load(model.name)
                if route.action is Action.V2_REPOSITORY_LOAD
                else repository.unload(model.name)
            )
        except ServingError as error:
            response = serving_error_response(error, route.protocol)
            self._finish(request, route, response, request_id, started)
            return response

        def changed(task: asyncio.Task[None]) -> None:
            error = None if task.cancelled() else task.exception()
            if error is None and not task.cancelled():
                response = Response(200, b"")
            elif isinstance(error, ServingError):
                response = serving_error_response(error, route.protocol)
            else:
                if error is not None:
                    logger.error("repository change failed", exc_info=error)
                response = error_response(500, "the repository change failed", route.protocol)
            self._finish(request, route, response, request_id, started)
            respond(response)

        task = asyncio.get_running_loop().create_task(change)
        self._changes.add(task)
        task.add_done_callback(self._changes.discard)
        task.add_done_callback(changed)
        return None

    def _authorize(self, request: Request) -> None:
        """The management token as a bearer token: 403 when the server has none set (the
        repository API is off), 401 when the request lacks it or names another."""
        token = self.management_token
        if not token:
            raise ForbiddenError(
                "the repository API is off: start the server with MLKUBE_MANAGEMENT_TOKEN set"
            )
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise UnauthorizedError("missing or wrong management token (Authorization: Bearer)")

    # bookkeeping
    def _model_label(self, route: Route) -> str:
        known = self.models.model(route.model) if route.model else None
        return known.name if known is not None else self.models.first

    def _request_id(self, request: Request) -> str:
        given = request.headers.get(REQUEST_ID_HEADER)
        if given and len(given) <= MAX_REQUEST_ID_CHARS and given.isprintable():
            return given
        return f"{self._id_prefix}-{next(self._ids):x}"

    def _finish(
        self,
        request: Request,
        route: Route,
        response: Response,
        request_id: str,
        started: float,
        served: ServedVersion | None = None,
    ) -> None:
        response.headers.append((REQUEST_ID_HEADER, request_id))
        elapsed = self.clock.monotonic() - started
        # The label is a model this server serves: a name a client invents (a 404) counts
        # under the first model, so clients cannot grow the series.
        model = served.model if served is not None else self._model_label(route)
        if route.action not in _UNCOUNTED:
            self.metrics.request_done(route.protocol, response.status, elapsed, model=model)
        # Probes and scrapes arrive every second or two per replica: logged only when they fail.
        quiet = route.action in _UNCOUNTED and response.status < 400
        if not quiet and self.access_log.wants(response.status):
            fields = {
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 3),
                "request_id": request_id,
                "protocol": route.protocol,
                "model": model,
            }
            if served is not None:
                fields["version"] = served.version
            traceparent = request.headers.get("traceparent")
            if traceparent and traceparent.count("-") == 3:
                fields["trace_id"] = traceparent.split("-")[1]
            self.access_log.write(epoch_s=self.clock.wall(), fields=fields)
        payload_log = self.payload_log
        if payload_log is not None and route.action in _PREDICTIONS and payload_log.wants():
            payload_log.write(
                epoch_s=self.clock.wall(),
                request_id=request_id,
                path=request.path,
                status=response.status,
                request_body=request.body,
                response_body=response.body,
            )


def _device_fields(runtime: object) -> dict[str, str]:
    """``device`` (and ``device_reason``) for runtimes that choose one (GPU-capable ones)."""
    device = getattr(runtime, "device", None)
    return device.as_metadata() if isinstance(device, DeviceChoice) else {}
