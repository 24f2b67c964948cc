from mlkube.backends.local.decisions.plan import (
    Phase,
    ReplicaView,
    Restart,
    Start,
    Stop,
    plan_actions,
)


def view(name, revision=1, phase=Phase.READY, created=0.0, restart_at=None):
    return ReplicaView(name, revision, phase, created, restart_at)


def test_scale_up_starts_the_missing_replicas():
    actions = plan_actions({1: 3}, [view("a")], now=10)
    assert actions == [Start(1), Start(1)]


def test_scale_down_stops_pending_and_crashing_before_ready_and_newest_first():
    replicas = [
        view("old", created=1),
        view("new", created=5),
        view("crash", phase=Phase.BACKOFF, created=0),
        view("wait", phase=Phase.PENDING, created=0),
    ]
    actions = plan_actions({1: 1}, replicas, now=10)
    assert [a.name for a in actions if isinstance(a, Stop)] == ["wait", "crash", "new"]


def test_unwanted_revisions_are_stopped():
    actions = plan_actions({2: 1}, [view("a", 1), view("b", 2)], now=0)
    assert actions == [Stop("a", "revision 1 is not wanted")]


def test_terminating_replicas_do_not_count():
    actions = plan_actions({1: 1}, [view("a", phase=Phase.TERMINATING)], now=0)
    assert actions == [Start(1)]


def test_restart_waits_for_the_back_off():
    crashed = view("a", phase=Phase.BACKOFF, restart_at=20.0)
    assert plan_actions({1: 1}, [crashed], now=19.9) == []
    assert plan_actions({1: 1}, [crashed], now=20.0) == [Restart("a")]


def test_steady_state_needs_nothing():
    assert plan_actions({1: 2}, [view("a"), view("b")], now=0) == []
