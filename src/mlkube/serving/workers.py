"""Run a replica as one process, or as N worker processes sharing one port (SO_REUSEPORT).

The parent checks the port first (so "port in use" is one clear error, not N), imports the
model libraries once (``runtimes.loader.preload_libraries``: N workers importing scikit-learn
or torch each was N times the CPU of a cold start, on shared cores), forks the workers
before any model is loaded, waits until every worker reports ready (or one fails), forwards
SIGTERM/SIGINT to them and exits with the worst exit code.

Ready means every worker is ready. A worker listens only once its model is loaded and warmed
up, so a new connection never reaches a worker that would answer 503 "not ready yet" (during
the load the port refuses connections, which probes read as not ready; Kubernetes' startup
probe covers that time). Every worker's readiness endpoints say ready only when all workers
are (a counter shared through the fork), so a probe never marks a half-loaded replica ready.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from mlkube.errors import MlkubeError
from mlkube.serving.server import Replica, ReplicaOptions, install_stop_signals, run_event_loop
from mlkube.spec import ModelDeployment

_JOIN_TIMEOUT_S = 5.0


class PortInUseError(MlkubeError):
    """The port is already taken by another process."""

    def __init__(self, host: str, port: int, option: str = "--port") -> None:
        super().__init__(
            f"port {port} on {host} is already in use; stop whatever listens there "
            f"or pick another with {option}"
        )


def check_port_free(host: str, port: int, option: str = "--port") -> None:
    """Raise PortInUseError (naming ``option``) when ``host:port`` cannot be bound."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port, option) from None
            raise MlkubeError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def serve_single(deployment: ModelDeployment, options: ReplicaOptions) -> bool:
    """Serve in this process until SIGTERM/SIGINT. True when the drain finished in time."""

    async def main() -> bool:
        stop = asyncio.Event()
        install_stop_signals(stop)
        try:
            return await Replica(deployment, options).run(stop)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(options.host, options.port) from None
            raise

    finished = bool(run_event_loop(main))
    # The loop's signal handlers are gone now; a repeated SIGTERM while the process finishes
    # exiting must not turn a clean drain into death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return finished


def serve_workers(
    deployment: ModelDeployment,
    options: ReplicaOptions,
    workers: int,
    *,
    on_all_ready: Callable[[float], None],
) -> int:
    """Fork ``workers`` processes sharing the port; returns the exit code for the parent."""
    from mlkube.runtimes.loader import preload_libraries

    preload_libraries(deployment)
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    ready_count = context.Value("i", 0)
    # Start-up's objects (modules, the spec) live as long as the process: out of the
    # collector's sight before the fork, so no worker's collections walk them or touch the
    # pages they share with the parent (https://docs.python.org/3/library/gc.html#gc.freeze).
    gc.freeze()
    processes = []
    for index in range(workers):
        process = context.Process(
            target=_worker_main,
            args=(deployment, options, index, writer, _ReadyCount(ready_count, workers)),
            daemon=False,
        )
        process.start()
        processes.append(process)
    writer.close()
    gc.enable()  # the parent loads no model: collections (off through start-up) back on

    stopping = False

    def forward(_signum: int, _frame: Any) -> None:
        # SIGTERM or SIGINT: every worker drains the same way on SIGTERM.
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failure = _wait_ready(reader, workers, on_all_ready)
    if stopping:  # stopped while workers loaded: they gave up their loads and exited, as asked
        failure = None
    if failure is not None:
        forward(signal.SIGTERM, None)
    for process in processes:
        process.join()
    if failure is not None:
        raise MlkubeError(failure)
    return max((process.exitcode or 0) for process in processes)


def _wait_ready(
    reader: Connection, workers: int, on_all_ready: Callable[[float], None]
) -> str | None:
    ready: list[float] = []
    while len(ready) < workers:
        try:
            kind, value = reader.recv()
        except EOFError:
            return "a worker exited before it was ready"
        if kind == "failed":
            return str(value)
        ready.append(float(value))
    on_all_ready(max(ready))
    return None


class _ReadyCount:
    """How many workers are ready, in memory shared by every worker (set before the fork)."""

    def __init__(self, value: Any, workers: int) -> None:
        self._value = value
        self._workers = workers

    def add_one(self) -> None:
        with self._value.get_lock():
            self._value.value += 1

    def all_ready(self) -> bool:
        return bool(self._value.value >= self._workers)


def resume_collections() -> None:
    """Cyclic GC back on at ready, for what serving allocates from here.

    It was off through start-up (``mlkube serve``), and what start-up made (modules, the
    model) lives as long as the process: frozen first, so the first collections do not walk
    all of it (measured: a full pass over a scikit-learn replica's start-up objects on the way
    to the first answer, bench/cold_start.py).
    """
    gc.freeze()
    gc.enable()


def _worker_main(
    deployment: ModelDeployment,
    options: ReplicaOptions,
    index: int,
    writer: Connection,
    ready_count: _ReadyCount,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards what it receives

    def ready(seconds: float) -> None:
        resume_collections()
        ready_count.add_one()
        writer.send(("ready", seconds))

    worker_options = ReplicaOptions(
        host=options.host,
        port=options.port,
        revision=options.revision,
        replica=f"{options.replica}.{index}",
        reuse_port=True,
        on_ready=ready,
        listen_when_ready=True,
        peers_ready=ready_count.all_ready,
        grpc_port=options.grpc_port,
        management_token=options.management_token,
    )
    try:
        finished = serve_single(deployment, worker_options)
    except MlkubeError as error:
        writer.send(("failed", str(error)))
        os._exit(1)
    os._exit(0 if finished else 1)
