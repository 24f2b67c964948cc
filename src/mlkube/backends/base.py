"""The one seam between the CLI and a backend: the ``Backend`` protocol and what it returns.

A backend (``LocalBackend``, ``KubernetesBackend``, the tests' ``FakeBackend``) does the work
and returns plain, frozen data; the CLI decides how to show it (``mlkube.cli.output`` is the
only printer). A backend never prints and never imports ``mlkube.cli``. Long operations that
report progress take a ``Report`` callable from the CLI (waiting for rollouts) or return an
iterator (log lines). Failures are ``mlkube.errors.MlkubeError`` subclasses; an operation a
backend cannot do at all raises ``UnsupportedOperationError`` saying what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Report = Callable[[str], None]
"""Where a long operation sends progress lines (the CLI prints them as they come)."""

TargetName = Literal["local", "kubernetes"]


@dataclass(frozen=True, slots=True)
class BackendSelection:
    """What the shared commands' ``--target``, ``--state-dir``, ``--context`` and
    ``--namespace`` options chose."""

    target: TargetName = "local"
    state_dir: str | None = None
    context: str | None = None
    namespace: str | None = None
    prometheus_url: str | None = None
    """kubernetes: the cluster's Prometheus, which canary analysis queries (rollout commands)."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object a backend manages: a kind as the backend names it, a name, maybe a namespace.

    Shown as ``kind/name`` plus `` in namespace`` when there is one.
    """

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.kind}/{self.name}{where}"


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """What an operation did to one object (``created``, ``applied``, ``stopped`` ...)."""

    object: ObjectRef
    action: str
    revision: int | None = None
    """The revision the change made, where the backend numbers them."""


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What an apply did, object by object."""

    changes: tuple[ObjectChange, ...]
    pruned: tuple[ObjectRef, ...] | None = None
    """Objects deleted because the specs no longer hold them; None: this backend never prunes."""

    warnings: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of text under column headings, with an optional title."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The state of deployments, for people (tables, notes) and for programs (``document``)."""

    document: Any
    """JSON-shaped data printed by ``-o json|yaml``; each backend keeps its own shape."""

    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    """Lines shown under the tables (why the autoscaler chose a count, where Prometheus is)."""

    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScaleReport:
    """A replica count that was set."""

    object: ObjectRef
    replicas: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """What a delete (or local ``down``) stopped, deleted or kept."""

    changes: tuple[ObjectChange, ...]
    stopped_processes: tuple[str, ...] = ()
    """Processes that stopped with it, in order (local: ``prometheus``, ``controller``)."""

    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogStream:
    """Log lines, oldest first; with ``follow`` the iterator goes on until interrupted."""

    lines: Iterator[str]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event of a deployment (like a Kubernetes Event)."""

    time: float
    """Seconds since the epoch."""

    type: str
    reason: str
    message: str
    object: str = ""
    """The object it is about, where that is not the deployment itself (``Pod/iris-abc``)."""

    count: int = 1


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """Where a deployment's rollout stands."""

    name: str
    phase: str
    """``Progressing``, ``Complete``, ``Failed``, ``RolledBack`` or ``ABTest``."""

    revision: int | None
    """The revision that serves (local: the stable one; Kubernetes: the Deployment's)."""

    target: int | None = None
    """The revision being rolled out to; None when no rollout to a numbered target runs."""

    strategy: str = ""
    step: int | None = None
    weights: tuple[tuple[str, float], ...] | None = None
    """Traffic share per revision, where the backend splits traffic itself."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class RevisionRow:
    """One revision of a deployment, as ``rollout history`` lists it."""

    revision: int
    created: float
    status: str
    reason: str
    model: str
    current: bool
    change: str = ""
    """What differs from the revision before, e.g. ``model, batching`` ("" when unknown)."""


@dataclass(frozen=True, slots=True)
class UndoReport:
    """What ``rollout undo`` did: ``aborted``, ``switched`` or ``rolling back``, to which
    revision."""

    object: ObjectRef
    action: str
    revision: int


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job (TrainingJob or BatchInference) and where it stands."""

    name: str
    kind: str
    phase: str
    """``Queued``, ``Running``, ``Succeeded``, ``Failed`` or ``Cancelled``."""

    workers: int
    priority: int
    submitted: float
    """Seconds since the epoch, as every time here."""

    started: float | None = None
    finished: float | None = None
    restarts: int = 0
    preemptions: int = 0
    reason: str = ""
    """Why it waits, why it failed, or how it ended."""

    metrics: tuple[tuple[str, float], ...] = ()
    model_version: str = ""
    """``NAME/VERSION`` of the model version the job registered, if it did."""


