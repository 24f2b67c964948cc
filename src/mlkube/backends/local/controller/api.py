"""The local control API's two ends: JSON over loopback HTTP, every request carrying the
owner's token (except ``GET /metrics``, the controller's read-only Prometheus metrics).

The controller writes ``<state>/token`` (mode 0600, created that way: never readable by
others even for an instant) and ``<state>/controller.json`` (pid, port). A client reads both;
only a user who can read the token file can drive the controller. The server is a Starlette
app under uvicorn in the controller's loop (``server.py``, routes in ``routes.py``, the
contract in ``api_models.py``); the client here is ``httpx``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from mlkube.backends.local.private import private_dir
from mlkube.errors import BackendError

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
CONTROLLER_FILE = "controller.json"
MAX_BODY_BYTES = 4 * 2**20  # an apply carries file paths, never models
CLIENT_TIMEOUT_S = 30.0
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ControllerNotRunningError(BackendError):
    """No controller answers for this state directory."""

    def __init__(self, state: Path) -> None:
        super().__init__(
            f"no mlkube controller is running for state directory '{state}' "
            "(start one with `mlkube up SPEC`)"
        )


def write_token(state: Path) -> str:
    """A fresh random token in ``<state>/token``, created with mode 0600."""
    private_dir(state)
    path = state / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)
    return token


def read_token(state: Path) -> str:
    """The token of ``state``'s controller; refused when others could read the file."""
    path = state / TOKEN_FILE
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise BackendError(
            f"the token file '{path}' is readable by others (mode {mode:o}); "
            "refusing to use it: remove it and restart the controller"
        )
    return path.read_text().strip()


class Client:
    """Talks to the controller of one state directory.

    ``call`` answers the parsed JSON; a refusal is a ``BackendError`` with the controller's
    message, no answer at all a ``ControllerNotRunningError``. No connection is kept between
    calls, so a client that is never closed leaves no socket behind.
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        try:
            info = json.loads((state / CONTROLLER_FILE).read_text())
            self.port = int(info["port"])
            self.pid = int(info["pid"])
            self.token = read_token(state)
        except (OSError, ValueError, KeyError) as error:
            raise ControllerNotRunningError(state) from error
        self._http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=CLIENT_TIMEOUT_S,
            limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=False,  # loopback: never through a proxy from the environment
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """``method path`` with ``body`` as JSON; the answer's JSON."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as error:
            raise ControllerNotRunningError(self.state) from error
        if response.is_error:
            raise BackendError(_error_message(response))
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _error_message(response: httpx.Response) -> str:
    """The controller's ``{"error": ...}``, or the status line when the body is not that."""
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message:
        return message
    return f"the controller answered {response.status_code} {response.reason_phrase}"
