"""The control API's contract: what each route takes and what it answers, as pydantic models.

Requests (bodies and query strings) are strict about their fields: an unknown key, a wrong type
(a JSON body's true is no count, "3" is no number), a negative or absurdly large count is a 400
naming the field. Responses keep the JSON the routes have always
answered (camelCase keys, the CLI reads them); they accept keys they do not declare and pass
them through, so a handler that grows a field does not lose it on the wire.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError
from pydantic.alias_generators import to_camel


# requests --------------------------------------------------------------------------------
class ApiRequest(BaseModel):
    """A request body or query string: declared fields only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_COUNT = 2**31 - 1
"""Largest replica count, revision or event limit taken (what SQLite and the OS can use)."""


class BodyRequest(ApiRequest):
    """A JSON body: types as JSON spells them, no coercion (``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ApplyRequest(BodyRequest):
    """``POST /apply``: spec files, by absolute path on this machine."""

    paths: list[str]


class JobsQuery(ApiRequest):
    """``GET /jobs?name=``: every job, or one by name (or namespace/name)."""

    name: str | None = None


class CancelRequest(BodyRequest):
    """``POST /jobs/cancel``: stop a queued or running job."""

    name: str


class ScaleRequest(BodyRequest):
    """``POST /scale``: a deployment's replica count."""

    name: str
    replicas: int = Field(ge=0, le=MAX_COUNT)


class DownRequest(BodyRequest):
    """``POST /down``: one deployment, or every one (and the controller) without a name."""

    name: str | None = None


class UndoRequest(BodyRequest):
    """``POST /rollout/undo``: back to ``revision``, or to the previous good one."""

    name: str
    revision: int | None = Field(default=None, ge=1, le=MAX_COUNT)


class AbortRequest(BodyRequest):
    """``POST /rollout/abort``: stop the rollout in progress, back to the stable revision."""

    name: str


class PromoteRequest(BodyRequest):
    """``POST /rollout/promote``: end the canary's step now (``full``: every step)."""

    name: str
    full: bool = False


class AlertmanagerRequest(BodyRequest):
    """The Alertmanager part of ``POST /prometheus``: its binary and alertmanager.yml."""

    binary: str | None = None
    config: dict[str, Any]


class PrometheusRequest(BodyRequest):
    """``POST /prometheus``: start (or reload) the local Prometheus, and an Alertmanager."""

    binary: str | None = None
    alertmanager: AlertmanagerRequest | None = None


class StatusQuery(ApiRequest):
    """``GET /status[?name=]``."""

    name: str | None = None


class NameQuery(ApiRequest):
    """``GET /rollout/status?name=``, ``GET /rollout/history?name=``."""

    name: str


class EventsQuery(ApiRequest):
    """``GET /events?name=&limit=``: the latest ``limit`` events, oldest first."""

    name: str
    limit: int = Field(default=100, ge=0, le=MAX_COUNT)


class UsageQuery(ApiRequest):
    """``GET /usage?name=&since=``: samples newer than ``since`` (seconds since the epoch)."""

    name: str
    since: float = Field(default=0.0, allow_inf_nan=False)


def validation_message(error: ValidationError) -> str:
    """Every failed field of ``error`` as ``field: what is wrong (got value)``, one line."""
    parts = []
    for issue in error.errors(include_url=False):
        where = ".".join(str(part) for part in issue["loc"]) or "body"
        got = f" (got {issue['input']!r})" if issue["type"] not in _NO_INPUT else ""
        parts.append(f"{where}: {issue['msg']}{got}")
    return "; ".join(parts)


_NO_INPUT = frozenset({"missing", "extra_forbidden", "json_invalid", "model_type", "dict_type"})


