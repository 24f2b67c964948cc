"""The control API's endpoints: validate the request, call the handler, type the answer.

Each endpoint reads its query or body into an ``api_models`` request (a ``RequestError``, 400
or 413, when it does not fit), calls the matching function of ``handlers`` and answers the
response model. ``server.py`` turns the result, and every error, into JSON.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from mlkube.backends.local.controller import handlers, monitoring, pipeline_api
from mlkube.backends.local.controller.api import MAX_BODY_BYTES
from mlkube.backends.local.controller.api_models import (
    AbortRequest,
    ApiRequest,
    ApplyRequest,
    ApplyResponse,
    CancelRequest,
    DownRequest,
    DownResponse,
    EventsQuery,
    EventsResponse,
    Health,
    HistoryResponse,
    JobRow,
    JobsQuery,
    JobsResponse,
    NameQuery,
    PrometheusRequest,
    PrometheusResponse,
    PromoteRequest,
    RolloutStatus,
    ScaleRequest,
    ScaleResponse,
    StatusQuery,
    StatusResponse,
    UndoRequest,
    UndoResponse,
    UsageQuery,
    UsageResponse,
    validation_message,
)
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.usage import usage_document

Model = TypeVar("Model", bound=ApiRequest)
MAX_SPEC_FILE_BYTES = 2**20
"""Largest spec file ``/apply`` reads: specs are a few KiB, and parsing runs on the loop that
also serves every balancer."""
Endpoint = Callable[[Request], Awaitable[BaseModel]]


class RequestError(Exception):
    """The request itself is wrong: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def query(request: Request, model: type[Model]) -> Model:
    """The query string as ``model``; 400 naming the field that does not fit."""
    params = request.query_params
    repeated = sorted({key for key in params if len(params.getlist(key)) > 1})
    if repeated:
        raise RequestError(400, f"invalid query: {', '.join(repeated)} given more than once")
    try:
        return model.model_validate(dict(params))
    except ValidationError as error:
        raise RequestError(400, f"invalid query: {validation_message(error)}") from error


