"""One replica's life: listen, load the model, warm up, serve, drain on SIGTERM.

The port is bound before the model loads, so ``/v2/health/live`` answers during a long load
and a port in use fails at once; ``/v2/health/ready`` turns 200 only after the warm-up
prediction succeeded. A worker of a multi-worker replica (``serving/workers.py``) may instead
listen only once its model is warmed up (``listen_when_ready``), and report ready only when
every worker is (``peers_ready``). SIGTERM or SIGINT: stop accepting, finish in-flight
requests (up to the spec's drainTimeout), exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from mlkube.clock import Clock, SystemClock
from mlkube.observability.logging import AccessLog, PayloadLog
from mlkube.observability.metrics import ServerMetrics
from mlkube.runtimes.base import Runtime
from mlkube.serving.app import InferenceApp, ServerIdentity
from mlkube.serving.errors import error_response
from mlkube.serving.http import ServerState, close_idle_connections, drain, start_server
from mlkube.serving.versions import VersionManager
from mlkube.spec import ModelDeployment

if TYPE_CHECKING:
    from mlkube.serving.grpc.service import GrpcServer

logger = logging.getLogger(__name__)

MANAGEMENT_TOKEN_ENV = "MLKUBE_MANAGEMENT_TOKEN"  # noqa: S105 - a variable's name
"""The environment variable holding the repository extension's bearer token."""
# How often buffered access-log lines are written out.
LOG_FLUSH_S = 0.1


@dataclass(slots=True)
class ReplicaOptions:
    """Process-level settings of a replica (not part of the user's spec)."""

    host: str = "127.0.0.1"
    port: int = 8501
    revision: str = "1"
    replica: str = "0"
    reuse_port: bool = False
    on_listening: Callable[[str], None] = field(default=lambda url: None)
    on_ready: Callable[[float], None] = field(default=lambda seconds: None)
    on_draining: Callable[[], None] = field(default=lambda: None)
    access_log: IO[bytes] | None = None
    """Where per-request JSON lines go (default: stdout)."""
    collectors: tuple[Callable[[CollectorRegistry], object], ...] = ()
    """Extra metric collectors, each registered on the replica's registry (GPU metrics)."""
    listen_when_ready: bool = False
    """Accept connections only once the model is loaded and warmed up (the workers of a
    multi-worker replica: a new connection must never reach a worker that is still loading)."""
    peers_ready: Callable[[], bool] = field(default=lambda: True)
    """Whether the other workers of this replica are ready too: readiness waits for them."""
    grpc_port: int | None = None
    """Where gRPC listens (0: any free port); None: no gRPC (the spec's server.grpc is off)."""
    on_grpc_listening: Callable[[str], None] = field(default=lambda address: None)
    management_token: str | None = None
    """The bearer token of the repository extension (load/unload); None turns it off."""


def load_runtime_for(deployment: ModelDeployment) -> Runtime:
    """Load the (one) model of ``deployment`` with the runtime its format names (the version
    manager passes each model version as a deployment of that model alone)."""
    from mlkube.runtimes import load_runtime

    return load_runtime(deployment)


