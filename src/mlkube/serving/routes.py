"""Which endpoint a method and path name. Pure.

Hand-written rather than a regex router: it is on the hot path of every request, and the
paths are few and fixed (TF Serving REST, Open Inference Protocol v2, /metrics).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote


class Action(enum.StrEnum):
    """Every endpoint the server answers."""

    V1_STATUS = "v1_status"
    V1_METADATA = "v1_metadata"
    V1_PREDICT = "v1_predict"
    V1_UNSUPPORTED = "v1_unsupported"
    """A TF Serving verb mlkube does not serve (``:classify``, ``:regress``, ``:explain``...)."""
    V2_SERVER = "v2_server"
    V2_LIVE = "v2_live"
    V2_READY = "v2_ready"
    V2_MODEL = "v2_model"
    V2_MODEL_READY = "v2_model_ready"
    V2_INFER = "v2_infer"
    V2_REPOSITORY_INDEX = "v2_repository_index"
    V2_REPOSITORY_LOAD = "v2_repository_load"
    V2_REPOSITORY_UNLOAD = "v2_repository_unload"
    METRICS = "metrics"
    NOT_FOUND = "not_found"


_METHODS = {
    Action.V1_PREDICT: "POST",
    Action.V1_UNSUPPORTED: "POST",
    Action.V2_INFER: "POST",
    Action.V2_REPOSITORY_INDEX: "POST",
    Action.V2_REPOSITORY_LOAD: "POST",
    Action.V2_REPOSITORY_UNLOAD: "POST",
}


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved request: the action, the protocol, and the model and version it names."""

    action: Action
    protocol: str
    model: str | None = None
    version: str | None = None
    method_allowed: bool = True
    allowed: str = "GET"


NOT_FOUND = Route(Action.NOT_FOUND, "http")


# Resolved routes are cached: a handful of paths carry all the traffic. The cache is bounded
# so that clients inventing paths cannot grow it.
_CACHE_MAX_ENTRIES = 512
_cache: dict[tuple[str, str], Route] = {}


def resolve(method: str, path: str) -> Route:
    """The route for ``method`` and ``path`` (query string already removed)."""
    key = (method, path)
    route = _cache.get(key)
    if route is None:
        route = _resolve(method, path)
        if len(_cache) >= _CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[key] = route
    return route


def _resolve(method: str, path: str) -> Route:
    if path.startswith("/v1/models/"):
        route = _v1(path[len("/v1/models/") :])
    elif path.startswith("/v2"):
        route = _v2(path)
    elif path == "/metrics":
        route = Route(Action.METRICS, "http")
    else:
        return NOT_FOUND
    if route.action is Action.NOT_FOUND:
        return route
    allowed = _METHODS.get(route.action, "GET")
    ok = method == allowed or (allowed == "GET" and method == "HEAD")
    return Route(route.action, route.protocol, route.model, route.version, ok, allowed)


def _v1(rest: str) -> Route:
    action = Action.V1_STATUS
    if rest.endswith(":predict"):
        action, rest = Action.V1_PREDICT, rest[: -len(":predict")]
    elif ":" in rest:  # model names hold no colon: any other verb is one we do not serve
        action, rest = Action.V1_UNSUPPORTED, rest[: rest.rindex(":")]
    elif rest.endswith("/metadata"):
        action, rest = Action.V1_METADATA, rest[: -len("/metadata")]
    parts = rest.split("/")
    version = None
    if len(parts) == 3 and parts[1] in ("versions", "labels"):
        version = parts[2] if parts[1] == "versions" else "label:" + parts[2]
    elif len(parts) != 1:
        return NOT_FOUND
    if not parts[0] or (version is not None and version in ("", "label:")):
        return NOT_FOUND
    return Route(action, "v1", unquote(parts[0]), version)


def _v2(path: str) -> Route:
    if path in ("/v2", "/v2/"):
        return Route(Action.V2_SERVER, "v2")
    if path == "/v2/health/live":
        return Route(Action.V2_LIVE, "v2")
    if path == "/v2/health/ready":
        return Route(Action.V2_READY, "v2")
    if path.startswith("/v2/repository/"):
        return _repository(path[len("/v2/repository/") :])
    if not path.startswith("/v2/models/"):
        return NOT_FOUND
    parts = path[len("/v2/models/") :].split("/")
    if not parts[0]:
        return NOT_FOUND
    name, version = unquote(parts[0]), None
    rest = parts[1:]
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if not rest:
        return Route(Action.V2_MODEL, "v2", name, version)
    if rest == ["ready"]:
        return Route(Action.V2_MODEL_READY, "v2", name, version)
    if rest == ["infer"]:
        return Route(Action.V2_INFER, "v2", name, version)
    return NOT_FOUND


def _repository(rest: str) -> Route:
    if rest == "index":
        return Route(Action.V2_REPOSITORY_INDEX, "v2")
    parts = rest.split("/")
    if len(parts) != 3 or parts[0] != "models" or not parts[1]:
        return NOT_FOUND
    if parts[2] == "load":
        return Route(Action.V2_REPOSITORY_LOAD, "v2", unquote(parts[1]))
    if parts[2] == "unload":
        return Route(Action.V2_REPOSITORY_UNLOAD, "v2", unquote(parts[1]))
    return NOT_FOUND
