"""Start the controller: token, control API, restore from SQLite, loops; stop cleanly.

``run`` is what ``python -m mlkube.backends.local.controller`` (spawned by ``mlkube up``)
executes. SIGTERM or SIGINT stops every replica and the balancer and exits (like ``mlkube
down``). A controller that is SIGKILLed (or crashes) leaves its replicas and the balancer
process running, so traffic keeps flowing; the next controller re-attaches to the balancer and
re-adopts the replicas by pid and start time, probing them before it routes anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlkube.autoscale.api import PolicyState
from mlkube.autoscale.history import LoadTracker
from mlkube.backends.local import alertmanager, prometheus, supervisor
from mlkube.backends.local.controller import handlers, loops
from mlkube.backends.local.controller.api import CONTROLLER_FILE, write_token
from mlkube.backends.local.controller.changes import Event
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment, write_revision_file
from mlkube.backends.local.controller.metrics import exposition
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.server import build_app, serve_api
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.store import RevisionRow
from mlkube.backends.local.supervisor import ProcessHandle
from mlkube.desired.revision import revision_hash
from mlkube.desired.rollout import RolloutState
from mlkube.spec.deployment import ModelDeployment

logger = logging.getLogger(__name__)


async def run(state: Path, settings: ControllerSettings) -> None:
    """Run the controller until ``down`` or a signal."""
    ctrl = Controller(state, settings)
    token = write_token(state)
    app = build_app(ctrl, token, metrics=lambda: exposition(ctrl.metrics))
    api = await serve_api(app)
    port = ctrl.api_port = api.port
    await ctrl.attach_balancer()
    await restore(ctrl)
    info = {
        "pid": os.getpid(),
        "port": port,
        "enforcement": str(ctrl.enforcer.mode),
        "balancerPid": ctrl.balancer.pid,
    }
    (state / CONTROLLER_FILE).write_text(json.dumps(info))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: ctrl.spawn_task(handlers.down(ctrl, None)))
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(
                loops.every(ctrl, settings.reconcile_period_s, lambda: loops.reconcile_tick(ctrl))
            )
            group.create_task(
                loops.every(ctrl, settings.probe_period_s, lambda: loops.probe_tick(ctrl))
            )
            group.create_task(
                loops.every(ctrl, settings.metrics_period_s, lambda: loops.scrape_tick(ctrl))
            )
            group.create_task(
                loops.every(
                    ctrl,
                    min(1.0, settings.reconcile_period_s * 2),
                    lambda: loops.autoscale_tick(ctrl),
                )
            )
            group.create_task(loops.every(ctrl, settings.log_rotate_period_s, _rotate_tick(ctrl)))
            group.create_task(
                loops.every(ctrl, settings.balancer_period_s, lambda: loops.balancer_tick(ctrl))
            )
            await ctrl.stopping.wait()
    finally:
        await api.stop()  # after the answers in flight (down's among them)
        if ctrl.stopping.is_set():  # down: the data plane goes too
            await ctrl.balancer.exit()
        else:  # a crash: the balancer keeps serving until the next controller attaches
            ctrl.balancer.detach()
        await asyncio.to_thread(prometheus.stop, state)  # no-op unless --prometheus ran one
        await asyncio.to_thread(alertmanager.stop, state)  # after it: no alert sent in vain
        with contextlib.suppress(FileNotFoundError):
            (state / CONTROLLER_FILE).unlink()
        ctrl.store.close()


def _rotate_tick(ctrl: Controller) -> Callable[[], Awaitable[None]]:
    async def tick() -> None:
        ctrl.rotate_logs()

    return tick


async def restore(ctrl: Controller) -> None:
    """Rebuild deployments from SQLite; re-adopt live replicas, requeue the others.

    The adopted replicas are probed at once, before the first reconcile: the balancer keeps the
    routes of the last controller until then, and the new routes include every replica that
    answers (none is dropped for the time it takes a probe period to pass)."""
    now = ctrl.clock.monotonic()
    for key, data in ctrl.store.deployments().items():
        rows = ctrl.store.revisions(key)
        if not rows:
            continue
        dep = _restored_deployment(ctrl, key, data, rows)
        ctrl.configure_router(dep, loops.demand_callback(ctrl, dep))
        events = []
        try:
            await ctrl.listen(dep, dep.port)
        except OSError as error:
            events.append(Event("Warning", "PortInUse", f"cannot listen on {dep.port}: {error}"))
        ctrl.add(dep, *events)
        for saved in ctrl.store.replicas(key):
            _restore_replica(ctrl, dep, saved, now)
    ctrl.job_queue.restore()
    ctrl.pipelines.restore()
    await loops.probe_tick(ctrl)


def _restored_deployment(
    ctrl: Controller, key: str, data: dict[str, Any], rows: list[RevisionRow]
) -> Deployment:
    """A deployment as the store holds it, its revision files written again where missing."""
    revisions = {row.revision: ModelDeployment.model_validate(row.spec) for row in rows}
    # The applied spec (replicas, autoscaling, rollout...) beside its revisions, which
    # hold the template sections only; a state from before it was kept has the newest.
    doc = (
        ModelDeployment.model_validate(data["spec"])
        if "spec" in data
        else revisions[max(revisions)]
    )
    files = {}
    for row in rows:
        file = ctrl.state / "deployments" / doc.namespace / doc.name / f"rev-{row.revision}.yaml"
        if not file.exists():
            write_revision_file(file, row.spec)
        files[row.revision] = file
    return Deployment(
        key=key,
        doc=doc,
        router=ctrl.new_router(key),
        rollout=RolloutState.from_json(data["rollout"]),
        desired=int(data["desired"]),
        revisions=revisions,
        revision_files=files,
        revision_hashes={row.revision: revision_hash(row.spec) for row in rows},
        autoscale_state=PolicyState.from_json(data["autoscale"]) if data.get("autoscale") else None,
        port=int(data["port"]),
        load=LoadTracker.from_json(data.get("load") or {}),
        standby_wanted=int(data.get("standby", 0)),
    )


def _restore_replica(ctrl: Controller, dep: Deployment, row: dict[str, Any], now: float) -> None:
    saved = Replica.from_json(row)
    if saved.revision not in dep.revisions:
        return
    handle = None
    if row.get("pid") is not None and row.get("startTime") is not None:
        handle = supervisor.adopt(int(row["pid"]), float(row["startTime"]))
    replica, event = restored_replica(saved, handle, now)
    ctrl.add_replica(dep, replica, event)


def restored_replica(
    saved: Replica, handle: ProcessHandle | None, now: float
) -> tuple[Replica, Event]:
    """A replica read back from the store, with its process when it was re-adopted (Starting:
    the probes say when it is Ready) or without (Pending: admitted and started again). Pure.

    An adopted replica keeps its start time (restart back-off and the autoscaler's view of its
    age use it) but its startup timeout counts from the adoption (``adopted_at``): a replica
    started long ago must be probed before it can be judged too slow to start."""
    if handle is not None:
        adopted = replace(
            saved,
            handle=handle,
            phase=Phase.STARTING,
            started_at=saved.started_at or now,
            adopted_at=now,
        )
        message = f"replica {saved.name} pid {handle.pid} re-adopted"
        return adopted, Event("Normal", "Adopted", message)
    lost = replace(saved, phase=Phase.PENDING, last_reason="lost while the controller was down")
    return lost, Event("Warning", "Lost", f"replica {saved.name} was gone; starting it again")
