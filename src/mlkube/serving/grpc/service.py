"""The replica's gRPC server: Open Inference Protocol v2 and TF Serving's Predict and
GetModelStatus, on their own port, in the replica's event loop.

Every call goes where the REST routes go (``InferenceApp.served``: the model set's lookup of
the model and version, the same batcher, the same readiness and draining), its inputs get
REST's checks (``v2_codec``, ``tf_codec``), and a refusal becomes the gRPC status matching
its HTTP status (``status``). Metrics and the access log count gRPC calls with ``protocol``
``grpc-v2`` or ``grpc-v1`` (TF Serving's API) and the HTTP status the same refusal gets over
REST in ``code``, so error-rate alerts and dashboards read both protocols alike. The largest
message accepted is the spec's ``server.maxRequestSize`` (RESOURCE_EXHAUSTED above it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mlkube.errors import MlkubeError, PredictError, ServingError
from mlkube.runtimes.base import Batch
from mlkube.serving.app import EXTENSIONS, SERVER_NAME, InferenceApp
from mlkube.serving.grpc import tf_codec, v2_codec
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2 as pb
from mlkube.serving.grpc.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from mlkube.serving.grpc.protos import tf_error_codes_pb2 as tf_error
from mlkube.serving.grpc.protos import tf_serving_pb2 as tfs
from mlkube.serving.grpc.protos import tf_serving_pb2_grpc as tfs_grpc
from mlkube.serving.grpc.status import status_code
from mlkube.serving.models import ServedVersion, VersionState

logger = logging.getLogger(__name__)

T = TypeVar("T")
V2 = "grpc-v2"
V1 = "grpc-v1"
_UNCOUNTED = frozenset({"ServerLive", "ServerReady", "ModelReady"})


class Calls:
    """What every gRPC method shares: the app, bookkeeping, and the wait for a prediction."""

    def __init__(self, app: InferenceApp, version: str) -> None:
        self.app = app
        self.server_version = version
        self._ids = itertools.count(1)
        self._prefix = f"grpc-{os.getpid():x}"

    async def run(
        self,
        context: Any,
        protocol: str,
        method: str,
        model: str,
        answer: Callable[[], Awaitable[T]],
    ) -> T:
        """``answer()``, counted and logged; a refusal aborts the call with its status."""
        clock = self.app.clock
        started = clock.monotonic()
        status = 200
        try:
            return await answer()
        except ServingError as error:
            status = error.status
            await context.abort(status_code(error), error.message)
            raise  # pragma: no cover - abort raises
        except Exception:
            status = 500
            logger.exception("gRPC %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, "the model's output could not be encoded")
            raise  # pragma: no cover - abort raises
        finally:
            self._finish(context, protocol, method, model, status, clock.monotonic() - started)

    def _finish(
        self, context: Any, protocol: str, method: str, model: str, status: int, elapsed: float
    ) -> None:
        app = self.app
        # A served model's name, or the first model's (as REST): clients cannot grow series.
        known = app.models.model(model) if model else None
        label = known.name if known is not None else app.models.first
        counted = method not in _UNCOUNTED
        if counted:
            app.metrics.request_done(protocol, status, elapsed, model=label)
        if (not counted and status < 400) or not app.access_log.wants(status):
            return
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get("x-request-id")
        request_id = (
            given if isinstance(given, str) and given.isprintable() and len(given) <= 128 else None
        )
        fields = {
            "method": "POST",
            "path": method,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "request_id": request_id or f"{self._prefix}-{next(self._ids):x}",
            "protocol": protocol,
            "model": label,
        }
        app.access_log.write(epoch_s=app.clock.wall(), fields=fields)

    async def predict(self, served: ServedVersion, inputs: Batch) -> Batch:
        """The outputs for ``inputs``, through the version's batcher (as REST's requests)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Batch] = loop.create_future()

        def done(outputs: Batch | None, error: BaseException | None) -> None:
            if future.done():  # the client went away (cancelled, deadline): nobody to answer
                return
            if error is not None:
                future.set_exception(error)
            elif outputs is None:  # pragma: no cover - the batcher always gives one
                future.set_exception(PredictError("the model returned nothing"))
            else:
                future.set_result(outputs)

        self.app.predicting += 1  # first: a lone request may be answered within submit
        try:
            served.submit(inputs, done)
            return await future
        finally:
            self.app.predicting -= 1


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """``inference.GRPCInferenceService``: the Open Inference Protocol v2."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.app = calls.app

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.app.serving())

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def answer() -> Any:
            return pb.ModelReadyResponse(
                ready=self.app.model_ready(request.name, request.version or None)
            )

        return await self.calls.run(context, V2, "ModelReady", request.name, answer)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self.calls.server_version, extensions=list(EXTENSIONS)
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def answer() -> Any:
            version = request.version or None
            served = self.app.served(request.name, version)
            runtime = served.runtime
            return v2_codec.model_metadata(
                served.model,
                self.app.metadata_versions(request.name, version, served),
                runtime.platform,
                runtime.inputs,
                runtime.outputs,
            )

        return await self.calls.run(context, V2, "ModelMetadata", request.name, answer)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def answer() -> Any:
            served = self.app.served(request.model_name, request.model_version or None)
            runtime = served.runtime
            parsed, raw = v2_codec.parse_infer(request, runtime.inputs, runtime.outputs)
            outputs = await self.calls.predict(served, parsed.inputs)
            return v2_codec.encode_infer(
                outputs, model=served.model, version=served.version, request=parsed, raw=raw
            )

        return await self.calls.run(context, V2, "ModelInfer", request.model_name, answer)


class PredictionService(tfs_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.PredictionService``: Predict."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.app = calls.app

    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = request.model_spec

        async def answer() -> Any:
            served = self.app.served(spec.name, tf_codec.requested_version(spec))
            runtime = served.runtime
            inputs, output_filter = tf_codec.parse_predict(request, runtime.inputs)
            tf_codec.check_output_filter(output_filter, runtime.outputs)
            outputs = await self.calls.predict(served, inputs)
            return tf_codec.encode_predict(
                outputs, output_filter, model=served.model, version=served.version
            )

        return await self.calls.run(context, V1, "Predict", spec.name, answer)


class ModelService(tfs_grpc.ModelServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.ModelService``: GetModelStatus."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.app = calls.app

    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = request.model_spec

        async def answer() -> Any:
            statuses = self.app.version_statuses(spec.name, tf_codec.requested_version(spec))
            return tfs.GetModelStatusResponse(
                model_version_status=[
                    tfs.ModelVersionStatus(
                        version=status.version,
                        state=_STATES[status.state],
                        status=tfs.StatusProto(
                            error_code=tf_error.UNKNOWN if status.failed else tf_error.OK,
                            error_message=status.error,
                        ),
                    )
                    for status in statuses
                ]
            )

        return await self.calls.run(context, V1, "GetModelStatus", spec.name, answer)


_STATES = {
    VersionState.START: tfs.ModelVersionStatus.START,
    VersionState.LOADING: tfs.ModelVersionStatus.LOADING,
    VersionState.AVAILABLE: tfs.ModelVersionStatus.AVAILABLE,
    VersionState.UNLOADING: tfs.ModelVersionStatus.UNLOADING,
    VersionState.END: tfs.ModelVersionStatus.END,
}


class GrpcServer:
    """The gRPC server of one replica (or of one worker of it)."""

    def __init__(self, app: InferenceApp, *, max_message_bytes: int, server_version: str) -> None:
        self.app = app
        self.max_message_bytes = max_message_bytes
        self.server_version = server_version
        self._server: Any = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on ``host:port`` (0: any free port); the port it listens on."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                # Only the workers of one replica share a port: otherwise a second process
                # on the same port must fail, not quietly take half the connections.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ]
        )
        calls = Calls(self.app, self.server_version)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(calls), server)
        tfs_grpc.add_PredictionServiceServicer_to_server(PredictionService(calls), server)
        tfs_grpc.add_ModelServiceServicer_to_server(ModelService(calls), server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as error:
            raise MlkubeError(f"cannot listen for gRPC on {address}: {error}") from None
        if bound == 0:
            raise MlkubeError(f"cannot listen for gRPC on {address} (in use?)")
        await server.start()
        self._server = server
        return int(bound)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls; calls in flight get up to ``grace_s`` to finish."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
