"""The web console: pages, a JSON API for them, live updates by server-sent events.

Mounted by ``server.build_app`` under ``/console`` of the control API (loopback). The pages
and their assets (``console_assets``, shipped in the package: no build step) carry no data and
need no credential; everything under ``/console/api`` does:

- ``POST /console/api/code`` with the control API's bearer token (``mlkube console`` sends
  it) answers a one-time login code, valid ``CODE_TTL_S`` seconds. The CLI prints
  ``http://127.0.0.1:PORT/console/#code=...``: a fragment is never sent to a server, so the
  code is in no access log, proxy log or Referer.
- ``POST /console/api/session`` exchanges the code (once) for a random session id in an
  HttpOnly, SameSite=Strict cookie scoped to ``/console``; the page script then drops the
  fragment from the address bar.
- every other ``/console/api`` route needs that cookie (or the bearer token). An action (a
  POST) also needs the ``X-Mlkube-Console`` header, which a cross-site form cannot send.

Read-mostly: the only actions are scale, rollout undo, a canary's promote and abort, and a
job's cancel, each the same handler the CLI's command calls (and each confirmed in the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route

from mlkube.backends.local.controller import handlers
from mlkube.backends.local.controller.console_history import (
    COLUMNS,
    SAMPLE_PERIOD_S,
    History,
)
from mlkube.backends.local.controller.console_simulate import input_problem, run_simulation
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.errors import MlkubeError
from mlkube.observability.logs import line_time

logger = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent.parent / "console_assets"
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
COOKIE = "mlkube_console"
CODE_TTL_S = 120.0
SESSION_TTL_S = 12 * 3600.0
MAX_CODES = 64
MAX_SESSIONS = 256
MAX_BODY_BYTES = 64 * 1024
ACTION_HEADER = "x-mlkube-console"
STREAM_PERIOD_S = 1.0
JOB_FIELDS = ("name", "namespace", "kind", "phase", "workers", "reason", "submitted")
"""What the overview shows of each job (``GET /jobs`` has the rest)."""
LOG_TAIL_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # uPlot sizes its canvas through element.style, hence the inline styles.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


class ConsoleRefusalError(Exception):
    """A console request that is refused with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Sessions:
    """One-time login codes and the sessions they became; both expire, both are bounded."""

    def __init__(self) -> None:
        self.codes: dict[str, float] = {}
        self.sessions: dict[str, float] = {}

    def new_code(self, now: float) -> str:
        self._prune(now)
        if len(self.codes) >= MAX_CODES:
            del self.codes[min(self.codes, key=self.codes.__getitem__)]
        code = secrets.token_urlsafe(24)
        self.codes[code] = now + CODE_TTL_S
        return code

    def exchange(self, code: str, now: float) -> str | None:
        """A new session for a live code, which is spent; None for any other code."""
        self._prune(now)
        if self.codes.pop(code, None) is None:
            return None
        if len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[min(self.sessions, key=self.sessions.__getitem__)]
        session = secrets.token_urlsafe(32)
        self.sessions[session] = now + SESSION_TTL_S
        return session

    def valid(self, session: str, now: float) -> bool:
        expires = self.sessions.get(session)
        return expires is not None and expires > now

    def _prune(self, now: float) -> None:
        self.codes = {c: t for c, t in self.codes.items() if t > now}
        self.sessions = {s: t for s, t in self.sessions.items() if t > now}


class CodeBody(BaseModel):
    """``POST /console/api/session``: the one-time code of a login link."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=200)


class NameBody(BaseModel):
    """An action on one deployment (``name`` or ``namespace/name``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=300)


class ScaleBody(NameBody):
    """``POST /console/api/scale``."""

    replicas: int = Field(ge=0, le=1000)


