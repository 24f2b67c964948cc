"""The local Prometheus (and Alertmanager) of ``mlkube up --prometheus``, owned by the controller.

The controller starts them (so it is their parent and reaps them), rewrites Prometheus's
config and alert rules whenever the set of deployments changes, and stops both when the
controller exits (``mlkube down``, SIGTERM, or Ctrl-C in ``mlkube up``). Alertmanager starts
first, so the Prometheus config written next has its ``alerting:`` block. The blocking calls
run in a thread so the control loops keep ticking.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mlkube.backends.local import alertmanager, prometheus
from mlkube.backends.local.controller.api_models import AlertmanagerRequest
from mlkube.backends.local.controller.controller import Controller


def _write_config(ctrl: Controller) -> None:
    prometheus.write_config(
        ctrl.state,
        [dep.doc for dep in ctrl.deployments.values()],
        controller_target=f"127.0.0.1:{ctrl.api_port}",
    )


async def start(
    ctrl: Controller, binary: str | None, alerting: AlertmanagerRequest | None = None
) -> dict[str, Any]:
    """Start or reload the Alertmanager (when asked), then Prometheus with every deployment."""
    answer: dict[str, Any] = {}
    if alerting is not None:
        action, receiver = await asyncio.to_thread(
            alertmanager.start_or_reload, ctrl.state, alerting.config, binary=alerting.binary
        )
        answer = {"alertmanagerUrl": receiver.url, "alertmanagerAction": action}
    await asyncio.to_thread(_write_config, ctrl)
    if await asyncio.to_thread(prometheus.reload, ctrl.state):
        action = "reloaded"
    else:
        await asyncio.to_thread(prometheus.start, ctrl.state, binary=binary)
        action = "started"
    info = prometheus.read_info(ctrl.state)
    url = info.url if info is not None else ""
    return {"url": url, "action": action, **answer}


async def refresh(ctrl: Controller) -> None:
    """After an apply or a down: new rules and intervals for a Prometheus that runs."""
    if prometheus.running(ctrl.state) is None or not ctrl.deployments:
        return
    await asyncio.to_thread(_write_config, ctrl)
    await asyncio.to_thread(prometheus.reload, ctrl.state)


async def stop(ctrl: Controller) -> dict[str, bool]:
    """Stop the Prometheus, then the Alertmanager, of this state directory: which ran."""
    return {
        "prometheusStopped": await asyncio.to_thread(prometheus.stop, ctrl.state),
        "alertmanagerStopped": await asyncio.to_thread(alertmanager.stop, ctrl.state),
    }


def alertmanager_url(state: Path) -> str | None:
    """The URL of the local Alertmanager of ``mlkube up --alert-webhook``, while it runs."""
    info = alertmanager.running(state)
    return info.url if info is not None else None
