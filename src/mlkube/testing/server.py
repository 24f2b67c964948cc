"""Run a real replica server on 127.0.0.1 in a background thread, for tests and benchmarks.

The server is the real one (real sockets, real runtime, real batcher) on its own event loop;
only the process boundary is skipped, so a test can inspect it and still talk HTTP to it.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from mlkube.runtimes.base import Runtime
from mlkube.serving.server import Replica, ReplicaOptions, load_runtime_for
from mlkube.spec import ModelDeployment

_START_TIMEOUT_S = 60.0


@dataclass
class RunningReplica:
    """A replica serving in a thread: its URL and the objects behind it."""

    url: str
    replica: Replica
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    errors: list[BaseException] = field(default_factory=list)
    grpc_address: str | None = None
    """``127.0.0.1:PORT`` of its gRPC server when the spec enables ``server.grpc``."""


def _remember(holder: dict[str, object], url: str, listening: threading.Event) -> None:
    holder["url"] = url
    listening.set()


@contextmanager
def running_replica(
    deployment: ModelDeployment,
    *,
    loader: Callable[[ModelDeployment], Runtime] = load_runtime_for,
    wait_ready: bool = True,
    access_log: IO[bytes] | None = None,
    management_token: str | None = None,
) -> Iterator[RunningReplica]:
    """Serve ``deployment`` on a free loopback port until the block ends."""
    listening = threading.Event()
    ready = threading.Event()
    holder: dict[str, object] = {}
    options = ReplicaOptions(
        host="127.0.0.1",
        port=0,
        on_listening=lambda url: _remember(holder, url, listening),
        on_ready=lambda seconds: ready.set(),
        access_log=access_log if access_log is not None else io.BytesIO(),
        grpc_port=0 if deployment.spec.server.grpc.enabled else None,
        on_grpc_listening=lambda address: holder.__setitem__("grpc", address),
        management_token=management_token,
    )
    replica = Replica(deployment, options, loader=loader)
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = loop, stop
        try:
            loop.run_until_complete(replica.run(stop))
        except BaseException as error:  # reported to the test, not swallowed
            errors.append(error)
            listening.set()
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="mlkube-test-replica", daemon=True)
    thread.start()
    if not listening.wait(_START_TIMEOUT_S):
        raise TimeoutError("the test replica did not start listening")
    if wait_ready and not ready.wait(_START_TIMEOUT_S):
        raise TimeoutError("the test replica did not become ready")
    if errors and wait_ready:
        raise errors[0]
    loop = holder["loop"]
    stop = holder["stop"]
    if not isinstance(loop, asyncio.AbstractEventLoop) or not isinstance(stop, asyncio.Event):
        raise RuntimeError("the test replica's thread did not set up its event loop")
    grpc = holder.get("grpc")
    running = RunningReplica(
        str(holder["url"]), replica, loop, stop, errors, str(grpc) if grpc else None
    )
    try:
        yield running
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
