"""One deployment as the controller runs it: revisions, replicas, rollout and its router."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlkube.autoscale.api import PolicyState
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.decisions.rollout import HeaderRule, RolloutState
from mlkube.backends.local.proxy import Router
from mlkube.spec.deployment import ModelDeployment

TEMPLATE_KEYS = ("model", "protocol", "resources", "batching", "server", "logging", "monitoring")
"""Spec sections whose change makes a new revision (the pod template, in Kubernetes terms)."""


def revision_document(doc: ModelDeployment) -> dict[str, Any]:
    """The document a revision's replicas load: the spec with the model path made absolute.

    Pure apart from reading ``doc``. Replicas get their own copy, so editing the user's file
    later never changes what a running revision serves.
    """
    data: dict[str, Any] = doc.model_dump(mode="json", by_alias=True)
    uri = doc.spec.model.uri
    if "://" not in uri or uri.startswith("file://"):
        data["spec"]["model"]["uri"] = os.path.abspath(doc.model_path())
    return data


def template_of(data: dict[str, Any]) -> str:
    """A canonical text of the template sections, for change detection. Pure."""
    spec = data["spec"]
    return json.dumps({k: spec.get(k) for k in TEMPLATE_KEYS}, sort_keys=True)


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
    replicas: dict[str, Replica] = field(default_factory=dict)
    server: asyncio.Server | None = None
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

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def namespace(self) -> str:
        return self.doc.namespace

    @property
    def newest_revision(self) -> int:
        return max(self.revisions) if self.revisions else 0
