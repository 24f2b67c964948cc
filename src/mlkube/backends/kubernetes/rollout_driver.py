"""The rollout driver: runs a Canary's steps and analysis against a cluster, one tick a call.

The thin I/O around ``progression.tick``: read the stable and canary Deployments, judge the
analysis interval that just ended (the cluster's Prometheus, when one is given), then write
what the tick decided. Every write is a JSON merge patch as field manager ``mlkube-rollout``,
of only the fields the driver owns, so the next ``mlkube apply`` (manager ``mlkube``) and the
driver never clear each other's fields:

- the canary's replica count (the Deployment; its HPA's bounds follow the step, as the
  renderer derives them: ``desired.traffic.canary_replicas`` of the stable bounds);
- the HTTPRoute's weights, when the spec names a Gateway (otherwise replicas carry the split);
- on promotion, the stable Deployment's pod template (the canary's, relabelled stable);
- the driver's record, in the canary Deployment's ``mlkube.dev/rollout-state`` annotation.

Who calls ``advance``: ``mlkube rollout status --target kubernetes`` (``--watch`` keeps
calling it until the rollout ends), so the steps move while someone watches; ``promote`` and
``abort`` are the manual moves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlkube.backends.base import RolloutStatus
from mlkube.backends.kubernetes.client import Cluster
from mlkube.backends.kubernetes.errors import ApiMissingError, ForbiddenError, ObjectNotFoundError
from mlkube.backends.kubernetes.progression import (
    ClusterRollout,
    Tick,
    TrackSeen,
    abort,
    analysis_due,
    promote,
    schedule_analysis,
    tick,
    with_verdict,
)
from mlkube.backends.kubernetes.render.manifest import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_ROLLOUT,
    ANNOTATION_ROLLOUT_STATE,
    LABEL_TRACK,
    ROLLOUT_MANAGER,
    Manifest,
    kind_info,
)
from mlkube.backends.kubernetes.wait import rollout_state
from mlkube.desired.rollout import CanaryRates, judge_canary
from mlkube.desired.traffic import canary_replicas
from mlkube.spec.rollout import RolloutSpec

Measure = Callable[[str, str, float], CanaryRates | None]
"""(namespace, deployment, window seconds) → what the canary served in that window; None when
no Prometheus answers. ``prometheus_query.canary_rates`` is the real one."""


@dataclass(frozen=True, slots=True)
class CanaryTracks:
    """A Canary deployment's two Deployments on the cluster, and the driver's record."""

    name: str
    namespace: str
    stable: Manifest
    canary: Manifest
    spec: RolloutSpec
    record: ClusterRollout | None


def read_tracks(cluster: Cluster, namespace: str, name: str) -> CanaryTracks | None:
    """The two Deployments of a Canary, or None when ``name`` runs no canary track."""
    info = kind_info("Deployment")
    canary = cluster.get(info, f"{name}-canary", namespace)
    if canary is None:
        return None
    annotations = canary["metadata"].get("annotations") or {}
    rollout = annotations.get(ANNOTATION_ROLLOUT)
    if rollout is None:
        return None  # an ABTest's B track: a fixed split, nothing to step
    stable = cluster.get(info, name, namespace)
    if stable is None:
        raise ObjectNotFoundError(
            f"deployment '{name}' has a canary but no stable Deployment in '{namespace}'"
        )
    spec = RolloutSpec.model_validate(json.loads(rollout))
    state = annotations.get(ANNOTATION_ROLLOUT_STATE)
    record = None if state is None else ClusterRollout.from_json(state)
    return CanaryTracks(name, namespace, stable, canary, spec, record)


def track_seen(deployment: Manifest) -> TrackSeen:
    """What the tick needs of one Deployment. Pure."""
    template = deployment["spec"].get("template", {}).get("metadata", {})
    status = deployment.get("status") or {}
    verdict = rollout_state(deployment)
    return TrackSeen(
        revision_hash=(template.get("annotations") or {}).get(ANNOTATION_CONFIG_HASH, ""),
        replicas=int(deployment["spec"].get("replicas", 1)),
        ready=int(status.get("readyReplicas", 0)),
        rolled_out=verdict.done,
        failure=verdict.message if verdict.failed else None,
    )


def advance(
    cluster: Cluster, tracks: CanaryTracks, *, now: float, measure: Measure | None
) -> RolloutStatus:
    """One tick: judge the analysis interval that ended, step, and write what changed."""
    stable, canary = track_seen(tracks.stable), track_seen(tracks.canary)
    record = tracks.record
    if (
        record is not None
        and record.target_hash == canary.revision_hash
        and analysis_due(tracks.spec, record, now=now)
    ):
        record = _judge(tracks, record, measure)
    decided = tick(tracks.spec, record, stable, canary, now=now)
    decided = Tick(
        schedule_analysis(tracks.spec, decided.record, now=now),
        decided.canary_replicas,
        decided.canary_weight,
        decided.promote,
        decided.events,
    )
    _write(cluster, tracks, decided)
    return status_of(tracks.name, decided.record, decided.canary_weight, measure is None)


def promote_rollout(cluster: Cluster, tracks: CanaryTracks, *, full: bool) -> ClusterRollout:
    """``rollout promote``: end this step now (``full``: every step); the next tick moves."""
    record = _current(tracks)
    if not record.state.active:
        raise ObjectNotFoundError(
            f"deployment '{tracks.name}' has no canary in progress "
            f"({record.state.phase}: {record.state.reason or 'nothing to promote'})"
        )
    promoted = promote(tracks.spec, record, full=full)
    _patch_record(cluster, tracks, promoted)
    return promoted


def abort_rollout(cluster: Cluster, tracks: CanaryTracks) -> ClusterRollout:
    """``rollout abort``: every request back to the stable Deployment, the canary to zero."""
    record = _current(tracks)
    if not record.state.active and not record.promoting:
        raise ObjectNotFoundError(
            f"deployment '{tracks.name}' has no canary in progress to abort ({record.state.phase})"
        )
    aborted = abort(record, "aborted by rollout abort")
    _write(cluster, tracks, Tick(aborted, 0, 0))
    return aborted


def status_of(
    name: str, record: ClusterRollout, canary_weight: int, no_prometheus: bool
) -> RolloutStatus:
    """The rollout as ``rollout status`` shows it. Pure."""
    state = record.state
    phase = "Progressing" if record.promoting else str(state.phase)
    reason = state.reason
    if record.promoting:
        reason = "promoting: the stable Deployment takes the canary's template"
    elif state.active and no_prometheus and record.next_analysis_at is not None:
        reason = "analysis needs the cluster's Prometheus: pass --prometheus URL"
    weights = (("stable", float(100 - canary_weight)), ("canary", float(canary_weight)))
    return RolloutStatus(
        name=name,
        phase=phase,
        revision=None,
        target=None,
        strategy=str(state.strategy),
        step=state.step if state.active else None,
        weights=weights,
        reason=reason,
    )


def _current(tracks: CanaryTracks) -> ClusterRollout:
    seen = track_seen(tracks.canary)
    if tracks.record is not None and tracks.record.target_hash == seen.revision_hash:
        return tracks.record
    # No tick has run for this canary yet: the first one starts its rollout.
    return tick(tracks.spec, None, track_seen(tracks.stable), seen, now=0.0).record


def _judge(tracks: CanaryTracks, record: ClusterRollout, measure: Measure | None) -> ClusterRollout:
    analysis = tracks.spec.analysis
    if analysis is None or measure is None:
        return record
    rates = measure(tracks.namespace, tracks.name, analysis.interval)
    if rates is None:
        return record
    enough, failure = judge_canary(
        rates,
        max_error_rate=analysis.max_error_rate,
        max_p99_ms=analysis.max_p99_latency_ms,
        min_requests=analysis.min_requests,
    )
    return with_verdict(record, enough=enough, failure=failure)


def _write(cluster: Cluster, tracks: CanaryTracks, decided: Tick) -> None:
    deployments = kind_info("Deployment")
    if decided.promote:
        cluster.merge_patch(
            deployments,
            tracks.name,
            tracks.namespace,
            {"spec": {"template": promoted_template(tracks.canary)}},
            manager=ROLLOUT_MANAGER,
        )
    _set_canary_bounds(cluster, tracks, decided.canary_weight)
    cluster.merge_patch(
        deployments,
        f"{tracks.name}-canary",
        tracks.namespace,
        {
            "metadata": {"annotations": {ANNOTATION_ROLLOUT_STATE: decided.record.to_json()}},
            "spec": {"replicas": decided.canary_replicas},
        },
        manager=ROLLOUT_MANAGER,
    )
    _set_route_weights(cluster, tracks, decided.canary_weight)


def _patch_record(cluster: Cluster, tracks: CanaryTracks, record: ClusterRollout) -> None:
    cluster.merge_patch(
        kind_info("Deployment"),
        f"{tracks.name}-canary",
        tracks.namespace,
        {"metadata": {"annotations": {ANNOTATION_ROLLOUT_STATE: record.to_json()}}},
        manager=ROLLOUT_MANAGER,
    )


def promoted_template(canary: Manifest) -> Manifest:
    """The canary's pod template as the stable track's: same revision, stable's track label
    and metrics revision label. Pure."""
    template: Manifest = copy.deepcopy(canary["spec"]["template"])
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[LABEL_TRACK] = "stable"
    for container in template.get("spec", {}).get("containers", []):
        args: list[Any] = container.get("args") or []
        for index in range(len(args) - 1):
            if args[index] == "--revision" and args[index + 1] == "canary":
                args[index + 1] = "stable"
    return template


def _set_canary_bounds(cluster: Cluster, tracks: CanaryTracks, weight: int) -> None:
    """Keep the canary's HPA bounds at the step's share of the stable bounds (a zero count
    needs no change: an HPA does not scale a Deployment at zero replicas)."""
    if weight <= 0:
        return
    hpas = kind_info("HorizontalPodAutoscaler")
    try:
        stable_hpa = cluster.get(hpas, f"{tracks.name}-hpa", tracks.namespace)
        canary_hpa = cluster.get(hpas, f"{tracks.name}-canary-hpa", tracks.namespace)
    except ForbiddenError:
        # The in-cluster controller's Role grants HPAs only when the spec renders them.
        return
    if stable_hpa is None or canary_hpa is None:
        return
    low = int(stable_hpa["spec"].get("minReplicas", 1))
    high = int(stable_hpa["spec"]["maxReplicas"])
    cluster.merge_patch(
        hpas,
        f"{tracks.name}-canary-hpa",
        tracks.namespace,
        {
            "spec": {
                "minReplicas": max(1, canary_replicas(low, weight)),
                "maxReplicas": max(1, canary_replicas(high, weight)),
            }
        },
        manager=ROLLOUT_MANAGER,
    )


def _set_route_weights(cluster: Cluster, tracks: CanaryTracks, weight: int) -> None:
    """The HTTPRoute's weighted rule (the last one: a header rule comes first) gets the split."""
    routes = kind_info("HTTPRoute")
    try:
        route = cluster.get(routes, tracks.name, tracks.namespace)
    except (ApiMissingError, ForbiddenError):
        # No Gateway API on the cluster, or (the controller's Role) no HTTPRoute rendered.
        return
    if route is None:
        return
    rules: list[Manifest] = copy.deepcopy(route["spec"].get("rules") or [])
    if not rules:
        return
    ports = [
        ref["port"] for rule in rules for ref in rule.get("backendRefs") or [] if "port" in ref
    ]
    if not ports:
        return
    port = ports[0]
    shares = ((f"{tracks.name}-stable", 100 - weight), (f"{tracks.name}-canary", weight))
    rules[-1]["backendRefs"] = [
        {"group": "", "kind": "Service", "name": service, "port": port, "weight": share}
        for service, share in shares
        if share > 0
    ]
    cluster.merge_patch(
        routes, tracks.name, tracks.namespace, {"spec": {"rules": rules}}, manager=ROLLOUT_MANAGER
    )
