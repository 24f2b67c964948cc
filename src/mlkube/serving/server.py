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
from typing import IO

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from mlkube.batching.batcher import Batcher, BatcherSettings
from mlkube.batching.warmup import calibrate
from mlkube.clock import Clock, SystemClock
from mlkube.errors import ModelLoadError
from mlkube.observability.logging import AccessLog, PayloadLog
from mlkube.observability.metrics import ServerMetrics
from mlkube.runtimes.base import Runtime, example_batch
from mlkube.serving.app import InferenceApp, ModelIdentity
from mlkube.serving.errors import error_response
from mlkube.serving.http import ServerState, close_idle_connections, drain, start_server
from mlkube.spec import ModelDeployment

logger = logging.getLogger(__name__)

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


def load_runtime_for(deployment: ModelDeployment) -> Runtime:
    """Load the model with the runtime its format names."""
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
        self.load_seconds = 0.0
        self.metrics = ServerMetrics(
            self.registry,
            model=deployment.model_name,
            revision=options.revision,
            state=self._state,
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
            ModelIdentity(
                name=deployment.model_name,
                version=spec.model.version,
                protocols=frozenset(str(p) for p in spec.protocol),
                server_version=_version(),
            ),
            clock=self.clock,
            metrics=self.metrics,
            access_log=self.access_log,
            payload_log=PayloadLog.from_spec(spec.logging.requests, self.access_log),
            peers_ready=options.peers_ready,
        )
        self.state = ServerState(
            self.app.handle,
            max_body_bytes=spec.server.max_request_size.whole,
            error_response=error_response,
        )

    def _state(self) -> tuple[int, int, bool, float]:
        batcher = self.app.batcher
        queue = batcher.queue_depth if batcher is not None else 0
        ready = self.app.ready and not self.app.draining and self.app.peers_ready()
        return self.app.predicting, queue, ready, self.load_seconds

    async def run(self, stop: asyncio.Event) -> bool:
        """Serve until ``stop`` is set; returns True when the drain finished in time."""
        options = self.options
        server = None if options.listen_when_ready else await self._listen()
        flusher = asyncio.create_task(self._flush_logs(stop))
        sweeper = asyncio.create_task(close_idle_connections(self.state))
        loading = asyncio.create_task(self._load())
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            loading.result()  # a load failure propagates as ModelLoadError
            if server is None:
                server = await self._listen()
            options.on_ready(self.load_seconds)
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
        finished = await drain(server, self.state, self.deployment.spec.server.drain_timeout)
        if self.app.batcher is not None:
            await self.app.batcher.close()
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
        return server

    async def _load(self) -> None:
        started = self.clock.monotonic()
        loop = asyncio.get_running_loop()
        runtime = await loop.run_in_executor(None, self.loader, self.deployment)
        warm_started = self.clock.monotonic()
        try:
            await loop.run_in_executor(None, runtime.predict, example_batch(runtime.inputs))
        except Exception as error:
            raise ModelLoadError(
                self.deployment.model_path(),
                str(self.deployment.spec.model.format),
                f"the warm-up prediction failed: {error}",
            ) from error
        warm_s = self.clock.monotonic() - warm_started
        spec = self.deployment.spec
        batching = spec.batching.enabled and runtime.supports_batching
        costs = await loop.run_in_executor(
            None, calibrate, runtime, spec.batching, batching, self.clock, warm_s
        )
        state = self.state
        batcher = Batcher(
            runtime.predict,
            BatcherSettings(
                max_batch_size=spec.batching.max_batch_size,
                max_batch_requests=spec.batching.max_batch_requests,
                max_latency_s=spec.batching.max_latency_ms / 1000,
                max_queue=spec.server.max_queue_size,
                timeout_s=spec.server.request_timeout,
                enabled=batching,
                inline=not runtime.runs_user_code,
            ),
            clock=self.clock,
            observer=self.metrics,
            # Open connections without a request in flight: the requests that may still come.
            may_arrive=lambda: len(state.connections) - state.in_flight,
        )
        batcher.calibrate(costs or [(1, warm_s)])
        self.load_seconds = self.clock.monotonic() - started
        self.app.attach(runtime, batcher)
        logger.info(
            "model ready",
            extra={
                "load_seconds": round(self.load_seconds, 3),
                "batching": batching,
                "predict_fixed_ms": round(batcher.cost.cost.fixed_s * 1000, 3),
                "predict_row_ms": round(batcher.cost.cost.per_row_s * 1000, 4),
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
