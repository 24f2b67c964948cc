"""The benchmark's third arm: mlkube's own app and batcher under Starlette/uvicorn.

Everything above the HTTP layer is what ``mlkube serve`` runs, in the same objects: the spec
loader, the runtime loader, the warm-up and the cost model's calibration, the batcher and its
settings (``serving/versions.py`` builds them all for a ``Replica``), routing, the v1 decode
fast path (``serving/fast_decode.py``), the encoding, metrics and the access log
(``InferenceApp.handle``). Only the HTTP core differs: uvicorn (uvloop, httptools, the
baseline's flags) and Starlette instead of ``serving/http.py`` and ``serving/httpcore``. So
``bench/serve.py`` can tell what that core buys over the established stack.

``BATCHER_SPEC`` names the deployment spec ``mlkube serve`` gets. One Starlette route takes
every path and hands it to ``InferenceApp.handle``: ``/metrics`` (per worker, as in ``mlkube
serve``) shows the batch sizes the batcher merged.

The batcher asks how many more requests may arrive (open connections with no request in
flight) to decide whether waiting for stragglers can pay. ``mlkube serve`` counts its own
connections; ASGI tells an app nothing of connections, so the first request looks up
uvicorn's own set of open connections (``server_state.connections``, reached through the
``send`` callable uvicorn passes: ``RequestResponseCycle.on_response`` is bound to the
connection's protocol object, which holds it; uvicorn 0.3x-0.5x). If that lookup fails the
app answers 500 rather than batch on a wrong count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sized
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlkube.serving import http
from mlkube.serving.server import LOG_FLUSH_S, Replica, ReplicaOptions
from mlkube.spec import load_spec

# A replica's objects, as ``mlkube serve`` wires them; its own HTTP server is never started.
replica = Replica(load_spec(os.environ["BATCHER_SPEC"]), ReplicaOptions())


class ConnectionCount:
    """Open connections minus requests in flight: the batcher's ``may_arrive``, as
    ``mlkube serve`` computes it from its own server state."""

    def __init__(self) -> None:
        self.connections: Sized | None = None
        self.in_flight = 0

    def find(self, send: Callable[..., Any]) -> None:
        """uvicorn's set of open connections, reached from the ``send`` it passed."""
        cycle = getattr(send, "__self__", None)
        protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
        connections = getattr(protocol, "connections", None)
        if not isinstance(connections, set):
            raise RuntimeError("cannot find uvicorn's open connections (uvicorn changed?)")
        self.connections = connections

    def may_arrive(self) -> int:
        open_now = len(self.connections) if self.connections is not None else 1
        return open_now - self.in_flight


count = ConnectionCount()
replica.versions.may_arrive = count.may_arrive


async def handle(request: Request) -> Response:
    """Any request: mlkube's app answers it, now or once its batch has run."""
    body = await request.body()
    parsed = http.Request(
        request.method,
        request.scope["path"],
        request.scope["query_string"].decode("latin-1"),
        dict(request.headers),
        body,
    )
    later: asyncio.Future[http.Response] = asyncio.get_running_loop().create_future()
    count.in_flight += 1
    try:
        answer = replica.app.handle(parsed, _respond_into(later))
        if answer is None:
            answer = await later
    finally:
        count.in_flight -= 1
    return Response(
        answer.body,
        answer.status,
        headers=dict(answer.headers),
        media_type=answer.content_type,
    )


def _respond_into(future: asyncio.Future[http.Response]) -> http.Respond:
    def respond(response: http.Response) -> None:
        if not future.done():
            future.set_result(response)

    return respond


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    """Load, warm up and calibrate before uvicorn accepts connections (as a worker of
    ``mlkube serve`` listens only once ready); flush the access log as its server does."""
    await replica.versions.start()
    replica.app.ready = True

    async def flush_logs() -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            replica.access_log.flush()

    flusher = asyncio.create_task(flush_logs())
    try:
        yield
    finally:
        flusher.cancel()
        await replica.versions.close()
        replica.access_log.flush()


starlette_app = Starlette(
    routes=[Route("/{path:path}", handle, methods=["GET", "HEAD", "POST"])],
    lifespan=lifespan,
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry: finds uvicorn's connection set on the first request."""
    if count.connections is None and scope["type"] == "http":
        count.find(send)
    await starlette_app(scope, receive, send)