# responses -------------------------------------------------------------------------------
class ApiResponse(BaseModel):
    """An answer: camelCase on the wire; undeclared keys pass through unchanged."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Health(ApiResponse):
    """``GET /healthz``."""

    ok: bool


class ApplyResult(ApiResponse):
    """One applied document; ``revision`` only when one was created."""

    kind: str
    name: str
    action: str
    revision: int | None = None


class ApplyResponse(ApiResponse):
    """``POST /apply``."""

    results: list[ApplyResult]


class JobRow(ApiResponse):
    """One job in ``GET /jobs`` (``mlkube jobs``), with its recent events."""

    name: str
    namespace: str
    kind: str
    phase: str
    workers: int
    priority: int
    submitted: float
    started: float | None
    finished: float | None
    restarts: int
    preemptions: int
    reason: str
    metrics: dict[str, float]
    model_version: str
    events: list[dict[str, Any]]


class JobsResponse(ApiResponse):
    """``GET /jobs``: queued jobs first in admission order, then running, then finished."""

    jobs: list[JobRow]


class ScaleResponse(ApiResponse):
    """``POST /scale``."""

    name: str
    replicas: int


class DownResponse(ApiResponse):
    """``POST /down``: what stopped, and whether the controller exits now."""

    stopped: list[str]
    controller_exiting: bool
    prometheus_stopped: bool
    alertmanager_stopped: bool = False


class PrometheusResponse(ApiResponse):
    """``POST /prometheus``."""

    url: str
    action: str
    alertmanager_url: str | None = None
    alertmanager_action: str | None = None


class Allocatable(ApiResponse):
    """What the controller may place replicas on."""

    cpu_millis: int
    memory_bytes: int
    gpus: list[Any]


class ControllerInfo(ApiResponse):
    """The controller part of ``GET /status``."""

    state_dir: str
    enforcement: str
    allocatable: Allocatable
    prometheus_targets: str
    prometheus: str | None
    alertmanager: str | None = None
    metrics: str


class RolloutStatus(ApiResponse):
    """``GET /rollout/status``: the rollout state, traffic weights and desired count."""

    stable: int
    target: int | None
    strategy: str
    phase: str
    step: int
    step_started_at: float | None
    started_at: float | None
    reason: str
    previous: int | None
    previous_until: float
    weights: dict[str, float]
    desired: int


class ReplicaStatus(ApiResponse):
    """One replica in ``GET /status``."""

    name: str
    revision: int
    phase: str
    port: int
    pid: int | None
    restarts: int
    last_reason: str
    last_error: str | None = None
    """Why a replica that never became ready failed: its last error line."""
    pending_reason: str
    gpus: list[Any]
    cpu_cores: float | None
    memory_bytes: int | None
    in_flight: float | None


class DeploymentStatus(ApiResponse):
    """One deployment in ``GET /status``."""

    name: str
    namespace: str
    port: int
    desired: int
    ready: int
    revision: int
    rollout: RolloutStatus
    traffic: dict[str, float]
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    lb_failed: int
    requests: dict[str, str]
    limits: dict[str, str]
    enforcement: str
    autoscaler: dict[str, Any] | None
    last_event: str
    replicas: list[ReplicaStatus]


class StatusResponse(ApiResponse):
    """``GET /status``."""

    controller: ControllerInfo
    deployments: list[DeploymentStatus]


class Event(ApiResponse):
    """One event, like a Kubernetes Event."""

    ts: float
    type: str
    reason: str
    message: str


class EventsResponse(RootModel[list[Event]]):
    """``GET /events``: oldest first."""


class UsageSample(ApiResponse):
    """One replica's usage over one scrape period."""

    t: float
    replica: str
    cpu_cores: float | None
    memory_bytes: int | None
    cpu_request_cores: float | None
    rps: float | None
    latency_p95_ms: float | None


class OomKill(ApiResponse):
    """A replica killed for memory."""

    t: float
    replica: str
    restart: int
    memory_bytes: int
    memory_request_bytes: int | None


class UsageDeployment(ApiResponse):
    """The load balancer's view of a deployment now."""

    requests_per_second: float
    p95_ms: float | None


class UsageResponse(ApiResponse):
    """``GET /usage``: the ``--samples`` file format plus the spec the deployment runs."""

    name: str
    revision: int
    spec: dict[str, Any]
    source_dir: str
    scrape_period_seconds: float
    deployment: UsageDeployment
    samples: list[UsageSample]
    ooms: list[OomKill]


class Revision(ApiResponse):
    """One row of ``GET /rollout/history``."""

    revision: int
    created: float
    status: str
    reason: str
    model: str
    current: bool
    change: str = ""
    """The template sections that differ from the revision before (``model, batching``)."""


class HistoryResponse(RootModel[list[Revision]]):
    """``GET /rollout/history``: oldest first."""


class UndoResponse(ApiResponse):
    """``POST /rollout/undo``: where traffic goes back to, and how."""

    name: str
    revision: int
    action: str


class ErrorResponse(BaseModel):
    """Every refusal: ``{"error": "..."}``."""

    error: str
