"""One deployment as the controller runs it: revisions, replicas, rollout and its router."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlkube.autoscale.api import PolicyState
from mlkube.autoscale.history import LoadTracker
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.proxy import Router
from mlkube.desired.revision import revision_document
from mlkube.desired.rollout import HeaderRule, RolloutState
from mlkube.registry import is_model_uri, resolve_model
from mlkube.spec.claims import claim_host_path
from mlkube.spec.deployment import ModelDeployment


def revision_of(doc: ModelDeployment, state_dir: Path | None = None) -> dict[str, Any]:
    """The document a revision's replicas load, the model path made absolute.

    A registry URI is resolved here (in ``state_dir``'s registry) to the version's file, so
    a revision pins the version: ``models:/NAME/latest`` moves on only at the next apply.

    Pure apart from resolving the path against the spec's folder. It is
    ``desired.revision.revision_document``: the same template the cluster's pods get, so a
    revision is cut here exactly when the cluster's pod template hash changes. Replicas get
    their own copy, so editing the user's file later never changes a running revision.
    """
    uris = {}
    for model in doc.spec.all_models:
        uri = model.uri
        claim = claim_host_path(doc, uri)  # pvc:// bound to the spec's hostPath: read in place
        if is_model_uri(uri):
            uris[doc.served_name(model)] = str(resolve_model(uri, model.format, state_dir).path)
        elif claim is not None:
            uris[doc.served_name(model)] = claim
        elif "://" not in uri or uri.startswith("file://"):
            uris[doc.served_name(model)] = os.path.abspath(doc.model_path(model))
    return revision_document(doc, model_uris=uris)


APPLIED_FILE = "applied.yaml"
"""Beside the revision files: the whole spec last applied (``mlkube alerts NAME`` reads it)."""


def write_revision_file(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass(slots=True)
class Deployment:
    """Everything the controller holds for one ModelDeployment."""

    key: str
    doc: ModelDeployment
    """The newest applied document (its rollout, autoscaling and service sections rule)."""
    router: Router
    rollout: RolloutState
    desired: int
    revisions: dict[int, ModelDeployment] = field(default_factory=dict)
    revision_files: dict[int, Path] = field(default_factory=dict)
    revision_hashes: dict[int, str] = field(default_factory=dict)
    """Each revision's ``desired.revision.revision_hash``: a new one is cut when it changes."""
    replicas: dict[str, Replica] = field(default_factory=dict)
    port: int = 0
    weights: dict[int, float] = field(default_factory=dict)
    header_rule: HeaderRule | None = None
    autoscale_state: PolicyState | None = None
    last_decision: dict[str, Any] | None = None
    next_autoscale_at: float = 0.0
    analysis_failure: str | None = None
    analysis_passed: bool = False
    next_analysis_at: float | None = None
    last_event: str = ""
    rps: float = 0.0
    lb_requests_seen: int = 0
    lb_seen_at: float = 0.0
    routing_signature: str = ""
    load: LoadTracker = field(default_factory=LoadTracker)
    """The arriving-rate history and measured start-ups the predictive policy reads."""
    load_counts: dict[str, int] | None = None
    """Each backend's request count at the autoscaler's last look (None: no look yet)."""
    load_seen_at: float = 0.0
    load_revision: int = 0
    """The revision whose start-ups ``load`` holds (a new stable revision starts afresh)."""
    standby_wanted: int = 0
    """Warm standby replicas the autoscaler's last decision keeps (``Decision.standby``)."""
    standby_seconds: float = 0.0
    """Replica-seconds spent by standby replicas that were since promoted or stopped."""

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def namespace(self) -> str:
        return self.doc.namespace

    @property
    def newest_revision(self) -> int:
        return max(self.revisions) if self.revisions else 0
