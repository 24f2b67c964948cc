"""The local Prometheus of ``mlkube up --prometheus``, owned by the controller.

The controller starts it (so it is its parent and reaps it), rewrites its config and alert
rules whenever the set of deployments changes, and stops it when the controller exits
(``mlkube down``, SIGTERM, or Ctrl-C in ``mlkube up``). The blocking calls of
``observability.prometheus`` run in a thread so the control loops keep ticking.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlkube.backends.local import prometheus
from mlkube.backends.local.controller.controller import Controller


def _write_config(ctrl: Controller) -> None:
    prometheus.write_config(
        ctrl.state,
        [dep.doc for dep in ctrl.deployments.values()],
        controller_target=f"127.0.0.1:{ctrl.api_port}",
    )


async def start(ctrl: Controller, binary: str | None) -> dict[str, Any]:
    """Write the config for every deployment, then reload a running Prometheus or start one."""
    await asyncio.to_thread(_write_config, ctrl)
    if await asyncio.to_thread(prometheus.reload, ctrl.state):
        action = "reloaded"
    else:
        await asyncio.to_thread(prometheus.start, ctrl.state, binary=binary)
        action = "started"
    info = prometheus.read_info(ctrl.state)
    url = info.url if info is not None else ""
    return {"url": url, "action": action}


async def refresh(ctrl: Controller) -> None:
    """After an apply or a down: new rules and intervals for a Prometheus that runs."""
    if prometheus.running(ctrl.state) is None or not ctrl.deployments:
        return
    await asyncio.to_thread(_write_config, ctrl)
    await asyncio.to_thread(prometheus.reload, ctrl.state)


async def stop(ctrl: Controller) -> bool:
    """Stop the Prometheus this state directory runs; False when none ran."""
    return await asyncio.to_thread(prometheus.stop, ctrl.state)
