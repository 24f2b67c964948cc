"""The inference application: routes a parsed request to its protocol handler.

``InferenceApp.handle`` answers health, metadata and metrics requests at once and returns a
future for predictions, which resolve when the request's batch has run. Every caller mistake
becomes a 4xx in the protocol's own error shape (``errors.error_response``); nothing a client
sends can raise out of here.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlkube.batching.batcher import Batcher
from mlkube.clock import Clock
from mlkube.errors import (
    InvalidInputError,
    MethodNotAllowedError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServingError,
)
from mlkube.observability.logging import AccessLog, PayloadLog
from mlkube.observability.metrics import ServerMetrics
from mlkube.runtimes.base import Batch, Runtime
from mlkube.serving import binary_tensors, v1, v2
from mlkube.serving.errors import error_response, serving_error_response
from mlkube.serving.http import Request, Respond, Response
from mlkube.serving.routes import Action, Route, resolve

logger = logging.getLogger(__name__)

SERVER_NAME = "mlkube"
REQUEST_ID_HEADER = "x-request-id"
# Longest caller-supplied request id we echo back and log; longer ones are replaced.
MAX_REQUEST_ID_CHARS = 128
DEFAULT_MODEL_ALIAS = "default"
# The v2 protocol extensions this server implements (GET /v2, and gRPC's ServerMetadata).
EXTENSIONS = (binary_tensors.EXTENSION,)
# Probes and scrapes are not traffic: counting them would dilute error rates and request rates.
_PREDICTIONS = frozenset({Action.V1_PREDICT, Action.V2_INFER})
_UNCOUNTED = frozenset({Action.METRICS, Action.V2_LIVE, Action.V2_READY, Action.V2_MODEL_READY})


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What the endpoints say about the served model."""

    name: str
    version: int
    protocols: frozenset[str]
    server_version: str


