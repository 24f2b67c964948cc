"""``LocalBackend``: the ``Backend`` protocol over the local controller's control API.

Every operation finds the controller through the state directory and calls its token-protected
loopback API (``controller.api.Client.call``); ``ensure_controller`` starts one first (what
``mlkube up`` needs). Logs are read straight from the replicas' files, so they can be read after
the controller stopped. Waiting is done with a ``Clock`` (``sleep_blocking``); nothing here prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from mlkube.backends.base import (
    ApplyReport,
    DeleteReport,
    EventRow,
    JobRow,
    LogStream,
    ObjectChange,
    ObjectRef,
    Report,
    RevisionRow,
    RolloutStatus,
    ScaleReport,
    StatusReport,
    UndoReport,
)
from mlkube.backends.local import replica_logs, supervisor
from mlkube.backends.local.balancer.protocol import BALANCER_FILE
from mlkube.backends.local.controller.api import Client, ControllerNotRunningError
from mlkube.backends.local.controller.settings import state_dir as resolve_state_dir
from mlkube.backends.local.private import private_dir, private_file
from mlkube.backends.local.status_view import rollout_progress, status_report
from mlkube.clock import Clock, SystemClock
from mlkube.desired.capabilities import BackendKind, Document, notes
from mlkube.errors import BackendError, UnsupportedOperationError
from mlkube.registry import RegistryError, is_model_uri, resolve_model
from mlkube.spec import BatchInference, ModelDeployment, TrainingJob
from mlkube.spec.loading import load_documents

DEPLOYMENT_KIND = "modeldeployment"
"""How local output names a ModelDeployment (``modeldeployment/default/iris created``)."""

CONTROLLER_START_TIMEOUT_S = 30.0
START_POLL_S = 0.1
EXIT_POLL_S = 0.05
EXIT_QUIET_S = 1.0
"""``down`` says what it waits for only after this long (the controller exits just after it
answers: nothing to report then)."""
DOWN_TIMEOUT_S = 120.0
"""How long ``down`` waits for the processes it stopped (a replica drains for up to its
``server.drainTimeout``, then gets SIGTERM and, ``MLKUBE_STOP_GRACE_S`` later, SIGKILL)."""
FOLLOW_POLL_S = 0.2
WAIT_POLL_S = 0.5


def _processes(pids: Sequence[int]) -> str:
    """``1 process (pid 12)``, ``3 processes (pids 12, 13, 14)``."""
    listed = ", ".join(map(str, pids))
    if len(pids) == 1:
        return f"1 process (pid {listed})"
    return f"{len(pids)} processes (pids {listed})"


class ControlClient(Protocol):
    """What the backend needs of ``controller.api.Client``."""

    pid: int

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...

    def close(self) -> None: ...


Connect = Callable[[Path], ControlClient]


class RolloutFailedError(BackendError):
    """A local rollout that ``apply --wait`` waited for failed or did not finish in time."""


def local_problems(documents: Sequence[Document], state_dir: Path | None = None) -> list[str]:
    """What stops a spec locally beyond the capability table: a model file that is missing,
    or a ``models:/`` version that ``state_dir``'s registry does not hold."""
    problems = []
    for document in documents:
        if isinstance(document, BatchInference):
            if is_model_uri(document.spec.model.uri):
                try:
                    resolve_model(document.spec.model.uri, document.spec.model.format, state_dir)
                except RegistryError as error:
                    problems.append(f"batch job '{document.metadata.name}': model.uri: {error}")
            continue
        if not isinstance(document, ModelDeployment):
            continue
        several = document.spec.models is not None
        for index, model in enumerate(document.spec.all_models):
            field = f"models[{index}].uri" if several else "model.uri"
            if is_model_uri(model.uri):
                try:
                    resolve_model(model.uri, model.format, state_dir)
                except RegistryError as error:
                    problems.append(f"deployment '{document.metadata.name}': {field}: {error}")
            elif "://" not in model.uri:
                path = document.model_path(model)
                if not os.path.exists(path):
                    problems.append(
                        f"deployment '{document.name}': {field}: no file or folder at {path}"
                    )
    return problems


