"""The Open Inference Protocol's model repository extension: bodies and states. Pure.

As Triton and KServe define it
(https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_model_repository.md):

- ``POST /v2/repository/index`` (body ``{"ready": bool}`` or empty) answers a JSON list of
  ``{"name", "version", "state", "reason"}``, one entry per version, states ``READY``,
  ``UNAVAILABLE``, ``LOADING`` or ``UNLOADING``;
- ``POST /v2/repository/models/NAME/load`` and ``.../unload`` (body empty or
  ``{"parameters": {...}}``) answer 200 with an empty body once the change is done, or an
  error in the v2 shape.

The repository here is the deployment's own list of models: load re-reads a model's
directory (every version its policy selects) and serves it again; unload retires every
version of it until the next load. A name outside the spec is a 404.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

import orjson

from mlkube.errors import InvalidInputError
from mlkube.serving.models import ModelSet, VersionState

_STATES = {
    VersionState.START: "LOADING",
    VersionState.LOADING: "LOADING",
    VersionState.AVAILABLE: "READY",
    VersionState.UNLOADING: "UNLOADING",
    VersionState.END: "UNAVAILABLE",
}


class Repository(Protocol):
    """What the repository extension asks of the replica (its version manager)."""

    def load(self, name: str) -> Coroutine[Any, Any, None]:
        """Load (again) every version of model ``name`` its policy selects."""
        ...

    def unload(self, name: str) -> Coroutine[Any, Any, None]:
        """Retire, drain and unload every version of model ``name``."""
        ...


def repository_index_filter(body: bytes) -> bool:
    """Whether an index request asks for ready models only (``{"ready": true}``)."""
    payload = _object(body)
    unknown = set(payload) - {"ready"}
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)} in the index request")
    ready = payload.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInputError("'ready' must be true or false")
    return ready


def check_repository_body(body: bytes) -> None:
    """A load or unload body: empty, or an object with ``parameters`` (an object)."""
    payload = _object(body)
    unknown = set(payload) - {"parameters"}
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)}; expected 'parameters'")
    if not isinstance(payload.get("parameters", {}), dict):
        raise InvalidInputError("'parameters' must be an object")


def repository_index(models: ModelSet, *, ready_only: bool) -> list[dict[str, str]]:
    """The index: every model and each version it knows, with its state."""
    entries = []
    for model in models:
        statuses = model.status_list()
        if not statuses:
            if not ready_only:
                reason = "unloaded" if model.unloaded else "no version loaded yet"
                entries.append(
                    {"name": model.name, "version": "", "state": "UNAVAILABLE", "reason": reason}
                )
            continue
        for status in statuses:
            state = _STATES[status.state]
            if ready_only and state != "READY":
                continue
            reason = status.error
            if not reason and status.state is VersionState.END:
                reason = "unloaded"
            entries.append(
                {
                    "name": model.name,
                    "version": str(status.version),
                    "state": state,
                    "reason": reason,
                }
            )
    return entries


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInputError(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError("the body must be a JSON object")
    return payload