class SimulateBody(NameBody):
    """``POST /console/api/simulate``: a built-in trace and the policies side by side."""

    trace: str = Field(default="spike", max_length=40)
    policies: list[str] = Field(default_factory=lambda: ["mlkube", "hpa-cpu70"], max_length=5)


Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The console of one controller: its sessions, its history and its routes."""

    def __init__(self, ctrl: Controller, token: str) -> None:
        self.ctrl = ctrl
        self.token = token.encode()
        self.sessions = Sessions()
        self.history = History()
        self._sampler: asyncio.Task[None] | None = None
        self._simulating = asyncio.Lock()

    # the app --------------------------------------------------------------------------------
    def app(self) -> Starlette:
        page = self._public(self.page)
        routes = [
            Route("/", page, methods=["GET"]),
            Route("/simulate", page, methods=["GET"]),
            Route("/d/{namespace}/{name}", page, methods=["GET"]),
            Route("/assets/{file}", self._public(self.asset), methods=["GET"]),
            Route("/api/code", self._bearer(self.code), methods=["POST"]),
            Route("/api/session", self._public(self.session), methods=["POST"]),
            Route("/api/overview", self._signed_in(self.overview), methods=["GET"]),
            Route("/api/deployment", self._signed_in(self.deployment), methods=["GET"]),
            Route("/api/logs", self._signed_in(self.logs), methods=["GET"]),
            Route("/api/stream", self._signed_in(self.stream), methods=["GET"]),
            Route("/api/scale", self._action(self.scale), methods=["POST"]),
            Route("/api/undo", self._action(self.undo), methods=["POST"]),
            Route("/api/promote", self._action(self.promote), methods=["POST"]),
            Route("/api/abort", self._action(self.abort), methods=["POST"]),
            Route("/api/cancel", self._action(self.cancel), methods=["POST"]),
            Route("/api/simulate", self._action(self.simulate), methods=["POST"]),
        ]
        app = Starlette(routes=routes)
        app.router.redirect_slashes = False
        return app

    def start_sampling(self) -> None:
        """Sample the history once a second from now on (idempotent; needs the loop)."""
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        while not self.ctrl.stopping.is_set():
            try:
                self.history.sample(self.ctrl.deployments.values(), self.ctrl.clock.wall())
            except Exception:  # a chart gap, never a dead sampler
                logger.exception("the console's history sample failed")
            await self.ctrl.clock.sleep(SAMPLE_PERIOD_S)

    # guards ---------------------------------------------------------------------------------
    def _public(self, handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            self.start_sampling()
            try:
                response = await handler(request)
            except ConsoleRefusalError as refused:
                response = _error(refused.status, refused.message)
            except handlers.NotFoundError as missing:
                response = _error(404, str(missing))
            except MlkubeError as failed:
                response = _error(409, str(failed))
            response.headers.update(SECURITY_HEADERS)
            return response

        return answer

    def _bearer(self, handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            if not self._has_token(request):
                raise ConsoleRefusalError(401, "missing or wrong token")
            return await handler(request)

        return self._public(answer)

    def _signed_in(self, handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            session = request.cookies.get(COOKIE, "")
            if not (
                self.sessions.valid(session, self.ctrl.clock.wall()) or self._has_token(request)
            ):
                raise ConsoleRefusalError(
                    401, "not signed in: run `mlkube console` and open the link it prints"
                )
            return await handler(request)

        return self._public(answer)

    def _action(self, handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            if request.headers.get(ACTION_HEADER) != "1":
                raise ConsoleRefusalError(403, f"a console action needs the {ACTION_HEADER} header")
            return await handler(request)

        return self._signed_in(answer)

    def _has_token(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.token)

    # pages and sign-in ----------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return FileResponse(ASSETS / "index.html", media_type="text/html")

    async def asset(self, request: Request) -> Response:
        file = ASSETS / request.path_params["file"]
        if (
            file.parent != ASSETS
            or file.suffix not in ASSET_TYPES
            or not file.is_file()
            or file.name == "index.html"
        ):
            raise ConsoleRefusalError(404, f"no console asset '{request.path_params['file']}'")
        return FileResponse(file, media_type=ASSET_TYPES[file.suffix])

    async def code(self, request: Request) -> Response:
        return JSONResponse(
            {"code": self.sessions.new_code(self.ctrl.clock.wall()), "expiresInSeconds": CODE_TTL_S}
        )

    async def session(self, request: Request) -> Response:
        body = await _body(request, CodeBody)
        session = self.sessions.exchange(body.code, self.ctrl.clock.wall())
        if session is None:
            raise ConsoleRefusalError(
                401, "this login link is used or expired: run `mlkube console` again"
            )
        response = JSONResponse({"signedIn": True})
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(SESSION_TTL_S),
            path="/console",
            httponly=True,
            samesite="strict",
        )
        return response

    # reads ----------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        return JSONResponse(self._overview())

    def _overview(self) -> dict[str, Any]:
        status = handlers.status(self.ctrl, None)
        jobs = self.ctrl.job_queue.rows()
        return {
            "deployments": [_summary(d) for d in status["deployments"]],
            "jobs": [{k: row[k] for k in JOB_FIELDS} for row in jobs],
            "controller": {"stateDir": status["controller"]["stateDir"]},
        }

    async def deployment(self, request: Request) -> Response:
        dep = self._find(request.query_params.get("name", ""))
        since = _float(request.query_params.get("since", "0"), "since")
        status = handlers.status(self.ctrl, dep.key)["deployments"][0]
        events = handlers.events(self.ctrl, dep, 200)
        return JSONResponse(
            {
                "key": dep.key,
                "status": status,
                "health": health(status),
                "history": handlers.history(self.ctrl, dep),
                "columns": list(COLUMNS),
                "points": [p.row() for p in self.history.points(dep.key, since)],
                "events": events,
            }
        )

    async def logs(self, request: Request) -> Response:
        dep = self._find(request.query_params.get("name", ""))
        lines = int(_float(request.query_params.get("lines", "100"), "lines"))
        return JSONResponse({"lines": self._log_tail(dep, max(1, min(lines, 500)))})

    def _log_tail(self, dep: Deployment, count: int) -> list[str]:
        """The newest ``count`` lines over the replicas' logs, each labelled with its replica."""
        tagged: list[tuple[float, str]] = []
        for name in sorted(dep.replicas):
            path = self.ctrl.log_path(dep, name)
            for line in _tail(path, LOG_TAIL_BYTES):
                tagged.append((line_time(line) or 0.0, f"[{name}] {line}"))
        tagged.sort(key=lambda pair: pair[0])
        return [text for _, text in tagged[-count:]]

    async def stream(self, request: Request) -> Response:
        """Server-sent events: one ``update`` a second (the overview, or one deployment's newest
        point, status and events), until the client goes or the controller stops."""
        name = request.query_params.get("name")
        dep = self._find(name) if name else None
        return StreamingResponse(
            self._updates(dep.key if dep else None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _updates(self, key: str | None) -> AsyncIterator[str]:
        last_event = 0.0
        yield "retry: 2000\n\n"
        while not self.ctrl.stopping.is_set():
            if key is None:
                data: dict[str, Any] = self._overview()
            else:
                dep = self.ctrl.deployments.get(key)
                if dep is None:
                    yield "event: gone\ndata: {}\n\n"
                    return
                point = self.history.latest(key)
                events = [e for e in handlers.events(self.ctrl, dep, 20) if e["ts"] > last_event]
                last_event = max([last_event, *(e["ts"] for e in events)])
                status = handlers.status(self.ctrl, key)["deployments"][0]
                data = {
                    "status": status,
                    "health": health(status),
                    "point": point.row() if point else None,
                    "events": events,
                }
            yield f"event: update\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            try:
                await asyncio.wait_for(self.ctrl.stopping.wait(), STREAM_PERIOD_S)
            except TimeoutError:
                continue

    # actions --------------------------------------------------------------------------------
    async def scale(self, request: Request) -> Response:
        body = await _body(request, ScaleBody)
        dep = self._find(body.name)
        return JSONResponse(handlers.scale(self.ctrl, dep.key, body.replicas))

    async def undo(self, request: Request) -> Response:
        dep = self._find((await _body(request, NameBody)).name)
        return JSONResponse(handlers.undo(self.ctrl, dep, None))

    async def promote(self, request: Request) -> Response:
        dep = self._find((await _body(request, NameBody)).name)
        return JSONResponse(handlers.promote(self.ctrl, dep, full=False))

    async def abort(self, request: Request) -> Response:
        dep = self._find((await _body(request, NameBody)).name)
        return JSONResponse(handlers.abort(self.ctrl, dep))

    async def cancel(self, request: Request) -> Response:
        """Cancel a job, as ``mlkube cancel`` does (its workers get SIGTERM, then SIGKILL)."""
        name = (await _body(request, NameBody)).name
        queue = self.ctrl.job_queue
        job = queue.cancel(name)
        self.ctrl.reconcile()  # the room it held goes to the next in the queue at once
        return JSONResponse({k: queue.row(job)[k] for k in JOB_FIELDS})

    async def simulate(self, request: Request) -> Response:
        body = await _body(request, SimulateBody)
        dep = self._find(body.name)
        problem = input_problem(body.trace, body.policies)
        if problem is not None:
            raise ConsoleRefusalError(400, problem)
        if self._simulating.locked():
            raise ConsoleRefusalError(
                409, "a simulation is already running; try again when it ends"
            )
        async with self._simulating:
            result = await asyncio.to_thread(run_simulation, dep.doc, body.trace, body.policies)
        return JSONResponse(result)

    def _find(self, name: str) -> Deployment:
        if not name:
            raise ConsoleRefusalError(400, "name is required")
        return handlers.find(self.ctrl, name)


def console_routes(console: Console) -> list[BaseRoute]:
    """The console's routes for the control API: ``/console`` (to ``/console/``) and under it.
    The sampler starts here when a loop runs (the controller's), else at the first request."""
    with contextlib.suppress(RuntimeError):
        console.start_sampling()
    return [
        Route("/console", _to_console_root, methods=["GET"]),
        Mount("/console", app=console.app()),
    ]


def is_console(path: str) -> bool:
    """Whether ``path`` is the console's: its own guard decides, not the bearer token's."""
    return path == "/console" or path.startswith("/console/")


async def _to_console_root(request: Request) -> Response:
    return RedirectResponse("/console/", 307)


def health(dep: dict[str, Any]) -> str:
    """A deployment at a glance, from its ``status`` document: ``failing`` when a replica is
    NotReady or in CrashLoopBackOff, else ``progressing`` while fewer are ready than desired,
    else ``healthy``. Pure."""
    if any(r["phase"] in ("NotReady", "CrashLoopBackOff") for r in dep["replicas"]):
        return "failing"
    return "progressing" if dep["ready"] < dep["desired"] else "healthy"


def _summary(dep: dict[str, Any]) -> dict[str, Any]:
    """One overview row of ``status``'s deployment document."""
    return {
        "name": dep["name"],
        "namespace": dep["namespace"],
        "port": dep["port"],
        "desired": dep["desired"],
        "ready": dep["ready"],
        "revision": dep["revision"],
        "rolloutPhase": dep["rollout"].get("phase"),
        "traffic": dep["traffic"],
        "requestsPerSecond": dep["requestsPerSecond"],
        "p99Ms": dep["p99Ms"],
        "errors": dep["errors"],
        "health": health(dep),
        "lastEvent": dep["lastEvent"],
    }


async def _body(request: Request, model: type[Any]) -> Any:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ConsoleRefusalError(413, f"request body is over {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ConsoleRefusalError(400, f"invalid request body: {where}: {first['msg']}") from error


def _float(raw: str, what: str) -> float:
    try:
        return float(raw)
    except ValueError as error:
        raise ConsoleRefusalError(
            400, f"invalid query: {what} must be a number, got '{raw}'"
        ) from error


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def _tail(path: Path, size: int) -> list[str]:
    """The complete lines in the last ``size`` bytes of ``path`` (none when it is missing)."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            end = file.tell()
            file.seek(max(0, end - size))
            data = file.read(size)
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[1:] if end > size else lines
