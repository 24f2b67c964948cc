"""``FakeBackend``: an in-memory ``Backend`` that records every call, for testing the CLI.

It keeps a few deployments (name → replicas) and answers every operation from them with fixed,
predictable data. ``unsupported`` names operations that raise ``UnsupportedOperationError``
instead. To make the shared commands use it, hand its ``factory`` to the CLI::

    fake = FakeBackend()
    CliRunner().invoke(cli, ["status", "-o", "json"], obj={"backend_factory": fake.factory})
    assert fake.calls == [Call("status", ("iris",))]  # or whatever was asked
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlkube.backends.base import (
    ApplyReport,
    Backend,
    BackendSelection,
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
    Table,
    UndoReport,
)
from mlkube.errors import BackendError, UnsupportedOperationError

EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: every time the fake reports is this plus a few seconds."""

KIND = "fakedeployment"
STATUS_COLUMNS = ("NAME", "READY", "REVISION")


@dataclass(frozen=True, slots=True)
class Call:
    """One call made to the fake: the method, its positional and its keyword arguments."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeBackend:
    """An in-memory backend: deployments by name, a revision each, and a log of calls."""

    def __init__(
        self,
        deployments: dict[str, int] | None = None,
        *,
        unsupported: Sequence[str] = (),
        log_lines: Sequence[str] = ('{"msg": "ready"}', '{"msg": "served"}'),
    ) -> None:
        self.deployments = dict(deployments if deployments is not None else {"iris": 2})
        self.revisions = dict.fromkeys(self.deployments, 1)
        self.unsupported = frozenset(unsupported)
        self.log_lines = tuple(log_lines)
        self.calls: list[Call] = []
        self.selections: list[BackendSelection] = []
        self.job_rows: dict[str, JobRow] = {}
        self.job_outcome = "Succeeded"
        """Where a submitted job ends: each ``jobs`` call moves it one phase on."""

    def factory(self, selection: BackendSelection) -> Backend:
        """A ``BackendFactory`` that records what the options chose and returns this fake."""
        self.selections.append(selection)
        return self

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(method, args, kwargs))
        if method in self.unsupported:
            raise UnsupportedOperationError("fake", method.replace("_", " "), "use another one")

    def _known(self, name: str) -> None:
        if name not in self.deployments:
            raise BackendError(f"no deployment named '{name}'")

    # the Backend protocol ----------------------------------------------------------------
    def apply(self, paths: Sequence[str], *, dry_run: bool = False) -> ApplyReport:
        self._record("apply", tuple(paths), dry_run=dry_run)
        changes = []
        for path in paths:
            name = Path(path).stem
            action = "configured" if name in self.deployments else "created"
            if not dry_run:
                self.revisions[name] = self.revisions.get(name, 0) + 1
                self.deployments.setdefault(name, 1)
            changes.append(ObjectChange(ObjectRef(KIND, name), action, self.revisions.get(name)))
        return ApplyReport(changes=tuple(changes), dry_run=dry_run)

    def wait_for_rollouts(self, applied: ApplyReport, *, timeout_s: float, report: Report) -> None:
        self._record("wait_for_rollouts", applied, timeout_s=timeout_s)
        for change in applied.changes:
            report(f"{change.object.name}: rolled out")

    def status(self, name: str | None = None) -> StatusReport:
        self._record("status", name)
        if name is not None:
            self._known(name)
        names = [name] if name is not None else sorted(self.deployments)
        document = [
            {"name": n, "replicas": self.deployments[n], "revision": self.revisions[n]}
            for n in names
        ]
        rows = tuple(
            (n, f"{self.deployments[n]}/{self.deployments[n]}", str(self.revisions[n]))
            for n in names
        )
        return StatusReport(
            document=document,
            tables=(Table(STATUS_COLUMNS, rows, title="fake deployments"),),
            notes=tuple(f"{n}: nothing to autoscale" for n in names),
        )

    def scale(self, name: str, replicas: int) -> ScaleReport:
        self._record("scale", name, replicas)
        self._known(name)
        self.deployments[name] = replicas
        return ScaleReport(ObjectRef(KIND, name), replicas)

    def delete(
        self, name: str | None = None, *, timeout_s: float = 120.0, report: Report | None = None
    ) -> DeleteReport:
        self._record("delete", name)
        names = [name] if name is not None else sorted(self.deployments)
        for n in names:
            self._known(n)
            del self.deployments[n]
        changes = tuple(ObjectChange(ObjectRef(KIND, n), "stopped") for n in names)
        return DeleteReport(
            changes=changes, stopped_processes=() if self.deployments else ("fake",)
        )

    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        since_s: float | None = None,
        follow: bool = False,
        stderr: bool = False,
    ) -> LogStream:
        self._record("logs", name, replica=replica, since_s=since_s, follow=follow, stderr=stderr)
        self._known(name)
        return LogStream(lines=self._lines(), warnings=("following is fake",) if follow else ())

    def _lines(self) -> Iterator[str]:
        yield from self.log_lines

    def events(self, name: str, *, limit: int = 100) -> tuple[EventRow, ...]:
        self._record("events", name, limit=limit)
        self._known(name)
        rows = (
            EventRow(EPOCH + 1, "Normal", "Created", "revision 1, 2 replicas"),
            EventRow(EPOCH + 62, "Warning", "BackOff", "restarting", object="Pod/iris-0", count=3),
        )
        return rows[-limit:] if limit > 0 else ()

    def rollout_status(self, name: str) -> RolloutStatus:
        self._record("rollout_status", name)
        self._known(name)
        revision = self.revisions[name]
        if revision == 1:
            return RolloutStatus(name, "Complete", revision=1, strategy="RollingUpdate")
        return RolloutStatus(
            name,
            "Progressing",
            revision=revision - 1,
            target=revision,
            strategy="Canary",
            step=1,
            weights=((str(revision - 1), 90.0), (str(revision), 10.0)),
            reason="analysing",
        )

    def rollout_history(self, name: str) -> tuple[RevisionRow, ...]:
        self._record("rollout_history", name)
        self._known(name)
        current = self.revisions[name]
        return tuple(
            RevisionRow(
                r,
                EPOCH + r,
                "Complete" if r == current else "",
                "",
                f"model-{r}.onnx",
                r == current,
            )
            for r in range(1, current + 1)
        )

    def rollout_undo(self, name: str, *, to_revision: int | None = None) -> UndoReport:
        self._record("rollout_undo", name, to_revision=to_revision)
        self._known(name)
        target = to_revision if to_revision is not None else self.revisions[name] - 1
        if target < 1:
            raise BackendError(f"deployment '{name}' has no earlier revision to go back to")
        self.revisions[name] = target
        return UndoReport(ObjectRef(KIND, name), "rolling back", target)

    def rollout_promote(self, name: str, *, full: bool = False) -> RolloutStatus:
        self._record("rollout_promote", name, full=full)
        self._known(name)
        revision = self.revisions[name]
        if revision == 1:
            raise BackendError(f"deployment '{name}' has no canary in progress (Complete)")
        if full:
            return RolloutStatus(name, "Complete", revision=revision, strategy="Canary")
        weights = ((str(revision - 1), 50.0), (str(revision), 50.0))
        return RolloutStatus(
            name, "Progressing", revision - 1, revision, "Canary", 2, weights, "promoted"
        )

    def rollout_abort(self, name: str) -> RolloutStatus:
        self._record("rollout_abort", name)
        self._known(name)
        if self.revisions[name] == 1:
            raise BackendError(f"deployment '{name}' has no rollout in progress to abort")
        self.revisions[name] -= 1
        stable = self.revisions[name]
        return RolloutStatus(name, "RolledBack", stable, strategy="Canary", reason="aborted")

    def submit(self, paths: Sequence[str]) -> ApplyReport:
        self._record("submit", tuple(paths))
        changes = []
        for path in paths:
            name = Path(path).stem
            self.job_rows[name] = JobRow(name, "TrainingJob", "Queued", 1, 0, 1767225600.0)
            changes.append(ObjectChange(ObjectRef("TrainingJob", name), "submitted"))
        return ApplyReport(changes=tuple(changes))

    def jobs(self, name: str | None = None) -> tuple[JobRow, ...]:
        self._record("jobs", name)
        if name is not None and name not in self.job_rows:
            raise BackendError(f"no job named '{name}'")
        names = [name] if name is not None else sorted(self.job_rows)
        for n in names:
            row = self.job_rows[n]
            after = {"Queued": "Running", "Running": self.job_outcome}.get(row.phase, row.phase)
            reason = "worker 0 exited with code 1" if after == "Failed" else ""
            metrics = (("accuracy", 0.97),) if after == "Succeeded" else ()
            self.job_rows[n] = replace(row, phase=after, reason=reason, metrics=metrics)
        return tuple(self.job_rows[n] for n in names)

    def cancel(self, name: str) -> JobRow:
        self._record("cancel", name)
        if name not in self.job_rows:
            raise BackendError(f"no job named '{name}'")
        self.job_rows[name] = replace(self.job_rows[name], phase="Cancelled", reason="cancelled")
        return self.job_rows[name]