class LocalBackend:
    """Deployments run by the local controller of one state directory."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        clock: Clock | None = None,
        connect: Connect = Client,
    ) -> None:
        self.state = resolve_state_dir(str(state_dir) if state_dir is not None else None)
        self.clock: Clock = clock or SystemClock()
        self._connect = connect

    # the controller ------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[ControlClient]:
        """A client of the running controller, closed after the block; ControllerNotRunningError
        when none runs."""
        client = self._connect(self.state)
        try:
            yield client
        finally:
            client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.session() as client:
            return client.call(method, path, body)

    def is_running(self) -> bool:
        """Whether a controller runs for the state directory and answers."""
        try:
            self._call("GET", "/healthz")
        except (ControllerNotRunningError, BackendError):
            return False
        return True

    def controller_pid(self) -> int:
        """The process id of the running controller."""
        with self.session() as client:
            return client.pid

    def ensure_controller(self) -> bool:
        """Start a controller unless one runs; True when this call started it."""
        if self.is_running():
            return False
        self._start_controller()
        return True

    def _start_controller(self) -> None:
        private_dir(self.state)
        (self.state / "controller.json").unlink(missing_ok=True)
        log = private_file(self.state / "controller.log")
        handle = supervisor.spawn(
            [
                sys.executable,
                "-m",
                "mlkube.backends.local.controller",
                "--state-dir",
                str(self.state),
            ],
            env=dict(os.environ),
            log_path=log,
        )
        deadline = self.clock.monotonic() + CONTROLLER_START_TIMEOUT_S
        while self.clock.monotonic() < deadline:
            if self.is_running():
                return
            if handle.poll() is not None:
                break
            self.clock.sleep_blocking(START_POLL_S)
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise BackendError(f"the controller did not start (see {log}): " + " | ".join(tail))

    def wait_exit(
        self, pids: Sequence[int], *, timeout_s: float, report: Report | None = None
    ) -> None:
        """Return once none of ``pids`` runs; progress to ``report`` while some still do.

        The controller answers ``POST /down`` once it has stopped the replicas or after its own
        deadline, and exits after answering; a process can still be on its way out then (a
        replica draining longer than that deadline, the controller itself). Raises a
        BackendError naming what still runs after ``timeout_s``.
        """
        start = self.clock.monotonic()
        deadline = start + timeout_s
        shown: tuple[int, ...] = ()
        while True:
            running = tuple(pid for pid in pids if supervisor.pid_alive(pid))
            if not running:
                return
            now = self.clock.monotonic()
            if now >= deadline:
                raise BackendError(
                    f"{_processes(running)} still running {timeout_s:g}s after `down`: the "
                    f"controller keeps stopping them (see {self.state / 'controller.log'})"
                )
            if report is not None and running != shown and now - start >= EXIT_QUIET_S:
                report(f"waiting for {_processes(running)} to exit")
                shown = running
            self.clock.sleep_blocking(EXIT_POLL_S)

    def start_prometheus(
        self, binary: str, alertmanager: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start (or reload) the local Prometheus, and an Alertmanager when ``alertmanager``
        (``{"binary": ..., "config": alertmanager.yml}``) is given: ``url``, ``action``,
        ``alertmanagerUrl``, ``alertmanagerAction``."""
        body = {"binary": binary, **({"alertmanager": alertmanager} if alertmanager else {})}
        answer: dict[str, Any] = self._call("POST", "/prometheus", body)
        return answer

    def watch_status(self, keys: Sequence[str], every_s: float) -> Iterator[StatusReport]:
        """The status of the ``namespace/name`` deployments every ``every_s`` until none runs."""
        with self.session() as client:
            while True:
                document = client.call("GET", "/status")
                mine = [
                    d for d in document["deployments"] if f"{d['namespace']}/{d['name']}" in keys
                ]
                if not mine:
                    return
                yield status_report(document, mine)
                self.clock.sleep_blocking(every_s)

    # the Backend protocol ----------------------------------------------------------------
    def apply(self, paths: Sequence[str], *, dry_run: bool = False) -> ApplyReport:
        if dry_run:
            raise UnsupportedOperationError(
                "local",
                "do a dry run",
                "`mlkube validate SPEC` checks a spec without running it; "
                "`mlkube render SPEC` shows what a cluster would get",
            )
        resolved = [str(Path(p).resolve()) for p in paths]
        documents = load_documents(*resolved)  # spec errors are shown here, with exit code 2
        found = notes(documents, BackendKind.LOCAL)
        problems = [n.text() for n in found if n.is_error] or local_problems(documents, self.state)
        if problems:  # refused up front: a replica that cannot start would only crash-loop
            raise BackendError("cannot run locally: " + "; ".join(problems))
        results = self._call("POST", "/apply", {"paths": resolved})["results"]
        changes = tuple(
            ObjectChange(ObjectRef(r["kind"].lower(), r["name"]), r["action"], r.get("revision"))
            for r in results
        )
        return ApplyReport(changes=changes, warnings=tuple(n.text() for n in found))

    # jobs ------------------------------------------------------------------------------------
    def submit(self, paths: Sequence[str]) -> ApplyReport:
        """Queue the jobs of ``paths`` with the controller (started when none runs)."""
        resolved = [str(Path(p).resolve()) for p in paths]
        documents = load_documents(*resolved)
        others = [d for d in documents if not isinstance(d, TrainingJob | BatchInference)]
        if others:
            raise BackendError(
                f"{others[0].kind} '{others[0].metadata.name}' is not a job: "
                "mlkube run takes TrainingJob and BatchInference (use mlkube up or apply)"
            )
        found = notes(documents, BackendKind.LOCAL)
        problems = [n.text() for n in found if n.is_error]
        if problems:
            raise BackendError("cannot run locally: " + "; ".join(problems))
        self.ensure_controller()
        results = self._call("POST", "/jobs", {"paths": resolved})["results"]
        changes = tuple(ObjectChange(ObjectRef(r["kind"], r["name"]), r["action"]) for r in results)
        return ApplyReport(changes=changes, warnings=tuple(n.text() for n in found))

    def jobs(self, name: str | None = None) -> tuple[JobRow, ...]:
        query = f"?name={quote(name)}" if name is not None else ""
        return tuple(job_row(r) for r in self._call("GET", f"/jobs{query}")["jobs"])

    def cancel(self, name: str) -> JobRow:
        return job_row(self._call("POST", "/jobs/cancel", {"name": name}))

    def _job_log_lines(self, name: str, worker: str | None, follow: bool) -> Iterator[str]:
        (row,) = self._call("GET", f"/jobs?name={quote(name)}")["jobs"]
        folder = self.state / "jobs" / row["namespace"] / row["name"] / "logs"
        ranks = range(int(row["workers"])) if worker is None else [int(worker)]
        files = [folder / f"worker-{rank}.log" for rank in ranks]
        positions = dict.fromkeys(files, 0)
        while True:
            for file in files:
                try:
                    with open(file, "rb") as handle:
                        handle.seek(positions[file])
                        data = handle.read()
                except FileNotFoundError:
                    continue
                complete = data[: data.rfind(b"\n") + 1]
                positions[file] += len(complete)
                prefix = f"[worker {file.stem.split('-')[1]}] " if len(files) > 1 else ""
                for line in complete.decode("utf-8", "replace").splitlines():
                    yield prefix + line
            if not follow:
                return
            self.clock.sleep_blocking(FOLLOW_POLL_S)

    def wait_for_rollouts(self, applied: ApplyReport, *, timeout_s: float, report: Report) -> None:
        wanted = {
            c.object.name: c.revision for c in applied.changes if c.object.kind == DEPLOYMENT_KIND
        }
        if applied.dry_run or not wanted:
            return
        deadline = self.clock.monotonic() + timeout_s
        last: dict[str, str] = {}
        while True:
            document = self._call("GET", "/status")
            live = {f"{d['namespace']}/{d['name']}": d for d in document["deployments"]}
            for key in list(wanted):
                progress = rollout_progress(key, live.get(key), wanted[key])
                if last.get(key) != progress.message:
                    report(progress.message)
                    last[key] = progress.message
                if progress.failed:
                    raise RolloutFailedError(f"rollout failed: {progress.message}")
                if progress.done:
                    del wanted[key]
            if not wanted:
                return
            if self.clock.monotonic() >= deadline:
                raise RolloutFailedError(
                    f"timed out after {timeout_s:g}s waiting for "
                    + "; ".join(last[key] for key in wanted)
                    + " (see `mlkube status` and `mlkube events`)"
                )
            self.clock.sleep_blocking(WAIT_POLL_S)

    def status(self, name: str | None = None) -> StatusReport:
        query = f"?name={quote(name)}" if name else ""
        document = self._call("GET", f"/status{query}")
        return status_report(document, document["deployments"])

    def scale(self, name: str, replicas: int) -> ScaleReport:
        result = self._call("POST", "/scale", {"name": name, "replicas": replicas})
        return ScaleReport(ObjectRef(DEPLOYMENT_KIND, result["name"]), replicas)

    def delete(
        self,
        name: str | None = None,
        *,
        timeout_s: float = DOWN_TIMEOUT_S,
        report: Report | None = None,
    ) -> DeleteReport:
        """Stop ``name`` (None: everything, and the controller exits), and return only once
        their replica processes (and the controller) have exited."""
        if (self.state / BALANCER_FILE).exists() and not self.is_running():
            # The controller died and left the data plane serving (the balancer and the
            # replicas outlive it): a new controller re-adopts them, so down can stop them.
            self._start_controller()
        with self.session() as client:
            pid = client.pid
            query = f"?name={quote(name)}" if name else ""
            deployments = client.call("GET", f"/status{query}")["deployments"]
            replica_pids = [r["pid"] for d in deployments for r in d["replicas"] if r.get("pid")]
            result = client.call("POST", "/down", {"name": name} if name else {})
        changes = tuple(
            ObjectChange(ObjectRef(DEPLOYMENT_KIND, key), "stopped") for key in result["stopped"]
        )
        processes = [p for p in ("prometheus", "alertmanager") if result.get(f"{p}Stopped")]
        exiting = bool(result["controllerExiting"])
        self.wait_exit(
            [*replica_pids, *([pid] if exiting else [])], timeout_s=timeout_s, report=report
        )
        if exiting:
            processes.append("controller")
        return DeleteReport(changes=changes, stopped_processes=tuple(processes))

    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        since_s: float | None = None,
        follow: bool = False,
        stderr: bool = False,
    ) -> LogStream:
        if name.startswith("job/"):
            return LogStream(lines=self._job_log_lines(name[4:], replica, follow))
        files = self._log_files(name, replica, stderr=stderr)
        cutoff = self.clock.wall() - since_s if since_s is not None else None
        return LogStream(lines=self._log_lines(files, cutoff, follow))

    def _log_files(self, name: str, replica: str | None, *, stderr: bool) -> list[Path]:
        try:
            dep = self._call("GET", f"/status?name={quote(name)}")["deployments"][0]
            folder = self.state / "logs" / dep["namespace"] / dep["name"]
            replicas = [r["name"] for r in dep["replicas"]]
        except (ControllerNotRunningError, BackendError):
            folder, replicas = replica_logs.stopped_deployment_folder(self.state, name)
        return replica_logs.choose_files(folder, replicas, name, replica, stderr=stderr)

    def _log_lines(self, files: list[Path], cutoff: float | None, follow: bool) -> Iterator[str]:
        lines, positions = replica_logs.history(files, cutoff)
        yield from lines
        while follow:
            self.clock.sleep_blocking(FOLLOW_POLL_S)
            for file in files:
                new, positions[file] = replica_logs.read_new(file, positions[file], cutoff)
                yield from new

    def events(self, name: str, *, limit: int = 100) -> tuple[EventRow, ...]:
        rows = self._call("GET", f"/events?name={quote(name)}&limit={limit}")
        return tuple(EventRow(r["ts"], r["type"], r["reason"], r["message"]) for r in rows)

    def rollout_status(self, name: str) -> RolloutStatus:
        return _rollout_status(name, self._call("GET", f"/rollout/status?name={quote(name)}"))

    def rollout_promote(self, name: str, *, full: bool = False) -> RolloutStatus:
        data = self._call("POST", "/rollout/promote", {"name": name, "full": full})
        return _rollout_status(name, data)

    def rollout_abort(self, name: str) -> RolloutStatus:
        return _rollout_status(name, self._call("POST", "/rollout/abort", {"name": name}))

    def rollout_history(self, name: str) -> tuple[RevisionRow, ...]:
        rows = self._call("GET", f"/rollout/history?name={quote(name)}")
        return tuple(
            RevisionRow(
                revision=r["revision"],
                created=r["created"],
                status=r["status"],
                reason=r["reason"],
                model=r["model"],
                current=r["current"],
                change=r.get("change", ""),
            )
            for r in rows
        )

    def rollout_undo(self, name: str, *, to_revision: int | None = None) -> UndoReport:
        body: dict[str, Any] = {"name": name}
        if to_revision is not None:
            body["revision"] = to_revision
        result = self._call("POST", "/rollout/undo", body)
        return UndoReport(
            ObjectRef(DEPLOYMENT_KIND, result["name"]), result["action"], result["revision"]
        )


def _rollout_status(name: str, data: Any) -> RolloutStatus:
    """A ``RolloutStatus`` from the control API's ``/rollout/*`` answer."""
    return RolloutStatus(
        name=name,
        phase=data["phase"],
        revision=data["stable"],
        target=data["target"],
        strategy=data["strategy"],
        step=data["step"],
        weights=tuple((str(k), v) for k, v in data["weights"].items()),
        reason=data["reason"],
    )


def job_row(data: Any) -> JobRow:
    """A ``JobRow`` from the control API's ``/jobs`` answer."""
    return JobRow(
        name=data["name"],
        kind=data["kind"],
        phase=data["phase"],
        workers=data["workers"],
        priority=data["priority"],
        submitted=data["submitted"],
        started=data.get("started"),
        finished=data.get("finished"),
        restarts=data.get("restarts", 0),
        preemptions=data.get("preemptions", 0),
        reason=data.get("reason", ""),
        metrics=tuple((str(k), float(v)) for k, v in (data.get("metrics") or {}).items()),
        model_version=data.get("modelVersion", ""),
    )
