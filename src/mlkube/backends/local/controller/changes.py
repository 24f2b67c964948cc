"""What may change in a deployment: the values handlers and loops return to the controller.

Handlers and loops observe and decide; ``Controller.apply`` is the one writer of
``Deployment`` and ``Replica`` records, and it records the event that goes with a change. A
change that always comes with the same event (``SetDesired``, ``Unschedulable``) leaves its
text to the controller; one whose event is a decision carries it as an ``Event``. Replica
changes name their replica; the controller skips one whose replica is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlkube.autoscale.api import PolicyState
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import Snapshot
from mlkube.desired.rollout import RolloutState
from mlkube.spec.deployment import ModelDeployment


@dataclass(frozen=True, slots=True)
class Event:
    """An event to record for the deployment, like a Kubernetes Event."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


# deployment changes --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetDesired:
    """A new replica count; the controller records "scaled from A to B: reason"."""

    replicas: int
    reason: str


@dataclass(frozen=True, slots=True)
class SetRollout:
    """A new rollout state (started, aborted, switched back) and its events."""

    state: RolloutState
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class SetSpec:
    """A newly applied document: its rollout, autoscaling and service sections rule now."""

    doc: ModelDeployment


@dataclass(frozen=True, slots=True)
class AddRevision:
    """A revision cut from ``data`` (``deployment.revision_of``): file, hash, store row."""

    revision: int
    data: dict[str, Any]
    source_dir: str


@dataclass(frozen=True, slots=True)
class AutoscalerRan:
    """One autoscaler sync: its policy state, its decision (as ``status`` shows it), when
    it runs next, and the event when the decision is news."""

    state: PolicyState | None
    decision: dict[str, Any]
    next_at: float
    event: Event | None = None
    standby: int = 0
    """Warm standby replicas to keep (``Decision.standby``)."""


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """The canary analysis after a scrape: its failure, whether it passed, when it judges
    next (None: not scheduled), and the event of a pass."""

    failure: str | None
    passed: bool
    next_at: float | None
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class TrafficSeen:
    """The load balancer's request count at ``at`` and the rate since the last look."""

    requests: int
    at: float
    rps: float


# replica changes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A replica's readiness after a probe: every field the probe rules."""

    replica: str
    phase: Phase
    probe_failures: int
    unready_since: float | None
    ready_at: float | None
    ever_ready: bool
    last_reason: str
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class Scraped:
    """A replica's new metrics snapshot (the controller keeps the last ``SNAPSHOTS_KEPT``)."""

    replica: str
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class AnalysisBaseline:
    """Where a canary replica's analysis interval starts (None: at its first snapshot)."""

    replica: str
    snapshot: Snapshot | None


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """A Pending replica does not fit, for ``reason``; the controller records
    FailedScheduling."""

    replica: str
    reason: str


@dataclass(frozen=True, slots=True)
class Placed:
    """A Pending replica was admitted, on these GPUs (the controller spawns it next)."""

    replica: str
    gpus: tuple[int, ...]


DeploymentChange = (
    Event
    | SetDesired
    | SetRollout
    | SetSpec
    | AddRevision
    | AutoscalerRan
    | AnalysisResult
    | TrafficSeen
)
ReplicaChange = ProbeResult | Scraped | AnalysisBaseline | Unschedulable | Placed
Change = DeploymentChange | ReplicaChange
"""Anything ``Controller.apply`` applies."""
