"""The control API's pipeline endpoints: ``POST /pipelines/run``, ``GET /pipelines``,
``GET /pipelines/history`` and ``GET /pipelines/logs``, behind the management token like
every other route (``routes.py`` lists them)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request

from mlkube.backends.local.controller.api_models import (
    MAX_COUNT,
    ApiRequest,
    ApiResponse,
    ApplyResponse,
    BodyRequest,
)
from mlkube.backends.local.controller.controller import Controller


class PipelineRunRequest(BodyRequest):
    """``POST /pipelines/run``: the spec files holding the Pipeline(s), by absolute path."""

    paths: list[str]
    no_cache: bool = Field(default=False, alias="noCache")


class PipelineQuery(ApiRequest):
    """``GET /pipelines?name=&run=``: one pipeline with one run (default: the latest)."""

    name: str
    run: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class PipelineLogsQuery(ApiRequest):
    """``GET /pipelines/logs?name=&step=``: where each step's log is, for the latest run."""

    name: str
    step: str | None = None


class PipelineAnswer(ApiResponse):
    """``GET /pipelines``: the DAG and one run with each step's state (``mlkube pipeline
    status``)."""

    name: str
    namespace: str
    steps: list[dict[str, Any]]
    run: dict[str, Any] | None


class PipelineHistory(ApiResponse):
    """``GET /pipelines/history``: the kept runs, newest first."""

    runs: list[dict[str, Any]]


class PipelineLogs(ApiResponse):
    """``GET /pipelines/logs``: per step, its worker-0 log file or why it has none."""

    steps: list[dict[str, Any]]


async def run(ctrl: Controller, request: Request, ask: PipelineRunRequest) -> ApplyResponse:
    results = ctrl.pipelines.run_files(ask.paths, no_cache=ask.no_cache)
    ctrl.reconcile()  # admit the first steps' jobs now
    return ApplyResponse.model_validate({"results": results})


def status(ctrl: Controller, ask: PipelineQuery) -> PipelineAnswer:
    runner = ctrl.pipelines
    return PipelineAnswer.model_validate(runner.row(runner.find(ask.name), ask.run))


def history(ctrl: Controller, ask: PipelineQuery) -> PipelineHistory:
    runner = ctrl.pipelines
    return PipelineHistory.model_validate({"runs": runner.history(runner.find(ask.name))})


def logs(ctrl: Controller, ask: PipelineLogsQuery) -> PipelineLogs:
    runner = ctrl.pipelines
    return PipelineLogs.model_validate({"steps": runner.log_files(runner.find(ask.name), ask.step)})
