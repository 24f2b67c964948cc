"""The decisions handlers and loops hand to the one writer, and how ``Controller.apply``
applies them: plain unit tests, no process started."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube.autoscale.api import Decision, PolicyState
from mlkube.backends.local.controller.app import restored_replica
from mlkube.backends.local.controller.changes import (
    AddRevision,
    AnalysisResult,
    AutoscalerRan,
    Change,
    Event,
    Placed,
    ProbeResult,
    Scraped,
    SetDesired,
    SetRollout,
    SetSpec,
    TrafficSeen,
    Unschedulable,
)
from mlkube.backends.local.controller.controller import SNAPSHOTS_KEPT, Controller
from mlkube.backends.local.controller.deployment import Deployment, revision_of
from mlkube.backends.local.controller.handlers import rollout_on_apply
from mlkube.backends.local.controller.loops import (
    analysis_verdict,
    autoscaler_ran,
    probe_transition,
    traffic_seen,
)
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.backoff import BackoffState
from mlkube.backends.local.decisions.plan import Phase
from mlkube.backends.local.decisions.scrape import Rates, Snapshot
from mlkube.backends.local.proxy import Router
from mlkube.backends.local.supervisor import ProcessHandle
from mlkube.clock import ManualClock
from mlkube.desired.revision import revision_hash
from mlkube.desired.rollout import RolloutPhase, RolloutState
from mlkube.spec.deployment import ModelDeployment
from mlkube.spec.loading import parse_documents
from mlkube.spec.rollout import RolloutStrategy

NOW = 100.0


def _doc(uri: str = "/models/a.onnx", **spec: Any) -> ModelDeployment:
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"uri": uri, "format": "onnx"}, **spec},
    }
    (parsed,) = parse_documents(yaml.safe_dump(document))
    assert isinstance(parsed, ModelDeployment)
    return parsed


def _deployment(
    doc: ModelDeployment | None = None,
    *,
    rollout: RolloutState | None = None,
    revisions: dict[int, ModelDeployment] | None = None,
    **fields: Any,
) -> Deployment:
    doc = doc or _doc()
    revisions = revisions or {1: doc}
    return Deployment(
        key="ml/iris",
        doc=doc,
        router=Router("ml/iris", hold_s=1.0),
        rollout=rollout or RolloutState(stable=1),
        desired=fields.pop("desired", 2),
        revisions=revisions,
        revision_hashes={n: revision_hash(revision_of(d)) for n, d in revisions.items()},
        **fields,
    )


# readiness probes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    phase: Phase
    ok: bool
    failures: int = 0
    ever_ready: bool = False
    unready_since: float | None = None


@dataclass(frozen=True)
class After:
    phase: Phase
    failures: int
    unready_since: float | None = None
    ready_at: float | None = None
    ever_ready: bool = False
    last_reason: str = ""
    event: str | None = None


@pytest.mark.parametrize(
    ("probe", "after"),
    [
        pytest.param(
            Probe(Phase.STARTING, ok=True),
            After(Phase.READY, 0, ready_at=NOW, ever_ready=True, event="Ready"),
            id="first-success-makes-ready-with-the-ready-event",
        ),
        pytest.param(
            Probe(Phase.NOT_READY, ok=True, failures=3, ever_ready=True, unready_since=90.0),
            After(Phase.READY, 0, ever_ready=True),
            id="recovery-is-ready-again-without-an-event",
        ),
        pytest.param(
            Probe(Phase.READY, ok=True, failures=2, ever_ready=True),
            After(Phase.READY, 0, ever_ready=True),
            id="success-while-ready-clears-the-failures",
        ),
        pytest.param(
            Probe(Phase.READY, ok=True, ever_ready=True),
            None,
            id="success-while-ready-and-clear-changes-nothing",
        ),
        pytest.param(
            Probe(Phase.READY, ok=False, failures=1, ever_ready=True),
            After(Phase.READY, 2, ever_ready=True),
            id="failure-below-the-threshold-counts",
        ),
        pytest.param(
            Probe(Phase.READY, ok=False, failures=2, ever_ready=True),
            After(
                Phase.NOT_READY,
                3,
                unready_since=NOW,
                ever_ready=True,
                last_reason="readiness probe failed",
                event="Unhealthy",
            ),
            id="failure-at-the-threshold-makes-not-ready-with-the-unhealthy-event",
        ),
        pytest.param(Probe(Phase.STARTING, ok=False), None, id="failure-while-starting-waits"),
        pytest.param(
            Probe(Phase.NOT_READY, ok=False, failures=3, ever_ready=True, unready_since=90.0),
            None,
            id="failure-while-not-ready-changes-nothing",
        ),
    ],
)
def test_probe_transition(probe: Probe, after: After | None) -> None:
    replica = Replica(
        "iris-1-a",
        1,
        0,
        0.0,
        phase=probe.phase,
        probe_failures=probe.failures,
        ever_ready=probe.ever_ready,
        unready_since=probe.unready_since,
    )
    result = probe_transition(replica, probe.ok, NOW, threshold=3)
    if after is None:
        assert result is None
        return
    assert result is not None
    assert result.replica == "iris-1-a"
    assert (result.phase, result.probe_failures, result.unready_since) == (
        after.phase,
        after.failures,
        after.unready_since,
    )
    assert (result.ready_at, result.ever_ready, result.last_reason) == (
        after.ready_at,
        after.ever_ready,
        after.last_reason,
    )
    assert (result.event.reason if result.event else None) == after.event


# load balancer traffic ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seen", "seen_at", "rps", "total", "expected"),
    [
        pytest.param(0, 0.0, 0.0, 40, TrafficSeen(40, NOW, 0.0), id="first-look-keeps-the-rate"),
        pytest.param(40, 96.0, 0.0, 80, TrafficSeen(80, NOW, 10.0), id="rate-since-last-look"),
        pytest.param(80, 98.0, 10.0, 80, TrafficSeen(80, NOW, 0.0), id="idle-is-zero"),
    ],
)
def test_traffic_seen(seen: int, seen_at: float, rps: float, total: int, expected: TrafficSeen):
    dep = _deployment(lb_requests_seen=seen, lb_seen_at=seen_at, rps=rps)
    dep.router.stats.requests = total
    assert traffic_seen(dep, NOW) == expected


# canary analysis ------------------------------------------------------------------------------
MERGED = Rates(200, 2, 10.0, 0.01, 20.0, 30.0, None)


@pytest.mark.parametrize(
    ("enough", "failure", "before", "expected"),
    [
        pytest.param(
            True,
            "error rate 0.2 > 0.05",
            (None, False),
            AnalysisResult("error rate 0.2 > 0.05", False, None),
            id="failure-is-kept",
        ),
        pytest.param(
            False, None, (None, False), AnalysisResult(None, False, None), id="too-few-requests"
        ),
        pytest.param(
            True,
            None,
            (None, False),
            AnalysisResult(
                None,
                True,
                None,
                Event(
                    "Normal",
                    "AnalysisPassed",
                    "canary revision 2: error rate 0.010 over 200 requests, p99 30.0 ms",
                ),
            ),
            id="enough-good-traffic-passes",
        ),
        pytest.param(
            False,
            None,
            ("earlier failure", False),
            AnalysisResult("earlier failure", False, None),
            id="an-earlier-failure-stays",
        ),
    ],
)
def test_analysis_verdict(enough, failure, before, expected):
    dep = _deployment(analysis_failure=before[0], analysis_passed=before[1], next_analysis_at=90.0)
    assert analysis_verdict(dep, 2, MERGED, enough, failure) == expected


# autoscaler -----------------------------------------------------------------------------------
def _decision(replicas: int, limited_by: str | None = None) -> Decision:
    return Decision(replicas, "concurrency 40 > 10", {"concurrency": 40.0}, limited_by, ())


def _shown(decision: Decision) -> dict[str, Any]:
    return {
        "desiredReplicas": decision.desired_replicas,
        "reason": decision.reason,
        "metrics": decision.metric_values,
        "limitedBy": decision.limited_by,
        "conditions": [],
        "standby": decision.standby,
    }


@pytest.mark.parametrize(
    ("previous", "decision", "event", "scaled"),
    [
        pytest.param(None, _decision(2), "2 -> 2", False, id="first-decision-is-news"),
        pytest.param(_decision(2), _decision(2), None, False, id="steady-hold-is-quiet"),
        pytest.param(_decision(2), _decision(4), "2 -> 4", True, id="a-new-count-scales"),
        pytest.param(
            _decision(2),
            _decision(2, "maxReplicas"),
            "2 -> 2",
            False,
            id="a-new-limit-is-news",
        ),
        pytest.param(
            _decision(2),
            _decision(2, "scaleDown stabilization window"),
            None,
            False,
            id="an-idle-metric-flickering-under-the-window-is-quiet",
        ),
        pytest.param(
            _decision(2, "scaleDown stabilization window"),
            _decision(2),
            None,
            False,
            id="and-back-is-quiet-too",
        ),
    ],
)
def test_autoscaler_ran(previous, decision, event, scaled):
    dep = _deployment(desired=2, last_decision=_shown(previous) if previous else None)
    state = PolicyState(last_active_at=5.0)
    changes = autoscaler_ran(dep, decision, state, next_at=NOW + 15)
    ran = changes[0]
    assert isinstance(ran, AutoscalerRan)
    assert (ran.state, ran.decision, ran.next_at) == (state, _shown(decision), NOW + 15)
    assert ran.standby == decision.standby
    if event is None:
        assert ran.event is None
    else:
        assert ran.event is not None and ran.event.reason == "AutoscalerDecision"
        assert ran.event.message.startswith(event)
    expected = [SetDesired(decision.desired_replicas, decision.reason)] if scaled else []
    assert changes[1:] == expected


# rollouts on apply ----------------------------------------------------------------------------
A, B, C = _doc("/models/a.onnx"), _doc("/models/b.onnx"), _doc("/models/c.onnx")
ROLLING = RolloutState(stable=1, target=2, phase=RolloutPhase.PROGRESSING)


@pytest.mark.parametrize(
    ("rollout", "applied", "kinds", "outcome"),
    [
        pytest.param(RolloutState(stable=1), A, [], {}, id="stable-template-changes-nothing"),
        pytest.param(ROLLING, A, [SetRollout], {"action": "configured"}, id="stable-aborts"),
        pytest.param(ROLLING, B, [], {}, id="the-template-rolling-out-changes-nothing"),
        pytest.param(
            RolloutState(stable=1),
            C,
            [AddRevision, SetRollout],
            {"action": "configured", "revision": 3},
            id="a-new-template-cuts-a-revision",
        ),
        pytest.param(
            ROLLING,
            C,
            [AddRevision, SetRollout],
            {"action": "configured", "revision": 3},
            id="a-new-template-mid-rollout-cuts-another",
        ),
    ],
)
def test_rollout_on_apply(rollout, applied, kinds, outcome):
    dep = _deployment(A, rollout=rollout, revisions={1: A, 2: B})
    changes, said = rollout_on_apply(dep, revision_of(applied), applied, NOW)
    assert [type(c) for c in changes] == kinds
    assert said == outcome
    for change in changes:
        if isinstance(change, AddRevision):
            assert change.revision == 3
        if isinstance(change, SetRollout) and kinds == [SetRollout]:
            assert change.state.phase is RolloutPhase.ROLLED_BACK
            assert [e.reason for e in change.events] == ["RolloutAborted"]
        elif isinstance(change, SetRollout):
            assert (change.state.stable, change.state.target) == (1, 3)
            assert change.state.phase is RolloutPhase.PROGRESSING
            assert [e.reason for e in change.events] == ["RolloutStarted"]


# restore --------------------------------------------------------------------------------------
SAVED = Replica(
    "iris-1-a", 1, 8001, 3.0, started_at=None, backoff=BackoffState(2, 1), last_reason="x"
)


@pytest.mark.parametrize(
    ("handle", "phase", "started_at", "last_reason", "event"),
    [
        pytest.param(
            ProcessHandle(4242, 1.0, None), Phase.STARTING, NOW, "x", "Adopted", id="alive"
        ),
        pytest.param(
            None, Phase.PENDING, None, "lost while the controller was down", "Lost", id="gone"
        ),
    ],
)
def test_restored_replica(handle, phase, started_at, last_reason, event):
    replica, recorded = restored_replica(SAVED, handle, NOW)
    assert replica is not SAVED and SAVED.phase is Phase.PENDING and SAVED.handle is None
    assert (replica.handle, replica.phase, replica.started_at) == (handle, phase, started_at)
    assert (replica.last_reason, replica.backoff, replica.port) == (
        last_reason,
        SAVED.backoff,
        8001,
    )
    assert recorded.reason == event


def test_a_restored_replica_keeps_its_start_time():
    started = Replica("iris-1-a", 1, 8001, 3.0, started_at=7.0)
    replica, _ = restored_replica(started, ProcessHandle(4242, 1.0, None), NOW)
    assert replica.started_at == 7.0


# the one writer -------------------------------------------------------------------------------
@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings(hold_s=10.0), ManualClock(1_000.0))
    yield controller
    controller.store.close()


def _events(ctrl: Controller, dep: Deployment) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in ctrl.store.events(dep.key)]


def _with_replica(**fields: Any) -> Deployment:
    dep = _deployment()
    dep.replicas["iris-1-a"] = Replica("iris-1-a", 1, 0, 0.0, **fields)
    return dep


def test_apply_records_the_scaling_event_with_the_count(ctrl: Controller) -> None:
    dep = _deployment(desired=2)
    ctrl.apply(dep, [SetDesired(5, "manual"), Event("Normal", "AutoscalerActive", "on")])
    assert dep.desired == 5
    assert _events(ctrl, dep) == [
        ("Normal", "ScalingReplicaSet", "scaled from 2 to 5: manual"),
        ("Normal", "AutoscalerActive", "on"),
    ]
    assert dep.last_event == "AutoscalerActive: on"


def test_apply_keeps_the_last_snapshots(ctrl: Controller) -> None:
    dep = _with_replica()
    ctrl.apply(dep, [Scraped("iris-1-a", Snapshot(float(i))) for i in range(SNAPSHOTS_KEPT + 5)])
    snapshots = dep.replicas["iris-1-a"].snapshots
    assert [s.at for s in snapshots] == [float(i) for i in range(5, SNAPSHOTS_KEPT + 5)]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(Scraped("gone", Snapshot(1.0)), id="scraped"),
        pytest.param(Unschedulable("gone", "no cpu"), id="unschedulable"),
        pytest.param(
            ProbeResult("gone", Phase.READY, 0, None, 1.0, True, "", Event("Normal", "Ready", "")),
            id="probed",
        ),
    ],
)
def test_apply_skips_a_replica_that_is_gone(ctrl: Controller, change: Change) -> None:
    dep = _with_replica()
    ctrl.apply(dep, [change])
    assert _events(ctrl, dep) == []
    assert dep.replicas["iris-1-a"] == Replica("iris-1-a", 1, 0, 0.0)


def test_apply_writes_the_replica_fields(ctrl: Controller) -> None:
    dep = _with_replica()
    ctrl.apply(
        dep,
        [
            ProbeResult("iris-1-a", Phase.NOT_READY, 3, 9.0, 2.0, True, "probe", None),
            Unschedulable("iris-1-a", "no cpu"),
            Placed("iris-1-a", (0, 1)),
        ],
    )
    replica = dep.replicas["iris-1-a"]
    assert (replica.phase, replica.probe_failures, replica.unready_since) == (
        Phase.NOT_READY,
        3,
        9.0,
    )
    assert (replica.ready_at, replica.ever_ready, replica.last_reason) == (2.0, True, "probe")
    assert (replica.pending_reason, replica.gpus) == ("no cpu", (0, 1))
    assert _events(ctrl, dep) == [("Warning", "FailedScheduling", "iris-1-a: no cpu")]


def test_apply_sets_the_spec_and_the_hold_it_asks_for(ctrl: Controller) -> None:
    dep = _deployment()
    to_zero = _doc(
        autoscaling={
            "minReplicas": 0,
            "maxReplicas": 2,
            "scaleToZero": {"idleAfter": "30s", "activationTimeout": "7s"},
        }
    )
    ctrl.apply(dep, [SetSpec(to_zero)])
    assert dep.doc is to_zero and dep.router.hold_s == 7.0
    ctrl.apply(dep, [SetSpec(_doc())])
    assert dep.router.hold_s == 10.0


def test_apply_cuts_a_revision(ctrl: Controller) -> None:
    dep = _deployment()
    data = revision_of(B)
    ctrl.apply(dep, [AddRevision(2, data, "/src")])
    assert dep.newest_revision == 2 and dep.revision_hashes[2] == revision_hash(data)
    assert dep.revision_files[2].read_text() == yaml.safe_dump(data, sort_keys=False)
    assert [(r.revision, r.source_dir) for r in ctrl.store.revisions(dep.key)] == [(2, "/src")]


def test_apply_writes_the_rollout_analysis_autoscaler_and_traffic(ctrl: Controller) -> None:
    dep = _deployment()
    state = RolloutState(stable=1, target=2, strategy=RolloutStrategy.CANARY)
    ctrl.apply(
        dep,
        [
            SetRollout(state, (Event("Normal", "RolloutStarted", "go"),)),
            AnalysisResult("too slow", False, 50.0),
            AutoscalerRan(PolicyState(), {"desiredReplicas": 2}, 60.0),
            TrafficSeen(10, 70.0, 2.5),
        ],
    )
    assert dep.rollout is state
    assert (dep.analysis_failure, dep.analysis_passed, dep.next_analysis_at) == (
        "too slow",
        False,
        50.0,
    )
    assert (dep.autoscale_state, dep.last_decision, dep.next_autoscale_at) == (
        PolicyState(),
        {"desiredReplicas": 2},
        60.0,
    )
    assert (dep.lb_requests_seen, dep.lb_seen_at, dep.rps) == (10, 70.0, 2.5)
    assert _events(ctrl, dep) == [("Normal", "RolloutStarted", "go")]


def test_add_and_delete_go_through_the_controller(ctrl: Controller) -> None:
    dep = _deployment()
    ctrl.add(dep, Event("Normal", "Created", "revision 1"))
    assert ctrl.deployments == {"ml/iris": dep}
    ctrl.add_replica(dep, Replica("iris-1-a", 1, 0, 0.0), Event("Warning", "Lost", "again"))
    assert list(dep.replicas) == ["iris-1-a"]
    ctrl.begin_delete(dep)  # no process: the replica goes at once
    assert ctrl.deployments == {} and dep.replicas == {}
    ctrl.end_delete(dep)
    assert ctrl.store.deployments() == {}


def test_a_decision_event_says_how_many_standby_replicas_it_keeps() -> None:
    dep = _deployment(desired=1, last_decision=None)
    decision = replace(_decision(2), standby=1)
    ran = autoscaler_ran(dep, decision, PolicyState(), next_at=NOW + 15)[0]
    assert isinstance(ran, AutoscalerRan) and ran.event is not None
    assert ran.event.message.endswith("(concurrency=40; standby=1)"), ran.event.message
    assert ran.standby == 1