class InferenceApp:
    """Routes requests for one model; owns readiness and draining state."""

    def __init__(
        self,
        identity: ModelIdentity,
        *,
        clock: Clock,
        metrics: ServerMetrics,
        access_log: AccessLog,
        payload_log: PayloadLog | None = None,
        peers_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.metrics = metrics
        self.access_log = access_log
        self.payload_log = payload_log
        self.peers_ready = peers_ready
        """Whether the other worker processes of this replica are ready (multi-worker)."""
        self.runtime: Runtime | None = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.draining = False
        self.predicting = 0
        """Prediction requests received and not yet answered: the concurrency autoscalers use.
        Probes and scrapes are left out, so an idle replica reads 0."""
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{os.urandom(3).hex()}"
        self._names = {identity.name, DEFAULT_MODEL_ALIAS}

    def attach(self, runtime: Runtime, batcher: Batcher) -> None:
        """The model is loaded and warmed up: start answering inference requests."""
        self.runtime = runtime
        self.batcher = batcher
        self.ready = True

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
        self._check_model(route)
        identity = self.identity
        action = route.action
        if action is Action.V1_STATUS:
            ready = self.ready and self.peers_ready()
            return Response(200, v1.status_body(identity.version, ready=ready))
        if action is Action.V2_MODEL_READY:
            body = orjson.dumps({"name": identity.name, "ready": self._serving()})
            return Response(200 if self._serving() else 503, body)
        runtime = self._runtime()
        if action is Action.V1_METADATA:
            return Response(
                200,
                v1.metadata_body(identity.name, identity.version, runtime.inputs, runtime.outputs),
            )
        return Response(
            200,
            v2.model_metadata(
                identity.name, identity.version, runtime.platform, runtime.inputs, runtime.outputs
            ),
        )

    def _readiness(self, ok: bytes, not_ok: bytes) -> Response:
        return Response(200, ok) if self._serving() else Response(503, not_ok)

    def _serving(self) -> bool:
        return self.ready and not self.draining and self.peers_ready()

    def serving(self) -> bool:
        """Ready for traffic: loaded, warmed up, not draining (gRPC's readiness calls too)."""
        return self._serving()

    def served(self, model: str, version: str | None) -> tuple[Runtime, Batcher]:
        """The runtime and batcher a request for ``model`` (and ``version``) goes to, or the
        same ModelNotFoundError / ModelNotReadyError a REST request gets (gRPC routes here)."""
        self._check_model(Route(Action.V2_INFER, "grpc", model, version))
        return self._runtime(), self._batcher()

    def _check_model(self, route: Route) -> None:
        if route.model not in self._names:
            raise ModelNotFoundError(
                f"model '{route.model}' is not served here (this server serves "
                f"'{self.identity.name}', also reachable as 'default')"
            )
        if route.version is not None and route.version != str(self.identity.version):
            raise ModelNotFoundError(
                f"model '{route.model}' has no version '{route.version}' "
                f"(served version: {self.identity.version})"
            )

    def _runtime(self) -> Runtime:
        if self.runtime is None or self.batcher is None or self.draining:
            raise ModelNotReadyError(
                "the model is not ready yet" if not self.draining else "the server is draining",
                retry_after_s=1.0,
            )
        return self.runtime

    def _batcher(self) -> Batcher:
        if self.batcher is None:
            raise ModelNotReadyError("the model is not ready yet", retry_after_s=1.0)
        return self.batcher

    # predictions
    def _predict(
        self, request: Request, route: Route, request_id: str, started: float, respond: Respond
    ) -> Response | None:
        try:
            self._check_model(route)
            runtime = self._runtime()
            batcher = self._batcher()
            if route.action is Action.V1_PREDICT:
                inputs, request_format = v1.parse_predict(request.body, runtime.inputs)
                context: Any = request_format
            else:
                parsed = binary_tensors.parse_infer(
                    request.body,
                    request.headers.get(binary_tensors.HEADER),
                    runtime.inputs,
                    runtime.outputs,
                )
                inputs, context = parsed.inputs, parsed

            def predicted(outputs: Batch | None, error: BaseException | None) -> None:
                self._predicted(
                    outputs, error, request, route, context, request_id, started, respond
                )

            batcher.submit(inputs, predicted)
        except ServingError as error:
            response = serving_error_response(error, route.protocol)
            self._finish(request, route, response, request_id, started)
            return response
        self.predicting += 1
        return None

    def _predicted(
        self,
        outputs: Batch | None,
        error: BaseException | None,
        request: Request,
        route: Route,
        context: Any,
        request_id: str,
        started: float,
        respond: Respond,
    ) -> None:
        try:
            if error is None and outputs is not None:
                response = self._encode(outputs, route, context)
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
        self._finish(request, route, response, request_id, started)
        respond(response)

    def _encode(self, outputs: Batch, route: Route, context: Any) -> Response:
        if route.action is Action.V1_PREDICT:
            return Response(200, v1.encode_predict(outputs, context))
        identity = self.identity
        body, header_length = binary_tensors.encode_infer(
            outputs, model=identity.name, version=identity.version, request=context
        )
        if header_length is None:
            return Response(200, body)
        return Response(
            200,
            body,
            binary_tensors.CONTENT_TYPE,
            [(binary_tensors.HEADER, str(header_length))],
        )

    # bookkeeping
    def _request_id(self, request: Request) -> str:
        given = request.headers.get(REQUEST_ID_HEADER)
        if given and len(given) <= MAX_REQUEST_ID_CHARS and given.isprintable():
            return given
        return f"{self._id_prefix}-{next(self._ids):x}"

    def _finish(
        self, request: Request, route: Route, response: Response, request_id: str, started: float
    ) -> None:
        response.headers.append((REQUEST_ID_HEADER, request_id))
        elapsed = self.clock.monotonic() - started
        if route.action not in _UNCOUNTED:
            self.metrics.request_done(route.protocol, response.status, elapsed)
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
                "model": self.identity.name,
            }
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
