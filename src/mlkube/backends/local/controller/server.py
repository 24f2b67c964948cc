"""The control API server: a Starlette app under uvicorn, inside the controller's own loop.

A low-traffic API (a few requests a second from the CLI) on an established ASGI stack; the
hot path (the load balancers, ``mlkube serve``) keeps its own HTTP core. What the stack leaves
to us is here: the token guard (every route but ``GET /metrics``), the 4 MiB body limit, the
16 KiB head limit, a read timeout (``guarded_h11``), and one error shape, ``{"error": "..."}``,
for every refusal (400 bad request or a spec the caller named that does not load, 401 token,
404 route, 405 method, 408 too slow, 409 ``BackendError``, 413 too large, 431 head too large,
500 anything else, logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlkube.backends.local.controller.api import MAX_BODY_BYTES, METRICS_CONTENT_TYPE
from mlkube.backends.local.controller.api_models import ErrorResponse
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.guarded_h11 import (
    MAX_HEAD_BYTES,
    READ_TIMEOUT_S,
    GuardedH11Protocol,
)
from mlkube.backends.local.controller.routes import Endpoint, Endpoints, RequestError
from mlkube.errors import BackendError, ModelLoadError, SpecError

logger = logging.getLogger(__name__)

Metrics = Callable[[], bytes]
INTERNAL_ERROR = "internal error in the controller; see controller.log"
SHUTDOWN_GRACE_S = 5.0


def build_app(ctrl: Controller, token: str, *, metrics: Metrics) -> Starlette:
    """The control API of ``ctrl``; ``metrics`` answers ``GET /metrics`` (Prometheus text)."""
    routes = [
        Route(path, _json_endpoint(endpoint), methods=[method])
        for method, path, endpoint in Endpoints(ctrl).table()
    ]
    routes.append(Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TokenGuard, token=token)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.router.redirect_slashes = False  # /status/ is no route, not a redirect to one
    return app


def error(status: int, message: str, *, close: bool = False) -> Response:
    """The one error shape; ``close`` when the rest of the request body stays unread."""
    headers = {"Connection": "close"} if close else None
    body = ErrorResponse(error=message).model_dump_json()
    return Response(body, status, headers, media_type="application/json")


def _json_endpoint(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        try:
            result = await endpoint(request)
            body = result.model_dump_json(by_alias=True, exclude_unset=True)
        except RequestError as refused:
            return error(refused.status, refused.message, close=refused.status in (408, 413))
        except (SpecError, ModelLoadError) as unusable:  # a file the caller named
            return error(400, str(unusable))
        except BackendError as failed:
            return error(409, str(failed))
        except Exception:
            logger.exception("control API request %s %s failed", request.method, request.url.path)
            return error(500, INTERNAL_ERROR)
        return Response(body, media_type="application/json")

    return answer


def _metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        try:
            text = metrics()
        except Exception:
            logger.exception("the controller's /metrics failed")
            return error(500, INTERNAL_ERROR)
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    return answer


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in our error shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return error(500, INTERNAL_ERROR)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        message = f"no such API route: {where}"
    elif exc.status_code == 405:
        allowed = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
        message = f"method not allowed: {where} (allowed: {allowed})"
    else:
        message = f"{exc.detail}: {where}"
    answer = error(exc.status_code, message)
    answer.headers.update(exc.headers or {})
    return answer


async def _internal_error(request: Request, exc: Exception) -> Response:
    """What escaped every endpoint's own handling (uvicorn logs it): still our error shape."""
    return error(500, INTERNAL_ERROR)


class TokenGuard:
    """Refuses, before any route runs, a request whose head is over ``MAX_HEAD_BYTES`` (431),
    one without the token (401) or one that says it is over ``MAX_BODY_BYTES`` (413).
    ``GET /metrics`` needs no token: Prometheus cannot send one, and the route only reads
    aggregated per-deployment numbers (replica counts, rollout phase, autoscaler inputs); it
    changes nothing and shows no spec, path, request or token; the socket is loopback."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = scope.get("raw_path") or scope["path"].encode()  # raw_path is optional in ASGI
        head = len(target) + len(scope["query_string"])
        head += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if head > MAX_HEAD_BYTES:
            too_long = error(431, f"the request head is over {MAX_HEAD_BYTES} bytes", close=True)
            await too_long(scope, receive, send)
            return
        if _is_metrics(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> Response | None:
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error(
                413, f"request body of {int(length)} bytes is over {MAX_BODY_BYTES}", close=True
            )
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        if not hmac.compare_digest(given, self.expected):
            return error(401, "missing or wrong token")
        return None


def _is_metrics(scope: Scope) -> bool:
    return scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD")


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM and SIGINT stay the controller's
    (``down``), which stops this server with ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlServer:
    """The control API on ``127.0.0.1:port`` (0: any free port), as a task of this loop."""

    def __init__(
        self, app: ASGIApp, port: int = 0, *, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        self._socket = socket.create_server(("127.0.0.1", port))
        self.port: int = self._socket.getsockname()[1]

        class Protocol(GuardedH11Protocol):
            pass

        Protocol.read_timeout_s = read_timeout_s
        config = uvicorn.Config(
            app,
            # h11 bounds an unfinished head (httptools does not); speed does not matter here
            http=Protocol,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            ws="none",
            lifespan="off",
            log_config=None,  # the controller's logging stays as it is
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve, once uvicorn has started."""
        self._task = asyncio.create_task(self._server.serve([self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the control API server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, finish the answers in flight (at most ``SHUTDOWN_GRACE_S``)."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()


async def serve_api(
    app: ASGIApp, port: int = 0, *, read_timeout_s: float = READ_TIMEOUT_S
) -> ControlServer:
    """Start serving ``app`` on loopback; ``.port`` is where, ``.stop()`` ends it."""
    server = ControlServer(app, port, read_timeout_s=read_timeout_s)
    await server.start()
    return server
