"""Controller side of start-up-aware autoscaling and warm standby, without processes.

The arriving rate the loop records, the start-up median it passes (cold replicas of the
stable revision only), which standby replicas are promoted, started or stopped, and that a
standby never blocks a serving replica at admission. Real ``Controller`` records with a
``ManualClock``; nothing is spawned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlkube.autoscale.api import Observation, ReplicaMetrics
from mlkube.backends.local.controller.app import _restored_deployment
from mlkube.backends.local.controller.controller import Controller
from mlkube.backends.local.controller.deployment import Deployment
from mlkube.backends.local.controller.loops import cold_replicas
from mlkube.backends.local.controller.metrics import deployment_state
from mlkube.backends.local.controller.replica import Replica
from mlkube.backends.local.controller.settings import ControllerSettings
from mlkube.backends.local.decisions.admission import Capacity, Claim, QuotaLimits, admit
from mlkube.backends.local.decisions.plan import Phase, ReplicaView
from mlkube.backends.local.decisions.standby import (
    arriving_rate,
    promotions,
    standby_plan,
)
from mlkube.backends.local.proxy import Router
from mlkube.backends.local.status_view import replica_phase, standby_line
from mlkube.backends.local.store import RevisionRow
from mlkube.clock import ManualClock
from mlkube.desired.rollout import RolloutState
from mlkube.spec import ModelDeployment, parse_documents

DOC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris}
spec:
  model: {uri: /models/iris.onnx, format: onnx}
  autoscaling: {minReplicas: 1, maxReplicas: 4, standby: 1}
"""


