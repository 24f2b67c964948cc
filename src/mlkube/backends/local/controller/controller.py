"""The controller process: owns every loop and every replica of ``mlkube up``.

Loops (each with the stop event as its end): reconcile (exits → back-off, rollout step, plan,
admission, routing), readiness probes, metrics scrapes (status and canary analysis), and the
autoscaler. Decisions are the pure functions of ``backends.local``; this module observes and
acts. Processes are touched only through ``backends.local.supervisor``.

The ``Controller`` is the one writer of ``Deployment`` and ``Replica`` records: handlers and
loops return ``changes`` and ``Controller.apply`` applies them with their events; creating,
restoring and deleting a deployment go through its methods too
(``tests/.../test_one_writer.py`` holds every other module of the package to that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from mlkube.autoscale.api import ReplicaMetrics
from mlkube.autoscale.history import LoadHistory
from mlkube.backends.local import supervisor
from mlkube.backends.local.controller.balancer_link import BalancerLink, mirror_stats
from mlkube.backends.local.controller.changes import (
    AddRevision,
    AnalysisBaseline,
    AnalysisResult,
    AutoscalerRan,
    Change,
    DeploymentChange,
    Event,
    Placed,
    ProbeResult,
    ReplicaChange,
    Scraped,
    SetDesired,
    SetRollout,
    SetSpec,
    TrafficSeen,
    Unschedulable,
)
from mlkube.backends.local.controller.deployment import Deployment, write_revision_file
from mlkube.backends.local.controller.jobs import JobQueue
from mlkube.backends.local.controller.metrics import new_metrics
from mlkube.backends.local.controller.pipelines import PipelineRunner
from mlkube.backends.local.controller.placement import admit_all
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.backoff import BackoffPolicy, next_restart
from mlkube.backends.local.decisions.plan import Phase, Restart, Start, Stop, plan_actions
from mlkube.backends.local.decisions.standby import promotions, standby_plan
from mlkube.backends.local.decisions.weights import replica_weights
from mlkube.backends.local.limits import Enforcer, detect, limits_of
from mlkube.backends.local.ports import free_port
from mlkube.backends.local.proxy import UPSTREAM_GRACE_S, Backend, Router
from mlkube.backends.local.store import EventRow, RevisionRow, Store
from mlkube.clock import Clock, SystemClock
from mlkube.desired.revision import revision_hash
from mlkube.desired.rollout import (
    Observed,
    RevisionCounts,
    RolloutPhase,
    step_rollout,
)
from mlkube.observability.job_metrics import JobCollector
from mlkube.observability.logfiles import rotate_copytruncate
from mlkube.observability.pipeline_metrics import PipelineCollector
from mlkube.spec.deployment import ModelDeployment

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096  # enough for the last error lines of a replica that failed to start
PROGRESS_PREFIX = "mlkube serve:"  # the replica's progress lines on stderr (not errors)
REASON_MAX_CHARS = 300
SNAPSHOTS_KEPT = 64  # per replica: covers a 15 s sync period at the fastest scrape period


class Controller:
    """The state and the actions; the loops live in ``loops.py`` and call in here."""

    def __init__(
        self, state: Path, settings: ControllerSettings, clock: Clock | None = None
    ) -> None:
        self.state = state
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store = Store(state / "state.db")
        self.enforcer: Enforcer = detect()
        self.deployments: dict[str, Deployment] = {}
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.backoff = BackoffPolicy(
            settings.backoff_base_s, settings.backoff_max_s, settings.backoff_reset_s
        )
        self._targets_text = ""
        self.metrics = new_metrics(lambda: self.deployments.values())
        self.api_port = 0
        """The control API's port (set once it listens): Prometheus scrapes /metrics there."""
        self.balancer = BalancerLink(state, self.clock)
        """The balancer process that serves every deployment's port (``balancer.process``);
        ``dep.router`` is the controller's copy of its router: the routes sent, the counters
        read back (``refresh_traffic``)."""
        self.balancer.on_demand = self._demand
        self.job_queue = JobQueue(self)
        """TrainingJobs: queued beside the replicas' admission, run as gangs (``jobs``)."""
        self.metrics.registry.register(JobCollector(self.job_queue.snapshots))
        self.pipelines = PipelineRunner(self)
        """Pipelines: their steps run as jobs of the queue above, then a rollout (``pipelines``)."""
        self.metrics.registry.register(PipelineCollector(self.pipelines.snapshots))

    # events ------------------------------------------------------------------------------
    def event(self, dep: Deployment, kind: str, reason: str, message: str) -> None:
        self.store.add_event(dep.key, EventRow(self.clock.wall(), kind, reason, message))
        dep.last_event = f"{reason}: {message}"
        log = logger.warning if kind == "Warning" else logger.info
        log("%s %s: %s", dep.key, reason, message)

    # the one writer ------------------------------------------------------------------------
    def apply(self, dep: Deployment, changes: Iterable[Change]) -> None:
        """Apply ``changes`` to ``dep`` in order, recording the events that go with them."""
        for change in changes:
            if isinstance(change, ReplicaChange):
                replica = dep.replicas.get(change.replica)
                if replica is not None:  # gone meanwhile (stopped): nothing left to change
                    self._apply_to_replica(dep, replica, change)
            else:
                self._apply_to_deployment(dep, change)

    def _apply_to_deployment(self, dep: Deployment, change: DeploymentChange) -> None:
        match change:
            case Event():
                self.record(dep, change)
            case SetDesired():
                message = f"scaled from {dep.desired} to {change.replicas}: {change.reason}"
                self.event(dep, "Normal", "ScalingReplicaSet", message)
                dep.desired = change.replicas
            case SetRollout():
                dep.rollout = change.state
                self.record(dep, *change.events)
            case SetSpec():
                dep.doc = change.doc
                apply_hold(dep.router, change.doc, self.settings.hold_s)
            case AddRevision():
                self._add_revision(dep, change)
            case AutoscalerRan():
                dep.autoscale_state = change.state
                dep.last_decision = change.decision
                dep.next_autoscale_at = change.next_at
                dep.standby_wanted = change.standby
                self.record(dep, *_present(change.event))
            case AnalysisResult():
                dep.analysis_failure = change.failure
                dep.analysis_passed = change.passed
                dep.next_analysis_at = change.next_at
                self.record(dep, *_present(change.event))
            case TrafficSeen():
                dep.rps = change.rps
                dep.lb_requests_seen, dep.lb_seen_at = change.requests, change.at

    def _apply_to_replica(self, dep: Deployment, replica: Replica, change: ReplicaChange) -> None:
        match change:
            case ProbeResult():
                replica.phase = change.phase
                replica.probe_failures = change.probe_failures
                replica.unready_since = change.unready_since
                replica.ready_at = change.ready_at
                replica.ever_ready = change.ever_ready
                if change.ever_ready:  # the error of a failed start is history once ready
                    replica.failed_before_ready = None
                replica.last_reason = change.last_reason
                self.record(dep, *_present(change.event))
            case Scraped():
                replica.snapshots.append(change.snapshot)
                del replica.snapshots[:-SNAPSHOTS_KEPT]
            case AnalysisBaseline():
                replica.analysis_base = change.snapshot
            case Unschedulable():
                replica.pending_reason = change.reason
                self.event(dep, "Warning", "FailedScheduling", f"{replica.name}: {change.reason}")
            case Placed():
                replica.gpus = change.gpus

    def _add_revision(self, dep: Deployment, change: AddRevision) -> None:
        folder = self.state / "deployments" / dep.namespace / dep.name
        file = folder / f"rev-{change.revision}.yaml"
        write_revision_file(file, change.data)
        dep.revisions[change.revision] = ModelDeployment.model_validate(change.data)
        dep.revision_files[change.revision] = file
        dep.revision_hashes[change.revision] = revision_hash(change.data)
        row = RevisionRow(
            change.revision, change.data, change.source_dir, self.clock.wall(), "", ""
        )
        self.store.add_revision(dep.key, row)

    def record(self, dep: Deployment, *events: Event) -> None:
        """Record events that need no other change (and those of the changes above)."""
        for event in events:
            self.event(dep, event.type, event.reason, event.message)

    # creating, restoring and deleting deployments --------------------------------------------
    def configure_router(self, dep: Deployment, on_demand: Callable[[], None]) -> None:
        """Before it listens: what the router calls when it holds a request at zero replicas,
        and how long it holds one (the spec's)."""
        dep.router.on_demand = on_demand
        apply_hold(dep.router, dep.doc, self.settings.hold_s)

    async def listen(self, dep: Deployment, port: int) -> None:
        """Have the balancer serve the deployment on ``port`` (``OSError`` when it cannot
        bind). A balancer that already serves it there keeps its routes (a re-attach)."""
        dep.port = port
        service = dep.doc.spec
        grpc_port = service.service.grpc_port if service.server.grpc.enabled else None
        await self.balancer.serve(dep.key, self.settings.balancer_host, port, grpc_port)

    def stop_listening(self, dep: Deployment) -> None:
        self.balancer.close(dep.key)

    async def attach_balancer(self, *, after_death: bool = False) -> None:
        """Attach to the balancer (re-attach to a running one, or start one), then have it
        serve every deployment and take every route again. ``after_death``: the previous
        balancer died, so each deployment gets an event saying when its port answers again
        (connections were refused in between)."""
        await self.balancer.attach()
        for dep in self.deployments.values():
            try:
                await self.listen(dep, dep.port)
            except OSError as error:
                self.event(dep, "Warning", "PortInUse", f"cannot listen on {dep.port}: {error}")
                continue
            finally:
                dep.routing_signature = ""
                self.route(dep)
            if after_death:
                self.event(
                    dep,
                    "Normal",
                    "BalancerRestarted",
                    f"the balancer died and was started again; port {dep.port} answers again",
                )

    async def refresh_traffic(self) -> None:
        """Read every router's counters back from the balancer."""
        routers = await self.balancer.stats()
        if routers is None:
            return
        for dep in self.deployments.values():
            data = routers.get(dep.key)
            if data is not None:
                mirror_stats(dep.router, data)

    def _demand(self, key: str) -> None:
        """The balancer holds a request of ``key`` with no routable replica."""
        dep = self.deployments.get(key)
        if dep is not None and dep.router.on_demand is not None:
            dep.router.holding = max(dep.router.holding, 1)
            dep.router.on_demand()

    def add(self, dep: Deployment, *events: Event) -> None:
        """Take over a deployment built by ``apply`` or restored from the store."""
        self.deployments[dep.key] = dep
        self.record(dep, *events)

    def add_replica(self, dep: Deployment, replica: Replica, *events: Event) -> None:
        """Take over a replica restored from the store (re-adopted or requeued)."""
        self.record(dep, *events)
        dep.replicas[replica.name] = replica

    def begin_delete(self, dep: Deployment) -> None:
        """Forget the deployment and start stopping its replicas (``end_delete`` follows)."""
        self.deployments.pop(dep.key, None)
        for replica in list(dep.replicas.values()):
            self.begin_stop(dep, replica, "deployment deleted")

    def end_delete(self, dep: Deployment) -> None:
        """Once its replicas stopped (or the wait ended): close its port, drop its rows."""
        self.stop_listening(dep)
        self.store.delete_deployment(dep.key)
        self.store.delete_usage(dep.key)
        self.metrics.forget(dep.namespace, dep.name)

    def spawn_task(self, coro: asyncio.Future[None] | asyncio.Task[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("controller task failed", exc_info=task.exception())

    # reconcile ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        now = self.clock.monotonic()
        for dep in list(self.deployments.values()):
            self._observe_exits(dep, now)
            self._readiness_timeouts(dep, now)
            self._step(dep, now)
        self.job_queue.tick()
        self.pipelines.tick()
        self.admit_pending()
        for dep in self.deployments.values():
            self.route(dep)
            self.persist(dep)
        self.write_targets()

    def _observe_exits(self, dep: Deployment, now: float) -> None:
        for replica in list(dep.replicas.values()):
            if replica.handle is None or replica.phase in (Phase.TERMINATING, Phase.BACKOFF):
                continue
            ended = replica.handle.poll()
            if ended is None:
                continue
            reason = "OOMKilled" if self.enforcer.oom_killed(replica.name) else ended.reason
            self._crashed(dep, replica, reason, now)

    def _crashed(self, dep: Deployment, replica: Replica, reason: str, now: float) -> None:
        if not replica.ever_ready:
            tail = self.log_tail(dep, replica.name)
            replica.failed_before_ready = f"{reason}" + (f"; last log: {tail}" if tail else "")
        ran = now - (replica.started_at or now)
        delay, replica.backoff = next_restart(replica.backoff, ran_for_s=ran, policy=self.backoff)
        replica.phase = Phase.BACKOFF
        replica.restart_at = now + delay
        replica.last_reason = reason
        # Requests the replica died reading wait for this: retried unless it may be theirs.
        external = reason in ("killed by SIGKILL", "killed by SIGTERM", "killed by SIGINT")
        dep.router.replica_exited(replica.name, caused_by_request=not external)
        self.balancer.replica_exited(dep.key, replica.name, caused_by_request=not external)
        replica.handle = None
        self.enforcer.release(replica.name)
        self.metrics.restart(dep.namespace, dep.name, reason)
        self.event(
            dep,
            "Warning",
            "BackOff",
            f"replica {replica.name} {reason}; restart {replica.backoff.restart_count} "
            f"in {delay:g}s",
        )

    def _readiness_timeouts(self, dep: Deployment, now: float) -> None:
        for replica in list(dep.replicas.values()):
            if replica.handle is None:
                continue
            reason = ""
            started = max(replica.started_at or now, replica.adopted_at or 0.0)
            if replica.phase is Phase.STARTING and now - started > self.settings.startup_timeout_s:
                reason = (
                    f"failed readiness: not ready {self.settings.startup_timeout_s:g}s after start"
                )
            if (
                replica.phase is Phase.NOT_READY
                and replica.unready_since is not None
                and now - replica.unready_since > self.settings.unready_restart_s
            ):
                reason = f"failed readiness for {self.settings.unready_restart_s:g}s"
            if reason:
                replica.handle.kill()
                self._crashed(dep, replica, reason, now)

    def _step(self, dep: Deployment, now: float) -> None:
        counts: dict[int, RevisionCounts] = {}
        for rev in {r.revision for r in dep.replicas.values()} | {dep.rollout.stable}:
            mine = [
                r
                for r in dep.replicas.values()
                if r.revision == rev and r.phase is not Phase.TERMINATING and not r.standby
            ]
            failed = next((r.failed_before_ready for r in mine if r.failed_before_ready), None)
            ready = sum(1 for r in mine if r.phase is Phase.READY)
            counts[rev] = RevisionCounts(len(mine), ready, failed)
        before = dep.rollout
        seen = Observed(now, dep.desired, counts, dep.analysis_failure, dep.analysis_passed)
        step = step_rollout(dep.doc.spec.rollout, before, seen)
        dep.rollout = step.state
        if step.state.step != before.step or step.state.phase != before.phase:
            dep.analysis_passed = False
            dep.analysis_failure = None
            dep.next_analysis_at = None
        for kind, reason, message in step.events:
            self.event(dep, kind, reason, message)
        if before.target is not None and step.state.phase != before.phase:
            status = str(step.state.phase)
            self.store.set_revision_status(dep.key, before.target, status, step.state.reason)
        dep.weights = step.weights
        dep.header_rule = step.header_rule
        self._promote_standby(dep, step.targets, now)
        serving = [r.view() for r in dep.replicas.values() if not r.standby]
        for action in plan_actions(step.targets, serving, now=now):
            if isinstance(action, Start):
                self._new_replica(dep, action.revision, now)
            elif isinstance(action, Stop):
                self.begin_stop(dep, dep.replicas[action.name], action.reason)
            elif isinstance(action, Restart):
                replica = dep.replicas[action.name]
                replica.phase = Phase.PENDING
                replica.restart_at = None
        self._keep_standby(dep, now)

    def _new_replica(self, dep: Deployment, revision: int, now: float) -> Replica:
        name = f"{dep.name}-{revision}-{secrets.token_hex(3)}"
        dep.replicas[name] = Replica(name=name, revision=revision, port=0, created_at=now)
        return dep.replicas[name]

    # warm standby (autoscaling.standby) -------------------------------------------------------
    def _promote_standby(self, dep: Deployment, targets: dict[int, int], now: float) -> None:
        """Scale up by promoting standby replicas before starting new ones: a promoted ready
        replica only needs its route, which ``route`` sends in this same reconcile."""
        standby = [r.view() for r in dep.replicas.values() if r.standby]
        if not standby:
            return
        serving = [r.view() for r in dep.replicas.values() if not r.standby]
        for name in promotions(targets, serving, standby):
            replica = dep.replicas[name]
            self._end_standby(dep, replica, now)
            replica.promoted = True
            pid = replica.handle.pid if replica.handle else None
            self.event(
                dep,
                "Normal",
                "Promoted",
                f"standby replica {name} ({replica.phase}, pid {pid}) now serves",
            )

    def _keep_standby(self, dep: Deployment, now: float) -> None:
        """Start or stop standby replicas of the stable revision to keep the autoscaler's
        count (none during a rollout: the revision they would warm is about to change)."""
        autoscaling = dep.doc.spec.autoscaling
        wanted = 0
        if autoscaling is not None and not dep.rollout.active:
            wanted = min(dep.standby_wanted, autoscaling.standby)
        standby = [r.view() for r in dep.replicas.values() if r.standby]
        if not standby and wanted == 0:
            return
        plan = standby_plan(wanted, dep.rollout.stable, standby)
        for name, reason in plan.stops:
            self.begin_stop(dep, dep.replicas[name], reason)
        for _ in range(plan.starts):
            replica = self._new_replica(dep, plan.revision, now)
            replica.standby = True
            replica.standby_since = now

    def _end_standby(self, dep: Deployment, replica: Replica, now: float) -> None:
        """The replica is no longer a standby: its standby time joins the deployment's cost."""
        if replica.standby:
            dep.standby_seconds += now - (replica.standby_since or now)
        replica.standby = False
        replica.standby_since = None

    def standby_cost(self, dep: Deployment) -> float:
        """Replica-seconds spent on standby replicas so far (status shows it)."""
        now = self.clock.monotonic()
        running = sum(now - (r.standby_since or now) for r in dep.replicas.values() if r.standby)
        return dep.standby_seconds + running

    def track_load(
        self,
        dep: Deployment,
        wall_now: float,
        counts: dict[str, int],
        rate: float,
        cold: list[ReplicaMetrics],
    ) -> LoadHistory:
        """Record one autoscaler look at the arriving rate (``counts``: each backend's
        request count, for the next look) and the newly ready cold replicas; the history the
        predictive policy reads. The start-up samples are the stable revision's only."""
        if dep.load_revision != dep.rollout.stable:
            dep.load.startups = ()
            dep.load_revision = dep.rollout.stable
        dep.load_counts = dict(counts)
        dep.load_seen_at = self.clock.monotonic()
        return dep.load.observe(wall_now, rate, cold)

    # admission and spawning -------------------------------------------------------------
    def admit_pending(self) -> None:
        admit_all(self)

    def spawn(self, dep: Deployment, replica: Replica) -> None:
        doc = dep.revisions[replica.revision]
        replica.port = free_port()
        replica.grpc_port = free_port() if doc.spec.server.grpc.enabled else 0
        argv = [
            *self.settings.replica_command,
            str(dep.revision_files[replica.revision]),
            "--host",
            "127.0.0.1",
            "--port",
            str(replica.port),
            "--replica",
            replica.name,
            "--revision",
            str(replica.revision),
        ]
        if replica.grpc_port:
            argv += ["--grpc-port", str(replica.grpc_port)]
        env = dict(os.environ)
        env["MLKUBE_REPLICA"] = replica.name
        env["MLKUBE_REVISION"] = str(replica.revision)
        env["MLKUBE_STATE_DIR"] = str(self.state)  # remote models: the state's model cache
        if replica.gpus or doc.spec.resources.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in replica.gpus)
        limits = limits_of(doc.spec.resources)
        offset = sum(1 for d in self.deployments.values() for _ in d.replicas)
        log = self.log_path(dep, replica.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        # stdout (JSON lines only) goes to <replica>.log; stderr (progress lines for people,
        # tracebacks) to <replica>.err, so every line of the .log parses as JSON.
        err = os.open(err_path(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            handle = supervisor.spawn(
                argv,
                env=env,
                log_path=log,
                preexec=_child_setup(err, self.enforcer.preexec(limits, offset)),
            )
        finally:
            os.close(err)
        try:
            self.enforcer.attach(replica.name, handle.pid, limits)
        except OSError as error:
            self.event(
                dep, "Warning", "LimitsNotEnforced", f"replica {replica.name}: {error.strerror}"
            )
        now = self.clock.monotonic()
        replica.handle = handle
        replica.phase = Phase.STARTING
        replica.started_at = now
        replica.probe_failures = 0
        replica.snapshots = []
        # failed_before_ready stays until the replica is ready: a crash-looping replica keeps
        # showing why (status' lastError) between its restarts.
        replica.pending_reason = ""
        self.event(
            dep,
            "Normal",
            "Started",
            f"replica {replica.name} (revision {replica.revision}) pid {handle.pid} "
            f"on port {replica.port}",
        )

    # stopping ------------------------------------------------------------------------------
    def begin_stop(self, dep: Deployment, replica: Replica, reason: str) -> None:
        if replica.phase is Phase.TERMINATING:
            return
        if replica.handle is None:
            dep.replicas.pop(replica.name, None)
            self.store.delete_replica(replica.name)
            return
        self._end_standby(dep, replica, self.clock.monotonic())
        replica.phase = Phase.TERMINATING
        dep.router.drain(replica.name)
        self.balancer.drain(dep.key, replica.name)
        self.event(dep, "Normal", "Killing", f"stopping replica {replica.name}: {reason}")
        self.spawn_task(self.stop(dep, replica))

    async def stop(self, dep: Deployment, replica: Replica) -> None:
        """Drain (no new requests, wait for in-flight ones), SIGTERM, then SIGKILL."""
        doc = dep.revisions.get(replica.revision, dep.doc)
        drain_s = doc.spec.server.drain_timeout
        deadline = self.clock.monotonic() + drain_s
        backend = dep.router.backends.get(replica.name)
        await self.refresh_traffic()
        while backend is not None and backend.in_flight > 0 and self.clock.monotonic() < deadline:
            await self.clock.sleep(0.05)
            await self.refresh_traffic()
        handle = replica.handle
        if handle is not None:
            handle.terminate()
            deadline = self.clock.monotonic() + drain_s + self.settings.stop_grace_s
            while handle.poll() is None and self.clock.monotonic() < deadline:
                await self.clock.sleep(0.05)
            handle.kill()  # the whole group: nothing the replica started outlives it
        self.enforcer.release(replica.name)
        dep.replicas.pop(replica.name, None)
        self.store.delete_replica(replica.name)
        self.route(dep)

    # routing -----------------------------------------------------------------------------
    def route(self, dep: Deployment) -> None:
        ready: dict[int, list[str]] = {}
        backends = []
        for replica in dep.replicas.values():
            if replica.handle is None or replica.standby:  # a standby has no route at all
                continue
            if replica.phase is Phase.READY:
                ready.setdefault(replica.revision, []).append(replica.name)
            backends.append(
                Backend(
                    replica.name,
                    replica.port,
                    replica.revision,
                    draining=replica.phase is Phase.TERMINATING,
                    grpc_port=replica.grpc_port,
                )
            )
        weights = replica_weights(dep.weights, ready)
        rule = None
        if dep.header_rule is not None:
            names = set(ready.get(dep.header_rule.revision, []))
            rule = (dep.header_rule.header, dep.header_rule.value, names)
            weights = {n: w for n, w in weights.items() if n not in names} or weights
        signature = json.dumps(
            [
                sorted(weights.items()),
                sorted((b.name, b.port, b.draining) for b in backends),
                sorted(rule[2]) if rule else None,
                dep.router.hold_s,
            ],
        )
        if signature != dep.routing_signature:
            dep.routing_signature = signature
            dep.router.configure(backends, weights, rule)
            self.balancer.configure(
                dep.key,
                backends,
                weights,
                rule,
                dep.router.hold_s,
                max_body_bytes=dep.router.limits.max_body_bytes,
                request_timeout_s=dep.router.upstream_timeout_s - UPSTREAM_GRACE_S,
            )

    # persistence ---------------------------------------------------------------------------
    def persist(self, dep: Deployment) -> None:
        data = {
            "spec": dep.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            "desired": dep.desired,
            "port": dep.port,
            "rollout": dep.rollout.to_json(),
            "autoscale": dep.autoscale_state.to_json() if dep.autoscale_state else None,
            "load": dep.load.to_json(),
            "standby": dep.standby_wanted,
        }
        self.store.put_deployment(dep.key, data)
        for replica in dep.replicas.values():
            self.store.put_replica(dep.key, replica.name, replica.to_json())

    def write_targets(self) -> None:
        """Prometheus file_sd targets of every running replica, rewritten on change."""
        groups = [
            {
                "targets": [f"127.0.0.1:{r.port}"],
                "labels": {
                    "namespace": dep.namespace,
                    "deployment": dep.name,
                    "replica": r.name,
                    "revision": str(r.revision),
                },
            }
            for dep in self.deployments.values()
            for r in sorted(dep.replicas.values(), key=lambda r: r.name)
            if r.handle is not None and r.phase is not Phase.TERMINATING
        ]
        text = json.dumps(groups, indent=2)
        if text == self._targets_text:
            return
        path = self.state / "prometheus" / "targets.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        self._targets_text = text

    # files ---------------------------------------------------------------------------------
    def log_path(self, dep: Deployment, replica: str) -> Path:
        return self.state / "logs" / dep.namespace / dep.name / f"{replica}.log"

    def rotate_logs(self) -> None:
        """Rotate every live replica's .log and .err at ``logging.files.maxSize``.

        The replicas append to their files themselves (``O_APPEND``), so rotation is a copy
        and an in-place truncate (``rotate_copytruncate``): cheap to check (one ``stat`` per
        file), and a replica never needs to reopen anything.
        """
        for dep in self.deployments.values():
            for replica in dep.replicas.values():
                files = dep.doc.spec.logging.files  # not a template field: applies at once
                log = self.log_path(dep, replica.name)
                for path in (log, err_path(log)):
                    try:
                        rotate_copytruncate(
                            path, max_bytes=files.max_size.whole, backups=files.backups
                        )
                    except OSError as error:
                        logger.warning("rotating %s failed: %s", path, error)

    def log_tail(self, dep: Deployment, replica: str) -> str:
        """The last useful line a replica wrote: its stderr's error, else its last record."""
        log = self.log_path(dep, replica)
        errors = _last_lines(err_path(log))
        if errors and not errors[-1].startswith(PROGRESS_PREFIX):
            return errors[-1][:REASON_MAX_CHARS]
        lines = _last_lines(log)
        if not lines:
            return errors[-1][:REASON_MAX_CHARS] if errors else ""
        last = lines[-1]
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(last)
            last = str(record.get("msg") or record.get("message") or last)
            if record.get("error"):
                last += f": {record['error']}"
        return last[:REASON_MAX_CHARS]

    def new_router(self, name: str) -> Router:
        return Router(name, hold_s=self.settings.hold_s)


def err_path(log: Path) -> Path:
    """``<replica>.err`` beside ``<replica>.log``: the replica's stderr."""
    return log.with_suffix(".err")


def _last_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return [ln for ln in file.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []


def _child_setup(err_fd: int, then: Callable[[], None] | None) -> Callable[[], None]:
    """What the child runs before exec: stderr onto ``err_fd``, then ``then`` (limits).

    Runs after ``subprocess`` pointed fds 1 and 2 at the log file and before it closes the
    other fds, so ``dup2`` makes fd 2 the .err file (``dup2`` clears close-on-exec).
    """

    def setup() -> None:
        os.dup2(err_fd, 2)
        if then is not None:
            then()

    return setup


def _present(event: Event | None) -> tuple[Event, ...]:
    return (event,) if event is not None else ()


def apply_hold(router: Router, doc: ModelDeployment, default_s: float) -> None:
    """How long the router holds requests with no ready replica: the spec's activationTimeout
    when it scales to zero, else the controller's setting. Applied on create, apply and restore,
    with the spec's request size limit and timeout (413 and 504 at the balancer too)."""
    server = doc.spec.server
    router.set_server_limits(
        max_body_bytes=server.max_request_size.whole, request_timeout_s=server.request_timeout
    )
    autoscaling = doc.spec.autoscaling
    if autoscaling is not None and autoscaling.scale_to_zero is not None:
        router.hold_s = autoscaling.scale_to_zero.activation_timeout
    else:
        router.hold_s = default_s


def rollout_failed(phase: RolloutPhase) -> bool:
    return phase in (RolloutPhase.FAILED, RolloutPhase.ROLLED_BACK)