async def body(request: Request, model: type[Model]) -> Model:
    """The JSON body as ``model`` (empty means ``{}``); 400 when it does not fit, 413 as soon
    as it is over ``MAX_BODY_BYTES``, however it is sent."""
    raw = await read_limited(request, MAX_BODY_BYTES)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        raise RequestError(400, f"invalid request body: {validation_message(error)}") from error


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, counted while it streams in (a chunked body has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # the client left, or its read timed out (408 already sent)
        raise RequestError(408, "the client stopped sending the request body") from None
    return b"".join(chunks)


def checked_spec_paths(paths: list[str]) -> list[str]:
    """``paths`` when each is absolute and names a folder or a regular file of a readable
    size; 400 naming the first that does not (a missing one is left to the spec loader)."""
    for raw in paths:
        shown = raw if len(raw) <= 200 else raw[:200] + "..."
        if "\0" in raw or not os.path.isabs(raw):
            raise RequestError(400, f"paths must be absolute paths on this machine: {shown!r}")
        try:
            info = os.stat(raw)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise RequestError(400, f"{shown}: cannot read: {error.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise RequestError(400, f"{shown}: not a regular file or folder")
        if info.st_size > MAX_SPEC_FILE_BYTES:
            raise RequestError(
                400, f"{shown}: {info.st_size} bytes; a spec file is at most {MAX_SPEC_FILE_BYTES}"
            )
    return paths


class Endpoints:
    """The routes of one controller: ``(method, path, endpoint)`` rows in ``table``."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl

    def table(self) -> list[tuple[str, str, Endpoint]]:
        return [
            ("GET", "/healthz", self.healthz),
            ("GET", "/status", self.status),
            ("POST", "/apply", self.apply),
            ("POST", "/scale", self.scale),
            ("POST", "/down", self.down),
            ("POST", "/prometheus", self.prometheus),
            ("GET", "/events", self.events),
            ("GET", "/usage", self.usage),
            ("GET", "/rollout/history", self.history),
            ("GET", "/rollout/status", self.rollout_status),
            ("POST", "/rollout/undo", self.undo),
            ("POST", "/jobs", self.submit_jobs),
            ("GET", "/jobs", self.jobs),
            ("POST", "/jobs/cancel", self.cancel_job),
            ("POST", "/rollout/promote", self.promote),
            ("POST", "/rollout/abort", self.abort),
            ("POST", "/pipelines/run", self.run_pipeline),
            ("GET", "/pipelines", self.pipeline),
            ("GET", "/pipelines/history", self.pipeline_history),
            ("GET", "/pipelines/logs", self.pipeline_logs),
        ]

    async def run_pipeline(self, request: Request) -> ApplyResponse:
        ask = await body(request, pipeline_api.PipelineRunRequest)
        checked_spec_paths(ask.paths)
        return await pipeline_api.run(self.ctrl, request, ask)

    async def pipeline(self, request: Request) -> BaseModel:
        return pipeline_api.status(self.ctrl, query(request, pipeline_api.PipelineQuery))

    async def pipeline_history(self, request: Request) -> BaseModel:
        return pipeline_api.history(self.ctrl, query(request, pipeline_api.PipelineQuery))

    async def pipeline_logs(self, request: Request) -> BaseModel:
        return pipeline_api.logs(self.ctrl, query(request, pipeline_api.PipelineLogsQuery))

    async def healthz(self, request: Request) -> Health:
        return Health(ok=True)

    async def status(self, request: Request) -> StatusResponse:
        name = query(request, StatusQuery).name
        return StatusResponse.model_validate(handlers.status(self.ctrl, name))

    async def apply(self, request: Request) -> ApplyResponse:
        paths = checked_spec_paths((await body(request, ApplyRequest)).paths)
        return ApplyResponse.model_validate(await handlers.apply(self.ctrl, paths))

    async def submit_jobs(self, request: Request) -> ApplyResponse:
        paths = (await body(request, ApplyRequest)).paths
        return ApplyResponse.model_validate(handlers.submit_jobs(self.ctrl, paths))

    async def jobs(self, request: Request) -> JobsResponse:
        name = query(request, JobsQuery).name
        queue = self.ctrl.job_queue
        found = [queue.row(queue.find(name))] if name is not None else queue.rows()
        return JobsResponse.model_validate({"jobs": found})

    async def cancel_job(self, request: Request) -> JobRow:
        name = (await body(request, CancelRequest)).name
        queue = self.ctrl.job_queue
        job = queue.cancel(name)
        self.ctrl.reconcile()  # the room it held goes to the next in the queue at once
        return JobRow.model_validate(queue.row(job))

    async def scale(self, request: Request) -> ScaleResponse:
        ask = await body(request, ScaleRequest)
        return ScaleResponse.model_validate(handlers.scale(self.ctrl, ask.name, ask.replicas))

    async def down(self, request: Request) -> DownResponse:
        name = (await body(request, DownRequest)).name
        return DownResponse.model_validate(await handlers.down(self.ctrl, name))

    async def prometheus(self, request: Request) -> PrometheusResponse:
        ask = await body(request, PrometheusRequest)
        answer = await monitoring.start(self.ctrl, ask.binary or None, ask.alertmanager)
        return PrometheusResponse.model_validate(answer)

    async def events(self, request: Request) -> EventsResponse:
        ask = query(request, EventsQuery)
        dep = handlers.find(self.ctrl, ask.name)
        return EventsResponse.model_validate(handlers.events(self.ctrl, dep, ask.limit))

    async def usage(self, request: Request) -> UsageResponse:
        ask = query(request, UsageQuery)
        dep = handlers.find(self.ctrl, ask.name)
        return UsageResponse.model_validate(usage_document(self.ctrl, dep, ask.since))

    async def history(self, request: Request) -> HistoryResponse:
        dep = handlers.find(self.ctrl, query(request, NameQuery).name)
        return HistoryResponse.model_validate(handlers.history(self.ctrl, dep))

    async def rollout_status(self, request: Request) -> RolloutStatus:
        dep = handlers.find(self.ctrl, query(request, NameQuery).name)
        return RolloutStatus.model_validate(handlers.rollout_status(dep))

    async def promote(self, request: Request) -> RolloutStatus:
        ask = await body(request, PromoteRequest)
        dep = handlers.find(self.ctrl, ask.name)
        return RolloutStatus.model_validate(handlers.promote(self.ctrl, dep, full=ask.full))

    async def abort(self, request: Request) -> RolloutStatus:
        dep = handlers.find(self.ctrl, (await body(request, AbortRequest)).name)
        return RolloutStatus.model_validate(handlers.abort(self.ctrl, dep))

    async def undo(self, request: Request) -> UndoResponse:
        ask = await body(request, UndoRequest)
        dep = handlers.find(self.ctrl, ask.name)
        return UndoResponse.model_validate(handlers.undo(self.ctrl, dep, ask.revision))
