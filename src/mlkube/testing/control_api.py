"""The control API of an in-process ``Controller``, served on loopback as ``mlkube up`` does.

Tests drive the real Starlette app and uvicorn server (token, limits, error shapes) without a
controller process: ``served(ctrl)`` writes the token and ``controller.json`` into
``ctrl.state`` and yields a ``Client`` for them. The client is synchronous; call it from a
thread (``asyncio.to_thread``) so the server keeps running in the test's loop.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from mlkube.backends.local.controller.api import CONTROLLER_FILE, Client, write_token
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.server import Metrics, build_app, serve_api


def _no_metrics() -> bytes:
    return b""


@contextlib.asynccontextmanager
async def served(
    ctrl: Controller, metrics: Metrics = _no_metrics, *, read_timeout_s: float | None = None
) -> AsyncIterator[Client]:
    """Serve ``ctrl``'s control API until the block ends; a client with the right token.
    ``read_timeout_s`` shortens the time a client has to send a whole request."""
    token = write_token(ctrl.state)
    app = build_app(ctrl, token, metrics=metrics)
    if read_timeout_s is None:
        server = await serve_api(app)
    else:
        server = await serve_api(app, read_timeout_s=read_timeout_s)
    ctrl.api_port = server.port
    info = {"pid": os.getpid(), "port": server.port}
    (ctrl.state / CONTROLLER_FILE).write_text(json.dumps(info))
    try:
        with Client(ctrl.state) as client:
            yield client
    finally:
        await server.stop()