class Replica:
    """The objects of one serving process, wired together."""

    def __init__(
        self,
        deployment: ModelDeployment,
        options: ReplicaOptions,
        *,
        clock: Clock | None = None,
        loader: Callable[[ModelDeployment], Runtime] = load_runtime_for,
    ) -> None:
        self.deployment = deployment
        self.options = options
        self.clock = clock or SystemClock()
        self.loader = loader
        spec = deployment.spec
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        for add_collector in options.collectors:
            add_collector(self.registry)
        self.models = VersionManager.model_set(deployment)
        self.metrics = ServerMetrics(
            self.registry,
            model=self.models.first,
            revision=options.revision,
            state=self._state,
            models=self._model_states,
        )
        self.versions = VersionManager(
            deployment,
            self.models,
            loader=loader,
            clock=self.clock,
            metrics=self.metrics,
            may_arrive=lambda: self.state.may_send(),
        )
        context = {
            "deployment": deployment.name,
            "revision": options.revision,
            "replica": options.replica,
        }
        self.access_log = AccessLog(
            options.access_log or sys.stdout.buffer,
            context=context,
            sample_rate=spec.logging.requests.sample_rate,
            enabled=spec.logging.requests.enabled,
        )
        self.app = InferenceApp(
            ServerIdentity(
                protocols=frozenset(str(p) for p in spec.protocol),
                server_version=_version(),
            ),
            self.models,
            clock=self.clock,
            metrics=self.metrics,
            access_log=self.access_log,
            payload_log=PayloadLog.from_spec(spec.logging.requests, self.access_log),
            peers_ready=options.peers_ready,
            repository=self.versions,
            management_token=options.management_token,
        )
        self._grpc: GrpcServer | None = None
        self.state = ServerState(
            self.app.handle,
            max_body_bytes=spec.server.max_request_size.whole,
            error_response=error_response,
        )

    @property
    def load_seconds(self) -> float:
        """How long the first load of every model (and its warm-up) took, in all."""
        return sum(self.versions.load_seconds.values())

    def _serving(self) -> bool:
        return self.app.ready and not self.app.draining and self.app.peers_ready()

    def _state(self) -> tuple[int, int, bool, float]:
        ready = self._serving() and self.models.ready
        return self.app.predicting, self.models.queue_depth, ready, self.load_seconds

    def _model_states(self) -> dict[str, tuple[int, int, bool, float]]:
        serving = self._serving()
        states = {}
        for model in self.models:
            versions = model.available.values()
            states[model.name] = (
                sum(v.in_flight for v in versions),
                sum(v.batcher.queue_depth for v in versions),
                serving and model.ready,
                self.versions.load_seconds.get(model.name, 0.0),
            )
        return states

    async def run(self, stop: asyncio.Event) -> bool:
        """Serve until ``stop`` is set; returns True when the drain finished in time."""
        options = self.options
        server = None if options.listen_when_ready else await self._listen()
        flusher = asyncio.create_task(self._flush_logs(stop))
        sweeper = asyncio.create_task(close_idle_connections(self.state))
        loading = asyncio.create_task(self._load())
        watcher: asyncio.Task[None] | None = None
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            loading.result()  # a load failure propagates as ModelLoadError
            if server is None:
                server = await self._listen()
            options.on_ready(self.load_seconds)
            watcher = asyncio.create_task(self.versions.watch(stop))
            await stop_wait
        else:
            loading.cancel()
        if server is None:  # stopped before it ever listened: nothing to drain
            flusher.cancel()
            sweeper.cancel()
            self.access_log.flush()
            return True
        self.app.draining = True
        options.on_draining()
        drain_s = self.deployment.spec.server.drain_timeout
        grpc_stopped = asyncio.create_task(self._grpc.stop(drain_s)) if self._grpc else None
        finished = await drain(server, self.state, drain_s)
        if grpc_stopped is not None:
            await grpc_stopped
        if watcher is not None:
            watcher.cancel()
        await self.versions.close()
        flusher.cancel()
        sweeper.cancel()
        self.access_log.flush()
        return finished

    async def _listen(self) -> asyncio.Server:
        options = self.options
        server = await start_server(
            self.state, host=options.host, port=options.port, reuse_port=options.reuse_port
        )
        port = server.sockets[0].getsockname()[1]
        options.on_listening(f"http://{_url_host(options.host)}:{port}")
        if options.grpc_port is not None:
            await self._listen_grpc(options.grpc_port)
        return server

    async def _listen_grpc(self, port: int) -> None:
        # Imported only here: a replica without gRPC does not load grpcio.
        from mlkube.serving.grpc.service import GrpcServer

        options = self.options
        self._grpc = GrpcServer(
            self.app,
            max_message_bytes=self.deployment.spec.server.max_request_size.whole,
            server_version=_version(),
        )
        bound = await self._grpc.start(options.host, port, reuse_port=options.reuse_port)
        options.on_grpc_listening(f"{_url_host(options.host)}:{bound}")

    async def _load(self) -> None:
        await self.versions.start()
        self.app.ready = True
        logger.info(
            "models ready",
            extra={
                "load_seconds": round(self.load_seconds, 3),
                "models": {m.name: sorted(m.available) for m in self.models},
            },
        )

    async def _flush_logs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.clock.sleep(LOG_FLUSH_S)
            self.access_log.flush()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; a second SIGINT exits at once."""
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if stop.is_set():
            raise SystemExit(130)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, request_stop)


def run_event_loop(main: Callable[[], object]) -> object:
    """Run ``main()`` (a coroutine factory) on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main())  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _version() -> str:
    from mlkube import __version__

    return __version__