class Backend(Protocol):
    """What the shared commands (apply, status, scale, delete, logs, events, rollout) need.

    ``rollout_status`` on a cluster also moves a Canary's steps (the cluster has no mlkube
    controller of its own): see ``backends.kubernetes.rollout_driver``.
    """

    def apply(self, paths: Sequence[str], *, dry_run: bool = False) -> ApplyReport:
        """Apply the spec files (a dry run changes nothing); spec errors raise SpecError."""
        ...

    def wait_for_rollouts(self, applied: ApplyReport, *, timeout_s: float, report: Report) -> None:
        """Return once what ``applied`` changed has rolled out; progress goes to ``report``.

        Raises a BackendError when a rollout fails or ``timeout_s`` passes first.
        """
        ...

    def status(self, name: str | None = None) -> StatusReport:
        """One deployment, or all of them."""
        ...

    def scale(self, name: str, replicas: int) -> ScaleReport:
        """Set a deployment's replica count."""
        ...

    def delete(
        self, name: str | None = None, *, timeout_s: float = 120.0, report: Report | None = None
    ) -> DeleteReport:
        """Stop and remove one deployment; None: all of them (where the backend can).

        A backend that runs the processes itself returns once they have exited (waiting up to
        ``timeout_s``, progress to ``report``); a cluster deletes in the background.
        """
        ...

    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        since_s: float | None = None,
        follow: bool = False,
        stderr: bool = False,
    ) -> LogStream:
        """Log lines of a deployment's replicas (one replica by index or name); ``stderr``
        adds what they wrote to stderr, labelled (a cluster's container logs always hold it)."""
        ...

    def events(self, name: str, *, limit: int = 100) -> tuple[EventRow, ...]:
        """The newest ``limit`` events of a deployment, oldest first."""
        ...

    def rollout_status(self, name: str) -> RolloutStatus:
        """Where the deployment's rollout stands."""
        ...

    def rollout_history(self, name: str) -> tuple[RevisionRow, ...]:
        """Every revision of the deployment, oldest first."""
        ...

    def rollout_undo(self, name: str, *, to_revision: int | None = None) -> UndoReport:
        """Go back to ``to_revision`` (default: the previous good one), or abort a rollout."""
        ...

    def rollout_promote(self, name: str, *, full: bool = False) -> RolloutStatus:
        """End the canary's current step now, its pause and analysis not awaited (``full``:
        every step); BackendError when no canary is in progress."""
        ...

    def rollout_abort(self, name: str) -> RolloutStatus:
        """Stop the rollout in progress: every request back to the stable revision."""
        ...

    def submit(self, paths: Sequence[str]) -> ApplyReport:
        """Queue the jobs in the spec files (TrainingJob, BatchInference); SpecError when a
        file holds anything else."""
        ...

    def jobs(self, name: str | None = None) -> tuple[JobRow, ...]:
        """Every job (or one), queued first by admission order, then the running and done."""
        ...

    def cancel(self, name: str) -> JobRow:
        """Stop a queued or running job; its workers get SIGTERM and the grace period."""
        ...


BackendFactory = Callable[[BackendSelection], Backend]
"""Makes the backend a command runs against; tests put their own in ``ctx.obj``."""
