"""One replica as the controller tracks it: process, phase, restarts, last reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlkube.backends.local.decisions.backoff import BackoffState
from mlkube.backends.local.decisions.plan import Phase, ReplicaView
from mlkube.backends.local.decisions.scrape import Snapshot
from mlkube.backends.local.supervisor import ProcessHandle


@dataclass(slots=True)
class Replica:
    """Mutable controller-side record of one replica (persisted by ``to_json``)."""

    name: str
    revision: int
    port: int
    created_at: float
    grpc_port: int = 0
    """Its gRPC port when the spec enables gRPC (0: none)."""
    phase: Phase = Phase.PENDING
    handle: ProcessHandle | None = None
    started_at: float | None = None
    adopted_at: float | None = None
    """When a restarted controller re-adopted the process (its startup timeout counts from
    here, not from ``started_at``)."""
    ready_at: float | None = None
    unready_since: float | None = None
    ever_ready: bool = False
    backoff: BackoffState = field(default_factory=BackoffState)
    restart_at: float | None = None
    last_reason: str = ""
    pending_reason: str = ""
    failed_before_ready: str | None = None
    gpus: tuple[int, ...] = ()
    probe_failures: int = 0
    snapshots: list[Snapshot] = field(default_factory=list)
    analysis_base: Snapshot | None = None
    standby: bool = False
    """A warm standby (``autoscaling.standby``): started and probed like any replica, never
    routed, admitted below every serving replica; promotion clears it."""
    standby_since: float | None = None
    """When it became a standby (monotonic): its cost in status counts from here."""
    promoted: bool = False
    """Promoted from standby: its start-up was not paid at scale-up, so it is no sample of
    the revision's start-up time."""

    def view(self) -> ReplicaView:
        return ReplicaView(self.name, self.revision, self.phase, self.created_at, self.restart_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "revision": self.revision,
            "port": self.port,
            "grpcPort": self.grpc_port,
            "createdAt": self.created_at,
            "pid": self.handle.pid if self.handle else None,
            "startTime": self.handle.start_time if self.handle else None,
            "startedAt": self.started_at,
            "everReady": self.ever_ready,
            "restartCount": self.backoff.restart_count,
            "streak": self.backoff.streak,
            "lastReason": self.last_reason,
            "gpus": list(self.gpus),
            "standby": self.standby,
            "promoted": self.promoted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Replica:
        return cls(
            name=str(data["name"]),
            revision=int(data["revision"]),
            port=int(data["port"]),
            created_at=float(data["createdAt"]),
            grpc_port=int(data.get("grpcPort", 0)),
            started_at=data.get("startedAt"),
            ever_ready=bool(data.get("everReady", False)),
            backoff=BackoffState(int(data.get("restartCount", 0)), int(data.get("streak", 0))),
            last_reason=str(data.get("lastReason", "")),
            gpus=tuple(int(g) for g in data.get("gpus", ())),
            standby=bool(data.get("standby", False)),
            promoted=bool(data.get("promoted", False)),
        )