@pytest.fixture
def ctrl(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(tmp_path, ControllerSettings(), ManualClock())
    yield controller
    controller.store.close()


def deployment(stable: int = 1) -> Deployment:
    (doc,) = parse_documents(DOC)
    assert isinstance(doc, ModelDeployment)
    return Deployment(
        "default/iris", doc, Router("default/iris", hold_s=1.0), RolloutState(stable), 1
    )


def metrics(name: str, started: float, ready: float | None) -> ReplicaMetrics:
    return ReplicaMetrics(name, ready is not None, started, ready, None, None, 0.0, 0.0, 0.0, None)


def view(name: str, phase: Phase, created: float = 0.0, revision: int = 1) -> ReplicaView:
    return ReplicaView(name, revision, phase, created)


# arriving rate --------------------------------------------------------------------------------
def test_the_arriving_rate_is_each_backends_new_requests_plus_the_held_ones_per_second() -> None:
    before = {"a": 100, "b": 40}
    now = {"a": 130, "b": 50, "c": 5}  # c is new since the last look: all of its 5 count
    assert arriving_rate(before, now, holding=5, seconds=10.0) == pytest.approx(5.0)


def test_a_counter_that_went_back_counts_from_zero_and_a_gone_backend_counts_nothing() -> None:
    # The balancer restarted (a: 3 since then); b stopped (its old count is not negative).
    assert arriving_rate({"a": 100, "b": 40}, {"a": 3}, holding=0, seconds=1.0) == 3.0


def test_the_first_look_counts_the_held_requests_only() -> None:
    assert arriving_rate(None, {"a": 1000}, holding=2, seconds=1.0) == 2.0
    assert arriving_rate({"a": 1}, {"a": 5}, holding=0, seconds=0.0) == 0.0


# start-up samples -------------------------------------------------------------------------------
def test_the_startup_is_the_median_of_cold_replicas_of_the_stable_revision(
    ctrl: Controller,
) -> None:
    dep = deployment(stable=2)
    dep.replicas = {
        "cold-a": Replica("cold-a", 2, 1, 0.0),
        "cold-b": Replica("cold-b", 2, 2, 0.0),
        "cold-c": Replica("cold-c", 2, 3, 0.0),
        "promoted": Replica("promoted", 2, 4, 0.0, promoted=True),
        "adopted": Replica("adopted", 2, 5, 0.0, adopted_at=50.0),
        "old-rev": Replica("old-rev", 1, 6, 0.0),
    }
    seen = (
        metrics("cold-a", 10.0, 30.0),  # 20 s
        metrics("cold-b", 10.0, 40.0),  # 30 s
        metrics("cold-c", 10.0, 20.0),  # 10 s
        metrics("promoted", 10.0, 11.0),  # its start-up was paid before the scale-up
        metrics("adopted", 10.0, 10.5),  # another controller's clock
        metrics("old-rev", 10.0, 100.0),  # another revision's model
    )
    observation = Observation(60.0, 4, seen, None, None)
    cold = cold_replicas(dep, observation)
    assert [m.name for m in cold] == ["cold-a", "cold-b", "cold-c"]
    history = ctrl.track_load(dep, 1000.0, {}, 2.0, cold)
    assert history.startup_seconds == 20.0
    assert list(history.rates) == [(1000.0, 2.0)]


def test_a_new_stable_revision_measures_its_startup_afresh(ctrl: Controller) -> None:
    dep = deployment(stable=1)
    first = ctrl.track_load(dep, 1.0, {}, 0.0, [metrics("r1", 0.0, 60.0)])
    assert first.startup_seconds == 60.0
    dep.rollout = RolloutState(2)
    second = ctrl.track_load(dep, 2.0, {"x": 1}, 0.0, [])
    assert second.startup_seconds is None
    assert dep.load_counts == {"x": 1}


# standby -------------------------------------------------------------------------------------
def test_a_scale_up_promotes_ready_standby_first_then_starting_ones() -> None:
    serving = [view("s1", Phase.READY)]
    standby = [
        view("warming", Phase.STARTING, created=1.0),
        view("pending", Phase.PENDING, created=0.0),
        view("ready-new", Phase.READY, created=5.0),
        view("ready-old", Phase.READY, created=2.0),
    ]
    assert promotions({1: 3}, serving, standby) == ["ready-old", "ready-new"]
    assert promotions({1: 4}, serving, standby) == ["ready-old", "ready-new", "warming"]
    assert promotions({1: 1}, serving, standby) == []
    assert promotions({2: 2}, serving, standby) == []  # another revision's standby is no use


def test_the_standby_pool_is_topped_up_and_trimmed() -> None:
    assert standby_plan(2, 1, [view("a", Phase.READY)]).starts == 1
    trimmed = standby_plan(
        1,
        1,
        [
            view("a", Phase.READY, 1.0),
            view("b", Phase.STARTING, 2.0),
            view("o", Phase.READY, revision=0),
        ],
    )
    assert trimmed.starts == 0
    assert dict(trimmed.stops).keys() == {"o", "b"}
    crashed = standby_plan(1, 1, [view("c", Phase.BACKOFF)])
    assert crashed.starts == 1 and [name for name, _ in crashed.stops] == ["c"]


def test_the_controller_promotes_on_scale_up_and_keeps_the_pool(ctrl: Controller) -> None:
    dep = deployment()
    dep.revisions = {1: dep.doc}
    dep.standby_wanted = 1
    start = ctrl.clock.monotonic()
    dep.replicas = {
        "serving": Replica("serving", 1, 1, 0.0, phase=Phase.READY),
        "warm": Replica("warm", 1, 2, 0.0, phase=Phase.READY, standby=True, standby_since=start),
    }
    ctrl.clock.advance(30.0)  # type: ignore[attr-defined]
    ctrl._promote_standby(dep, {1: 2}, ctrl.clock.monotonic())
    warm = dep.replicas["warm"]
    assert not warm.standby and warm.promoted
    assert dep.standby_seconds == 30.0
    ctrl._keep_standby(dep, ctrl.clock.monotonic())
    fresh = [r for r in dep.replicas.values() if r.standby]
    assert len(fresh) == 1 and fresh[0].phase is Phase.PENDING


# admission -------------------------------------------------------------------------------------
def test_a_serving_replica_that_does_not_fit_stops_a_standby_even_without_preemption() -> None:
    capacity = Capacity(cpu_millis=2000, memory_bytes=2**30)
    placed = [
        Claim("serving", "ml", cpu_millis=1000),
        Claim("standby", "ml", priority=-(2**31), cpu_millis=1000, preempts=False, standby=True),
    ]
    never = Claim("new", "ml", cpu_millis=1000, preempts=False)
    assert admit(never, placed, capacity, {}).victims == ("standby",)
    # A quota is no reason to wait for a standby either.
    quotas = {"ml": QuotaLimits(pods=2)}
    roomy = Capacity(cpu_millis=8000, memory_bytes=2**30)
    assert admit(Claim("new", "ml"), placed, roomy, quotas).victims == ("standby",)


def test_a_standby_never_preempts_and_does_not_fit_where_there_is_no_room() -> None:
    capacity = Capacity(cpu_millis=1000, memory_bytes=2**30)
    placed = [Claim("serving", "ml", priority=-5, cpu_millis=1000)]
    standby = Claim(
        "standby", "ml", priority=-(2**31), cpu_millis=500, preempts=False, standby=True
    )
    verdict = admit(standby, placed, capacity, {})
    assert not verdict.admitted and "insufficient cpu" in verdict.reason


# status -------------------------------------------------------------------------------------------
def test_status_shows_standby_replicas_and_their_cost() -> None:
    dep = {"name": "iris", "standby": {"replicas": 1, "ready": 1, "replicaSeconds": 42.0}}
    assert standby_line(dep) == ("iris: standby 1 (1 ready, not serving), cost 42 replica-seconds")
    assert (
        standby_line({"name": "iris", "standby": {"replicas": 0, "ready": 0, "replicaSeconds": 0}})
        is None
    )
    assert replica_phase({"phase": "Ready", "standby": True}) == "Standby"
    assert replica_phase({"phase": "Starting", "standby": True}) == "Warming (Starting)"
    assert replica_phase({"phase": "Ready", "standby": False}) == "Ready"


# persistence ----------------------------------------------------------------------------------
def test_the_load_history_standby_count_and_standby_flags_survive_a_restart(
    ctrl: Controller,
) -> None:
    dep = deployment()
    data = dep.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    ctrl.store.add_revision(dep.key, RevisionRow(1, data, "/tmp", 0.0, "", ""))
    ctrl.track_load(dep, 500.0, {"a": 3}, 4.0, [metrics("r1", 0.0, 25.0)])
    dep.standby_wanted = 1
    dep.replicas = {
        "w": Replica("w", 1, 7, 0.0, standby=True),
        "p": Replica("p", 1, 8, 0.0, promoted=True),
    }
    ctrl.persist(dep)
    row = ctrl.store.deployments()[dep.key]
    back = _restored_deployment(ctrl, dep.key, row, ctrl.store.revisions(dep.key))
    assert back.standby_wanted == 1
    assert back.load.startups == (("r1", 25.0),)
    assert back.load.rates.samples() == ((500.0, 4.0),)
    replicas = {r["name"]: Replica.from_json(r) for r in ctrl.store.replicas(dep.key)}
    assert replicas["w"].standby and not replicas["w"].promoted
    assert replicas["p"].promoted and not replicas["p"].standby


def test_the_controller_metrics_count_a_ready_standby_as_not_serving() -> None:
    dep = deployment()
    dep.replicas = {
        "s": Replica("s", 1, 1, 0.0, phase=Phase.READY),
        "w": Replica("w", 1, 2, 0.0, phase=Phase.READY, standby=True),
    }
    state = deployment_state(dep)
    assert state.ready == 1
    assert state.phases == {"Ready": 2}
